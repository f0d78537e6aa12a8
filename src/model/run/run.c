/* run.c: the run directory and the batch schedule shared by the pre-training loops (run.h). */
#include "mmsa/run.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmsa/alloc.h"
#include "mmsa/fs.h"
#include "mmsa/rng.h"

double mm_run_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

mm_status mm_run_job_text(const mm_job *job, char **text)
{
    size_t len = 0;
    *text = NULL;
    FILE *mf = open_memstream(text, &len);
    if (!mf) return MM_ERR(MM_ERR_NOMEM, "job text");
    mm_cfg_write_values(&mm_job_schema, job, mf);
    fclose(mf);
    return MM_OK;
}

mm_status mm_run_checkpoint_dir(const char *run_dir, mm_dist *d, char *ckpt_dir, size_t n)
{
    snprintf(ckpt_dir, n, "%s/checkpoints", run_dir);
    mm_status st = d->rank == 0 ? mm_mkdir_p(ckpt_dir, "checkpoint directory") : MM_OK;
    MM_CALL(mm_dist_agree(d, st));
    return MM_OK;
}

mm_ckpt_state mm_run_ckpt_state(const mm_job *job, const char *job_text, int64_t step, int64_t steps_per_epoch,
                                mm_params *params, mm_optimizer *opt, float *buffers, size_t n_buffers,
                                int64_t bn_batches)
{
    mm_ckpt_state s;
    memset(&s, 0, sizeof s);
    s.step = step;
    s.epoch = steps_per_epoch ? step / steps_per_epoch : 0;
    s.cursor = steps_per_epoch ? step % steps_per_epoch : 0;
    s.seed = (uint64_t)job->train.seed;
    s.params = params;
    s.opt = opt;
    s.buffers = buffers;
    s.n_buffers = n_buffers;
    s.bn_batches = bn_batches;
    s.job_text = job_text;
    return s;
}

mm_status mm_run_resume(const char *ckpt_dir, mm_dist *d, uint64_t seed, mm_ckpt_state *s, bool *resumed)
{
    char path[1200];
    bool found = false;
    *resumed = false;
    MM_CALL(mm_ckpt_latest(ckpt_dir, path, sizeof path, &found));
    if (!found) return MM_OK;
    MM_CALL(mm_ckpt_read(path, d, s));
    mm_status seed_st = MM_OK;
    if (s->seed != seed)
        seed_st = MM_ERR(MM_ERR_CONFIG, "%s was written with seed %llu but train.seed is %llu", path,
                         (unsigned long long)s->seed, (unsigned long long)seed);
    MM_CALL(mm_dist_agree(d, seed_st));
    if (d->rank == 0) fprintf(stderr, "resuming from %s (step %lld)\n", path, (long long)s->step);
    *resumed = true;
    return MM_OK;
}

static mm_status open_log(const char *run_dir, const char *job_text, FILE **log)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    *log = fopen(path, "a");
    if (!*log) return MM_ERR(MM_ERR_IO, "cannot open %s for appending: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/job.yaml", run_dir);
    FILE *f = fopen(path, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    fputs(job_text, f);
    fclose(f);
    return MM_OK;
}

mm_status mm_run_open_log(const char *run_dir, const char *job_text, mm_dist *d, FILE **log)
{
    *log = NULL;
    MM_CALL(mm_dist_agree(d, d->rank == 0 ? open_log(run_dir, job_text, log) : MM_OK));
    return MM_OK;
}

void mm_run_fmt_hms(double s, char *buf, size_t n)
{
    if (!(s >= 0) || s > 1e8) s = 0;
    long v = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", v / 3600, (v / 60) % 60, v % 60);
}

void mm_run_fmt_eta(double elapsed, int64_t step0, int64_t step, int64_t total_steps, char *buf, size_t n)
{
    double per_step = elapsed / (double)(step > step0 ? step - step0 : 1);
    mm_run_fmt_hms(per_step * (double)(total_steps > step ? total_steps - step : 0), buf, n);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void mm_run_batch(mm_run_batches *b, int64_t step, int64_t *idx)
{
    int64_t B = b->batch, epoch = step / b->steps_per_epoch, k = step % b->steps_per_epoch;
    if (b->perm_epoch != epoch) {
        mm_rng r;
        mm_rng_init(&r, b->seed, MM_STREAM_SHUFFLE + (uint64_t)epoch);
        mm_rng_permutation(&r, b->n_train, b->perm);
        b->perm_epoch = epoch;
    }
    for (int64_t i = 0; i < B; i++) idx[i] = b->items ? b->items[b->perm[k * B + i]] : b->perm[k * B + i];
    qsort(idx, (size_t)B, sizeof(int64_t), cmp_i64);
}

/* The value of section.key in a text written by mm_cfg_write_values ("section:" lines, then
 * "  key: value" lines); NULL when absent. *len receives the value's length. */
static const char *job_value(const char *text, const char *section, size_t sec_len, const char *key, size_t key_len,
                             size_t *len)
{
    bool in = false;
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n && l[0] != ' ') {
            in = n == sec_len + 1 && !strncmp(l, section, sec_len) && l[sec_len] == ':';
        } else if (in && n > key_len + 4 && !strncmp(l, "  ", 2) && !strncmp(l + 2, key, key_len) &&
                   !strncmp(l + 2 + key_len, ": ", 2)) {
            *len = n - key_len - 4;
            return l + key_len + 4;
        }
    }
    return NULL;
}

int mm_run_job_diff(const char *old_text, const char *new_text, FILE *out)
{
    int count = 0;
    const char *section = "";
    size_t sec_len = 0;
    for (const char *l = new_text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n && l[0] != ' ' && l[n - 1] == ':') {
            section = l;
            sec_len = n - 1;
            continue;
        }
        const char *colon = n > 2 && !strncmp(l, "  ", 2) ? strstr(l + 2, ": ") : NULL;
        if (!colon || colon > l + n) continue;
        const char *key = l + 2, *val = colon + 2;
        size_t key_len = (size_t)(colon - key), val_len = (size_t)(l + n - val), old_len = 0;
        const char *old = job_value(old_text, section, sec_len, key, key_len, &old_len);
        if (old && old_len == val_len && !strncmp(old, val, val_len)) continue;
        count++;
        if (!out) continue;
        if (old)
            fprintf(out, "  %.*s.%.*s: %.*s (the run had: %.*s)\n", (int)sec_len, section, (int)key_len, key,
                    (int)val_len, val, (int)old_len, old);
        else
            fprintf(out, "  %.*s.%.*s: %.*s (not in the run's job.yaml: it was written by an older build, "
                         "whose default applied and may differ)\n",
                    (int)sec_len, section, (int)key_len, key, (int)val_len, val);
    }
    return count;
}

/* Rank 0, after a resume: the settings that differ from the run's run_dir/job.yaml. */
static void warn_job_changes(const char *run_dir, const char *job_text)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/job.yaml", run_dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *old = NULL;
    size_t cap = 0;
    ssize_t got = getdelim(&old, &cap, '\0', f);
    fclose(f);
    if (got > 0 && mm_run_job_diff(old, job_text, NULL) > 0) {
        fprintf(stderr, "warning: resuming with settings that differ from %s:\n", path);
        mm_run_job_diff(old, job_text, stderr);
    }
    free(old);
}

mm_status mm_run_start(const char *ckpt_dir, const char *run_dir, const char *job_text, uint64_t seed, bool resume,
                       mm_dist *d, mm_ckpt_state *s, int64_t *step, int64_t *bn_batches, FILE **log,
                       mm_run_clock *clock)
{
    if (resume) {
        bool resumed = false;
        MM_CALL(mm_run_resume(ckpt_dir, d, seed, s, &resumed));
        if (resumed) {
            *step = s->step;
            *bn_batches = s->bn_batches;
            if (d->rank == 0) warn_job_changes(run_dir, job_text);
        }
    }
    MM_CALL(mm_run_open_log(run_dir, job_text, d, log));
    clock->t_start = clock->t_last_log = mm_run_now();
    clock->step_last_log = clock->step0 = *step;
    return MM_OK;
}

mm_status mm_run_log_stats(mm_dist *d, int64_t step, int64_t batch, mm_run_clock *clock, double *now,
                           double *mol_per_s, double *peak_rss_mib)
{
    *now = mm_run_now();
    *mol_per_s = (double)(step - clock->step_last_log) * (double)batch / fmax(*now - clock->t_last_log, 1e-9);
    clock->t_last_log = *now;
    clock->step_last_log = step;
    *peak_rss_mib = mm_peak_rss_mib();
    if (d->size > 1) MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, peak_rss_mib, 1, MPI_DOUBLE, MPI_MAX, d->comm));
    return MM_OK;
}
