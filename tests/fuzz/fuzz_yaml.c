/* fuzz_yaml: the YAML job loaders (config.h through libyaml) on arbitrary text: the
 * mmsa_pretrain job (job.h), the fine-tuning job (finetune.h) and the mmsa_prep settings
 * (prep.h), each followed by its cross-key validation and by writing the values back as
 * YAML, as the programs do. The first byte picks the schema; the rest is the file (up to
 * the first NUL). A second pass applies each line that looks like "section.key=value" as
 * a command-line override (mm_cfg_set). Property: any text is MM_OK or MM_ERR_CONFIG
 * with a message; the values written back load again to the same struct. */
#include "fuzz_common.h"
#include "mmsa/config.h"
#include "mmsa/finetune.h"
#include "mmsa/job.h"
#include "mmsa/prep.h"

static FILE *sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    sink = fopen("/dev/null", "w");
    if (!sink) abort();
    return 0;
}

static union {
    mm_job job;
    mm_ft_job ft;
    mm_prep_config prep;
} cfg, again;

static void expect_config_error(mm_status st)
{
    if (st != MM_OK && st != MM_ERR_CONFIG) mm_error_print(stderr, -1);
    FUZZ_ASSERT(st == MM_OK || st == MM_ERR_CONFIG);
    if (st != MM_OK) FUZZ_ASSERT(mm_error_message()[0] != '\0');
}

/* The values written back as YAML must load to the same struct. */
static void round_trip(const mm_cfg_schema *s, size_t bytes)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) abort();
    mm_cfg_write_values(s, &cfg, f);
    fclose(f);
    memset(&again, 0, sizeof again);
    mm_status st = mm_cfg_load_string(s, "round trip", text, &again);
    if (st != MM_OK) {
        fprintf(stderr, "written back:\n%s\n", text);
        mm_error_print(stderr, -1);
    }
    FUZZ_ASSERT(st == MM_OK);
    if (memcmp(&cfg, &again, bytes) != 0) fprintf(stderr, "written back:\n%s\n", text);
    FUZZ_ASSERT(memcmp(&cfg, &again, bytes) == 0);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0] % 3;
    char *yaml = fuzz_string(data + 1, size - 1);
    const mm_cfg_schema *s = sel == 0 ? &mm_job_schema : sel == 1 ? &mm_ft_schema : &mm_prep_schema;
    size_t bytes = sel == 0 ? sizeof cfg.job : sel == 1 ? sizeof cfg.ft : sizeof cfg.prep;
    memset(&cfg, 0, sizeof cfg);
    mm_status st;
    if (sel == 1) {
        st = mm_ft_job_parse("fuzz.yaml", yaml, &cfg.ft);
        expect_config_error(st);
        if (st == MM_OK) expect_config_error(mm_ft_job_validate(&cfg.ft, "fuzz.yaml", yaml));
    } else {
        st = mm_cfg_load_string(s, "fuzz.yaml", yaml, &cfg);
        expect_config_error(st);
        if (st == MM_OK)
            expect_config_error(sel == 0 ? mm_job_validate(&cfg.job) : mm_prep_config_validate(&cfg.prep));
    }
    mm_error_clear();
    if (st == MM_OK) {
        round_trip(s, bytes);
        mm_cfg_write_values(s, &cfg, sink);
    }
    /* Overrides, one per line, on the defaults. */
    if (mm_cfg_defaults(s, &cfg) == MM_OK) {
        for (char *line = strtok(yaml, "\n"); line; line = strtok(NULL, "\n")) {
            if (!strchr(line, '=')) continue;
            expect_config_error(mm_cfg_set(s, line, &cfg));
            mm_error_clear();
        }
    }
    mm_error_clear();
    free(yaml);
    return 0;
}
