/* config.c: YAML job files through libyaml's document API, checked against a schema. */
#include "mmsa/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mmsa/alloc.h"

int mm_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (int)(la > lb ? la : lb);
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* ---- typed value parsing ----------------------------------------------------- */

typedef struct {
    const char *file;
    int line, col; /* 1-based; 0 = not from a file */
} where;

#define WHERE_FMT "%s:%d:%d: "
#define WHERE_ARGS(w) (w).file, (w).line, (w).col

static const char *type_name(mm_cfg_type t)
{
    switch (t) {
    case MM_CFG_INT:
    case MM_CFG_INT64: return "an integer";
    case MM_CFG_FLOAT: return "a number";
    case MM_CFG_BOOL: return "true or false";
    case MM_CFG_STRING: return "a string";
    case MM_CFG_ENUM: return "one of the choices";
    case MM_CFG_INT_LIST: return "a list of integers";
    }
    return "?";
}

static bool parse_int64(const char *s, long long *v)
{
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return *s && !errno && *end == '\0';
}

mm_status mm_cfg_parse_count(const char *flag, const char *text, long long min, long long *out)
{
    long long v;
    if (!text || !parse_int64(text, &v) || v < min)
        return MM_ERR(MM_ERR_CONFIG, "%s needs a whole number >= %lld, got '%s'", flag, min, text ? text : "");
    *out = v;
    return MM_OK;
}

static bool parse_double(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !errno && *end == '\0' && isfinite(*v);
}

static mm_status check_range(const mm_cfg_field *f, where w, double v, const char *text)
{
    if (f->min <= f->max && (v < f->min || v > f->max))
        return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s must be in [%g, %g], got %s", WHERE_ARGS(w),
                      f->section, f->key, f->min, f->max, text);
    return MM_OK;
}

static mm_status set_scalar(const mm_cfg_field *f, where w, const char *text, void *out)
{
    char *p = (char *)out + f->offset;
    long long iv;
    double dv;
    switch (f->type) {
    case MM_CFG_INT:
    case MM_CFG_INT64:
        if (!parse_int64(text, &iv))
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: expected %s, got '%s'", WHERE_ARGS(w),
                          f->section, f->key, type_name(f->type), text);
        MM_CALL(check_range(f, w, (double)iv, text));
        if (f->type == MM_CFG_INT) {
            if (iv < INT32_MIN || iv > INT32_MAX)
                return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: %s is too large", WHERE_ARGS(w), f->section, f->key, text);
            *(int *)p = (int)iv;
        } else {
            *(int64_t *)p = iv;
        }
        return MM_OK;
    case MM_CFG_FLOAT:
        if (!parse_double(text, &dv))
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: expected %s, got '%s'", WHERE_ARGS(w),
                          f->section, f->key, type_name(f->type), text);
        MM_CALL(check_range(f, w, dv, text));
        *(float *)p = (float)dv;
        return MM_OK;
    case MM_CFG_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on")) *(bool *)p = true;
        else if (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "off")) *(bool *)p = false;
        else
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: expected true or false, got '%s'", WHERE_ARGS(w),
                          f->section, f->key, text);
        return MM_OK;
    case MM_CFG_STRING:
        if (strlen(text) >= MM_CFG_STR_MAX)
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: longer than %d characters", WHERE_ARGS(w),
                          f->section, f->key, MM_CFG_STR_MAX - 1);
        snprintf(p, MM_CFG_STR_MAX, "%s", text);
        return MM_OK;
    case MM_CFG_ENUM: {
        int idx = 0;
        const char *c = f->choices;
        size_t len = strlen(text);
        while (c && *c) {
            const char *bar = strchr(c, '|');
            size_t n = bar ? (size_t)(bar - c) : strlen(c);
            if (n == len && !strncmp(c, text, n)) {
                *(int *)p = idx;
                return MM_OK;
            }
            idx++;
            c = bar ? bar + 1 : NULL;
        }
        return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: '%s' is not one of %s", WHERE_ARGS(w), f->section,
                      f->key, text, f->choices);
    }
    case MM_CFG_INT_LIST:
        break;
    }
    return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: expected %s, got '%s'", WHERE_ARGS(w), f->section,
                  f->key, type_name(f->type), text);
}

/* List text "[a, b, c]" or "a,b,c" (defaults and command-line overrides). */
static mm_status set_list_text(const mm_cfg_field *f, where w, const char *text, void *out)
{
    int *count = (int *)((char *)out + f->offset) - 1;
    int *items = (int *)((char *)out + f->offset);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    int n = 0;
    for (char *tok = strtok(buf, "[], "); tok; tok = strtok(NULL, "[], ")) {
        long long v;
        if (n == MM_CFG_LIST_MAX)
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: at most %d items", WHERE_ARGS(w), f->section, f->key, MM_CFG_LIST_MAX);
        if (!parse_int64(tok, &v))
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: list item '%s' is not an integer", WHERE_ARGS(w),
                          f->section, f->key, tok);
        MM_CALL(check_range(f, w, (double)v, tok));
        items[n++] = (int)v;
    }
    if (n == 0) return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: empty list", WHERE_ARGS(w), f->section, f->key);
    *count = n;
    return MM_OK;
}

mm_status mm_cfg_defaults(const mm_cfg_schema *s, void *out)
{
    for (int i = 0; i < s->n_fields; i++) {
        const mm_cfg_field *f = &s->fields[i];
        where w = {"(built-in default)", 0, 0};
        if (f->type == MM_CFG_INT_LIST) MM_CALL(set_list_text(f, w, f->def, out));
        else MM_CALL(set_scalar(f, w, f->def, out));
    }
    return MM_OK;
}

/* ---- YAML documents ----------------------------------------------------------- */

static where mark(const char *file, yaml_node_t *n)
{
    return (where){file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static const mm_cfg_field *find_field(const mm_cfg_schema *s, const char *section, const char *key)
{
    for (int i = 0; i < s->n_fields; i++)
        if (!strcmp(s->fields[i].section, section) && !strcmp(s->fields[i].key, key)) return &s->fields[i];
    return NULL;
}

static bool section_exists(const mm_cfg_schema *s, const char *section)
{
    for (int i = 0; i < s->n_fields; i++)
        if (!strcmp(s->fields[i].section, section)) return true;
    return false;
}

/* Nearest section (section == NULL) or nearest key within a section. */
static const char *nearest(const mm_cfg_schema *s, const char *section, const char *word, char *buf, size_t n)
{
    int best = 1 << 30;
    buf[0] = '\0';
    for (int i = 0; i < s->n_fields; i++) {
        const mm_cfg_field *f = &s->fields[i];
        if (section && strcmp(f->section, section) != 0) {
            /* also consider the key in another section: "section.key" */
            int d = mm_edit_distance(word, f->key);
            if (d < best && d <= 2) {
                best = d;
                snprintf(buf, n, "%s.%s (in section '%s')", f->section, f->key, f->section);
            }
            continue;
        }
        const char *cand = section ? f->key : f->section;
        int d = mm_edit_distance(word, cand);
        if (d < best || (d == best && section && strcmp(f->section, section) == 0 && !strchr(buf, '('))) {
            best = d;
            snprintf(buf, n, "%s", cand);
        }
    }
    return buf;
}

static mm_status load_document(const mm_cfg_schema *s, const char *file, yaml_document_t *doc, void *out)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root) return MM_OK; /* empty file: all defaults */
    if (root->type != YAML_MAPPING_NODE)
        return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "the job file must be a mapping of sections (e.g. 'model:')",
                      WHERE_ARGS(mark(file, root)));
    /* Remember which fields were set, to reject duplicates. */
    unsigned char seen[512] = {0};
    if (s->n_fields > 512) return MM_ERR(MM_ERR_INTERNAL, "schema too large");
    for (yaml_node_pair_t *sp = root->data.mapping.pairs.start; sp < root->data.mapping.pairs.top; sp++) {
        yaml_node_t *sk = yaml_document_get_node(doc, sp->key), *sv = yaml_document_get_node(doc, sp->value);
        if (sk->type != YAML_SCALAR_NODE)
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "section names must be plain words", WHERE_ARGS(mark(file, sk)));
        const char *section = (const char *)sk->data.scalar.value;
        if (!section_exists(s, section)) {
            char near[160];
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "unknown section '%s'; did you mean '%s'?",
                          WHERE_ARGS(mark(file, sk)), section, nearest(s, NULL, section, near, sizeof near));
        }
        if (sv->type == YAML_SCALAR_NODE && sv->data.scalar.length == 0) continue; /* "section:" empty */
        if (sv->type != YAML_MAPPING_NODE)
            return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "section '%s' must be a mapping of 'key: value' lines",
                          WHERE_ARGS(mark(file, sv)), section);
        for (yaml_node_pair_t *kp = sv->data.mapping.pairs.start; kp < sv->data.mapping.pairs.top; kp++) {
            yaml_node_t *k = yaml_document_get_node(doc, kp->key), *v = yaml_document_get_node(doc, kp->value);
            if (k->type != YAML_SCALAR_NODE)
                return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "keys must be plain words", WHERE_ARGS(mark(file, k)));
            const char *key = (const char *)k->data.scalar.value;
            const mm_cfg_field *f = find_field(s, section, key);
            if (!f) {
                char near[160];
                return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "unknown key '%s' in section '%s'; did you mean '%s'?",
                              WHERE_ARGS(mark(file, k)), key, section, nearest(s, section, key, near, sizeof near));
            }
            int idx = (int)(f - s->fields);
            if (seen[idx])
                return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s is given twice", WHERE_ARGS(mark(file, k)), section, key);
            seen[idx] = 1;
            where w = mark(file, v);
            if (f->type == MM_CFG_INT_LIST) {
                if (v->type != YAML_SEQUENCE_NODE)
                    return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: expected a list like [32, 64], got '%s'",
                                  WHERE_ARGS(w), section, key,
                                  v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : "a mapping");
                int *count = (int *)((char *)out + f->offset) - 1;
                int *items = (int *)((char *)out + f->offset);
                int n = 0;
                for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                    yaml_node_t *e = yaml_document_get_node(doc, *it);
                    long long iv;
                    if (e->type != YAML_SCALAR_NODE || !parse_int64((const char *)e->data.scalar.value, &iv))
                        return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: list items must be integers",
                                      WHERE_ARGS(mark(file, e)), section, key);
                    if (n == MM_CFG_LIST_MAX)
                        return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: at most %d items", WHERE_ARGS(mark(file, e)),
                                      section, key, MM_CFG_LIST_MAX);
                    MM_CALL(check_range(f, mark(file, e), (double)iv, (const char *)e->data.scalar.value));
                    items[n++] = (int)iv;
                }
                if (n == 0) return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: empty list", WHERE_ARGS(w), section, key);
                *count = n;
                continue;
            }
            if (v->type != YAML_SCALAR_NODE)
                return MM_ERR(MM_ERR_CONFIG, WHERE_FMT "%s.%s: expected %s, got a %s", WHERE_ARGS(w), section, key,
                              type_name(f->type), v->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
            MM_CALL(set_scalar(f, w, (const char *)v->data.scalar.value, out));
        }
    }
    return MM_OK;
}

static mm_status load_parser(const mm_cfg_schema *s, const char *name, yaml_parser_t *parser, void *out)
{
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "%s:%d:%d: malformed YAML: %s%s%s", name,
                              (int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1,
                              parser->problem ? parser->problem : "syntax error",
                              parser->context ? " " : "", parser->context ? parser->context : "");
        return st;
    }
    mm_status st = load_document(s, name, &doc, out);
    yaml_document_delete(&doc);
    if (st != MM_OK) return st;
    /* A second document in the same file is not allowed. */
    yaml_document_t extra;
    if (yaml_parser_load(parser, &extra)) {
        bool more = yaml_document_get_root_node(&extra) != NULL;
        yaml_document_delete(&extra);
        if (more) return MM_ERR(MM_ERR_CONFIG, "%s: only one YAML document is allowed", name);
    }
    return MM_OK;
}

mm_status mm_cfg_load_string(const mm_cfg_schema *s, const char *name, const char *yaml, void *out)
{
    MM_CALL(mm_cfg_defaults(s, out));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return MM_ERR(MM_ERR_NOMEM, "libyaml parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
    mm_status st = load_parser(s, name, &parser, out);
    yaml_parser_delete(&parser);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

mm_status mm_cfg_load_file(const mm_cfg_schema *s, const char *path, void *out)
{
    MM_CALL(mm_cfg_defaults(s, out));
    FILE *f = fopen(path, "rb");
    if (!f) {
        mm_status st = MM_ERR(MM_ERR_IO, "cannot open job file %s: %s", path, strerror(errno));
        mm_error_hint("check the path; configs/reference.yaml lists every key");
        return st;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return MM_ERR(MM_ERR_NOMEM, "libyaml parser");
    }
    yaml_parser_set_input_file(&parser, f);
    mm_status st = load_parser(s, path, &parser, out);
    yaml_parser_delete(&parser);
    fclose(f);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

mm_status mm_cfg_set(const mm_cfg_schema *s, const char *assignment, void *out)
{
    char buf[MM_CFG_STR_MAX + 128];
    snprintf(buf, sizeof buf, "%s", assignment);
    char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq)
        return MM_ERR(MM_ERR_CONFIG, "override '%s': expected section.key=value", assignment);
    *eq = '\0';
    *dot = '\0';
    const char *section = buf, *key = dot + 1, *value = eq + 1;
    const mm_cfg_field *f = find_field(s, section, key);
    if (!f) {
        char near[160];
        return MM_ERR(MM_ERR_CONFIG, "override '%s': unknown key %s.%s; did you mean '%s'?", assignment, section,
                      key, section_exists(s, section) ? nearest(s, section, key, near, sizeof near)
                                                      : nearest(s, NULL, section, near, sizeof near));
    }
    where w = {"(command line)", 1, 1};
    if (f->type == MM_CFG_INT_LIST) MM_CALL(set_list_text(f, w, value, out));
    else MM_CALL(set_scalar(f, w, value, out));
    return MM_OK;
}

static void write_range(const mm_cfg_field *f, FILE *out)
{
    if (f->type == MM_CFG_ENUM) fprintf(out, " (one of: %s)", f->choices);
    else if (f->min <= f->max) fprintf(out, " (range %g .. %g)", f->min, f->max);
}

void mm_cfg_write_reference(const mm_cfg_schema *s, FILE *out)
{
    fprintf(out, "# Reference for the %s file: every key, its default and its meaning.\n", s->name);
    /* the program is the first word of the schema's name ("mmsa_pretrain job") */
    fprintf(out, "# Generated from the schema in the source (%.*s --print-reference);\n", (int)strcspn(s->name, " "),
            s->name);
    const char *prev = "";
    for (int i = 0; i < s->n_fields; i++) {
        const mm_cfg_field *f = &s->fields[i];
        if (strcmp(prev, f->section) != 0) {
            fprintf(out, "\n");
            for (const char *const *d = s->section_docs; d && d[0]; d += 2)
                if (!strcmp(d[0], f->section)) fprintf(out, "# %s\n", d[1]);
            fprintf(out, "%s:\n", f->section);
            prev = f->section;
        }
        fprintf(out, "  # %s", f->doc);
        write_range(f, out);
        fprintf(out, "\n");
        if (f->type == MM_CFG_STRING) fprintf(out, "  %s: \"%s\"\n", f->key, f->def);
        else fprintf(out, "  %s: %s\n", f->key, f->def);
    }
}

void mm_cfg_format_float(float v, char *buf, size_t cap)
{
    /* The fewest significant digits that the loader (strtod, then float) reads back as
     * the same float: 0.1 prints as 0.1, not 0.100000001. Nine always suffice. */
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, cap, "%.*g", digits, (double)v);
        if ((float)strtod(buf, NULL) == v) return;
    }
}

/* A YAML double-quoted scalar that reads back as s. */
static void write_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        if ((unsigned char)*s < 0x20) fprintf(out, "\\x%02x", (unsigned char)*s);
        else fputc(*s, out);
    }
    fputc('"', out);
}

void mm_cfg_write_values(const mm_cfg_schema *s, const void *cfg, FILE *out)
{
    const char *prev = "";
    for (int i = 0; i < s->n_fields; i++) {
        const mm_cfg_field *f = &s->fields[i];
        const char *p = (const char *)cfg + f->offset;
        if (strcmp(prev, f->section) != 0) {
            fprintf(out, "%s:\n", f->section);
            prev = f->section;
        }
        fprintf(out, "  %s: ", f->key);
        switch (f->type) {
        case MM_CFG_INT: fprintf(out, "%d\n", *(const int *)p); break;
        case MM_CFG_INT64: fprintf(out, "%lld\n", (long long)*(const int64_t *)p); break;
        case MM_CFG_FLOAT: {
            char num[32];
            mm_cfg_format_float(*(const float *)p, num, sizeof num);
            fprintf(out, "%s\n", num);
            break;
        }
        case MM_CFG_BOOL: fprintf(out, "%s\n", *(const bool *)p ? "true" : "false"); break;
        case MM_CFG_STRING:
            write_quoted(p, out);
            fputc('\n', out);
            break;
        case MM_CFG_ENUM: {
            int idx = *(const int *)p;
            const char *c = f->choices;
            for (int k = 0; k < idx && c; k++) {
                c = strchr(c, '|');
                if (c) c++;
            }
            const char *bar = c ? strchr(c, '|') : NULL;
            fprintf(out, "%.*s\n", c ? (int)(bar ? (size_t)(bar - c) : strlen(c)) : 1, c ? c : "?");
            break;
        }
        case MM_CFG_INT_LIST: {
            const int *items = (const int *)p;
            int n = items[-1];
            fprintf(out, "[");
            for (int k = 0; k < n; k++) fprintf(out, k ? ", %d" : "%d", items[k]);
            fprintf(out, "]\n");
            break;
        }
        }
    }
}
