/* error.h: status codes, error propagation with a traceback, MPI error wrapping.
 *
 * Owns: the calling thread's last error (code, message, frames).
 * Promises: library functions return mm_status and never exit(). MM_ERR records a
 * message at the point of failure; MM_CALL propagates a failure upward, adding one
 * traceback frame per level, so mm_error_print shows the path from the app down to
 * the cause, prefixed with the MPI rank. */
#ifndef MMSA_ERROR_H
#define MMSA_ERROR_H

#include <stdbool.h>
#include <stdio.h>

typedef enum mm_status {
    MM_OK = 0,
    MM_ERR_NOMEM,    /* allocation failed */
    MM_ERR_ARG,      /* a caller passed an invalid argument (shape mismatch, NULL, ...) */
    MM_ERR_IO,       /* a file could not be opened, read or written */
    MM_ERR_FORMAT,   /* a file was readable but malformed (bad HDF5 layout, bad CSV, ...) */
    MM_ERR_CONFIG,   /* a job file or flag is invalid */
    MM_ERR_CHEM,     /* a molecule could not be parsed or featurised */
    MM_ERR_MPI,      /* an MPI call failed */
    MM_ERR_NUMERIC,  /* NaN or Inf where a finite value is required */
    MM_ERR_RANGE,    /* a count does not fit the type it must be passed as */
    MM_ERR_INTERNAL  /* a broken invariant: a bug in MMSA-C */
} mm_status;

const char *mm_status_name(mm_status s);

/* Record a new error (clearing earlier frames); returns code so that
 * `return MM_ERR(MM_ERR_IO, "cannot open %s", path);` reads naturally. */
mm_status mm_error_raise(mm_status code, const char *file, int line, const char *func,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Add a traceback frame to the current error. */
void mm_error_push(const char *file, int line, const char *func);
/* Set a hint line a user can act on ("HINT: ..."), for the current error. */
void mm_error_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const char *mm_error_message(void);
const char *mm_error_hint_text(void); /* "" when the error has no hint */
mm_status mm_error_code(void);
void mm_error_clear(void);
/* Mark the current error as known to every rank of the communicator (mm_dist_agree does
 * this on every rank when it returns a failure), so a program can report it once, from
 * rank 0, and end normally; an error not so marked may be one rank's alone, and the
 * program aborts the job so that no rank waits in a collective. A new error clears it. */
void mm_error_set_agreed(void);
bool mm_error_agreed(void);
/* Print "[rank r] error: <message>" then the frames, innermost first, then the hint.
 * rank < 0 omits the rank. */
void mm_error_print(FILE *f, int rank);

#define MM_ERR(code, ...) mm_error_raise((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define MM_CALL(expr)                                        \
    do {                                                     \
        mm_status mm_call_s_ = (expr);                       \
        if (mm_call_s_ != MM_OK) {                           \
            mm_error_push(__FILE__, __LINE__, __func__);     \
            return mm_call_s_;                               \
        }                                                    \
    } while (0)

/* Like MM_CALL but jumps to a cleanup label with the status stored in `st`. */
#define MM_CALL_GOTO(st, expr, label)                        \
    do {                                                     \
        (st) = (expr);                                       \
        if ((st) != MM_OK) {                                 \
            mm_error_push(__FILE__, __LINE__, __func__);     \
            goto label;                                      \
        }                                                    \
    } while (0)

#define MM_CHECK_ARG(cond, ...)                                      \
    do {                                                             \
        if (!(cond)) return MM_ERR(MM_ERR_ARG, __VA_ARGS__);         \
    } while (0)

/* Wrap an MPI call: its error string becomes the message. Needs <mpi.h> and
 * communicators with MPI_ERRORS_RETURN (mm_dist sets it). */
mm_status mm_error_mpi(int mpi_code, const char *call, const char *file, int line,
                       const char *func);
#define MM_MPI_CALL(expr)                                                          \
    do {                                                                           \
        int mm_mpi_rc_ = (expr);                                                   \
        if (mm_mpi_rc_ != 0)                                                       \
            return mm_error_mpi(mm_mpi_rc_, #expr, __FILE__, __LINE__, __func__);  \
    } while (0)

#endif
