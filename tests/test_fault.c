/* Fault tests of the real program: `mpirun -n 2 bin/mmsa_pretrain` on a tiny job over the
 * golden file's 16 molecules, driven from outside as a user (or a scheduler) would see it.
 *  - a rank killed by SIGKILL mid-run brings the whole job down promptly (no hang), with a
 *    non-zero status and a message naming the rank and the signal; no rank survives it;
 *  - rerunning the same command resumes from the last complete checkpoint (the one the
 *    `latest` pointer names) and finishes;
 *  - an error inside the ranks (a missing dataset: every rank fails) and an error inside ONE
 *    rank (rank 1 alone is given a seed that disagrees with the checkpoint, through mpirun's
 *    MPMD syntax) bring the job down with the failing rank and the cause in the message;
 *  - a bad count on the command line (--steps abc) is a usage error naming the flag.
 * Runs from the repository root; the programs are taken from $BIN (default bin), as
 * tests/run_tests.sh exports it. This program is not an MPI program itself: it launches
 * mpirun as a child, in its own process group, and kills that group on any timeout. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

/* Bounds, generous for a loaded 2-core machine (or an ASan build). */
#define START_TIMEOUT_S 40.0 /* until the first run has logged steps and checkpointed */
#define DOWN_TIMEOUT_S 30.0  /* from the kill until mpirun has exited */
#define RUN_TIMEOUT_S 60.0   /* a short run to completion (or to its error) */

static char prog[PATH_MAX], golden[PATH_MAX], base[256];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Whole file as a NUL-terminated string (NULL if unreadable); *len its length. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *t = realloc(s, cap *= 2);
            if (!t) free(s);
            s = t;
        }
    }
    fclose(f);
    if (!s) return NULL;
    s[n] = 0;
    if (len) *len = n;
    return s;
}

/* Number of lines of run_dir/log.jsonl (0 if absent). */
static int log_lines(const char *run)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/log.jsonl", run);
    char *s = slurp(path, NULL);
    if (!s) return 0;
    int n = 0;
    for (char *p = s; *p; p++) n += *p == '\n';
    free(s);
    return n;
}

/* The peak_rss_mib of the first line of run_dir/log.jsonl (-1 if absent). */
static double first_peak_rss(const char *run)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/log.jsonl", run);
    char *s = slurp(path, NULL);
    if (!s) return -1;
    char *p = strstr(s, "\"peak_rss_mib\": ");
    double v = p ? atof(p + strlen("\"peak_rss_mib\": ")) : -1;
    free(s);
    return v;
}

/* The checkpoint file named by run_dir/checkpoints/latest ("" if none) and its step,
 * parsed from the name step_<N>.h5; -1 if there is no complete checkpoint. */
static long long latest_checkpoint(const char *run, char *name, size_t n)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/checkpoints/latest", run);
    name[0] = 0;
    char *s = slurp(path, NULL);
    if (!s) return -1;
    size_t k = strcspn(s, "\r\n");
    s[k] = 0;
    snprintf(name, n, "%s", s);
    free(s);
    long long step = -1;
    if (sscanf(name, "step_%lld.h5", &step) != 1) return -1;
    snprintf(path, sizeof path, "%s/checkpoints/%s", run, name);
    struct stat st;
    return stat(path, &st) == 0 ? step : -1;
}

/* Starts argv (argv[0] found in PATH) in its own process group with stdout and stderr
 * going to out_path, and the environment Open MPI needs when the tests run as root. */
static pid_t spawn(char *const argv[], const char *out_path)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
        setenv("BLIS_NUM_THREADS", "1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        /* an ASan build of the program: Open MPI's plugins keep allocations until exit */
        const char *asan = getenv("ASAN_OPTIONS");
        char opts[1024];
        snprintf(opts, sizeof opts, "detect_leaks=0%s%s", asan && *asan ? ":" : "", asan ? asan : "");
        setenv("ASAN_OPTIONS", opts, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (pid > 0) setpgid(pid, pid); /* also here, so that a kill of the group cannot race the child */
    return pid;
}

/* Waits up to `timeout` seconds for pid. Returns true and the wait status if it exited;
 * false (after killing its whole process group) if it did not. *secs: time waited. */
static bool wait_for(pid_t pid, double timeout, int *status, double *secs)
{
    double t0 = now_s();
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            if (secs) *secs = now_s() - t0;
            return true;
        }
        if (r < 0 && errno != EINTR) {
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
        }
        if (now_s() - t0 > timeout) {
            kill(-pid, SIGKILL);
            waitpid(pid, status, 0);
            if (secs) *secs = now_s() - t0;
            return false;
        }
        sleep_s(0.05);
    }
}

/* Runs argv to completion (bounded); returns the wait status and leaves the output in out_path. */
static int run_to_end(char *const argv[], const char *out_path, double timeout)
{
    pid_t pid = spawn(argv, out_path);
    assert_true(pid > 0);
    int status = 0;
    double secs = 0;
    bool done = wait_for(pid, timeout, &status, &secs);
    if (!done) {
        char *out = slurp(out_path, NULL);
        fprintf(stderr, "%s did not finish within %.0f s; its output:\n%s\n", argv[0], timeout, out ? out : "");
        free(out);
    }
    assert_true(done);
    return status;
}

/* Outputs read by a test, freed by its teardown: a failed assertion leaves the test
 * function without passing its free(). */
static char *outputs[16];
static int n_outputs;

static char *read_output(const char *path)
{
    char *s = slurp(path, NULL);
    if (s && n_outputs < 16) outputs[n_outputs++] = s;
    return s;
}

static int free_outputs(void **state)
{
    (void)state;
    while (n_outputs > 0) free(outputs[--n_outputs]);
    return 0;
}

static void print_output(const char *what, const char *path)
{
    char *s = slurp(path, NULL);
    fprintf(stderr, "---- %s (%s)\n%s----\n", what, path, s ? s : "(unreadable)");
    free(s);
}

/* Ranks of the program running in this run directory: pids and their MPI ranks (from
 * OMPI_COMM_WORLD_RANK in their environment). A process counts when its command line
 * names the run directory and its argv[0] is the program (so mpirun itself does not). */
typedef struct {
    pid_t pid;
    int rank;
} rank_proc;

static int find_ranks(const char *run, rank_proc *out, int max)
{
    DIR *dir = opendir("/proc");
    assert_non_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && n < max) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        size_t len = 0;
        char *cmd = slurp(path, &len);
        if (!cmd || len == 0) {
            free(cmd);
            continue;
        }
        const char *argv0 = cmd, *slash = strrchr(argv0, '/');
        bool is_prog = strcmp(slash ? slash + 1 : argv0, "mmsa_pretrain") == 0, names_run = false;
        for (size_t i = 0; i < len; i += strlen(cmd + i) + 1)
            if (strstr(cmd + i, run)) names_run = true;
        free(cmd);
        if (!is_prog || !names_run) continue;
        /* a zombie has exited already */
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        char *stat = slurp(path, NULL);
        char *rp = stat ? strrchr(stat, ')') : NULL;
        bool zombie = rp && rp[1] == ' ' && rp[2] == 'Z';
        free(stat);
        if (zombie) continue;
        int rank = -1;
        snprintf(path, sizeof path, "/proc/%s/environ", e->d_name);
        char *env = slurp(path, &len);
        for (size_t i = 0; env && i < len; i += strlen(env + i) + 1)
            if (!strncmp(env + i, "OMPI_COMM_WORLD_RANK=", 21)) rank = atoi(env + i + 21);
        free(env);
        out[n].pid = (pid_t)atoi(e->d_name);
        out[n].rank = rank;
        n++;
    }
    closedir(dir);
    return n;
}

/* argv of `mpirun --oversubscribe -n 2 PROG JOB --quiet --set train.run_dir=RUN [extra...]`
 * (NULL-terminated). The run directory goes on the command line, although the job file
 * names it too, so that the rank processes can be found by it. run_set: storage for the
 * --set argument. */
static void pretrain_argv(char **argv, const char *job, const char *run, char *run_set, size_t n, const char *extra1,
                          const char *extra2)
{
    snprintf(run_set, n, "train.run_dir=%s", run);
    int k = 0;
    argv[k++] = "mpirun";
    argv[k++] = "--oversubscribe";
    argv[k++] = "-n";
    argv[k++] = "2";
    argv[k++] = prog;
    argv[k++] = (char *)job;
    argv[k++] = "--quiet";
    argv[k++] = "--set";
    argv[k++] = run_set;
    if (extra1) argv[k++] = (char *)extra1;
    if (extra2) argv[k++] = (char *)extra2;
    argv[k] = NULL;
}

/* A tiny job in dir/job.yaml: the golden file's 16 molecules, batch 8, a checkpoint every
 * 2 steps, and far more steps than the test lets it take (it is killed or --steps stops it). */
static void write_job(const char *dir, const char *run, char *job, size_t n)
{
    snprintf(job, n, "%s/job.yaml", dir);
    FILE *f = fopen(job, "w");
    assert_non_null(f);
    fprintf(f,
            "model:\n  embed_dim: 32\n  proj_hidden: 32\n  proj_dim: 16\n  gin_hidden: 64\n  gin_layers: 3\n"
            "  schnet_hidden: 16\n  schnet_filters: 16\n  schnet_interactions: 2\n  cnn_channels: [4, 8, 8, 16]\n"
            "  fp_hidden: 32\n  gate_att_dim: 16\n  decoder_hidden: 32\n  hg_hidden: 32\n"
            "loss:\n  knn_k: 3\n  n_anchors: 12\n  mem_reseed_after: 3\n"
            "train:\n  dataset: %s\n  run_dir: %s\n  seed: 5\n  batch_size: 8\n  max_steps: 1000000\n"
            "  warmup_steps: 2\n  log_every: 1\n"
            "checkpoint:\n  every: 2\n  keep: 2\n",
            golden, run);
    assert_int_equal(fclose(f), 0);
}

/* A test's directory base/<name> with a tiny job in it (write_job), its run directory,
 * and the file that takes mpirun's output. */
typedef struct {
    char dir[300], run[320], job[340], out[340];
} test_case;

static void new_case(test_case *c, const char *name, const char *out_name)
{
    snprintf(c->dir, sizeof c->dir, "%s/%s", base, name);
    assert_int_equal(mkdir(c->dir, 0755), 0);
    snprintf(c->run, sizeof c->run, "%s/run", c->dir);
    write_job(c->dir, c->run, c->job, sizeof c->job);
    snprintf(c->out, sizeof c->out, "%s/%s", c->dir, out_name);
}

/* Kill one rank mid-run; the job must come down promptly and say which rank died of what;
 * the same command then resumes from the last complete checkpoint. */
static void test_killed_rank_brings_job_down_and_rerun_resumes(void **state)
{
    (void)state;
    test_case c;
    new_case(&c, "kill", "first.out");
    char *argv[16], run_set[400];
    pretrain_argv(argv, c.job, c.run, run_set, sizeof run_set, NULL, NULL);
    pid_t mpirun = spawn(argv, c.out);
    assert_true(mpirun > 0);

    /* running: a few steps logged and a complete checkpoint behind them */
    double t0 = now_s();
    char ck[256];
    bool ready = false;
    while (now_s() - t0 < START_TIMEOUT_S) {
        int status;
        if (waitpid(mpirun, &status, WNOHANG) == mpirun) {
            print_output("first run", c.out);
            fail_msg("mpirun exited before the test could kill a rank (status %d)", status);
        }
        if (log_lines(c.run) >= 6 && latest_checkpoint(c.run, ck, sizeof ck) >= 2) {
            ready = true;
            break;
        }
        sleep_s(0.1);
    }
    if (!ready) {
        kill(-mpirun, SIGKILL);
        waitpid(mpirun, NULL, 0);
        print_output("first run", c.out);
        fail_msg("no steps and checkpoint within %.0f s", START_TIMEOUT_S);
    }
    rank_proc procs[8];
    int np = find_ranks(c.run, procs, 8);
    if (np != 2) {
        kill(-mpirun, SIGKILL);
        waitpid(mpirun, NULL, 0);
        fail_msg("found %d rank processes of the run, expected 2", np);
    }
    rank_proc victim = procs[0].rank == 1 ? procs[0] : procs[1];
    assert_int_equal(victim.rank, 1);
    int logged_before = log_lines(c.run);
    printf("  killing rank %d (pid %d) after %d logged steps, latest checkpoint %s\n", victim.rank, (int)victim.pid,
           logged_before, ck);
    /* the log says how much memory the largest rank holds (a rank maps Open MPI, HDF5
     * and Open Babel: tens of MiB at least) */
    double rss = first_peak_rss(c.run);
    printf("  peak RSS of the largest rank at the first step: %.1f MiB\n", rss);
    assert_true(rss > 10 && rss < 4096);
    assert_int_equal(kill(victim.pid, SIGKILL), 0);

    int status = 0;
    double secs = 0;
    bool down = wait_for(mpirun, DOWN_TIMEOUT_S, &status, &secs);
    if (!down) print_output("first run (hung)", c.out);
    assert_true(down);
    printf("  mpirun exited %.2f s after the kill (status %d)\n", secs, status);
    assert_true(WIFEXITED(status) || WIFSIGNALED(status));
    assert_true(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    /* the message names the rank and the cause */
    char *msg = read_output(c.out);
    assert_non_null(msg);
    char want[64];
    snprintf(want, sizeof want, "process rank %d", victim.rank);
    if (!strstr(msg, want) || !strstr(msg, "signal 9")) print_output("first run", c.out);
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, "signal 9"));
    /* and no rank outlives the job (rank 0 was killed by mpirun, not left waiting) */
    int left = 0;
    for (int i = 0; i < 50 && (left = find_ranks(c.run, procs, 8)) > 0; i++) sleep_s(0.1);
    assert_int_equal(left, 0);

    /* the last complete checkpoint: what `latest` names now */
    long long last = latest_checkpoint(c.run, ck, sizeof ck);
    assert_true(last >= 2);
    snprintf(c.out, sizeof c.out, "%s/rerun.out", c.dir);
    pretrain_argv(argv, c.job, c.run, run_set, sizeof run_set, "--steps", "3");
    status = run_to_end(argv, c.out, RUN_TIMEOUT_S);
    char *rerun = read_output(c.out);
    assert_non_null(rerun);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) print_output("rerun", c.out);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char resumed[1024];
    snprintf(resumed, sizeof resumed, "resuming from %s/checkpoints/%s (step %lld)", c.run, ck, last);
    if (!strstr(rerun, resumed)) print_output("rerun", c.out);
    assert_non_null(strstr(rerun, resumed));
    char done[64];
    snprintf(done, sizeof done, "done: %lld steps", last + 3);
    assert_non_null(strstr(rerun, done));
    /* it checkpointed where it stopped */
    assert_int_equal(latest_checkpoint(c.run, ck, sizeof ck), last + 3);
    printf("  rerun resumed at step %lld and finished at step %lld\n", last, last + 3);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* Counts on the command line are checked: a word or a zero is a usage error (status 2)
 * that names the flag, not a silent 0; a retrieval set larger than the dataset is an
 * error naming the dataset and its size. */
static void test_bad_command_line_counts(void **state)
{
    (void)state;
    test_case c;
    new_case(&c, "badargs", "out");
    char *argv[16], run_set[400];
    const char *bad[][3] = {{"--steps", "abc", "--steps needs a whole number >= 1, got 'abc'"},
                            {"--steps", "0", "--steps needs a whole number >= 1, got '0'"},
                            {"--eval-retrieval", "5x", "--eval-retrieval needs a whole number >= 2, got '5x'"}};
    for (int k = 0; k < 3; k++) {
        pretrain_argv(argv, c.job, c.run, run_set, sizeof run_set, bad[k][0], bad[k][1]);
        int status = run_to_end(argv, c.out, RUN_TIMEOUT_S);
        char *msg = read_output(c.out);
        assert_non_null(msg);
        if (!strstr(msg, bad[k][2])) print_output(bad[k][0], c.out);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
        assert_non_null(strstr(msg, bad[k][2]));
    }
    pretrain_argv(argv, c.job, c.run, run_set, sizeof run_set, "--eval-retrieval", "1000");
    int status = run_to_end(argv, c.out, RUN_TIMEOUT_S);
    char *msg = read_output(c.out);
    assert_non_null(msg);
    if (!strstr(msg, "has 16 molecules")) print_output("--eval-retrieval 1000", c.out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    assert_non_null(strstr(msg, "--eval-retrieval 1000: the dataset"));
    assert_non_null(strstr(msg, "has 16 molecules"));
    assert_int_equal(count_of(msg, "error ("), 1); /* every rank has it: reported once */
}

/* An error every rank hits (a missing dataset): the ranks agree on it, rank 0 reports it
 * once with the file and the cause, and the job ends with status 1 through MPI_Finalize,
 * not MPI_Abort (no abort banner, no copy per rank). A loss that is not finite is agreed
 * the same way (test_mpi_train). */
static void test_error_on_every_rank_reported_once(void **state)
{
    (void)state;
    test_case c;
    new_case(&c, "missing", "out");
    char set[PATH_MAX + 64];
    snprintf(set, sizeof set, "train.dataset=%s/no_such_dataset.h5", c.dir);
    char *argv[16], run_set[400];
    pretrain_argv(argv, c.job, c.run, run_set, sizeof run_set, "--set", set);
    int status = run_to_end(argv, c.out, RUN_TIMEOUT_S);
    char *msg = read_output(c.out);
    assert_non_null(msg);
    if (count_of(msg, "error (") != 1 || !strstr(msg, "no_such_dataset.h5") || strstr(msg, "MPI_ABORT"))
        print_output("missing dataset", c.out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    assert_int_equal(count_of(msg, "error ("), 1);
    assert_null(strstr(msg, "[rank "));
    assert_null(strstr(msg, "MPI_ABORT"));
    assert_non_null(strstr(msg, "no_such_dataset.h5"));
    assert_non_null(strstr(msg, "No such file"));

}

/* An error inside ONE rank: after a short run has checkpointed, rank 1 alone is started
 * with a seed that disagrees with the checkpoint (mpirun's MPMD syntax gives it its own
 * arguments). Rank 1 fails after the collective checkpoint read; the agreement that
 * follows it hands rank 1's message to rank 0, which reports it once, naming rank 1, and
 * the job ends promptly. */
static void test_error_on_one_rank_reported_once(void **state)
{
    (void)state;
    test_case c;
    new_case(&c, "onerank", "first.out");
    char *argv[24], run_set[400];
    pretrain_argv(argv, c.job, c.run, run_set, sizeof run_set, "--steps", "2");
    int status = run_to_end(argv, c.out, RUN_TIMEOUT_S);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) print_output("first run", c.out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char ck[256];
    assert_int_equal(latest_checkpoint(c.run, ck, sizeof ck), 2);

    char *mpmd[] = {"mpirun", "--oversubscribe", "-n", "1", prog, c.job, "--quiet", "--steps", "2", ":",
                    "-n", "1", prog, c.job, "--quiet", "--steps", "2", "--set", "train.seed=6", NULL};
    snprintf(c.out, sizeof c.out, "%s/mpmd.out", c.dir);
    double t0 = now_s();
    status = run_to_end(mpmd, c.out, RUN_TIMEOUT_S);
    double secs = now_s() - t0;
    char *msg = read_output(c.out);
    assert_non_null(msg);
    if (!strstr(msg, "(reported by rank 1)") || !strstr(msg, "train.seed is 6")) print_output("mpmd run", c.out);
    printf("  job with a failing rank 1 ended after %.2f s (status %d)\n", secs, status);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    assert_non_null(strstr(msg, "train.seed is 6 (reported by rank 1)"));
    assert_int_equal(count_of(msg, "error ("), 1);
    assert_null(strstr(msg, "MPI_ABORT"));
    /* the failed start did not touch the checkpoint */
    assert_int_equal(latest_checkpoint(c.run, ck, sizeof ck), 2);
}

int main(void)
{
    /* The program under test: $BIN/mmsa_pretrain (tests/run_tests.sh exports BIN). */
    const char *bin = getenv("BIN");
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s/mmsa_pretrain", bin && *bin ? bin : "bin");
    if (!realpath(rel, prog) || access(prog, X_OK) != 0) {
        fprintf(stderr, "test_fault: %s not found; build it first (make apps) and run from the repository root\n", rel);
        return 1;
    }
    char g[PATH_MAX];
    snprintf(g, sizeof g, "%s/golden/mmsa_ref_v1.h5", tu_shared_dir());
    if (!realpath(g, golden)) {
        fprintf(stderr, "test_fault: %s not found (set MMSA_SHARED)\n", g);
        return 1;
    }
    /* a unique directory: the rank processes are found by this path in their command line */
    snprintf(base, sizeof base, "%s", tu_tmpdir());
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_killed_rank_brings_job_down_and_rerun_resumes, free_outputs),
        cmocka_unit_test_teardown(test_error_on_every_rank_reported_once, free_outputs),
        cmocka_unit_test_teardown(test_error_on_one_rank_reported_once, free_outputs),
        cmocka_unit_test_teardown(test_bad_command_line_counts, free_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
