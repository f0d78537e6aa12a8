/* fs.h: small file-system helpers shared by the programs.
 *
 * Promises: errors name the path and what it is for ("run directory", "checkpoint
 * directory"), so a user knows which job key to change. */
#ifndef MMSA_FS_H
#define MMSA_FS_H

#include "mmsa/error.h"

/* Create dir and any missing parents (like `mkdir -p`), then check that dir is a
 * directory this process can write to. `what` names it in messages and the hint,
 * e.g. "checkpoint directory". MM_ERR_ARG for an over-long name, MM_ERR_IO otherwise. */
mm_status mm_mkdir_p(const char *dir, const char *what);

#endif
