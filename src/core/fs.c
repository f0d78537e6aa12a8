/* fs.c: mkdir -p with a writability check (fs.h). */
#include "mmsa/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mm_status mm_mkdir_p(const char *dir, const char *what)
{
    char buf[PATH_MAX];
    if (!dir || !*dir) return MM_ERR(MM_ERR_ARG, "empty %s name", what);
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return MM_ERR(MM_ERR_ARG, "%s name too long: %s", what, dir);
    mm_status st = MM_OK;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            st = MM_ERR(MM_ERR_IO, "cannot create %s %s (at %s): %s", what, dir, buf, strerror(errno));
            mm_error_hint("choose a %s on a writable file system", what);
            return st;
        }
        *p = c;
        if (c == '\0') break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        st = MM_ERR(MM_ERR_IO, "%s %s: %s", what, dir, strerror(errno));
        mm_error_hint("choose a %s on a writable file system", what);
    } else if (!S_ISDIR(sb.st_mode)) {
        st = MM_ERR(MM_ERR_IO, "%s %s exists and is not a directory", what, dir);
        mm_error_hint("choose a %s that is not an existing file", what);
    } else if (access(dir, W_OK) != 0) {
        st = MM_ERR(MM_ERR_IO, "%s %s is not writable: %s", what, dir, strerror(errno));
        mm_error_hint("choose a %s you can write to", what);
    }
    return st;
}
