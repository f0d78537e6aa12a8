/* Tests of the YAML job-file validation (config.h, job.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mmsa/job.h"
#include "testutil.h"

static mm_job job;

/* Load YAML text; expect failure whose message contains every given fragment. */
static void expect_error(const char *yaml, mm_status code, const char *frag1, const char *frag2)
{
    mm_status s = mm_cfg_load_string(&mm_job_schema, "job.yaml", yaml, &job);
    if (s != code) fprintf(stderr, "got status %d (%s) for:\n%s\n", s, mm_error_message(), yaml);
    assert_int_equal(s, code);
    if (frag1 && !strstr(mm_error_message(), frag1)) fprintf(stderr, "message: %s\n", mm_error_message());
    if (frag1) assert_non_null(strstr(mm_error_message(), frag1));
    if (frag2 && !strstr(mm_error_message(), frag2)) fprintf(stderr, "message: %s\n", mm_error_message());
    if (frag2) assert_non_null(strstr(mm_error_message(), frag2));
    mm_error_clear();
}

static void test_defaults_and_values(void **state)
{
    (void)state;
    const char *yaml = "model:\n  embed_dim: 64\n  cnn_channels: [8, 16, 24, 32]\n  use_image: false\n"
                       "loss:\n  tau_hg: 0.2\n"
                       "train:\n  dataset: data/x.h5\n  max_steps: 12345678901\n  optimizer: sgd\n"
                       "dist:\n  knn_backend: ring\n";
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "job.yaml", yaml, &job), MM_OK);
    assert_int_equal(job.model.embed_dim, 64);
    assert_int_equal(job.model.n_cnn_channels, 4);
    assert_int_equal(job.model.cnn_channels[2], 24);
    assert_false(job.model.use_image);
    assert_true(job.model.use_conformer);             /* default */
    assert_int_equal(job.model.gin_hidden, 300);      /* default */
    assert_float_equal(job.loss.tau_hg, 0.2f, 1e-7);
    assert_string_equal(job.train.dataset, "data/x.h5");
    assert_int_equal(job.train.max_steps, 12345678901LL);
    assert_int_equal(job.train.optimizer, MM_OPTIMIZER_SGD);
    assert_int_equal(job.dist.knn_backend, MM_KNN_RING);
    assert_int_equal(mm_cfg_set(&mm_job_schema, "train.batch_size=64", &job), MM_OK);
    assert_int_equal(job.train.batch_size, 64);
    assert_int_equal(mm_cfg_set(&mm_job_schema, "model.cnn_channels=4,8", &job), MM_OK);
    assert_int_equal(job.model.n_cnn_channels, 2);
}

static void test_unknown_key_names_position_and_nearest(void **state)
{
    (void)state;
    expect_error("model:\n  embed_dim: 64\n  embed_dims: 32\n", MM_ERR_CONFIG, "job.yaml:3:3: unknown key 'embed_dims'",
                 "did you mean 'embed_dim'");
    expect_error("modle:\n  embed_dim: 64\n", MM_ERR_CONFIG, "job.yaml:1:1: unknown section 'modle'", "'model'");
    /* a key placed in the wrong section points to where it belongs */
    expect_error("train:\n  knn_k: 4\n", MM_ERR_CONFIG, "job.yaml:2:3", "loss.knn_k");
    expect_error("nothing:\n", MM_ERR_CONFIG, "unknown section", NULL);
    assert_int_equal(mm_cfg_set(&mm_job_schema, "train.bach_size=4", &job), MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "batch_size"));
    mm_error_clear();
}

static void test_types_and_ranges(void **state)
{
    (void)state;
    expect_error("model:\n  embed_dim: abc\n", MM_ERR_CONFIG, "job.yaml:2:14", "expected an integer, got 'abc'");
    expect_error("model:\n  embed_dim: 1.5\n", MM_ERR_CONFIG, "model.embed_dim", "integer");
    expect_error("model:\n  embed_dim: 0\n", MM_ERR_CONFIG, "job.yaml:2:14", "must be in [2, 65536], got 0");
    expect_error("loss:\n  tau_hg: -1\n", MM_ERR_CONFIG, "loss.tau_hg must be in", NULL);
    expect_error("loss:\n  tau_hg: nan\n", MM_ERR_CONFIG, "expected a number", NULL);
    expect_error("model:\n  use_image: maybe\n", MM_ERR_CONFIG, "expected true or false", "job.yaml:2:14");
    expect_error("dist:\n  knn_backend: faiss\n", MM_ERR_CONFIG, "'faiss' is not one of allgather|ring|scalapack", NULL);
    expect_error("model:\n  cnn_channels: 32\n", MM_ERR_CONFIG, "expected a list", NULL);
    expect_error("model:\n  cnn_channels: [32, x]\n", MM_ERR_CONFIG, "job.yaml:2:22", "integers");
    expect_error("model:\n  embed_dim: [1]\n", MM_ERR_CONFIG, "expected an integer, got a list", NULL);
    expect_error("model:\n  embed_dim: 64\n  embed_dim: 32\n", MM_ERR_CONFIG, "job.yaml:3:3", "given twice");
    expect_error("model: 3\n", MM_ERR_CONFIG, "must be a mapping", NULL);
    expect_error("- a\n- b\n", MM_ERR_CONFIG, "mapping of sections", NULL);
}

static void test_malformed_yaml_and_missing_file(void **state)
{
    (void)state;
    expect_error("model:\n  embed_dim: [1, 2\n", MM_ERR_CONFIG, "job.yaml:", "malformed YAML");
    expect_error("model:\n\tembed_dim: 3\n", MM_ERR_CONFIG, "malformed YAML", NULL);
    expect_error("model: {\n", MM_ERR_CONFIG, "malformed YAML", NULL);
    assert_int_equal(mm_job_load("/nonexistent/job.yaml", &job), MM_ERR_IO);
    assert_non_null(strstr(mm_error_message(), "/nonexistent/job.yaml"));
    mm_error_clear();
    /* an empty file is all defaults */
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "job.yaml", "", &job), MM_OK);
    assert_int_equal(job.loss.knn_k, 8);
}

static void test_cross_field_validation(void **state)
{
    (void)state;
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "job.yaml", "train:\n  batch_size: 8\n", &job), MM_OK);
    assert_int_equal(mm_job_validate(&job), MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "loss.knn_k (8) must be smaller than train.batch_size (8)"));
    mm_error_clear();
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    *n = fread(s, 1, (size_t)len, f);
    s[*n] = '\0';
    fclose(f);
    return s;
}

static void test_reference_file_matches_schema(void **state)
{
    (void)state;
    char *gen = NULL;
    size_t gen_len = 0;
    FILE *f = open_memstream(&gen, &gen_len);
    mm_cfg_write_reference(&mm_job_schema, f);
    fclose(f);
    size_t ref_len = 0;
    char *ref = slurp("configs/reference.yaml", &ref_len);
    assert_non_null(ref);
    if (ref_len != gen_len || memcmp(ref, gen, gen_len) != 0)
        fprintf(stderr, "configs/reference.yaml is stale: regenerate with bin/mmsa_pretrain --print-reference\n");
    assert_int_equal(ref_len, gen_len);
    assert_memory_equal(ref, gen, gen_len);
    /* and it loads to exactly the defaults */
    mm_job a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(mm_cfg_load_file(&mm_job_schema, "configs/reference.yaml", &a), MM_OK);
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, &b), MM_OK);
    assert_memory_equal(&a, &b, sizeof a);
    /* the values writer round-trips */
    char *vals = NULL;
    size_t vals_len = 0;
    job.train.seed = 77;
    job.dist.knn_backend = MM_KNN_SCALAPACK;
    f = open_memstream(&vals, &vals_len);
    mm_cfg_write_values(&mm_job_schema, &job, f);
    fclose(f);
    mm_job c;
    memset(&c, 0, sizeof c);
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "values", vals, &c), MM_OK);
    assert_int_equal(c.train.seed, 77);
    assert_int_equal(c.dist.knn_backend, MM_KNN_SCALAPACK);
    free(gen);
    free(ref);
    free(vals);
}

/* What a run writes to run_dir/job.yaml is what the user wrote: 0.1 and 1e-3 print as
 * 0.1 and 0.001 (not float32 with nine digits), every float reads back bit for bit,
 * and a string with quotes and backslashes survives. */
static void test_values_read_back_as_written(void **state)
{
    (void)state;
    char num[32];
    const struct { float v; const char *text; } shortest[] = {
        {0.1f, "0.1"}, {1e-3f, "0.001"}, {0.07f, "0.07"}, {3.0f, "3"}, {1.0f / 3.0f, "0.33333334"},
        {16777216.0f, "16777216"}, {1e-20f, "1e-20"}, {-2.5f, "-2.5"},
    };
    for (size_t k = 0; k < sizeof shortest / sizeof *shortest; k++) {
        mm_cfg_format_float(shortest[k].v, num, sizeof num);
        assert_string_equal(num, shortest[k].text);
    }
    /* every float of a sweep of bit patterns: shortest text, read back exactly */
    for (uint32_t bits = 0x00800000u; bits < 0x7f000000u; bits += 0x00012345u) {
        float v;
        memcpy(&v, &bits, sizeof v);
        mm_cfg_format_float(v, num, sizeof num);
        float back = (float)strtod(num, NULL);
        if (back != v) fail_msg("%a printed as %s reads back as %a", (double)v, num, (double)back);
    }

    mm_job a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, &a), MM_OK);
    a.loss.tau_align = 0.1f;
    a.train.lr = 1e-3f;
    a.train.lr_min = 1.0f / 3.0f;
    snprintf(a.train.run_dir, sizeof a.train.run_dir, "runs/a \"quoted\" \\ dir");
    char *vals = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&vals, &len);
    mm_cfg_write_values(&mm_job_schema, &a, f);
    fclose(f);
    assert_non_null(strstr(vals, "tau_align: 0.1\n"));
    assert_non_null(strstr(vals, "lr: 0.001\n"));
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "job.yaml", vals, &b), MM_OK);
    assert_memory_equal(&a, &b, sizeof a);
    free(vals);
}

static void test_edit_distance(void **state)
{
    (void)state;
    assert_int_equal(mm_edit_distance("kitten", "sitting"), 3);
    assert_int_equal(mm_edit_distance("", "abc"), 3);
    assert_int_equal(mm_edit_distance("same", "same"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_values),
        cmocka_unit_test(test_unknown_key_names_position_and_nearest),
        cmocka_unit_test(test_types_and_ranges),
        cmocka_unit_test(test_malformed_yaml_and_missing_file),
        cmocka_unit_test(test_cross_field_validation),
        cmocka_unit_test(test_reference_file_matches_schema),
        cmocka_unit_test(test_values_read_back_as_written),
        cmocka_unit_test(test_edit_distance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
