/* layout2d.c: fast 2D depiction coordinates for ordinary molecules.
 *
 * Why: Open Babel's own 2D layout (mcdl, generateDiagram) matches every molecule against
 * 148 built-in templates and takes 1-40 ms per molecule (median ~4 ms on ZINC), which alone
 * would put ZINC250k over the 10-minute budget. This layout does what a depiction of a
 * drug-like molecule needs in ~0.05 ms: ring systems from regular polygons (fused rings
 * share an edge, peri-fused rings close on an arc, spiro rings share an atom), chains as
 * zigzags, substituents fanned away from their ring, ring systems attached through their
 * outward direction, double bonds drawn with their cis/trans configuration, then
 * collisions removed by reflecting branches across single bonds. Molecules it cannot draw
 * cleanly (bridged ring systems, large rings fused to others, collisions that remain)
 * return MM_ERR_CHEM and the caller falls back to Open Babel's layout (about 5% of ZINC). Open Babel's OBDepict still draws the picture, wedges
 * included. Coordinates have bond length 1. */
#include "chem_internal.h"

#include <math.h>
#include <string.h>

#define COLLIDE 0.45 /* non-bonded atoms closer than this (bond lengths) collide */

typedef struct {
    const mm_cgraph *g;
    int n;
    double *xy;       /* [n, 2] final coordinates */
    double *loc;      /* [n, 2] ring-system local coordinates */
    int *sys;         /* [n] ring system of the atom, -1 for chain atoms */
    uint8_t *placed;  /* [n] */
    int *rot;         /* [n] sign of the turn of the bond into the atom (zigzag) */
    int *parent;      /* [n] atom it was placed from, -1 for the root */
    int *queue;       /* [n] */
    int *tmp;         /* [n] */
    uint8_t *mark;    /* [2n + rings] */
    uint8_t *cycmark; /* [n] scratch of ring_cycle */
} lay;

static inline double dist2(const double *a, const double *b)
{
    double dx = a[0] - b[0], dy = a[1] - b[1];
    return dx * dx + dy * dy;
}

static int bonded(const mm_cgraph *g, int i, int j)
{
    for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++)
        if (mm_cg_other(g, g->adj_bond[p], i) == j) return 1;
    return 0;
}

/* ---- ring systems ------------------------------------------------------------------- */

/* Cycle order of ring r's atoms into out (returns its size, or -1 if the ring's atoms do
 * not form a simple cycle through bonds). */
static int ring_cycle(const mm_cgraph *g, const int *ring_start, const int *ring_atoms, int r, uint8_t *mark,
                      int *out)
{
    int s = ring_start[r], m = ring_start[r + 1] - s;
    for (int k = 0; k < m; k++) mark[ring_atoms[s + k]] = 1;
    int cur = ring_atoms[s], prev = -1, len = 0;
    for (;;) {
        out[len++] = cur;
        int next = -1;
        for (int p = g->adj_start[cur]; p < g->adj_start[cur + 1]; p++) {
            int j = mm_cg_other(g, g->adj_bond[p], cur);
            if (!mark[j] || j == prev) continue;
            if (len >= 2 && j == out[0] && len < m) continue;
            int seen = 0;
            for (int q = 0; q < len; q++) seen |= out[q] == j;
            if (j == out[0] && len == m) {
                next = j;
                break;
            }
            if (!seen) {
                next = j;
                break;
            }
        }
        if (next < 0 || next == out[0] || len > m) break;
        prev = cur;
        cur = next;
    }
    for (int k = 0; k < m; k++) mark[ring_atoms[s + k]] = 0;
    if (len != m || !bonded(g, out[0], out[m - 1])) return -1;
    return m;
}

/* Places the atoms of cycle cyc (size m) whose placed members form the contiguous run
 * from cyc[a0] to cyc[a1] going forward (the others follow a1 ... back to a0): the new
 * atoms go on a circular arc of unit chords from a1 to a0, bulging away from `away`. */
static int place_arc(lay *L, const int *cyc, int m, int i_from, int i_to, int n_new, const double *away)
{
    double *P = L->loc;
    const double *b = P + 2 * cyc[i_from], *a = P + 2 * cyc[i_to];
    double d = sqrt(dist2(a, b));
    if (d < 1e-6 || d >= n_new + 1) return -1;
    /* solve 2 r sin(Phi/2) = d with r = 1 / (2 sin(Phi / (2 (n_new + 1)))) by bisection */
    double lo = 1e-9, hi = 2 * M_PI - 1e-9;
    for (int it = 0; it < 100; it++) {
        double phi = 0.5 * (lo + hi);
        double r = 1.0 / (2 * sin(phi / (2.0 * (n_new + 1))));
        double gval = 2 * r * sin(phi / 2) - d;
        if (gval > 0) lo = phi;
        else hi = phi;
    }
    double Phi = 0.5 * (lo + hi), step = Phi / (n_new + 1);
    double r = 1.0 / (2 * sin(step / 2));
    double mid[2] = {0.5 * (a[0] + b[0]), 0.5 * (a[1] + b[1])};
    double nrm[2] = {-(a[1] - b[1]) / d, (a[0] - b[0]) / d};
    if ((mid[0] - away[0]) * nrm[0] + (mid[1] - away[1]) * nrm[1] < 0) {
        nrm[0] = -nrm[0];
        nrm[1] = -nrm[1];
    }
    double t = -r * cos(Phi / 2);
    double c[2] = {mid[0] + nrm[0] * t, mid[1] + nrm[1] * t};
    double ang_b = atan2(b[1] - c[1], b[0] - c[0]);
    /* walk from b to a in the direction that ends at a */
    for (int sgn = -1; sgn <= 1; sgn += 2) {
        double ea = ang_b + sgn * Phi;
        double end[2] = {c[0] + r * cos(ea), c[1] + r * sin(ea)};
        if (dist2(end, a) > 1e-6) continue;
        double first[2] = {c[0] + r * cos(ang_b + sgn * step), c[1] + r * sin(ang_b + sgn * step)};
        if ((first[0] - mid[0]) * nrm[0] + (first[1] - mid[1]) * nrm[1] < -1e-9 && n_new > 0) continue;
        for (int k = 1; k <= n_new; k++) {
            int atom = cyc[(i_from + k) % m];
            P[2 * atom] = c[0] + r * cos(ang_b + sgn * k * step);
            P[2 * atom + 1] = c[1] + r * sin(ang_b + sgn * k * step);
        }
        return 0;
    }
    return -1;
}

/* Local coordinates of one ring system (rings rs[0..nr-1]); -1 if it is bridged or
 * folds onto itself. */
static int layout_system(lay *L, const int *ring_start, const int *ring_atoms, const int *rs, int nr)
{
    const mm_cgraph *g = L->g;
    int n = L->n;
    int *cyc = L->queue; /* scratch: one cycle at a time */
    /* a large ring fused to others (macrocycles of natural products) needs a real
     * layout; a lone large ring is fine as a polygon */
    if (nr > 1)
        for (int k = 0; k < nr; k++)
            if (ring_start[rs[k] + 1] - ring_start[rs[k]] > 8) return -1;
    uint8_t *done = L->mark + n; /* ring placed flags live behind the atom marks */
    uint8_t *in_sys = L->mark;
    memset(done, 0, (size_t)nr);
    /* first ring: the one fused to most others, then the largest */
    int best = 0, best_score = -1;
    for (int k = 0; k < nr; k++) {
        int r = rs[k], score = 0;
        for (int q = 0; q < nr; q++) {
            if (q == k) continue;
            int shared = 0;
            for (int x = ring_start[r]; x < ring_start[r + 1]; x++)
                for (int y = ring_start[rs[q]]; y < ring_start[rs[q] + 1]; y++) shared += ring_atoms[x] == ring_atoms[y];
            score += shared >= 2;
        }
        score = score * 64 + (ring_start[r + 1] - ring_start[r]);
        if (score > best_score) {
            best_score = score;
            best = k;
        }
    }
    int m = ring_cycle(g, ring_start, ring_atoms, rs[best], L->cycmark, cyc);
    if (m < 3) return -1;
    double R = 1.0 / (2 * sin(M_PI / m));
    for (int k = 0; k < m; k++) {
        double ang = 2 * M_PI * k / m + M_PI / 2 + (m % 2 ? 0 : M_PI / m);
        L->loc[2 * cyc[k]] = R * cos(ang);
        L->loc[2 * cyc[k] + 1] = R * sin(ang);
        in_sys[cyc[k]] = 1;
    }
    done[best] = 1;
    for (int placed_rings = 1; placed_rings < nr; placed_rings++) {
        /* the unplaced ring with most placed atoms */
        int pick = -1, pick_n = 0;
        for (int k = 0; k < nr; k++) {
            if (done[k]) continue;
            int c = 0;
            for (int x = ring_start[rs[k]]; x < ring_start[rs[k] + 1]; x++) c += in_sys[ring_atoms[x]];
            if (c > pick_n) {
                pick_n = c;
                pick = k;
            }
        }
        if (pick < 0) return -1;
        m = ring_cycle(g, ring_start, ring_atoms, rs[pick], L->cycmark, cyc);
        if (m < 3 || pick_n >= m) return -1;
        /* the placed atoms must be one contiguous run of the cycle */
        int start = -1, runs = 0;
        for (int k = 0; k < m; k++)
            if (in_sys[cyc[k]] && !in_sys[cyc[(k + m - 1) % m]]) {
                start = k;
                runs++;
            }
        if (runs != 1) return -1; /* bridged: placed atoms in several pieces */
        int end = (start + pick_n - 1) % m;
        double away[2] = {0, 0};
        if (pick_n == 1) {
            /* spiro: the new ring sits opposite the placed neighbours of the shared atom */
            int s = cyc[start], cnt = 0;
            for (int p = g->adj_start[s]; p < g->adj_start[s + 1]; p++) {
                int j = mm_cg_other(g, g->adj_bond[p], s);
                if (!in_sys[j]) continue;
                away[0] += L->loc[2 * j];
                away[1] += L->loc[2 * j + 1];
                cnt++;
            }
            if (!cnt) return -1;
            double ux = L->loc[2 * s] - away[0] / cnt, uy = L->loc[2 * s + 1] - away[1] / cnt;
            double ul = sqrt(ux * ux + uy * uy);
            if (ul < 1e-6) return -1;
            ux /= ul;
            uy /= ul;
            double Rr = 1.0 / (2 * sin(M_PI / m));
            double cx = L->loc[2 * s] + ux * Rr, cy = L->loc[2 * s + 1] + uy * Rr;
            double a0 = atan2(L->loc[2 * s + 1] - cy, L->loc[2 * s] - cx);
            for (int k = 1; k < m; k++) {
                int atom = cyc[(start + k) % m];
                L->loc[2 * atom] = cx + Rr * cos(a0 + 2 * M_PI * k / m);
                L->loc[2 * atom + 1] = cy + Rr * sin(a0 + 2 * M_PI * k / m);
            }
        } else {
            /* away from what lies behind the shared run: for a shared edge, the placed
             * rings holding it; for a longer run, its inner atoms */
            int cnt = 0;
            if (pick_n == 2) {
                for (int k = 0; k < nr; k++) {
                    if (!done[k]) continue;
                    int hits = 0;
                    for (int x = ring_start[rs[k]]; x < ring_start[rs[k] + 1]; x++)
                        hits += ring_atoms[x] == cyc[start] || ring_atoms[x] == cyc[end];
                    if (hits < 2) continue;
                    for (int x = ring_start[rs[k]]; x < ring_start[rs[k] + 1]; x++) {
                        away[0] += L->loc[2 * ring_atoms[x]];
                        away[1] += L->loc[2 * ring_atoms[x] + 1];
                        cnt++;
                    }
                }
            } else {
                for (int k = 1; k < pick_n - 1; k++) {
                    away[0] += L->loc[2 * cyc[(start + k) % m]];
                    away[1] += L->loc[2 * cyc[(start + k) % m] + 1];
                    cnt++;
                }
            }
            if (!cnt) return -1;
            away[0] /= cnt;
            away[1] /= cnt;
            if (place_arc(L, cyc, m, end, start, m - pick_n, away) != 0) return -1;
        }
        /* the new atoms must not land on placed ones */
        for (int k = pick_n; k < m; k++) {
            int atom = cyc[(start + k) % m];
            for (int j = 0; j < n; j++)
                if (in_sys[j] && dist2(L->loc + 2 * atom, L->loc + 2 * j) < COLLIDE * COLLIDE) return -1;
        }
        for (int k = 0; k < m; k++) in_sys[cyc[k]] = 1;
        done[pick] = 1;
    }
    return 0;
}

/* ---- tree placement ----------------------------------------------------------------- */

static void rotate(double *v, double ang)
{
    double c = cos(ang), s = sin(ang), x = v[0], y = v[1];
    v[0] = c * x - s * y;
    v[1] = s * x + c * y;
}

/* Atom i is linear (sp): a triple bond, or two double bonds (allene, cumulene). */
static int linear_atom(const mm_cgraph *g, int i)
{
    int dbl = 0;
    for (int p = g->adj_start[i]; p < g->adj_start[i + 1]; p++) {
        const mm_cg_bond *b = &g->bonds[g->adj_bond[p]];
        if (b->aromatic) continue;
        if (b->order == 3) return 1;
        dbl += b->order == 2;
    }
    return dbl >= 2;
}

/* Places ring system S with its atom `at` at position pos, its outward direction at `at`
 * pointing along -dir (back to the atom it hangs from). Chooses the mirror image with
 * fewer clashes with atoms already placed. */
static void place_system(lay *L, int S, int at, const double *pos, const double *dir)
{
    const mm_cgraph *g = L->g;
    int n = L->n;
    double u[2] = {0, 0};
    for (int p = g->adj_start[at]; p < g->adj_start[at + 1]; p++) {
        int j = mm_cg_other(g, g->adj_bond[p], at);
        if (L->sys[j] != S) continue;
        double dx = L->loc[2 * at] - L->loc[2 * j], dy = L->loc[2 * at + 1] - L->loc[2 * j + 1];
        double dl = sqrt(dx * dx + dy * dy);
        if (dl > 1e-9) {
            u[0] += dx / dl;
            u[1] += dy / dl;
        }
    }
    if (u[0] * u[0] + u[1] * u[1] < 1e-12) u[0] = 1;
    double want = atan2(-dir[1], -dir[0]);
    int best_clash = -1;
    double best_ang = 0;
    int best_mirror = 0;
    for (int mirror = 0; mirror < 2; mirror++) {
        double uu[2] = {u[0], mirror ? -u[1] : u[1]};
        double ang = want - atan2(uu[1], uu[0]);
        int clash = 0;
        for (int i = 0; i < n; i++) {
            if (L->sys[i] != S) continue;
            double v[2] = {L->loc[2 * i] - L->loc[2 * at], mirror ? -(L->loc[2 * i + 1] - L->loc[2 * at + 1])
                                                                  : L->loc[2 * i + 1] - L->loc[2 * at + 1]};
            rotate(v, ang);
            double q[2] = {pos[0] + v[0], pos[1] + v[1]};
            for (int j = 0; j < n; j++)
                if (L->placed[j] && dist2(q, L->xy + 2 * j) < 1.0) clash++;
        }
        if (best_clash < 0 || clash < best_clash) {
            best_clash = clash;
            best_ang = ang;
            best_mirror = mirror;
        }
    }
    for (int i = 0; i < n; i++) {
        if (L->sys[i] != S) continue;
        double v[2] = {L->loc[2 * i] - L->loc[2 * at], best_mirror ? -(L->loc[2 * i + 1] - L->loc[2 * at + 1])
                                                                   : L->loc[2 * i + 1] - L->loc[2 * at + 1]};
        rotate(v, best_ang);
        L->xy[2 * i] = pos[0] + v[0];
        L->xy[2 * i + 1] = pos[1] + v[1];
        L->placed[i] = 1;
        L->rot[i] = 1;
    }
}

/* Directions for the unplaced neighbours of the placed atom x (unit vectors in dirs). */
static void child_directions(lay *L, int x, int m, double *dirs)
{
    const mm_cgraph *g = L->g;
    double u[2] = {0, 0};
    int np = 0;
    for (int p = g->adj_start[x]; p < g->adj_start[x + 1]; p++) {
        int j = mm_cg_other(g, g->adj_bond[p], x);
        if (!L->placed[j]) continue;
        double dx = L->xy[2 * x] - L->xy[2 * j], dy = L->xy[2 * x + 1] - L->xy[2 * j + 1];
        double dl = sqrt(dx * dx + dy * dy);
        if (dl > 1e-9) {
            u[0] += dx / dl;
            u[1] += dy / dl;
        }
        np++;
    }
    double ul = sqrt(u[0] * u[0] + u[1] * u[1]);
    if (np == 0 || ul < 1e-9) {
        /* a root, or an atom boxed in symmetrically: spread all the way round */
        static const double two[2] = {-M_PI / 6, 7 * M_PI / 6};
        for (int k = 0; k < m; k++) {
            double ang = m == 2 ? two[k] : (m == 3 ? M_PI / 2 + 2 * M_PI * k / 3 : 2 * M_PI * k / m);
            dirs[2 * k] = cos(ang);
            dirs[2 * k + 1] = sin(ang);
        }
        return;
    }
    u[0] /= ul;
    u[1] /= ul;
    double angs[16];
    if (np >= 2) {
        /* between placed neighbours (ring atoms, branch points): spread the children
         * evenly over the widest free angle */
        double pa[16];
        int k2 = 0;
        for (int p = g->adj_start[x]; p < g->adj_start[x + 1] && k2 < 16; p++) {
            int j = mm_cg_other(g, g->adj_bond[p], x);
            if (L->placed[j]) pa[k2++] = atan2(L->xy[2 * j + 1] - L->xy[2 * x + 1], L->xy[2 * j] - L->xy[2 * x]);
        }
        for (int a = 1; a < k2; a++) { /* sort */
            double v = pa[a];
            int b = a - 1;
            while (b >= 0 && pa[b] > v) {
                pa[b + 1] = pa[b];
                b--;
            }
            pa[b + 1] = v;
        }
        /* a ring atom's children never go into its ring: skip the sector that holds the
         * inward direction (minus the sum of the bonds to its ring neighbours) */
        double in_ang = 0;
        int has_in = 0;
        if (L->sys[x] >= 0) {
            double v[2] = {0, 0};
            for (int p = g->adj_start[x]; p < g->adj_start[x + 1]; p++) {
                int j = mm_cg_other(g, g->adj_bond[p], x);
                if (L->sys[j] != L->sys[x]) continue;
                double dx = L->xy[2 * j] - L->xy[2 * x], dy = L->xy[2 * j + 1] - L->xy[2 * x + 1];
                double dl = sqrt(dx * dx + dy * dy);
                if (dl > 1e-9) {
                    v[0] += dx / dl;
                    v[1] += dy / dl;
                }
            }
            if (v[0] * v[0] + v[1] * v[1] > 1e-6) {
                in_ang = atan2(v[1], v[0]);
                has_in = 1;
            }
        }
        double gap_start = 0, gap = -1;
        for (int a = 0; a < k2; a++) {
            double lo = pa[a], width = (a + 1 < k2 ? pa[a + 1] : pa[0] + 2 * M_PI) - lo;
            if (has_in) {
                double rel = fmod(in_ang - lo + 4 * M_PI, 2 * M_PI);
                if (rel > 1e-6 && rel < width - 1e-6) continue;
            }
            if (width > gap + 1e-9) {
                gap = width;
                gap_start = lo;
            }
        }
        if (gap < 0) { /* every sector holds the ring: take the widest anyway */
            for (int a = 0; a < k2; a++) {
                double lo = pa[a], width = (a + 1 < k2 ? pa[a + 1] : pa[0] + 2 * M_PI) - lo;
                if (width > gap) {
                    gap = width;
                    gap_start = lo;
                }
            }
        }
        for (int k = 0; k < m; k++) {
            double ang = gap_start + gap * (k + 1) / (m + 1);
            dirs[2 * k] = cos(ang);
            dirs[2 * k + 1] = sin(ang);
        }
        return;
    }
    if (L->sys[x] >= 0) {
        double span = m <= 1 ? 0 : fmin(2 * M_PI / 3, 1.2 * (m - 1));
        for (int k = 0; k < m; k++) angs[k] = m == 1 ? 0 : -span / 2 + span * k / (m - 1);
    } else if (linear_atom(g, x)) {
        for (int k = 0; k < m; k++) angs[k] = m == 1 ? 0 : -M_PI / 2 + M_PI * k / (m - 1);
    } else if (m == 1) {
        angs[0] = -L->rot[x] * M_PI / 3; /* zigzag */
    } else if (m == 2) {
        /* the first (larger) branch continues the zigzag */
        angs[0] = -L->rot[x] * M_PI / 3;
        angs[1] = L->rot[x] * M_PI / 3;
    } else if (m == 3) {
        angs[0] = M_PI / 2;
        angs[1] = 0;
        angs[2] = -M_PI / 2;
    } else {
        for (int k = 0; k < m && k < 16; k++) angs[k] = -M_PI + 2 * M_PI * (k + 1) / (m + 1);
    }
    for (int k = 0; k < m && k < 16; k++) {
        double v[2] = {u[0], u[1]};
        rotate(v, angs[k]);
        dirs[2 * k] = v[0];
        dirs[2 * k + 1] = v[1];
    }
    for (int k = 16; k < m; k++) {
        dirs[2 * k] = u[0];
        dirs[2 * k + 1] = u[1];
    }
}

static void set_rot_from_turn(lay *L, int child, int x, const double *dir)
{
    int p = L->parent[x];
    if (p < 0) {
        L->rot[child] = 1;
        return;
    }
    double in[2] = {L->xy[2 * x] - L->xy[2 * p], L->xy[2 * x + 1] - L->xy[2 * p + 1]};
    double cross = in[0] * dir[1] - in[1] * dir[0];
    L->rot[child] = cross >= 0 ? 1 : -1;
}

/* Atoms reachable from j without passing through x (j's branch as seen from x). */
static int branch_size(lay *L, int x, int j)
{
    const mm_cgraph *g = L->g;
    memset(L->mark, 0, (size_t)L->n);
    int head = 0, tail = 0;
    L->tmp[tail++] = j;
    L->mark[j] = 1;
    L->mark[x] = 1;
    while (head < tail) {
        int a = L->tmp[head++];
        for (int p = g->adj_start[a]; p < g->adj_start[a + 1]; p++) {
            int b = mm_cg_other(g, g->adj_bond[p], a);
            if (L->mark[b]) continue;
            L->mark[b] = 1;
            L->tmp[tail++] = b;
        }
    }
    return tail;
}

/* Places one connected fragment starting from `root`. */
static void place_fragment(lay *L, int root)
{
    const mm_cgraph *g = L->g;
    int head = 0, tail = 0;
    if (L->sys[root] >= 0) {
        /* a system's local frame is already good: copy it */
        for (int i = 0; i < L->n; i++)
            if (L->sys[i] == L->sys[root]) {
                L->xy[2 * i] = L->loc[2 * i];
                L->xy[2 * i + 1] = L->loc[2 * i + 1];
                L->placed[i] = 1;
                L->parent[i] = -1;
                L->rot[i] = 1;
                L->queue[tail++] = i;
            }
    } else {
        L->xy[2 * root] = L->xy[2 * root + 1] = 0;
        L->placed[root] = 1;
        L->parent[root] = -1;
        L->rot[root] = 1;
        L->queue[tail++] = root;
    }
    while (head < tail) {
        int x = L->queue[head++];
        int kids[16], m = 0;
        for (int p = g->adj_start[x]; p < g->adj_start[x + 1] && m < 16; p++) {
            int j = mm_cg_other(g, g->adj_bond[p], x);
            if (!L->placed[j]) kids[m++] = j;
        }
        if (!m) continue;
        if (m == 2 && branch_size(L, x, kids[1]) > branch_size(L, x, kids[0])) {
            int t = kids[0];
            kids[0] = kids[1];
            kids[1] = t;
        }
        double dirs[32];
        child_directions(L, x, m, dirs);
        for (int k = 0; k < m; k++) {
            int j = kids[k];
            if (L->placed[j]) continue; /* placed with its ring system meanwhile */
            double pos[2] = {L->xy[2 * x] + dirs[2 * k], L->xy[2 * x + 1] + dirs[2 * k + 1]};
            if (L->sys[j] >= 0) {
                place_system(L, L->sys[j], j, pos, dirs + 2 * k);
                for (int i = 0; i < L->n; i++)
                    if (L->sys[i] == L->sys[j]) {
                        L->parent[i] = i == j ? x : -1;
                        L->queue[tail++] = i;
                    }
            } else {
                L->xy[2 * j] = pos[0];
                L->xy[2 * j + 1] = pos[1];
                L->placed[j] = 1;
                L->parent[j] = x;
                set_rot_from_turn(L, j, x, dirs + 2 * k);
                L->queue[tail++] = j;
            }
        }
    }
}

/* Atoms on j's side of the bond i-j (BFS from j not crossing the bond); marks them in
 * L->mark and returns how many, or -1 if the bond is in a ring (i reachable). */
static int side_of(lay *L, int i, int j, const uint8_t *in_frag)
{
    const mm_cgraph *g = L->g;
    memset(L->mark, 0, (size_t)L->n);
    int head = 0, tail = 0;
    L->tmp[tail++] = j;
    L->mark[j] = 1;
    while (head < tail) {
        int a = L->tmp[head++];
        for (int p = g->adj_start[a]; p < g->adj_start[a + 1]; p++) {
            int b = mm_cg_other(g, g->adj_bond[p], a);
            if (a == j && b == i) continue;
            if (b == i) return -1;
            if (L->mark[b] || !in_frag[b]) continue;
            L->mark[b] = 1;
            L->tmp[tail++] = b;
        }
    }
    return tail;
}

/* Reflects the marked atoms across the line through atoms i and j. */
static void reflect_marked(lay *L, int i, int j)
{
    double *a = L->xy + 2 * i, *b = L->xy + 2 * j;
    double dx = b[0] - a[0], dy = b[1] - a[1], l2 = dx * dx + dy * dy;
    if (l2 < 1e-12) return;
    for (int k = 0; k < L->n; k++) {
        if (!L->mark[k]) continue;
        double px = L->xy[2 * k] - a[0], py = L->xy[2 * k + 1] - a[1];
        double t = (px * dx + py * dy) / l2;
        double fx = a[0] + t * dx, fy = a[1] + t * dy;
        L->xy[2 * k] = 2 * fx - L->xy[2 * k];
        L->xy[2 * k + 1] = 2 * fy - L->xy[2 * k + 1];
    }
}

static double clash_score(lay *L, const uint8_t *in_frag, double *min_d, int *pair)
{
    const mm_cgraph *g = L->g;
    double score = 0, md = 1e9;
    for (int i = 0; i < L->n; i++) {
        if (!in_frag[i]) continue;
        for (int j = i + 1; j < L->n; j++) {
            if (!in_frag[j]) continue;
            double d2 = dist2(L->xy + 2 * i, L->xy + 2 * j);
            if (d2 >= 0.64) continue;
            if (bonded(g, i, j)) continue;
            double d = sqrt(d2);
            if (d < md) {
                md = d;
                if (pair) {
                    pair[0] = i;
                    pair[1] = j;
                }
            }
            score += (0.8 - d) * (0.8 - d);
        }
    }
    *min_d = md;
    return score;
}

/* ---- public entry ------------------------------------------------------------------- */

mm_status mm_layout2d(const mm_cgraph *g, const int *ring_start, const int *ring_atoms, int n_rings,
                      const int *cis_trans, int n_cis_trans, mm_arena *arena, double *xy)
{
    int n = g->n_atoms;
    if (n == 0) return MM_OK;
    lay L = {.g = g, .n = n, .xy = xy};
    MM_CALL(mm_arena_alloc(arena, (size_t)n * 2 * sizeof(double), (void **)&L.loc));
    MM_CALL(mm_arena_alloc(arena, (size_t)n * sizeof(int), (void **)&L.sys));
    MM_CALL(mm_arena_calloc(arena, (size_t)n, (void **)&L.placed));
    MM_CALL(mm_arena_alloc(arena, (size_t)n * sizeof(int), (void **)&L.rot));
    MM_CALL(mm_arena_alloc(arena, (size_t)n * sizeof(int), (void **)&L.parent));
    MM_CALL(mm_arena_alloc(arena, (size_t)(n + 1) * sizeof(int), (void **)&L.queue));
    MM_CALL(mm_arena_calloc(arena, (size_t)(n + 1) * sizeof(int), (void **)&L.tmp));
    MM_CALL(mm_arena_calloc(arena, (size_t)(2 * n + n_rings + 1), (void **)&L.mark));
    MM_CALL(mm_arena_calloc(arena, (size_t)n, (void **)&L.cycmark));
    int *rsys, *rs;
    uint8_t *in_frag;
    MM_CALL(mm_arena_alloc(arena, (size_t)(n_rings + 1) * sizeof(int), (void **)&rsys));
    MM_CALL(mm_arena_alloc(arena, (size_t)(n_rings + 1) * sizeof(int), (void **)&rs));
    MM_CALL(mm_arena_calloc(arena, (size_t)n, (void **)&in_frag));

    /* ring systems: rings sharing an atom, merged (union-find over rings) */
    for (int r = 0; r < n_rings; r++) rsys[r] = r;
    for (int i = 0; i < n; i++) L.sys[i] = -1;
    for (int r = 0; r < n_rings; r++)
        for (int x = ring_start[r]; x < ring_start[r + 1]; x++) {
            int a = ring_atoms[x];
            if (a < 0 || a >= n) return MM_ERR(MM_ERR_INTERNAL, "ring atom %d of %d", a, n);
            if (L.sys[a] < 0) {
                L.sys[a] = r;
                continue;
            }
            int p = L.sys[a], q = r;
            while (rsys[p] != p) p = rsys[p];
            while (rsys[q] != q) q = rsys[q];
            if (p != q) rsys[q > p ? q : p] = q > p ? p : q;
        }
    for (int r = 0; r < n_rings; r++) {
        int p = r;
        while (rsys[p] != p) p = rsys[p];
        rsys[r] = p;
    }
    for (int i = 0; i < n; i++)
        if (L.sys[i] >= 0) L.sys[i] = rsys[L.sys[i]];
    for (int S = 0; S < n_rings; S++) {
        if (rsys[S] != S) continue;
        int nr = 0;
        for (int r = 0; r < n_rings; r++)
            if (rsys[r] == S) rs[nr++] = r;
        memset(L.mark, 0, (size_t)(2 * n + n_rings + 1));
        if (layout_system(&L, ring_start, ring_atoms, rs, nr) != 0)
            return MM_ERR(MM_ERR_CHEM, "ring system of %d rings is bridged or folds onto itself", nr);
    }

    /* fragments, one at a time */
    double x_off = 0;
    for (int start = 0; start < n; start++) {
        if (L.placed[start]) continue;
        memset(in_frag, 0, (size_t)n);
        int head = 0, tail = 0;
        L.tmp[tail++] = start;
        in_frag[start] = 1;
        while (head < tail) {
            int a = L.tmp[head++];
            for (int p = g->adj_start[a]; p < g->adj_start[a + 1]; p++) {
                int b = mm_cg_other(g, g->adj_bond[p], a);
                if (!in_frag[b]) {
                    in_frag[b] = 1;
                    L.tmp[tail++] = b;
                }
            }
        }
        /* start from the most central atom (smallest eccentricity; ring atoms first on a
         * tie): units around it are then laid out symmetrically, e.g. both aryls of a
         * gem-diaryl ring carbon fan out from the ring */
        int root = -1, best_ecc = 1 << 30;
        for (int i = 0; i < n; i++) {
            if (!in_frag[i]) continue;
            int *d = L.parent; /* scratch distances */
            for (int k = 0; k < n; k++) d[k] = -1;
            int h2 = 0, t2 = 0, ecc = 0;
            L.queue[t2++] = i;
            d[i] = 0;
            while (h2 < t2) {
                int a = L.queue[h2++];
                if (d[a] > ecc) ecc = d[a];
                for (int p = g->adj_start[a]; p < g->adj_start[a + 1]; p++) {
                    int b = mm_cg_other(g, g->adj_bond[p], a);
                    if (d[b] < 0) {
                        d[b] = d[a] + 1;
                        L.queue[t2++] = b;
                    }
                }
            }
            int key = 2 * ecc + (L.sys[i] < 0);
            if (key < best_ecc) {
                best_ecc = key;
                root = i;
            }
        }
        place_fragment(&L, root);

        /* double bonds: reflect the far side when the drawing contradicts cis/trans */
        for (int k = 0; k < n_cis_trans; k++) {
            const int *ct = cis_trans + 5 * k; /* u, a, b, v, want_cis */
            if (!in_frag[ct[1]]) continue;
            double *A = xy + 2 * ct[1], *B = xy + 2 * ct[2];
            double ex = B[0] - A[0], ey = B[1] - A[1];
            double su = ex * (xy[2 * ct[0] + 1] - A[1]) - ey * (xy[2 * ct[0]] - A[0]);
            double sv = ex * (xy[2 * ct[3] + 1] - A[1]) - ey * (xy[2 * ct[3]] - A[0]);
            int is_cis = su * sv > 0;
            if (is_cis == (ct[4] != 0) || fabs(su) < 1e-6 || fabs(sv) < 1e-6) continue;
            /* the side of b (not containing a) across the double bond's line */
            if (side_of(&L, ct[1], ct[2], in_frag) < 0) continue; /* ring double bond */
            L.mark[ct[2]] = 0;
            reflect_marked(&L, ct[1], ct[2]);
        }

        /* collisions: reflect branches across single bonds, each round the one reflection
         * that helps most, until nothing helps */
        int pair[2] = {-1, -1};
        double min_d = 0, score = clash_score(&L, in_frag, &min_d, pair);
        for (int round = 0; round < 16 && score > 0; round++) {
            int best_b = -1, best_dir = 0;
            double best_score = score;
            for (int b = 0; b < g->n_bonds; b++) {
                const mm_cg_bond *bd = &g->bonds[b];
                if (!in_frag[bd->a] || bd->aromatic || bd->order != 1) continue;
                for (int dirn = 0; dirn < 2; dirn++) {
                    int i = dirn ? bd->b : bd->a, j = dirn ? bd->a : bd->b;
                    if (side_of(&L, i, j, in_frag) < 2) continue;
                    L.mark[j] = 0;
                    reflect_marked(&L, i, j);
                    double md2;
                    double s2 = clash_score(&L, in_frag, &md2, NULL);
                    reflect_marked(&L, i, j); /* undo */
                    if (s2 < best_score - 1e-9) {
                        best_score = s2;
                        best_b = b;
                        best_dir = dirn;
                    }
                }
            }
            if (best_b < 0) break;
            const mm_cg_bond *bd = &g->bonds[best_b];
            int i = best_dir ? bd->b : bd->a, j = best_dir ? bd->a : bd->b;
            side_of(&L, i, j, in_frag);
            L.mark[j] = 0;
            reflect_marked(&L, i, j);
            score = clash_score(&L, in_frag, &min_d, pair);
        }
        if (score > 0 && min_d < COLLIDE)
            return MM_ERR(MM_ERR_CHEM, "atoms %d and %d %.2f bond lengths apart after resolving collisions",
                          pair[0], pair[1], min_d);

        /* fragments side by side, left to right */
        double xmin = 1e9, xmax = -1e9, ymin = 1e9, ymax = -1e9;
        for (int i = 0; i < n; i++) {
            if (!in_frag[i]) continue;
            xmin = fmin(xmin, xy[2 * i]);
            xmax = fmax(xmax, xy[2 * i]);
            ymin = fmin(ymin, xy[2 * i + 1]);
            ymax = fmax(ymax, xy[2 * i + 1]);
        }
        double cy = 0.5 * (ymin + ymax);
        for (int i = 0; i < n; i++) {
            if (!in_frag[i]) continue;
            xy[2 * i] += x_off - xmin;
            xy[2 * i + 1] -= cy;
        }
        x_off += (xmax - xmin) + 1.5;
    }
    return MM_OK;
}

/* ---- stress-majorisation layout (for what the ring-polygon layout declines) ------------- */

mm_status mm_layout2d_stress(const mm_cgraph *g, mm_arena *arena, double *xy)
{
    int n = g->n_atoms;
    if (n == 0) return MM_OK;
    int *d, *frag, *queue;
    MM_CALL(mm_arena_alloc(arena, (size_t)n * (size_t)n * sizeof(int), (void **)&d));
    MM_CALL(mm_arena_alloc(arena, (size_t)n * sizeof(int), (void **)&frag));
    MM_CALL(mm_arena_alloc(arena, (size_t)n * sizeof(int), (void **)&queue));
    /* graph distances (BFS from every atom); -1 between fragments */
    for (int s = 0; s < n; s++) {
        int *ds = d + (size_t)s * n;
        for (int k = 0; k < n; k++) ds[k] = -1;
        int head = 0, tail = 0;
        queue[tail++] = s;
        ds[s] = 0;
        while (head < tail) {
            int a = queue[head++];
            for (int p = g->adj_start[a]; p < g->adj_start[a + 1]; p++) {
                int b = mm_cg_other(g, g->adj_bond[p], a);
                if (ds[b] < 0) {
                    ds[b] = ds[a] + 1;
                    queue[tail++] = b;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) frag[i] = -1;
    double x_off = 0;
    for (int root = 0; root < n; root++) {
        if (frag[root] >= 0) continue;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (d[(size_t)root * n + i] >= 0) {
                frag[i] = root;
                queue[m++] = i;
            }
        /* start: distances to two far-apart pivots (deterministic, not collinear) */
        int p1 = queue[0], p2 = queue[0];
        for (int k = 0; k < m; k++)
            if (d[(size_t)queue[0] * n + queue[k]] > d[(size_t)queue[0] * n + p1]) p1 = queue[k];
        for (int k = 0; k < m; k++)
            if (d[(size_t)p1 * n + queue[k]] > d[(size_t)p1 * n + p2]) p2 = queue[k];
        for (int k = 0; k < m; k++) {
            int i = queue[k];
            double a = d[(size_t)p1 * n + i], b = d[(size_t)p2 * n + i];
            xy[2 * i] = 0.5 * (a - b) * 1.0;
            xy[2 * i + 1] = 0.5 * (a + b) - 0.5 * d[(size_t)p1 * n + p2] + 0.3 * sin(1.7 * k);
        }
        /* Gauss-Seidel stress majorisation, weights 1 / d^2 */
        for (int it = 0; it < 200 && m > 1; it++) {
            for (int k = 0; k < m; k++) {
                int i = queue[k];
                double sx = 0, sy = 0, sw = 0;
                for (int q = 0; q < m; q++) {
                    int j = queue[q];
                    if (j == i) continue;
                    double dij = d[(size_t)i * n + j], w = 1.0 / (dij * dij);
                    double dx = xy[2 * i] - xy[2 * j], dy = xy[2 * i + 1] - xy[2 * j + 1];
                    double len = sqrt(dx * dx + dy * dy);
                    if (len < 1e-9) {
                        dx = 1e-3 * (1 + (i % 7));
                        dy = 1e-3 * (1 + (j % 5));
                        len = sqrt(dx * dx + dy * dy);
                    }
                    sx += w * (xy[2 * j] + dij * dx / len);
                    sy += w * (xy[2 * j + 1] + dij * dy / len);
                    sw += w;
                }
                xy[2 * i] = sx / sw;
                xy[2 * i + 1] = sy / sw;
            }
        }
        double xmin = 1e9, xmax = -1e9, ymin = 1e9, ymax = -1e9;
        for (int k = 0; k < m; k++) {
            int i = queue[k];
            xmin = fmin(xmin, xy[2 * i]);
            xmax = fmax(xmax, xy[2 * i]);
            ymin = fmin(ymin, xy[2 * i + 1]);
            ymax = fmax(ymax, xy[2 * i + 1]);
        }
        for (int k = 0; k < m; k++) {
            int i = queue[k];
            xy[2 * i] += x_off - xmin;
            xy[2 * i + 1] -= 0.5 * (ymin + ymax);
        }
        x_off += (xmax - xmin) + 1.5;
    }
    return MM_OK;
}
