/* ogb.c: OGB feature indices, CIP-like ranks and the Murcko selection on a plain graph.
 *
 * Open Babel supplies the chemistry it perceives well (aromaticity, rings, hydrogen
 * counts, Kekule bond orders, stereo). The OGB vocabulary, however, is defined by RDKit's
 * per-atom properties, and for three of them Open Babel has no equivalent with the same
 * meaning: radical electrons, bond conjugation and hybridisation. Those are computed
 * here with RDKit's rules (MolOps::assignRadicals, setConjugation, setHybridization),
 * restated on this graph, so that a model sees the same indices whichever toolkit made
 * the dataset.
 *
 * Differences from RDKit's OGB features, and the choice made for each. Measured by
 * tests/test_chem.c against RDKit 2022.09 parsing our canonical SMILES; with
 * MMSA_CHEM_PARITY_FULL=1 (all of BBBP and Tox21, 10000 ZINC rows: 19849 molecules,
 * 425342 atoms, 452191 bonds) what remains is:
 * - aromaticity is Open Babel's model: 49 atoms / 55 bonds, all in a porphyrin-copper
 *   complex, where RDKit's model finds aromatic rings Open Babel does not. We keep Open
 *   Babel's answer: it is what the canonical SMILES (our atom order) is written with.
 * - chirality: 1 atom (a ring carbon Open Babel writes as a stereocentre and RDKit's
 *   legacy perception clears as symmetric). We keep what the SMILES says.
 * - bond stereo: 1 bond (an exocyclic double bond RDKit does not flag). E/Z comes from
 *   Open Babel's cis/trans configuration named by CIP-like ranks computed the way RDKit's
 *   legacy code does (mm_cg_cip_ranks), only for double bonds the SMILES marks.
 * - hydrogens: we keep heavy atoms only. An isolated [H+] is dropped and [2H] becomes a
 *   hydrogen count (RDKit keeps both as atoms); these change the molecule, not the
 *   features of the atoms we keep. 40 of 19849 input molecules differ this way.
 * - hypervalent nitro / azide / perchlorate groups are charge-separated before anything
 *   else, as RDKit's sanitisation does, so charges and bond orders agree.
 * - RDKit computes explicit valences of aromatic atoms from 1.5-order bonds with a
 *   rounding rule; we use Open Babel's Kekule orders, which give the same valence for
 *   every ordinary aromatic atom (no difference measured).
 * - radicals: RDKit derives them only for bracket atoms (its "no implicit H" atoms) from
 *   their valence; we apply the same rule to the atoms written in brackets in our
 *   canonical SMILES, which are exactly the atoms RDKit treats so (no difference).
 * - hybridisation of terminal halogens: RDKit says SP3 (4 orbitals: 1 bond + 3 lone
 *   pairs), Open Babel's GetHyb() says 1 (sp); we follow RDKit's rule, never GetHyb()
 *   (no difference measured).
 * - Murcko scaffolds follow RDKit's MurckoDecompose, including its quirk that a
 *   bracket atom kept for its exocyclic double bond keeps its hydrogen count
 *   (C=[N+](C)C -> C=[N+]): same string for all 19849 molecules. */
#include "chem_internal.h"

#include <stdlib.h>
#include <string.h>

mm_status mm_cg_prepare(mm_cgraph *g, mm_arena *arena)
{
    int n = g->n_atoms, m = g->n_bonds;
    MM_CALL(mm_arena_calloc(arena, (size_t)(n + 1) * sizeof(int), (void **)&g->adj_start));
    MM_CALL(mm_arena_alloc(arena, (size_t)(2 * m + 1) * sizeof(int), (void **)&g->adj_bond));
    for (int k = 0; k < m; k++) {
        if (g->bonds[k].a < 0 || g->bonds[k].a >= n || g->bonds[k].b < 0 || g->bonds[k].b >= n)
            return MM_ERR(MM_ERR_INTERNAL, "bond %d joins atoms %d and %d of %d", k, g->bonds[k].a,
                          g->bonds[k].b, n);
        g->adj_start[g->bonds[k].a + 1]++;
        g->adj_start[g->bonds[k].b + 1]++;
    }
    for (int i = 0; i < n; i++) g->adj_start[i + 1] += g->adj_start[i];
    int *fill;
    MM_CALL(mm_arena_calloc(arena, (size_t)(n + 1) * sizeof(int), (void **)&fill));
    for (int k = 0; k < m; k++) {
        int a = g->bonds[k].a, b = g->bonds[k].b;
        g->adj_bond[g->adj_start[a] + fill[a]++] = k;
        g->adj_bond[g->adj_start[b] + fill[b]++] = k;
    }
    return MM_OK;
}

static inline int heavy_degree(const mm_cgraph *g, int i) { return g->adj_start[i + 1] - g->adj_start[i]; }

static inline const mm_element *elem(int z)
{
    return &mm_elements[z >= 0 && z < MM_N_ELEMENTS ? z : 0];
}

/* Sum of Kekule bond orders (the valence the bonds use). */
static int bond_valence(const mm_cgraph *g, int i)
{
    int v = 0;
    for (int k = g->adj_start[i]; k < g->adj_start[i + 1]; k++) v += g->bonds[g->adj_bond[k]].order;
    return v;
}

/* RDKit's Bond::getValenceContrib: 1.5 for aromatic bonds, else the order (times 2 here
 * to stay in integers). */
static inline int contrib2(const mm_cg_bond *b) { return b->aromatic ? 3 : 2 * b->order; }

/* MolOps::assignRadicals: only atoms RDKit gives no implicit hydrogens (bracket atoms). */
static int radicals(const mm_cgraph *g, int i)
{
    const mm_cg_atom *a = &g->atoms[i];
    if (!a->bracket || a->z == 0) return 0;
    const mm_element *e = elem(a->z);
    int chg = a->charge, nouter = e->n_outer;
    if (!(e->n_valence == 1 && e->valence[0] == -1)) {
        int tv = bond_valence(g, i) + a->h;
        int base = (a->z == 1 || a->z == 2) ? 2 : 8;
        int nr = base - nouter - tv + chg;
        if (nr < 0) {
            nr = 0;
            if (e->n_valence > 1)
                for (int k = 0; k < e->n_valence; k++)
                    if (e->valence[k] - tv + chg >= 0) {
                        nr = e->valence[k] - tv + chg;
                        break;
                    }
        }
        int nr2 = nouter - tv - chg;
        if (nr2 >= 0 && nr2 < nr) nr = nr2;
        return nr;
    }
    int nv = nouter - chg;
    if (nv < 0) nv = 0;
    return nv % 2;
}

/* MolOps::countAtomElec: electrons an atom can give to a pi system (-1: none). */
static int count_atom_elec(const mm_cgraph *g, int i, const int *rad)
{
    const mm_cg_atom *a = &g->atoms[i];
    const mm_element *e = elem(a->z);
    int dv = e->valence[0];
    if (dv <= 1) return -1;
    int degree = heavy_degree(g, i) + a->h;
    if (degree > 3) return -1;
    int nlp = e->n_outer - dv - a->charge;
    if (nlp < 0) nlp = 0;
    int res = (dv - degree) + nlp - rad[i];
    if (res > 1) {
        /* RDKit's explicit valence counts the hydrogens written in brackets */
        int explicit_valence = bond_valence(g, i) + (a->bracket ? a->h : 0);
        if (explicit_valence - heavy_degree(g, i) > 1) res = 1;
    }
    return res;
}

static int conj_candidate(const mm_cgraph *g, int i, const int *rad)
{
    const mm_cg_atom *a = &g->atoms[i];
    int nouter = elem(a->z)->n_outer;
    int total_degree = heavy_degree(g, i) + a->h;
    return (a->z <= 10 || (nouter != 5 && nouter != 6) || (nouter == 6 && total_degree < 2)) &&
           count_atom_elec(g, i, rad) > 0;
}

/* MolOps::setConjugation. conj: [n_bonds] */
static void conjugation(const mm_cgraph *g, const int *rad, const int *cand, uint8_t *conj)
{
    for (int k = 0; k < g->n_bonds; k++) conj[k] = (uint8_t)(g->bonds[k].aromatic != 0);
    for (int i = 0; i < g->n_atoms; i++) {
        if (!cand[i]) continue;
        int sbo = heavy_degree(g, i) + g->atoms[i].h;
        if (sbo < 2 || sbo > 3) continue;
        for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++) {
            int b1 = g->adj_bond[p];
            if (contrib2(&g->bonds[b1]) < 3) continue;
            for (int q = g->adj_start[i]; q < g->adj_start[i + 1]; q++) {
                int b2 = g->adj_bond[q];
                if (b2 == b1) continue;
                int j = mm_cg_other(g, b2, i);
                if (heavy_degree(g, j) + g->atoms[j].h > 3) continue;
                if (cand[j]) conj[b1] = conj[b2] = 1;
            }
        }
    }
    (void)rad;
}

/* numBondsPlusLonePairs of RDKit's setHybridization. */
static int bonds_plus_lone_pairs(const mm_cgraph *g, int i, const int *rad)
{
    const mm_cg_atom *a = &g->atoms[i];
    int deg = heavy_degree(g, i) + a->h;
    if (a->z <= 1) return deg;
    int nouter = elem(a->z)->n_outer;
    int tv = bond_valence(g, i) + a->h;
    int chg = a->charge;
    int nfree = nouter - (tv + chg);
    if (tv + nouter - chg < 8) return deg + (nfree - rad[i]) / 2 + rad[i];
    return deg + nfree / 2;
}

/* OGB hybridisation index: SP 0, SP2 1, SP3 2, SP3D 3, SP3D2 4, anything else 5. */
static int hybridisation(const mm_cgraph *g, int i, const int *rad, const uint8_t *conj)
{
    const mm_cg_atom *a = &g->atoms[i];
    int total_degree = heavy_degree(g, i) + a->h;
    if (a->z == 0) return 5;
    if ((a->ogb_chiral == 1 || a->ogb_chiral == 2) && total_degree == 4) return 2;
    int norbs = a->z < 89 ? bonds_plus_lone_pairs(g, i, rad) : total_degree;
    switch (norbs) {
    case 2: return 0;
    case 3: return 1;
    case 4: {
        int has_conj = 0;
        for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++) has_conj |= conj[g->adj_bond[p]];
        return (total_degree > 3 || !has_conj) ? 2 : 1;
    }
    case 5: return 3;
    case 6: return 4;
    default: return 5; /* S (0 or 1 orbitals, e.g. Na+) and unspecified */
    }
}

mm_status mm_cg_ogb_features(const mm_cgraph *g, mm_arena *arena, uint8_t *af, uint8_t *bf)
{
    int n = g->n_atoms, m = g->n_bonds;
    int *rad, *cand;
    uint8_t *conj;
    MM_CALL(mm_arena_alloc(arena, (size_t)(n + 1) * sizeof *rad, (void **)&rad));
    MM_CALL(mm_arena_alloc(arena, (size_t)(n + 1) * sizeof *cand, (void **)&cand));
    MM_CALL(mm_arena_alloc(arena, (size_t)(m + 1), (void **)&conj));
    for (int i = 0; i < n; i++) rad[i] = radicals(g, i);
    for (int i = 0; i < n; i++) cand[i] = conj_candidate(g, i, rad);
    conjugation(g, rad, cand, conj);
    for (int i = 0; i < n; i++) {
        const mm_cg_atom *a = &g->atoms[i];
        uint8_t *f = af + (size_t)i * 9;
        int td = heavy_degree(g, i) + a->h;
        f[0] = (uint8_t)(a->z >= 1 && a->z <= 118 ? a->z - 1 : 118);
        f[1] = (uint8_t)a->ogb_chiral;
        f[2] = (uint8_t)(td <= 10 ? td : 11);
        f[3] = (uint8_t)(a->charge >= -5 && a->charge <= 5 ? a->charge + 5 : 11);
        f[4] = (uint8_t)(a->h >= 0 && a->h <= 8 ? a->h : 9);
        f[5] = (uint8_t)(rad[i] >= 0 && rad[i] <= 4 ? rad[i] : 5);
        f[6] = (uint8_t)hybridisation(g, i, rad, conj);
        f[7] = (uint8_t)(a->aromatic != 0);
        f[8] = (uint8_t)(a->in_ring != 0);
    }
    for (int k = 0; k < m; k++) {
        const mm_cg_bond *b = &g->bonds[k];
        uint8_t *f = bf + (size_t)k * 3;
        f[0] = (uint8_t)(b->aromatic ? 3 : b->order == 1 ? 0 : b->order == 2 ? 1 : b->order == 3 ? 2 : 4);
        f[1] = (uint8_t)(b->ogb_stereo >= 0 && b->ogb_stereo <= 5 ? b->ogb_stereo : 5);
        f[2] = conj[k];
    }
    return MM_OK;
}

/* ---- CIP-like ranks ------------------------------------------------------------------- */

typedef struct {
    const int *rank;   /* current ranks */
    const int *list;   /* per atom: sorted neighbour ranks, descending, length width */
    int width;
} rank_ctx;

static int cmp_atoms(const rank_ctx *c, int x, int y)
{
    if (c->rank[x] != c->rank[y]) return c->rank[x] < c->rank[y] ? -1 : 1;
    const int *a = c->list + (size_t)x * c->width, *b = c->list + (size_t)y * c->width;
    for (int k = 0; k < c->width; k++)
        if (a[k] != b[k]) return a[k] < b[k] ? -1 : 1;
    return 0;
}

/* Insertion sort of atom indices (molecules are small; keeps the code re-entrant). */
static void sort_atoms(int *idx, int n, const rank_ctx *c)
{
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i - 1;
        while (j >= 0 && cmp_atoms(c, idx[j], v) > 0) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
}

/* How often a neighbour's rank enters the list: twice the bond order, so an aromatic
 * bond (3) sits between single (2) and double (4) whatever the Kekule structure; a
 * double bond to a 3- or 4-connected phosphorus counts once (d-orbital convention). */
static int cip_count(const mm_cgraph *g, int bond, int nbr)
{
    const mm_cg_bond *b = &g->bonds[bond];
    if (b->aromatic) return 3;
    if (b->order == 2 && g->atoms[nbr].z == 15 && (heavy_degree(g, nbr) == 3 || heavy_degree(g, nbr) == 4))
        return 1;
    return b->order >= 1 && b->order <= 3 ? 2 * b->order : 2;
}

/* RDKit's legacy ranking (iterateCIPRanks): start from (atomic number, mass), then
 * repeatedly re-rank by (rank, neighbour ranks in descending order with cip_count
 * copies, hydrogens lowest) until the number of classes stops growing or n/2 + 1 rounds
 * have passed. */
mm_status mm_cg_cip_ranks(const mm_cgraph *g, mm_arena *arena, int *rank)
{
    int n = g->n_atoms;
    if (n == 0) return MM_OK;
    int width = 1;
    for (int i = 0; i < n; i++) {
        int w = g->atoms[i].h;
        for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++)
            w += cip_count(g, g->adj_bond[p], mm_cg_other(g, g->adj_bond[p], i));
        if (w > width) width = w;
    }
    int *list, *idx, *next;
    MM_CALL(mm_arena_alloc(arena, (size_t)n * (size_t)width * sizeof *list, (void **)&list));
    MM_CALL(mm_arena_alloc(arena, (size_t)n * sizeof *idx, (void **)&idx));
    MM_CALL(mm_arena_alloc(arena, (size_t)n * sizeof *next, (void **)&next));
    for (int i = 0; i < n; i++) {
        rank[i] = g->atoms[i].z * 1024 + (g->atoms[i].isotope & 1023);
        for (int k = 0; k < width; k++) list[(size_t)i * width + k] = -1;
    }
    int n_classes = 0, max_rounds = n / 2 + 1;
    for (int iter = 0; iter <= max_rounds; iter++) {
        rank_ctx c = {rank, list, width};
        for (int i = 0; i < n; i++) idx[i] = i;
        sort_atoms(idx, n, &c);
        int cls = 0;
        for (int k = 0; k < n; k++) {
            if (k > 0 && cmp_atoms(&c, idx[k - 1], idx[k]) != 0) cls++;
            next[idx[k]] = cls;
        }
        memcpy(rank, next, (size_t)n * sizeof *rank);
        if ((iter > 0 && cls + 1 == n_classes) || cls + 1 == n) break;
        n_classes = cls + 1;
        /* neighbour lists from the new ranks: neighbours rank + 1, hydrogens 0, padding -1 */
        for (int i = 0; i < n; i++) {
            int *l = list + (size_t)i * width, w = 0;
            for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++) {
                int b = g->adj_bond[p], j = mm_cg_other(g, b, i);
                for (int t = cip_count(g, b, j); t > 0; t--) l[w++] = rank[j] + 1;
            }
            for (int t = 0; t < g->atoms[i].h; t++) l[w++] = 0;
            while (w < width) l[w++] = -1;
            for (int x = 1; x < width; x++) { /* descending */
                int v = l[x], y = x - 1;
                while (y >= 0 && l[y] < v) {
                    l[y + 1] = l[y];
                    y--;
                }
                l[y + 1] = v;
            }
        }
    }
    return MM_OK;
}

/* ---- Murcko scaffold selection ------------------------------------------------------- */

mm_status mm_cg_murcko(const mm_cgraph *g, mm_arena *arena, uint8_t *keep, int *new_h, int *n_keep)
{
    int n = g->n_atoms;
    int *deg, *queue;
    uint8_t *gone;
    MM_CALL(mm_arena_alloc(arena, (size_t)(n + 1) * sizeof *deg, (void **)&deg));
    MM_CALL(mm_arena_alloc(arena, (size_t)(n + 1) * sizeof *queue, (void **)&queue));
    MM_CALL(mm_arena_calloc(arena, (size_t)(n + 1), (void **)&gone));
    /* Pruning leaves until only ring atoms and the chains between rings remain keeps
     * exactly the atoms on paths between rings (RDKit walks shortest paths between every
     * pair of rings; any such path only crosses linker atoms). */
    /* An atom is marked gone when it is queued, not when it is popped, so it enters the
     * queue once: two adjacent leaves (C#N) would otherwise queue each other again, and
     * a salt with more two-atom fragments than ring atoms overran the n + 1 slots. */
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++) {
        deg[i] = heavy_degree(g, i);
        if (!g->atoms[i].in_ring && deg[i] <= 1) {
            gone[i] = 1;
            queue[tail++] = i;
        }
    }
    while (head < tail) {
        int i = queue[head++];
        for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++) {
            int j = mm_cg_other(g, g->adj_bond[p], i);
            if (gone[j]) continue;
            if (--deg[j] <= 1 && !g->atoms[j].in_ring) {
                gone[j] = 1;
                queue[tail++] = j;
            }
        }
    }
    int any_ring = 0;
    for (int i = 0; i < n; i++) {
        keep[i] = (uint8_t)!gone[i];
        any_ring |= g->atoms[i].in_ring;
    }
    if (!any_ring) {
        memset(keep, 0, (size_t)n);
        *n_keep = 0;
        return MM_OK;
    }
    /* atoms doubly bonded to a kept atom stay (exocyclic C=O, C=C, like RDKit) */
    for (int i = 0; i < n; i++) {
        if (!gone[i]) continue;
        for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++) {
            const mm_cg_bond *b = &g->bonds[g->adj_bond[p]];
            int j = mm_cg_other(g, g->adj_bond[p], i);
            if (!gone[j] && !b->aromatic && b->order == 2) {
                keep[i] = 1;
                break;
            }
        }
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!keep[i]) continue;
        k++;
        /* hydrogens replace the removed neighbours, one per bond order; not on elements
         * without a preferred valence (metals), where RDKit adds none */
        int h = g->atoms[i].h;
        /* RDKit only re-derives hydrogens of the ring/linker atoms; an exocyclic atom kept
         * for its double bond that was written in brackets keeps its count, so
         * C=[N+](C)C gives C=[N+], as MurckoScaffoldSmiles writes it */
        int exocyclic = gone[i];
        if (elem(g->atoms[i].z)->valence[0] < 0 || (exocyclic && g->atoms[i].bracket)) {
            new_h[i] = h;
            continue;
        }
        for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++) {
            const mm_cg_bond *b = &g->bonds[g->adj_bond[p]];
            if (!keep[mm_cg_other(g, g->adj_bond[p], i)]) h += b->order >= 1 && b->order <= 3 ? b->order : 1;
        }
        new_h[i] = h;
    }
    *n_keep = k;
    return MM_OK;
}
