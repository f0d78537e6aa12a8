/* run.h: what every pre-training loop shares (MMSA's in train.h, the spectrum
 * autoencoder's in spectrum.h): the run directory and the batch schedule.
 *
 * Owns: run_dir/job.yaml (the resolved job), run_dir/log.jsonl (opened for appending on
 * rank 0), run_dir/checkpoints/ (created; resuming from its `latest`), and the global
 * batch of a step. Promises:
 *  - the global batch of step s is a pure function of (seed, s): epoch e = s / spe
 *    shuffles positions 0 .. n_train-1 with the counter-based RNG (stream
 *    MM_STREAM_SHUFFLE + e), batch k = s mod spe takes perm[kB .. kB+B), mapped through
 *    `items` when given, sorted;
 *  - resuming restores the checkpoint into the caller's state and refuses one written
 *    with another seed (the batches would differ), the same error on every rank. */
#ifndef MMSA_RUN_H
#define MMSA_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mmsa/checkpoint.h"
#include "mmsa/dist.h"
#include "mmsa/job.h"

/* Monotonic wall clock, seconds. */
double mm_run_now(void);
/* The resolved job as YAML (malloc'ed; free()). */
mm_status mm_run_job_text(const mm_job *job, char **text);
/* Collective: creates run_dir/checkpoints (rank 0) and writes its path into ckpt_dir. */
mm_status mm_run_checkpoint_dir(const char *run_dir, mm_dist *d, char *ckpt_dir, size_t n);
/* The checkpoint state of a loop at `step` (epoch and cursor from steps_per_epoch, the
 * job's seed); the caller adds what only it has (e.g. the memory bank). */
mm_ckpt_state mm_run_ckpt_state(const mm_job *job, const char *job_text, int64_t step, int64_t steps_per_epoch,
                                mm_params *params, mm_optimizer *opt, float *buffers, size_t n_buffers,
                                int64_t bn_batches);
/* Collective: loads ckpt_dir/latest into s when there is one (*resumed says so). */
mm_status mm_run_resume(const char *ckpt_dir, mm_dist *d, uint64_t seed, mm_ckpt_state *s, bool *resumed);
/* Collective: rank 0 writes run_dir/job.yaml and opens run_dir/log.jsonl (*log; NULL on
 * the other ranks). */
mm_status mm_run_open_log(const char *run_dir, const char *job_text, mm_dist *d, FILE **log);
/* A loop's clock: when it started, and the time and step of its previous log line. */
typedef struct mm_run_clock {
    double t_start, t_last_log;
    int64_t step_last_log, step0; /* step0: the step this process started at (after a resume) */
} mm_run_clock;
/* Collective: the start every loop shares. With `resume`, loads ckpt_dir/latest into s (the
 * loop's state, from its ckpt_state) and, when there was one, moves *step and *bn_batches to
 * the checkpoint's and warns (rank 0, stderr) of every setting that differs from the run's
 * run_dir/job.yaml (mm_run_job_diff); then writes the job and opens the log
 * (mm_run_open_log) and starts the clock at *step. */
mm_status mm_run_start(const char *ckpt_dir, const char *run_dir, const char *job_text, uint64_t seed, bool resume,
                       mm_dist *d, mm_ckpt_state *s, int64_t *step, int64_t *bn_batches, FILE **log,
                       mm_run_clock *clock);
/* The settings of a resolved job text (mm_run_job_text) that differ from those of an earlier
 * one (the run_dir/job.yaml of the run being resumed): one line per setting to out, "  section.key: new
 * (the run had: old)", or "(not in the run's job.yaml: ...)" for a key the earlier build did not
 * have (its behaviour was that build's default, which may differ). Returns how many. */
int mm_run_job_diff(const char *old_text, const char *new_text, FILE *out);
/* Collective, at a log line: *now, the molecules/s since the previous line (the clock's
 * last line moves to now and step) and the largest peak RSS over the ranks, MiB. */
mm_status mm_run_log_stats(mm_dist *d, int64_t step, int64_t batch, mm_run_clock *clock, double *now,
                           double *mol_per_s, double *peak_rss_mib);
/* "h:mm:ss" */
void mm_run_fmt_hms(double seconds, char *buf, size_t n);
/* The progress line's ETA as "h:mm:ss": the time left at the pace of the steps this
 * process ran (step0 = the step it started at, after a resume), elapsed seconds since. */
void mm_run_fmt_eta(double elapsed, int64_t step0, int64_t step, int64_t total_steps, char *buf, size_t n);

/* The batch schedule of the header comment. perm [n_train] and *perm_epoch (-1 at
 * first) are the caller's cache of the current epoch's permutation; idx [B] receives the
 * batch, items[perm[...]] (or perm[...] when items is NULL), sorted. */
typedef struct mm_run_batches {
    uint64_t seed;
    int64_t n_train, batch, steps_per_epoch;
    const int64_t *items;    /* [n_train] or NULL */
    int64_t *perm;           /* [n_train] */
    int64_t perm_epoch;
} mm_run_batches;
void mm_run_batch(mm_run_batches *b, int64_t step, int64_t *idx);

#endif
