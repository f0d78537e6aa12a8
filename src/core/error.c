/* error.c: the per-thread error record behind error.h. */
#include "mmsa/error.h"

#include <mpi.h>
#include <stdarg.h>
#include <string.h>

#define MM_MAX_FRAMES 32

typedef struct {
    const char *file;
    int line;
    const char *func;
} mm_frame;

static _Thread_local struct {
    mm_status code;
    char msg[1024];
    char hint[512];
    mm_frame frames[MM_MAX_FRAMES];
    int n_frames;
    bool agreed;
} err;

const char *mm_status_name(mm_status s)
{
    switch (s) {
    case MM_OK: return "ok";
    case MM_ERR_NOMEM: return "out of memory";
    case MM_ERR_ARG: return "invalid argument";
    case MM_ERR_IO: return "I/O error";
    case MM_ERR_FORMAT: return "malformed input";
    case MM_ERR_CONFIG: return "configuration error";
    case MM_ERR_CHEM: return "chemistry error";
    case MM_ERR_MPI: return "MPI error";
    case MM_ERR_NUMERIC: return "numerical error";
    case MM_ERR_RANGE: return "value out of range";
    case MM_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

mm_status mm_error_raise(mm_status code, const char *file, int line, const char *func,
                         const char *fmt, ...)
{
    va_list ap;
    err.code = code;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof err.msg, fmt, ap);
    va_end(ap);
    err.hint[0] = '\0';
    err.n_frames = 0;
    err.agreed = false;
    mm_error_push(file, line, func);
    return code;
}

void mm_error_push(const char *file, int line, const char *func)
{
    if (err.n_frames < MM_MAX_FRAMES)
        err.frames[err.n_frames++] = (mm_frame){file, line, func};
}

void mm_error_hint(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.hint, sizeof err.hint, fmt, ap);
    va_end(ap);
}

const char *mm_error_message(void) { return err.msg; }
const char *mm_error_hint_text(void) { return err.hint; }
void mm_error_set_agreed(void) { err.agreed = true; }
bool mm_error_agreed(void) { return err.code != MM_OK && err.agreed; }
mm_status mm_error_code(void) { return err.code; }

void mm_error_clear(void)
{
    err.code = MM_OK;
    err.msg[0] = '\0';
    err.hint[0] = '\0';
    err.n_frames = 0;
    err.agreed = false;
}

void mm_error_print(FILE *f, int rank)
{
    char who[32] = "";
    if (rank >= 0) snprintf(who, sizeof who, "[rank %d] ", rank);
    fprintf(f, "%serror (%s): %s\n", who, mm_status_name(err.code), err.msg);
    for (int i = 0; i < err.n_frames; i++)
        fprintf(f, "%s  at %s (%s:%d)\n", who, err.frames[i].func, err.frames[i].file,
                err.frames[i].line);
    if (err.hint[0]) fprintf(f, "%sHINT: %s\n", who, err.hint);
    fflush(f);
}

mm_status mm_error_mpi(int mpi_code, const char *call, const char *file, int line,
                       const char *func)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mpi_code, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "code %d", mpi_code);
    return mm_error_raise(MM_ERR_MPI, file, line, func, "%s failed: %s", call, s);
}
