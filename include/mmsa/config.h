/* config.h: job files (YAML, through libyaml) validated against a schema.
 *
 * Owns: the schema (every key with its type, default, range and one line of
 * documentation) and the parser that fills a C struct from a YAML file. Promises:
 * every error names file:line:column; an unknown key suggests the nearest valid key;
 * a wrong type or an out-of-range value says what was expected; a key given twice is
 * an error; nothing is silently ignored. The schema also prints the reference file
 * (every key, its default and its documentation), so the documentation cannot drift
 * from the code. Keys are two levels deep: `section:` then `key: value`. */
#ifndef MMSA_CONFIG_H
#define MMSA_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "mmsa/error.h"

typedef enum {
    MM_CFG_INT,      /* int */
    MM_CFG_INT64,    /* int64_t */
    MM_CFG_FLOAT,    /* float */
    MM_CFG_BOOL,     /* bool: true/false */
    MM_CFG_STRING,   /* char[MM_CFG_STR_MAX] */
    MM_CFG_ENUM,     /* int: index into the '|'-separated `choices` */
    MM_CFG_INT_LIST  /* int[MM_CFG_LIST_MAX] + count in the int just before it */
} mm_cfg_type;

#define MM_CFG_STR_MAX 512
#define MM_CFG_LIST_MAX 8

typedef struct mm_cfg_field {
    const char *section;   /* "model" */
    const char *key;       /* "embed_dim" */
    mm_cfg_type type;
    size_t offset;         /* offsetof in the target struct */
    const char *def;       /* default, as YAML text ("256", "true", "[32, 64]", "allgather") */
    double min, max;       /* inclusive range for numbers and list items (min > max: none) */
    const char *choices;   /* MM_CFG_ENUM: "allgather|ring|scalapack" */
    const char *doc;       /* one line */
} mm_cfg_field;

typedef struct mm_cfg_schema {
    const char *name;            /* "mmsa_pretrain job" */
    const mm_cfg_field *fields;
    int n_fields;
    const char *const *section_docs; /* pairs {section, doc}, NULL-terminated */
} mm_cfg_schema;

/* Fill `out` with every default. */
mm_status mm_cfg_defaults(const mm_cfg_schema *s, void *out);
/* Defaults, then the values of a YAML file. */
mm_status mm_cfg_load_file(const mm_cfg_schema *s, const char *path, void *out);
/* Same from a string (`name` is used in messages in place of a path). */
mm_status mm_cfg_load_string(const mm_cfg_schema *s, const char *name, const char *yaml, void *out);
/* Apply one override "section.key=value" (command line), validated the same way. */
mm_status mm_cfg_set(const mm_cfg_schema *s, const char *assignment, void *out);
/* Write the documented reference file: every key with its default. */
void mm_cfg_write_reference(const mm_cfg_schema *s, FILE *f);
/* Write the values in `cfg` as YAML (for the run directory); it loads back to the same
 * values (floats in their shortest exact form, strings escaped). */
void mm_cfg_write_values(const mm_cfg_schema *s, const void *cfg, FILE *f);
/* The shortest decimal text (%g style) that mm_cfg_load_* reads back as v. */
void mm_cfg_format_float(float v, char *buf, size_t cap);

/* A command-line count: text must be a whole decimal number >= min. Otherwise
 * MM_ERR_CONFIG with a message naming the flag ("--steps needs a whole number >= 1,
 * got 'abc'"). */
mm_status mm_cfg_parse_count(const char *flag, const char *text, long long min, long long *out);

/* Levenshtein distance, for "did you mean". */
int mm_edit_distance(const char *a, const char *b);

#endif
