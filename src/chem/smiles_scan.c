/* smiles_scan.c: reads the canonical SMILES back to fix the atom order, RDKit's bond
 * order and RDKit's chirality tags.
 *
 * Why: the featuriser promises that atom i is the i-th atom written in its canonical
 * SMILES and that the OGB features are those RDKit's smiles2graph computes from that
 * string. RDKit stores a tetrahedral centre as CW/CCW relative to the order of the
 * atom's bonds in its bond list, which is not the order of the neighbours in the string:
 * RDKit creates chain and branch bonds as it reads, but ring-closure bonds only at the
 * end, sorted by ring number. So the tag RDKit reports for "@" or "@@" flips whenever
 * the two neighbour orders differ by an odd permutation. This file computes exactly that.
 *
 * Conventions verified against RDKit 2022.09:
 * - neighbour order in the string (OpenSMILES): preceding atom, then an implicit H of a
 *   bracket atom ("[C@H]"; first if the atom has no preceding atom), then ring-closure
 *   partners in the order the digits are written, then branches and the next atom;
 * - RDKit's order: its bonds by index, with the implicit H taken as the second
 *   neighbour; a 3-connected centre without H (sulfoxide) has no phantom at all, so
 *   "[S@](C)(=O)CC" and "C[S@](=O)CC" are the same molecule for RDKit;
 * - a ring-closure bond is oriented closer -> opener unless the opening digit carries a
 *   bond order symbol ("C=1...C1"), then opener -> closer; the direction marks / and \
 *   do not count (RDKit keeps such a bond's order unspecified). */
#include "chem_internal.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 12    /* neighbours tracked per atom; more only for exotic centres */
#define MAX_RING 1000

typedef struct {
    int slots[MAX_SLOTS]; /* neighbours in string order; -1 = open ring closure not yet closed */
    int n_slots;
    int h_pos;            /* where an implicit H sits in the string order */
    int chiral_class;     /* 0 none, 1 '@', 2 '@@', 3 other */
    int overflow;
} scan_atom;

typedef struct {
    int ring;      /* ring number */
    int seq;       /* order of opening */
    int opener, closer;
    int opener_symbol; /* the opening digit carried an explicit bond symbol */
    char symbol;
} closure;

typedef struct {
    int atom;      /* -1 = ring number free */
    int slot;      /* slot index in the opener's list */
    int seq;
    char symbol;
} ring_open;

static mm_status bad(const char *smiles, size_t pos, const char *what)
{
    return MM_ERR(MM_ERR_CHEM, "SMILES '%s': %s at position %zu", smiles, what, pos + 1);
}

static int add_slot(scan_atom *a, int nbr)
{
    if (a->n_slots == MAX_SLOTS) {
        a->overflow = 1;
        return -1;
    }
    a->slots[a->n_slots] = nbr;
    return a->n_slots++;
}

/* Parity (0 even, 1 odd) of the permutation taking list x to list y (same elements). */
static int perm_parity(const int *x, const int *y, int n)
{
    int pos[MAX_SLOTS + 1];
    for (int i = 0; i < n; i++) {
        pos[i] = -1;
        for (int j = 0; j < n; j++)
            if (y[j] == x[i]) pos[i] = j;
        if (pos[i] < 0) return -1;
    }
    int inv = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) inv += pos[i] > pos[j];
    return inv & 1;
}

/* Parses a bracket atom starting after '['; *p is left after ']'. */
static mm_status parse_bracket(const char *s, size_t *p, mm_smi_atom *at, scan_atom *sa)
{
    size_t i = *p;
    while (isdigit((unsigned char)s[i])) i++; /* isotope: RDKit's OGB features ignore it */
    int z = -1, arom = 0;
    if (s[i] == '*') {
        z = 0;
        i++;
    } else if (islower((unsigned char)s[i])) {
        /* aromatic: c n o p s b, se as te si */
        char sym[3] = {(char)toupper((unsigned char)s[i]), 0, 0};
        if (islower((unsigned char)s[i + 1])) {
            sym[1] = s[i + 1];
            int z2 = mm_element_from_symbol(sym, 2);
            if (z2 > 0) {
                z = z2;
                i += 2;
            } else {
                sym[1] = 0;
            }
        }
        if (z < 0) {
            z = mm_element_from_symbol(sym, 1);
            i++;
        }
        arom = 1;
    } else if (isupper((unsigned char)s[i])) {
        if (islower((unsigned char)s[i + 1])) {
            int z2 = mm_element_from_symbol(s + i, 2);
            if (z2 > 0) {
                z = z2;
                i += 2;
            }
        }
        if (z < 0) {
            z = mm_element_from_symbol(s + i, 1);
            i++;
        }
    }
    if (z < 0) return bad(s, i, "unknown element in brackets");
    at->z = z;
    at->aromatic = arom;
    at->bracket = 1;
    if (s[i] == '@') {
        i++;
        if (s[i] == '@') {
            sa->chiral_class = 2;
            i++;
        } else if (strncmp(s + i, "TH1", 3) == 0) {
            sa->chiral_class = 1;
            i += 3;
        } else if (strncmp(s + i, "TH2", 3) == 0) {
            sa->chiral_class = 2;
            i += 3;
        } else if (isupper((unsigned char)s[i]) && isupper((unsigned char)s[i + 1])) {
            sa->chiral_class = 3; /* @SP, @TB, @OH, @AL */
            i += 2;
            while (isdigit((unsigned char)s[i])) i++;
        } else {
            sa->chiral_class = 1;
        }
    }
    if (s[i] == 'H') {
        i++;
        int h = 1;
        if (isdigit((unsigned char)s[i])) {
            h = 0;
            /* saturates: [NH4444444444] must not overflow an int (found by fuzz_smiles) */
            for (; isdigit((unsigned char)s[i]); i++)
                if (h < 100000) h = 10 * h + (s[i] - '0');
        }
        at->hcount = h;
    }
    while (s[i] == '+' || s[i] == '-') {
        i++;
        while (isdigit((unsigned char)s[i])) i++;
    }
    if (s[i] == ':') {
        i++;
        while (isdigit((unsigned char)s[i])) i++;
    }
    if (s[i] != ']') return bad(s, i, "expected ']'");
    *p = i + 1;
    return MM_OK;
}

static int organic_atom(const char *s, size_t *p, int *arom)
{
    size_t i = *p;
    *arom = 0;
    switch (s[i]) {
    case 'C':
        if (s[i + 1] == 'l') {
            *p = i + 2;
            return 17;
        }
        *p = i + 1;
        return 6;
    case 'B':
        if (s[i + 1] == 'r') {
            *p = i + 2;
            return 35;
        }
        *p = i + 1;
        return 5;
    case 'N': *p = i + 1; return 7;
    case 'O': *p = i + 1; return 8;
    case 'P': *p = i + 1; return 15;
    case 'S': *p = i + 1; return 16;
    case 'F': *p = i + 1; return 9;
    case 'I': *p = i + 1; return 53;
    case '*': *p = i + 1; return 0;
    case 'b': *arom = 1; *p = i + 1; return 5;
    case 'c': *arom = 1; *p = i + 1; return 6;
    case 'n': *arom = 1; *p = i + 1; return 7;
    case 'o': *arom = 1; *p = i + 1; return 8;
    case 'p': *arom = 1; *p = i + 1; return 15;
    case 's': *arom = 1; *p = i + 1; return 16;
    default: return -1;
    }
}

static int closure_cmp(const void *x, const void *y)
{
    const closure *a = x, *b = y;
    if (a->ring != b->ring) return a->ring < b->ring ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

mm_status mm_smiles_scan(const char *s, mm_arena *arena, mm_smi_graph *out)
{
    MM_CHECK_ARG(s && arena && out, "mm_smiles_scan: NULL argument");
    size_t len = strlen(s);
    size_t cap = len + 1;
    mm_smi_atom *atoms;
    scan_atom *sat;
    mm_smi_bond *chain;
    closure *clos;
    ring_open *rings;
    int *stack;
    MM_CALL(mm_arena_calloc(arena, cap * sizeof *atoms, (void **)&atoms));
    MM_CALL(mm_arena_calloc(arena, cap * sizeof *sat, (void **)&sat));
    MM_CALL(mm_arena_calloc(arena, cap * sizeof *chain, (void **)&chain));
    MM_CALL(mm_arena_calloc(arena, cap * sizeof *clos, (void **)&clos));
    MM_CALL(mm_arena_alloc(arena, MAX_RING * sizeof *rings, (void **)&rings));
    MM_CALL(mm_arena_alloc(arena, cap * sizeof *stack, (void **)&stack));
    for (int r = 0; r < MAX_RING; r++) rings[r].atom = -1;

    int n_atoms = 0, n_chain = 0, n_clos = 0, depth = 0, open_seq = 0;
    int prev = -1;
    char bond_sym = 0;
    size_t i = 0;
    while (i < len) {
        char c = s[i];
        if (c == '(') {
            if (prev < 0) return bad(s, i, "branch without a preceding atom");
            stack[depth++] = prev;
            i++;
            continue;
        }
        if (c == ')') {
            if (depth == 0) return bad(s, i, "unbalanced ')'");
            prev = stack[--depth];
            bond_sym = 0;
            i++;
            continue;
        }
        if (c == '.') {
            prev = -1;
            bond_sym = 0;
            i++;
            continue;
        }
        if (c == '-' || c == '=' || c == '#' || c == '$' || c == ':' || c == '/' || c == '\\') {
            bond_sym = c;
            i++;
            continue;
        }
        if (isdigit((unsigned char)c) || c == '%') {
            if (prev < 0) return bad(s, i, "ring closure without a preceding atom");
            int r;
            if (c == '%') {
                if (s[i + 1] == '(') {
                    size_t j = i + 2;
                    r = 0;
                    while (isdigit((unsigned char)s[j]) && r < MAX_RING) r = 10 * r + (s[j++] - '0');
                    if (s[j] != ')' || r >= MAX_RING) return bad(s, i, "bad ring number");
                    i = j + 1;
                } else {
                    if (!isdigit((unsigned char)s[i + 1]) || !isdigit((unsigned char)s[i + 2]))
                        return bad(s, i, "'%' needs two digits");
                    r = 10 * (s[i + 1] - '0') + (s[i + 2] - '0');
                    i += 3;
                }
            } else {
                r = c - '0';
                i++;
            }
            if (rings[r].atom < 0) { /* opening */
                rings[r].atom = prev;
                rings[r].slot = add_slot(&sat[prev], -1);
                rings[r].seq = open_seq++;
                rings[r].symbol = bond_sym;
            } else { /* closing */
                int o = rings[r].atom;
                if (o == prev) return bad(s, i - 1, "ring closure to the same atom");
                if (rings[r].slot >= 0) sat[o].slots[rings[r].slot] = prev;
                add_slot(&sat[prev], o);
                closure *cl = &clos[n_clos++];
                cl->ring = r;
                cl->seq = rings[r].seq;
                cl->opener = o;
                cl->closer = prev;
                cl->opener_symbol = rings[r].symbol != 0 && rings[r].symbol != '/' && rings[r].symbol != '\\';
                cl->symbol = rings[r].symbol ? rings[r].symbol : bond_sym;
                rings[r].atom = -1;
            }
            bond_sym = 0;
            continue;
        }
        /* an atom */
        mm_smi_atom *at = &atoms[n_atoms];
        scan_atom *sa = &sat[n_atoms];
        if (c == '[') {
            i++;
            MM_CALL(parse_bracket(s, &i, at, sa));
        } else {
            int arom = 0;
            int z = organic_atom(s, &i, &arom);
            if (z < 0) return bad(s, i, "unexpected character");
            at->z = z;
            at->aromatic = arom;
        }
        int me = n_atoms++;
        if (prev >= 0) {
            add_slot(&sat[prev], me);
            add_slot(sa, prev);
            chain[n_chain].begin = prev;
            chain[n_chain].end = me;
            chain[n_chain].symbol = bond_sym;
            n_chain++;
        }
        sa->h_pos = sa->n_slots; /* 1 after a preceding atom, else 0 */
        prev = me;
        bond_sym = 0;
    }
    if (depth != 0) return bad(s, len, "unclosed '('");
    for (int r = 0; r < MAX_RING; r++)
        if (rings[r].atom >= 0) return bad(s, len, "unclosed ring");
    if (n_atoms == 0) return MM_ERR(MM_ERR_CHEM, "SMILES '%s' has no atoms", s);

    /* RDKit's bond list: chain bonds, then closures by ring number, then opening order */
    qsort(clos, (size_t)n_clos, sizeof *clos, closure_cmp);
    int n_bonds = n_chain + n_clos;
    mm_smi_bond *bonds;
    MM_CALL(mm_arena_alloc(arena, (size_t)(n_bonds ? n_bonds : 1) * sizeof *bonds, (void **)&bonds));
    memcpy(bonds, chain, (size_t)n_chain * sizeof *bonds);
    for (int k = 0; k < n_clos; k++) {
        mm_smi_bond *b = &bonds[n_chain + k];
        if (clos[k].opener_symbol) {
            b->begin = clos[k].opener;
            b->end = clos[k].closer;
        } else {
            b->begin = clos[k].closer;
            b->end = clos[k].opener;
        }
        b->symbol = clos[k].symbol;
    }

    /* chirality: the tag relative to RDKit's bond order */
    int *rd_n;
    int *rd_list;
    MM_CALL(mm_arena_calloc(arena, (size_t)n_atoms * sizeof *rd_n, (void **)&rd_n));
    MM_CALL(mm_arena_alloc(arena, (size_t)n_atoms * MAX_SLOTS * sizeof *rd_list, (void **)&rd_list));
    for (int k = 0; k < n_bonds; k++) {
        int a = bonds[k].begin, b = bonds[k].end;
        if (rd_n[a] < MAX_SLOTS) rd_list[a * MAX_SLOTS + rd_n[a]++] = b;
        if (rd_n[b] < MAX_SLOTS) rd_list[b * MAX_SLOTS + rd_n[b]++] = a;
    }
    for (int a = 0; a < n_atoms; a++) {
        scan_atom *sa = &sat[a];
        mm_smi_atom *at = &atoms[a];
        at->ogb_chiral = 0;
        if (!sa->chiral_class) continue;
        if (sa->chiral_class == 3) {
            at->ogb_chiral = 4;
            continue;
        }
        int nh = at->hcount;
        int nreal = sa->n_slots;
        if (sa->overflow || nh > 1 || nreal + nh < 3 || nreal + nh > 4) continue; /* RDKit drops it */
        int sl[MAX_SLOTS + 1], rl[MAX_SLOTS + 1], ns = 0, nr = 0;
        const int H = -2;
        for (int k = 0; k < nreal; k++) {
            if (nh && k == sa->h_pos) sl[ns++] = H;
            sl[ns++] = sa->slots[k];
        }
        if (nh && sa->h_pos >= nreal) sl[ns++] = H;
        for (int k = 0; k < rd_n[a]; k++) {
            if (nh && k == 1) rl[nr++] = H;
            rl[nr++] = rd_list[a * MAX_SLOTS + k];
        }
        if (nh && rd_n[a] < 2) rl[nr++] = H;
        if (ns != nr) continue;
        int par = perm_parity(sl, rl, ns);
        if (par < 0) continue;
        int ccw = sa->chiral_class == 1; /* '@' = anticlockwise */
        if (par) ccw = !ccw;
        at->ogb_chiral = ccw ? 2 : 1;
    }
    out->n_atoms = n_atoms;
    out->n_bonds = n_bonds;
    out->atoms = atoms;
    out->bonds = bonds;
    return MM_OK;
}
