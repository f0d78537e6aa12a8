/* molset.c: the in-memory columnar molecule set (see dataset.h). */
#include <math.h>
#include <string.h>

#include "ds_internal.h"
#include "mmsa/alloc.h"

const uint8_t mm_ds_atom_vocab[MM_DS_ATOM_FEATS] = {119, 5, 12, 12, 10, 6, 6, 2, 2};
const uint8_t mm_ds_bond_vocab[MM_DS_BOND_FEATS] = {5, 6, 2};

/* ---------------------------------------------------------------- helpers */

/* bytes = count * size, or MM_ERR_RANGE. */
static mm_status nbytes(int64_t count, size_t size, size_t *out)
{
    if (count < 0 || (size && (uint64_t)count > SIZE_MAX / size))
        return MM_ERR(MM_ERR_RANGE, "molecule set: %lld elements of %zu bytes do not fit memory",
                      (long long)count, size);
    *out = (size_t)count * size;
    return MM_OK;
}

/* A set of buffers grown together: every new buffer is allocated before any old one
 * is released, so a failure leaves every buffer and capacity as it was. */
typedef struct {
    void **p;
    size_t old_bytes, new_bytes;
    void *fresh;
} grow_item;

typedef struct {
    grow_item it[24];
    int n;
    mm_status st;
} grow_batch;

static void batch_add(grow_batch *g, void **p, int64_t old_rows, int64_t new_rows, size_t row_bytes)
{
    if (g->st != MM_OK) return;
    size_t ob = 0, nb = 0;
    g->st = nbytes(old_rows, row_bytes, &ob);
    if (g->st == MM_OK) g->st = nbytes(new_rows, row_bytes, &nb);
    if (g->st != MM_OK || nb <= ob) return;
    g->it[g->n++] = (grow_item){p, ob, nb, NULL};
}

static mm_status batch_commit(grow_batch *g)
{
    MM_CALL(g->st);
    for (int i = 0; i < g->n; i++) {
        g->it[i].fresh = mm_malloc(g->it[i].new_bytes);
        if (!g->it[i].fresh) {
            for (int j = 0; j < i; j++) mm_free_sized(g->it[j].fresh, g->it[j].new_bytes);
            return MM_ERR(MM_ERR_NOMEM, "molecule set: cannot allocate %zu bytes", g->it[i].new_bytes);
        }
    }
    for (int i = 0; i < g->n; i++) {
        grow_item *x = &g->it[i];
        if (*x->p && x->old_bytes) memcpy(x->fresh, *x->p, x->old_bytes);
        mm_free_sized(*x->p, x->old_bytes);
        *x->p = x->fresh;
    }
    return MM_OK;
}

/* Grow one buffer from old_rows to new_rows rows of row_bytes each. */
static mm_status grow_rows(void **p, int64_t old_rows, int64_t new_rows, size_t row_bytes)
{
    grow_batch g = {.n = 0, .st = MM_OK};
    batch_add(&g, p, old_rows, new_rows, row_bytes);
    MM_CALL(batch_commit(&g));
    return MM_OK;
}

static int64_t grown(int64_t cap, int64_t need, int64_t floor)
{
    int64_t c = cap > floor ? cap : floor;
    while (c < need) c = c > INT64_MAX / 2 ? need : c * 2;
    return c;
}

size_t mm_ds_image_bytes(int h, int w) { return (size_t)MM_DS_IMAGE_CHANNELS * (size_t)h * (size_t)w; }

/* ---------------------------------------------------------------- strings */

mm_status mm_strings_reserve(mm_strings *s, int64_t n, int64_t bytes)
{
    grow_batch g = {.n = 0, .st = MM_OK};
    int64_t cap_n = s->cap_n, cap_b = s->cap_bytes;
    bool fresh = s->off == NULL;
    if (fresh || n > s->cap_n) {
        cap_n = grown(s->cap_n, n, 16);
        batch_add(&g, (void **)&s->off, fresh ? 0 : s->cap_n + 1, cap_n + 1, sizeof(int64_t));
    }
    if (!s->chars || bytes > s->cap_bytes) {
        cap_b = grown(s->cap_bytes, bytes, 256);
        batch_add(&g, (void **)&s->chars, s->chars ? s->cap_bytes : 0, cap_b, 1);
    }
    MM_CALL(batch_commit(&g));
    if (fresh) s->off[0] = 0;
    s->cap_n = cap_n;
    s->cap_bytes = cap_b;
    return MM_OK;
}

mm_status mm_strings_push(mm_strings *s, const char *str)
{
    size_t len = strlen(str);
    MM_CALL(mm_strings_reserve(s, s->n + 1, s->nbytes + (int64_t)len + 1));
    memcpy(s->chars + s->nbytes, str, len + 1);
    s->nbytes += (int64_t)len + 1;
    s->off[++s->n] = s->nbytes;
    return MM_OK;
}

void mm_strings_clear(mm_strings *s)
{
    s->n = 0;
    s->nbytes = 0;
    if (s->off) s->off[0] = 0;
}

void mm_strings_free(mm_strings *s)
{
    if (s->off) mm_free_sized(s->off, (size_t)(s->cap_n + 1) * sizeof(int64_t));
    if (s->chars) mm_free_sized(s->chars, (size_t)s->cap_bytes);
    memset(s, 0, sizeof *s);
}

char *mm_ds_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mm_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void mm_ds_strfree(char **s)
{
    if (*s) mm_free_sized(*s, strlen(*s) + 1);
    *s = NULL;
}

void mm_ds_free_names(char ***names, int n)
{
    if (!*names) return;
    for (int i = 0; i < n; i++) mm_ds_strfree(&(*names)[i]);
    mm_free_sized(*names, (size_t)n * sizeof(char *));
    *names = NULL;
}

mm_status mm_ds_copy_names(const char *const *src, int n, char ***out)
{
    *out = NULL;
    if (n <= 0) return MM_OK;
    char **d = mm_calloc((size_t)n, sizeof(char *));
    if (!d) return MM_ERR(MM_ERR_NOMEM, "cannot allocate %d task names", n);
    for (int i = 0; i < n; i++) {
        d[i] = mm_ds_strdup(src[i]);
        if (!d[i]) {
            mm_ds_free_names(&d, n);
            return MM_ERR(MM_ERR_NOMEM, "cannot copy task name %d", i);
        }
    }
    *out = d;
    return MM_OK;
}

/* ---------------------------------------------------------------- set */

mm_status mm_molset_init(mm_molset *ms, const mm_molset_opts *opts)
{
    MM_CHECK_ARG(ms && opts, "mm_molset_init: NULL argument");
    memset(ms, 0, sizeof *ms);
    MM_CHECK_ARG((opts->modalities & ~MM_MOD_ALL) == 0, "mm_molset_init: unknown modality bits 0x%x",
                 opts->modalities);
    ms->modalities = opts->modalities;
    if (ms->modalities & MM_MOD_IMAGE) {
        MM_CHECK_ARG(opts->image_h > 0 && opts->image_w > 0 && opts->image_h <= 4096 &&
                         opts->image_w <= 4096,
                     "mm_molset_init: image size %d x %d must be in 1..4096", opts->image_h,
                     opts->image_w);
        ms->image_h = opts->image_h;
        ms->image_w = opts->image_w;
    }
    if (ms->modalities & MM_MOD_LABELS) {
        MM_CHECK_ARG(opts->n_tasks >= 1 && opts->n_tasks <= 1 << 20 && opts->task_names,
                     "mm_molset_init: labels need 1..2^20 tasks and their names (got %d)",
                     opts->n_tasks);
        for (int t = 0; t < opts->n_tasks; t++)
            MM_CHECK_ARG(opts->task_names[t] && opts->task_names[t][0],
                         "mm_molset_init: task %d has no name", t);
        MM_CALL(mm_ds_copy_names(opts->task_names, opts->n_tasks, &ms->task_names));
        ms->n_tasks = opts->n_tasks;
    }
    mm_status st = mm_molset_reserve(ms, 16, 256, 256);
    if (st == MM_OK) st = mm_strings_reserve(&ms->reject_smiles, 0, 0);
    if (st == MM_OK) st = mm_strings_reserve(&ms->reject_reason, 0, 0);
    if (st != MM_OK) {
        mm_molset_free(ms);
        MM_CALL(st);
    }
    return MM_OK;
}

mm_status mm_molset_reserve(mm_molset *ms, int64_t n_mol, int64_t n_atoms, int64_t n_bonds)
{
    MM_CHECK_ARG(n_mol >= 0 && n_atoms >= 0 && n_bonds >= 0, "mm_molset_reserve: negative size");
    const unsigned mod = ms->modalities;
    grow_batch g = {.n = 0, .st = MM_OK};
    int64_t cm = ms->cap_mol, ca = ms->cap_atoms, cb = ms->cap_bonds;
    const bool fresh = ms->atom_offset == NULL;
    if (fresh || n_mol > ms->cap_mol) {
        int64_t old = ms->cap_mol, old1 = fresh ? 0 : old + 1;
        cm = grown(old, n_mol, 16);
        batch_add(&g, (void **)&ms->atom_offset, old1, cm + 1, sizeof(int64_t));
        batch_add(&g, (void **)&ms->bond_offset, old1, cm + 1, sizeof(int64_t));
        batch_add(&g, (void **)&ms->source_row, old, cm, sizeof(int64_t));
        if (mod & MM_MOD_CONFORMER) batch_add(&g, (void **)&ms->conf_ok, old, cm, 1);
        if (mod & MM_MOD_IMAGE)
            batch_add(&g, (void **)&ms->image, old, cm, mm_ds_image_bytes(ms->image_h, ms->image_w));
        if (mod & MM_MOD_FINGERPRINT) batch_add(&g, (void **)&ms->fingerprint, old, cm, MM_DS_FP_BYTES);
        if (mod & MM_MOD_LABELS)
            batch_add(&g, (void **)&ms->labels, old, cm, (size_t)ms->n_tasks * sizeof(float));
        for (int k = 0; k < MM_NMR_KINDS; k++)
            if (mod & MM_MOD_NMR(k)) {
                batch_add(&g, (void **)&ms->nmr[k].peak_offset, old1, cm + 1, sizeof(int64_t));
                batch_add(&g, (void **)&ms->nmr[k].ok, old, cm, 1);
            }
    }
    if (fresh || n_atoms > ms->cap_atoms) {
        int64_t old = ms->cap_atoms;
        ca = grown(old, n_atoms, 256);
        batch_add(&g, (void **)&ms->atom_feat, old, ca, MM_DS_ATOM_FEATS);
        if (mod & MM_MOD_CONFORMER) batch_add(&g, (void **)&ms->xyz, old, ca, 3 * sizeof(float));
    }
    if (fresh || n_bonds > ms->cap_bonds) {
        int64_t old = ms->cap_bonds;
        cb = grown(old, n_bonds, 256);
        batch_add(&g, (void **)&ms->bond_index, old, cb, 2 * sizeof(int32_t));
        batch_add(&g, (void **)&ms->bond_feat, old, cb, MM_DS_BOND_FEATS);
    }
    MM_CALL(batch_commit(&g));
    if (fresh) {
        ms->atom_offset[0] = ms->bond_offset[0] = 0;
        for (int k = 0; k < MM_NMR_KINDS; k++)
            if (mod & MM_MOD_NMR(k)) ms->nmr[k].peak_offset[0] = 0;
    }
    ms->cap_mol = cm;
    ms->cap_atoms = ca;
    ms->cap_bonds = cb;
    MM_CALL(mm_strings_reserve(&ms->smiles, n_mol, ms->smiles.nbytes));
    if (mod & MM_MOD_SCAFFOLD) MM_CALL(mm_strings_reserve(&ms->scaffold, n_mol, ms->scaffold.nbytes));
    return MM_OK;
}

mm_status mm_ds_reserve_peaks(mm_molset *ms, int kind, int64_t n_peaks)
{
    mm_spectra *sp = &ms->nmr[kind];
    if (sp->shift && n_peaks <= sp->cap_peaks) return MM_OK;
    grow_batch g = {.n = 0, .st = MM_OK};
    int64_t old = sp->cap_peaks, cap = grown(old, n_peaks, 64);
    batch_add(&g, (void **)&sp->shift, old, cap, sizeof(float));
    batch_add(&g, (void **)&sp->atom, old, cap, sizeof(int32_t));
    MM_CALL(batch_commit(&g));
    sp->cap_peaks = cap;
    return MM_OK;
}

const char *const mm_ds_nmr_name[MM_NMR_KINDS] = {"nmr13c", "nmr1h"};

mm_status mm_ds_check_spectrum(mm_status code, const char *where, int kind, int64_t n_atoms, uint8_t ok,
                               int64_t n_peaks, const float *shift, const int32_t *atom)
{
    const char *name = mm_ds_nmr_name[kind];
    if (ok > 1) return MM_ERR(code, "%s: %s ok flag is %d, expected 0 or 1", where, name, ok);
    if (n_peaks < 0 || (!ok && n_peaks > 0) || (ok && n_peaks == 0))
        return MM_ERR(code, "%s: %s has ok = %d and %lld peaks (a spectrum has ok = 1 and at least one peak, "
                      "no spectrum ok = 0 and none)", where, name, ok, (long long)n_peaks);
    for (int64_t p = 0; p < n_peaks; p++) {
        if (!isfinite(shift[p]))
            return MM_ERR(code, "%s: %s peak %lld has a shift that is not finite", where, name, (long long)p);
        if (atom[p] < -1 || atom[p] >= n_atoms)
            return MM_ERR(code, "%s: %s peak %lld is assigned to atom %d, outside -1..%lld (the molecule's atoms)",
                          where, name, (long long)p, atom[p], (long long)n_atoms - 1);
    }
    return MM_OK;
}

/* The checks of one molecule's graph, shared by append and the readers; failures are
 * `code` (MM_ERR_ARG for a caller's arrays, MM_ERR_FORMAT for a file). `where`
 * describes the molecule for the message. */
mm_status mm_ds_check_graph(mm_status code, const char *where, int64_t n_atoms, const uint8_t *atom_feat,
                            int64_t n_bonds, const int32_t *bond_index, const uint8_t *bond_feat)
{
    if (n_atoms < 1) return MM_ERR(code, "%s has no atoms", where);
    for (int64_t a = 0; a < n_atoms; a++)
        for (int f = 0; f < MM_DS_ATOM_FEATS; f++)
            if (atom_feat[a * MM_DS_ATOM_FEATS + f] >= mm_ds_atom_vocab[f])
                return MM_ERR(code, "%s: atom %lld feature %d is %d, vocabulary size %d", where,
                              (long long)a, f, atom_feat[a * MM_DS_ATOM_FEATS + f], mm_ds_atom_vocab[f]);
    for (int64_t b = 0; b < n_bonds; b++) {
        int32_t u = bond_index[2 * b], v = bond_index[2 * b + 1];
        if (u < 0 || v < 0 || u >= n_atoms || v >= n_atoms || u == v)
            return MM_ERR(code, "%s: bond %lld joins atoms (%d, %d), outside the molecule's %lld atoms or a self-bond",
                          where, (long long)b, u, v, (long long)n_atoms);
        for (int f = 0; f < MM_DS_BOND_FEATS; f++)
            if (bond_feat[b * MM_DS_BOND_FEATS + f] >= mm_ds_bond_vocab[f])
                return MM_ERR(code, "%s: bond %lld feature %d is %d, vocabulary size %d", where,
                              (long long)b, f, bond_feat[b * MM_DS_BOND_FEATS + f], mm_ds_bond_vocab[f]);
    }
    return MM_OK;
}

mm_status mm_molset_append(mm_molset *ms, const mm_mol_in *m)
{
    MM_CHECK_ARG(ms && m && ms->atom_offset, "mm_molset_append: NULL or uninitialised set");
    char where[96];
    snprintf(where, sizeof where, "molecule of source row %lld", (long long)m->source_row);
    MM_CHECK_ARG(m->smiles, "%s: no SMILES", where);
    MM_CHECK_ARG(m->n_atoms >= 1 && m->n_atoms <= INT32_MAX,
                 "%s: %lld atoms (a molecule needs 1..2^31-1 atoms; put it in the rejects instead)",
                 where, (long long)m->n_atoms);
    MM_CHECK_ARG(m->n_bonds >= 0 && m->n_bonds <= INT32_MAX, "%s: %lld bonds", where, (long long)m->n_bonds);
    MM_CHECK_ARG(m->atom_feat && (m->n_bonds == 0 || (m->bond_index && m->bond_feat)),
                 "%s: missing atom or bond arrays", where);
    MM_CALL(mm_ds_check_graph(MM_ERR_ARG, where, m->n_atoms, m->atom_feat, m->n_bonds, m->bond_index,
                              m->bond_feat));
    const unsigned mod = ms->modalities;
    if (mod & MM_MOD_CONFORMER) {
        MM_CHECK_ARG(m->conf_ok <= 1, "%s: conformer ok flag %d is not 0 or 1", where, m->conf_ok);
        MM_CHECK_ARG(!m->conf_ok || m->xyz, "%s: ok = 1 without coordinates", where);
        if (m->conf_ok)
            for (int64_t i = 0; i < 3 * m->n_atoms; i++)
                MM_CHECK_ARG(isfinite(m->xyz[i]), "%s: coordinate %lld is not finite", where, (long long)i);
    }
    MM_CHECK_ARG(!(mod & MM_MOD_IMAGE) || m->image, "%s: no image", where);
    MM_CHECK_ARG(!(mod & MM_MOD_FINGERPRINT) || m->fingerprint, "%s: no fingerprint", where);
    if ((mod & MM_MOD_LABELS) && m->labels)
        for (int t = 0; t < ms->n_tasks; t++)
            MM_CHECK_ARG(!isinf(m->labels[t]), "%s: label %d is infinite", where, t);
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        if (!(mod & MM_MOD_NMR(k))) continue;
        MM_CHECK_ARG(m->nmr[k].n_peaks == 0 || (m->nmr[k].shift && m->nmr[k].atom), "%s: %s peaks without arrays",
                     where, mm_ds_nmr_name[k]);
        MM_CHECK_ARG(m->nmr[k].n_peaks <= INT32_MAX, "%s: %lld %s peaks", where, (long long)m->nmr[k].n_peaks,
                     mm_ds_nmr_name[k]);
        MM_CALL(mm_ds_check_spectrum(MM_ERR_ARG, where, k, m->n_atoms, m->nmr[k].ok, m->nmr[k].n_peaks,
                                     m->nmr[k].shift, m->nmr[k].atom));
    }

    const int64_t n = ms->n, a0 = ms->n_atoms, b0 = ms->n_bonds;
    const char *scaf = m->scaffold ? m->scaffold : "";
    MM_CALL(mm_molset_reserve(ms, n + 1, a0 + m->n_atoms, b0 + m->n_bonds));
    MM_CALL(mm_strings_reserve(&ms->smiles, n + 1, ms->smiles.nbytes + (int64_t)strlen(m->smiles) + 1));
    if (mod & MM_MOD_SCAFFOLD)
        MM_CALL(mm_strings_reserve(&ms->scaffold, n + 1, ms->scaffold.nbytes + (int64_t)strlen(scaf) + 1));
    for (int k = 0; k < MM_NMR_KINDS; k++)
        if (mod & MM_MOD_NMR(k)) MM_CALL(mm_ds_reserve_peaks(ms, k, ms->nmr[k].n_peaks + m->nmr[k].n_peaks));
    /* nothing below can fail */
    MM_CALL(mm_strings_push(&ms->smiles, m->smiles));
    if (mod & MM_MOD_SCAFFOLD) MM_CALL(mm_strings_push(&ms->scaffold, scaf));
    ms->source_row[n] = m->source_row;
    memcpy(ms->atom_feat + a0 * MM_DS_ATOM_FEATS, m->atom_feat, (size_t)m->n_atoms * MM_DS_ATOM_FEATS);
    if (m->n_bonds) {
        memcpy(ms->bond_index + 2 * b0, m->bond_index, (size_t)m->n_bonds * 2 * sizeof(int32_t));
        memcpy(ms->bond_feat + b0 * MM_DS_BOND_FEATS, m->bond_feat, (size_t)m->n_bonds * MM_DS_BOND_FEATS);
    }
    if (mod & MM_MOD_CONFORMER) {
        ms->conf_ok[n] = m->conf_ok;
        if (m->conf_ok)
            memcpy(ms->xyz + 3 * a0, m->xyz, (size_t)m->n_atoms * 3 * sizeof(float));
        else
            memset(ms->xyz + 3 * a0, 0, (size_t)m->n_atoms * 3 * sizeof(float));
    }
    if (mod & MM_MOD_IMAGE) {
        size_t ib = mm_ds_image_bytes(ms->image_h, ms->image_w);
        memcpy(ms->image + (size_t)n * ib, m->image, ib);
    }
    if (mod & MM_MOD_FINGERPRINT)
        memcpy(ms->fingerprint + n * MM_DS_FP_BYTES, m->fingerprint, MM_DS_FP_BYTES);
    if (mod & MM_MOD_LABELS)
        for (int t = 0; t < ms->n_tasks; t++)
            ms->labels[n * ms->n_tasks + t] = m->labels ? m->labels[t] : NAN;
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        if (!(mod & MM_MOD_NMR(k))) continue;
        mm_spectra *sp = &ms->nmr[k];
        const int64_t np = m->nmr[k].n_peaks;
        if (np) {
            memcpy(sp->shift + sp->n_peaks, m->nmr[k].shift, (size_t)np * sizeof(float));
            memcpy(sp->atom + sp->n_peaks, m->nmr[k].atom, (size_t)np * sizeof(int32_t));
        }
        sp->n_peaks += np;
        sp->peak_offset[n + 1] = sp->n_peaks;
        sp->ok[n] = m->nmr[k].ok;
    }
    ms->n_atoms = a0 + m->n_atoms;
    ms->n_bonds = b0 + m->n_bonds;
    ms->atom_offset[n + 1] = ms->n_atoms;
    ms->bond_offset[n + 1] = ms->n_bonds;
    ms->n = n + 1;
    return MM_OK;
}

mm_status mm_molset_append_reject(mm_molset *ms, int64_t source_row, const char *smiles,
                                  const char *reason)
{
    MM_CHECK_ARG(ms && ms->atom_offset, "mm_molset_append_reject: NULL or uninitialised set");
    MM_CHECK_ARG(reason && reason[0], "reject of source row %lld: empty reason", (long long)source_row);
    const char *s = smiles ? smiles : "";
    const int64_t r = ms->n_rejects;
    if (!ms->reject_row || r + 1 > ms->cap_rejects) {
        int64_t cap = grown(ms->cap_rejects, r + 1, 16);
        MM_CALL(grow_rows((void **)&ms->reject_row, ms->cap_rejects, cap, sizeof(int64_t)));
        ms->cap_rejects = cap;
    }
    MM_CALL(mm_strings_reserve(&ms->reject_smiles, r + 1, ms->reject_smiles.nbytes + (int64_t)strlen(s) + 1));
    MM_CALL(mm_strings_reserve(&ms->reject_reason, r + 1,
                               ms->reject_reason.nbytes + (int64_t)strlen(reason) + 1));
    MM_CALL(mm_strings_push(&ms->reject_smiles, s));
    MM_CALL(mm_strings_push(&ms->reject_reason, reason));
    ms->reject_row[r] = source_row;
    ms->n_rejects = r + 1;
    return MM_OK;
}

void mm_molset_clear(mm_molset *ms)
{
    ms->n = ms->n_atoms = ms->n_bonds = ms->n_rejects = 0;
    for (int k = 0; k < MM_NMR_KINDS; k++) ms->nmr[k].n_peaks = 0;
    mm_strings_clear(&ms->smiles);
    mm_strings_clear(&ms->scaffold);
    mm_strings_clear(&ms->reject_smiles);
    mm_strings_clear(&ms->reject_reason);
}

void mm_molset_free(mm_molset *ms)
{
    if (!ms) return;
    const int64_t cm = ms->cap_mol, ca = ms->cap_atoms, cb = ms->cap_bonds;
    if (ms->atom_offset) mm_free_sized(ms->atom_offset, (size_t)(cm + 1) * sizeof(int64_t));
    if (ms->bond_offset) mm_free_sized(ms->bond_offset, (size_t)(cm + 1) * sizeof(int64_t));
    mm_free_sized(ms->source_row, (size_t)cm * sizeof(int64_t));
    mm_free_sized(ms->conf_ok, (size_t)cm);
    mm_free_sized(ms->image, (size_t)cm * mm_ds_image_bytes(ms->image_h, ms->image_w));
    mm_free_sized(ms->fingerprint, (size_t)cm * MM_DS_FP_BYTES);
    mm_free_sized(ms->labels, (size_t)cm * (size_t)ms->n_tasks * sizeof(float));
    mm_free_sized(ms->atom_feat, (size_t)ca * MM_DS_ATOM_FEATS);
    mm_free_sized(ms->xyz, (size_t)ca * 3 * sizeof(float));
    mm_free_sized(ms->bond_index, (size_t)cb * 2 * sizeof(int32_t));
    mm_free_sized(ms->bond_feat, (size_t)cb * MM_DS_BOND_FEATS);
    mm_free_sized(ms->reject_row, (size_t)ms->cap_rejects * sizeof(int64_t));
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        mm_spectra *sp = &ms->nmr[k];
        if (sp->peak_offset) mm_free_sized(sp->peak_offset, (size_t)(cm + 1) * sizeof(int64_t));
        mm_free_sized(sp->ok, (size_t)cm);
        mm_free_sized(sp->shift, (size_t)sp->cap_peaks * sizeof(float));
        mm_free_sized(sp->atom, (size_t)sp->cap_peaks * sizeof(int32_t));
    }
    mm_strings_free(&ms->smiles);
    mm_strings_free(&ms->scaffold);
    mm_strings_free(&ms->reject_smiles);
    mm_strings_free(&ms->reject_reason);
    mm_ds_free_names(&ms->task_names, ms->n_tasks);
    memset(ms, 0, sizeof *ms);
}

mm_status mm_molset_validate(const mm_molset *ms)
{
    MM_CHECK_ARG(ms && ms->atom_offset, "mm_molset_validate: NULL or uninitialised set");
    if (ms->n < 0 || ms->n_rejects < 0 || ms->atom_offset[0] != 0 || ms->bond_offset[0] != 0 ||
        ms->atom_offset[ms->n] != ms->n_atoms || ms->bond_offset[ms->n] != ms->n_bonds ||
        ms->smiles.n != ms->n || ((ms->modalities & MM_MOD_SCAFFOLD) && ms->scaffold.n != ms->n) ||
        ms->reject_smiles.n != ms->n_rejects || ms->reject_reason.n != ms->n_rejects)
        return MM_ERR(MM_ERR_ARG, "molecule set: counts and offsets disagree (n %lld, atoms %lld, bonds %lld)",
                      (long long)ms->n, (long long)ms->n_atoms, (long long)ms->n_bonds);
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        const mm_spectra *sp = &ms->nmr[k];
        if ((ms->modalities & MM_MOD_NMR(k)) &&
            (sp->peak_offset[0] != 0 || sp->peak_offset[ms->n] != sp->n_peaks || sp->n_peaks > sp->cap_peaks))
            return MM_ERR(MM_ERR_ARG, "molecule set: %s offsets and peak count %lld disagree", mm_ds_nmr_name[k],
                          (long long)sp->n_peaks);
    }
    for (int64_t i = 0; i < ms->n; i++) {
        int64_t a0 = ms->atom_offset[i], a1 = ms->atom_offset[i + 1];
        int64_t b0 = ms->bond_offset[i], b1 = ms->bond_offset[i + 1];
        if (a1 < a0 || b1 < b0)
            return MM_ERR(MM_ERR_ARG, "molecule set: offsets decrease at molecule %lld", (long long)i);
        char where[64];
        snprintf(where, sizeof where, "molecule %lld of the set", (long long)i);
        MM_CALL(mm_ds_check_graph(MM_ERR_ARG, where, a1 - a0, ms->atom_feat + a0 * MM_DS_ATOM_FEATS, b1 - b0,
                                  ms->bond_index + 2 * b0, ms->bond_feat + b0 * MM_DS_BOND_FEATS));
        for (int k = 0; k < MM_NMR_KINDS; k++) {
            if (!(ms->modalities & MM_MOD_NMR(k))) continue;
            const mm_spectra *sp = &ms->nmr[k];
            int64_t p0 = sp->peak_offset[i], p1 = sp->peak_offset[i + 1];
            if (p1 < p0)
                return MM_ERR(MM_ERR_ARG, "molecule set: %s offsets decrease at molecule %lld", mm_ds_nmr_name[k],
                              (long long)i);
            MM_CALL(mm_ds_check_spectrum(MM_ERR_ARG, where, k, a1 - a0, sp->ok[i], p1 - p0, sp->shift + p0,
                                         sp->atom + p0));
        }
    }
    return MM_OK;
}
