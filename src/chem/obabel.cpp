/* obabel.cpp: the one C++ file. It wraps Open Babel (and cairo for the depiction)
 * behind include/mmsa/chem.h; every rule that is plain graph work lives in the C files
 * next to it (chem_internal.h). C++ exceptions never cross the C interface: each entry
 * point catches them and returns an mm_status. */
/* The core headers have no C++ guards of their own. */
extern "C" {
#include "mmsa/alloc.h"
#include "mmsa/error.h"
}
#include "mmsa/chem.h"

#include <cairo.h>
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <iostream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

/* Open Babel's headers are not clean under -Wextra; silence them, not our code. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wdeprecated-copy"
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <openbabel/atom.h>
#include <openbabel/babelconfig.h>
#include <openbabel/bond.h>
#include <openbabel/builder.h>
#include <openbabel/depict/depict.h>
#include <openbabel/depict/painter.h>
#include <openbabel/fingerprint.h>
#include <openbabel/forcefield.h>
#include <openbabel/generic.h>
#include <openbabel/mcdlutil.h>
#include <openbabel/mol.h>
#include <openbabel/obconversion.h>
#include <openbabel/oberror.h>
#include <openbabel/ring.h>
#include <openbabel/obiter.h>
#include <openbabel/stereo/cistrans.h>
#include <openbabel/stereo/squareplanar.h>
#include <openbabel/stereo/stereo.h>
#include <openbabel/stereo/tetrahedral.h>
#pragma GCC diagnostic pop

#include "chem_internal.h"

using namespace OpenBabel;

extern "C" {
const int mm_chem_atom_vocab[MM_CHEM_ATOM_FEATS] = {119, 5, 12, 12, 10, 6, 6, 2, 2};
const int mm_chem_bond_vocab[MM_CHEM_BOND_FEATS] = {5, 6, 2};
}

/* LeakSanitizer (make asan): leaks that are not ours. Open Babel's builder drops the
 * stereo objects CisTransFrom3D / TetrahedralFrom3D return (OBBuilder::CorrectStereo*,
 * ~100 bytes per stereo molecule), and fontconfig keeps its cache for the process. */
extern "C" __attribute__((used)) const char *__lsan_default_suppressions(void)
{
    return "leak:OpenBabel::CisTransFrom3D\n"
           "leak:OpenBabel::TetrahedralFrom3D\n"
           "leak:OpenBabel::OBTetraPlanarStereo::ToConfig\n"
           "leak:libopenbabel.so\n"
           "leak:libfontconfig.so\n";
}

/* ---- process-wide Open Babel setup ----------------------------------------------------- */

static bool g_init_done;
static char g_version[128];
/* Open Babel's messages land here when they are not wanted on stderr. */
static std::ostringstream *g_sink;

static bool file_exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

/* A directory of the form <base>/<version> holding `probe`, preferring the version Open
 * Babel was built as. */
static std::string find_versioned_dir(const std::vector<std::string> &bases, const char *probe)
{
    std::string fallback;
    for (const std::string &base : bases) {
        std::string exact = base + "/" + BABEL_VERSION;
        if (file_exists(exact + "/" + probe)) return exact;
        DIR *d = opendir(base.c_str());
        if (!d) continue;
        while (struct dirent *e = readdir(d)) {
            if (e->d_name[0] == '.') continue;
            std::string cand = base + "/" + e->d_name;
            if (fallback.empty() && file_exists(cand + "/" + probe)) fallback = cand;
        }
        closedir(d);
    }
    return fallback;
}

static std::vector<std::string> lib_bases()
{
    std::vector<std::string> bases;
    DIR *d = opendir("/usr/lib");
    if (d) { /* multiarch directories: /usr/lib/x86_64-linux-gnu/openbabel, ... */
        while (struct dirent *e = readdir(d)) {
            if (e->d_name[0] == '.') continue;
            std::string cand = std::string("/usr/lib/") + e->d_name + "/openbabel";
            if (file_exists(cand)) bases.push_back(cand);
        }
        closedir(d);
    }
    for (const char *b : {"/usr/lib/openbabel", "/usr/lib64/openbabel", "/usr/local/lib/openbabel",
                          "/usr/local/lib64/openbabel"})
        bases.push_back(b);
    return bases;
}

static mm_status init_impl()
{
    if (g_init_done) return MM_OK;
    if (!getenv("BABEL_LIBDIR")) {
        std::string lib = find_versioned_dir(lib_bases(), "smilesformat.so");
        if (!lib.empty()) setenv("BABEL_LIBDIR", lib.c_str(), 0);
    }
    if (!getenv("BABEL_DATADIR")) {
        std::string data = find_versioned_dir({BABEL_DATADIR, "/usr/share/openbabel", "/usr/local/share/openbabel"},
                                              "mmff94.ff");
        if (!data.empty()) setenv("BABEL_DATADIR", data.c_str(), 0);
    }
    g_sink = new std::ostringstream();
    obErrorLog.SetOutputStream(g_sink);
    obErrorLog.SetOutputLevel(obError);
    obErrorLog.SetMaxLogEntries(64);

    const char *libdir = getenv("BABEL_LIBDIR"), *datadir = getenv("BABEL_DATADIR");
    struct {
        const char *what;
        bool ok;
    } checks[] = {
        {"the SMILES format (smi)", OBConversion::FindFormat("smi") != nullptr},
        {"the canonical SMILES format (can)", OBConversion::FindFormat("can") != nullptr},
        {"the SD file format (sdf)", OBConversion::FindFormat("sdf") != nullptr},
        {"the ECFP4 fingerprint", OBFingerprint::FindFingerprint("ECFP4") != nullptr},
        {"the MMFF94 force field", OBForceField::FindForceField("MMFF94") != nullptr},
        {"the UFF force field", OBForceField::FindForceField("UFF") != nullptr},
    };
    for (auto &c : checks)
        if (!c.ok) {
            mm_status e = MM_ERR(MM_ERR_CONFIG, "Open Babel %s: cannot load %s (BABEL_LIBDIR=%s, BABEL_DATADIR=%s)",
                                 BABEL_VERSION, c.what, libdir ? libdir : "unset", datadir ? datadir : "unset");
            mm_error_hint("install the 'openbabel' and 'libopenbabel7' packages (make deps), or set BABEL_LIBDIR "
                          "to the directory holding smilesformat.so and BABEL_DATADIR to the one holding mmff94.ff");
            return e;
        }
    /* The builder draws from a function-local static generator that seeds itself from
     * the clock when first constructed; construct it now, so that every later build
     * (after our srand) is reproducible, the first one included. */
    {
        vector3 warm;
        warm.randomUnitVector();
    }
    snprintf(g_version, sizeof g_version, "mmsa-chem %d (Open Babel %s)", MM_CHEM_FEATURIZER_VERSION, BABEL_VERSION);
    g_init_done = true;
    return MM_OK;
}

/* Runs f, turning C++ exceptions into statuses. */
template <typename F> static mm_status guarded(const char *where, F f)
{
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return MM_ERR(MM_ERR_NOMEM, "%s: out of memory inside Open Babel", where);
    } catch (const std::exception &e) {
        return MM_ERR(MM_ERR_INTERNAL, "%s: C++ exception: %s", where, e.what());
    } catch (...) {
        return MM_ERR(MM_ERR_INTERNAL, "%s: unknown C++ exception", where);
    }
}

extern "C" mm_status mm_chem_init(void)
{
    return guarded("mm_chem_init", [] { return init_impl(); });
}

extern "C" const char *mm_chem_version(void) { return g_init_done ? g_version : "mmsa-chem (not initialised)"; }

extern "C" const char *mm_chem_reject_name(mm_chem_reject r)
{
    switch (r) {
    case MM_CHEM_OK: return "ok";
    case MM_CHEM_EMPTY: return "empty";
    case MM_CHEM_PARSE: return "parse";
    case MM_CHEM_NO_HEAVY_ATOM: return "no heavy atom";
    case MM_CHEM_TOO_MANY_ATOMS: return "too many atoms";
    case MM_CHEM_INCONSISTENT: return "inconsistent";
    }
    return "unknown";
}

extern "C" void mm_chem_opts_default(mm_chem_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_atoms = 200;
    o->conformer = 1;
    o->ff_steps = MM_CHEM_FF_STEPS_DEFAULT;
    o->ff_threads = 1;
    o->keep_input_3d = 1;
    o->image = 1;
    o->image_size = 64;
    o->fingerprint = 1;
    o->scaffold = 1;
    o->ob_log = 0;
}

/* ---- the depiction painter: OBDepict -> cairo image surface in memory ---------------- */

class RasterPainter : public OBPainter {
  public:
    explicit RasterPainter(int size) : m_size(size)
    {
        m_surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, size, size);
        m_cr = cairo_create(m_surface);
        cairo_select_font_face(m_cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    }
    ~RasterPainter() override
    {
        cairo_destroy(m_cr);
        cairo_surface_destroy(m_surface);
    }
    bool ok() const
    {
        return cairo_surface_status(m_surface) == CAIRO_STATUS_SUCCESS && cairo_status(m_cr) == CAIRO_STATUS_SUCCESS;
    }
    void clear()
    {
        cairo_identity_matrix(m_cr);
        cairo_set_source_rgb(m_cr, 1, 1, 1);
        cairo_paint(m_cr);
    }
    /* OBDepict passes the drawing's extent in its own units (bond length 40): fit it into
     * the square with a small margin, keep the aspect ratio, and never enlarge a tiny
     * molecule beyond a bond of 40% of the image. */
    void NewCanvas(double width, double height) override
    {
        clear();
        double s = 0.92 * m_size / std::max(width, height);
        s = std::min(s, 0.40 * m_size / 40.0);
        m_scale = s;
        cairo_translate(m_cr, 0.5 * (m_size - width * s), 0.5 * (m_size - height * s));
        cairo_scale(m_cr, s, s);
        cairo_set_line_cap(m_cr, CAIRO_LINE_CAP_ROUND);
        cairo_set_line_join(m_cr, CAIRO_LINE_JOIN_ROUND);
        /* the line width depends on the scale just set: without this the drawing used
         * the previous molecule's scale, so its bytes depended on what came before */
        SetPenWidth(m_pen_width);
        /* the colours too, so nothing one molecule sets reaches the next (OBDepict sets
         * the pen before each stroke, but never the fill of its wedges) */
        m_pen = m_fill = OBColor();
    }
    bool IsGood() const override { return ok(); }
    void SetFontFamily(const std::string &) override {}
    void SetFontSize(int pointSize) override { cairo_set_font_size(m_cr, pointSize); }
    void SetFillColor(const OBColor &c) override { m_fill = c; }
    void SetFillRadial(const OBColor &start, const OBColor &) override { m_fill = start; }
    void SetPenColor(const OBColor &c) override { m_pen = c; }
    /* Lines at least 1 pixel wide at 64 x 64 (scaled with the image), or thin bonds
     * vanish into grey. */
    void SetPenWidth(double w) override
    {
        m_pen_width = w;
        double min_px = m_size / 64.0;
        cairo_set_line_width(m_cr, std::max(w, min_px / m_scale));
    }
    double GetPenWidth() override { return m_pen_width; }
    void DrawLine(double x1, double y1, double x2, double y2, const std::vector<double> &dashes) override
    {
        source(m_pen);
        if (!dashes.empty()) cairo_set_dash(m_cr, dashes.data(), (int)dashes.size(), 0);
        cairo_move_to(m_cr, x1, y1);
        cairo_line_to(m_cr, x2, y2);
        cairo_stroke(m_cr);
        if (!dashes.empty()) cairo_set_dash(m_cr, nullptr, 0, 0);
    }
    void DrawPolygon(const std::vector<std::pair<double, double>> &pts) override
    {
        if (pts.empty()) return;
        source(m_fill);
        cairo_move_to(m_cr, pts[0].first, pts[0].second);
        for (size_t i = 1; i < pts.size(); i++) cairo_line_to(m_cr, pts[i].first, pts[i].second);
        cairo_close_path(m_cr);
        cairo_fill(m_cr);
    }
    void DrawCircle(double x, double y, double r) override
    {
        source(m_pen);
        cairo_new_sub_path(m_cr);
        cairo_arc(m_cr, x, y, r, 0, 2 * M_PI);
        cairo_stroke(m_cr);
    }
    void DrawBall(double x, double y, double r, double opacity) override
    {
        OBColor c = m_fill;
        c.alpha = opacity;
        source(c);
        cairo_new_sub_path(m_cr);
        cairo_arc(m_cr, x, y, r, 0, 2 * M_PI);
        cairo_fill(m_cr);
    }
    void DrawText(double x, double y, const std::string &text) override
    {
        source(m_pen);
        cairo_move_to(m_cr, x, y);
        cairo_show_text(m_cr, text.c_str());
    }
    OBFontMetrics GetFontMetrics(const std::string &text) override
    {
        cairo_font_extents_t fe;
        cairo_text_extents_t te;
        cairo_font_extents(m_cr, &fe);
        cairo_text_extents(m_cr, text.c_str(), &te);
        OBFontMetrics m;
        m.fontSize = (int)lround(fe.height);
        m.ascent = fe.ascent;
        m.descent = fe.descent;
        m.width = te.x_advance;
        m.height = fe.height;
        return m;
    }
    /* The surface as channel-first RGB: out [3, size, size]. */
    void copy_chw(uint8_t *out)
    {
        cairo_surface_flush(m_surface);
        const unsigned char *data = cairo_image_surface_get_data(m_surface);
        int stride = cairo_image_surface_get_stride(m_surface);
        size_t plane = (size_t)m_size * m_size;
        for (int y = 0; y < m_size; y++) {
            const uint32_t *row = (const uint32_t *)(data + (size_t)y * stride);
            for (int x = 0; x < m_size; x++) {
                uint32_t px = row[x]; /* 0x00RRGGBB in native byte order */
                size_t o = (size_t)y * m_size + x;
                out[o] = (uint8_t)(px >> 16);
                out[plane + o] = (uint8_t)(px >> 8);
                out[2 * plane + o] = (uint8_t)px;
            }
        }
    }
    int size() const { return m_size; }

  private:
    void source(const OBColor &c) { cairo_set_source_rgba(m_cr, c.red, c.green, c.blue, c.alpha); }
    cairo_surface_t *m_surface;
    cairo_t *m_cr;
    int m_size;
    double m_scale = 1;
    double m_pen_width = 1;
    OBColor m_pen, m_fill;
};

/* ---- the featuriser ------------------------------------------------------------------- */

struct mm_chem {
    mm_chem_opts o;
    OBConversion in_smi, in_sdf, out_can, out_scaffold;
    OBFingerprint *ecfp = nullptr;
    OBForceField *mmff = nullptr, *uff = nullptr;
    RasterPainter *painter = nullptr;
    mm_arena arena;
    bool arena_ok = false;
    double seconds[5] = {0, 0, 0, 0, 0};
    long layout_fallbacks = 0; /* molecules drawn with Open Babel's mcdl layout */
};

static double now_s()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void apply_log_level(int ob_log)
{
    if (ob_log <= 0) {
        obErrorLog.SetOutputStream(g_sink);
        obErrorLog.SetOutputLevel(obError);
    } else {
        obErrorLog.SetOutputStream(&std::cerr);
        obErrorLog.SetOutputLevel(ob_log == 1 ? obError : obWarning);
    }
}

/* Open Babel's force fields are compiled with OpenMP and, left alone, start one thread
 * per core per rank; with P ranks on P cores those threads spin-wait on each other and a
 * conformer took ~10x longer (measured: 89% of the time in libgomp). The thread count is
 * set through libgomp, which the force-field plugin has already loaded. */
static void set_ff_threads(int n)
{
    if (n <= 0) return;
    void *h = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (!h) return; /* Open Babel built without OpenMP: nothing to limit */
    void (*set)(int) = (void (*)(int))dlsym(h, "omp_set_num_threads");
    if (set) set(n);
    dlclose(h);
}

static mm_status create_impl(const mm_chem_opts *o, mm_chem **out)
{
    MM_CALL(init_impl());
    mm_chem_opts opts;
    if (o) opts = *o;
    else mm_chem_opts_default(&opts);
    MM_CHECK_ARG(opts.max_atoms >= 1, "max_atoms must be >= 1, got %d", opts.max_atoms);
    MM_CHECK_ARG(opts.ff_steps >= 0, "ff_steps must be >= 0, got %d", opts.ff_steps);
    MM_CHECK_ARG(!opts.image || (opts.image_size >= 16 && opts.image_size <= 1024),
                 "image_size must be in 16..1024, got %d", opts.image_size);
    void *mem = mm_malloc(sizeof(mm_chem));
    if (!mem) return MM_ERR(MM_ERR_NOMEM, "out of memory creating the featuriser");
    mm_chem *c = new (mem) mm_chem();
    c->o = opts;
    auto fail = [&](mm_status st) {
        mm_chem_destroy(&c);
        return st;
    };
    if (!c->in_smi.SetInFormat("smi") || !c->in_sdf.SetInFormat("sdf") || !c->out_can.SetOutFormat("can") ||
        !c->out_scaffold.SetOutFormat("can"))
        return fail(MM_ERR(MM_ERR_CONFIG, "Open Babel formats smi/sdf/can not available"));
    /* canonical SMILES without the title; "O" records the output atom order */
    c->out_can.AddOption("n", OBConversion::OUTOPTIONS);
    c->out_can.AddOption("O", OBConversion::OUTOPTIONS);
    /* the scaffold without stereo and isotopes, as RDKit's MurckoScaffoldSmiles */
    c->out_scaffold.AddOption("n", OBConversion::OUTOPTIONS);
    c->out_scaffold.AddOption("i", OBConversion::OUTOPTIONS);
    c->ecfp = OBFingerprint::FindFingerprint("ECFP4");
    c->mmff = OBForceField::FindForceField("MMFF94");
    c->uff = OBForceField::FindForceField("UFF");
    if (!c->ecfp || !c->mmff || !c->uff) return fail(MM_ERR(MM_ERR_CONFIG, "Open Babel plugins missing"));
    mm_status st = mm_arena_init(&c->arena, 1 << 16);
    if (st) return fail(st);
    c->arena_ok = true;
    if (opts.image) {
        void *pm = mm_malloc(sizeof(RasterPainter));
        if (!pm) return fail(MM_ERR(MM_ERR_NOMEM, "out of memory for the painter"));
        c->painter = new (pm) RasterPainter(opts.image_size);
        if (!c->painter->ok()) return fail(MM_ERR(MM_ERR_INTERNAL, "cairo could not create a %dx%d image",
                                                  opts.image_size, opts.image_size));
    }
    apply_log_level(opts.ob_log);
    if (opts.conformer) set_ff_threads(opts.ff_threads);
    *out = c;
    return MM_OK;
}

extern "C" mm_status mm_chem_create(const mm_chem_opts *o, mm_chem **out)
{
    MM_CHECK_ARG(out, "mm_chem_create: NULL out");
    *out = nullptr;
    return guarded("mm_chem_create", [&] { return create_impl(o, out); });
}

extern "C" void mm_chem_destroy(mm_chem **cp)
{
    if (!cp || !*cp) return;
    mm_chem *c = *cp;
    if (c->painter) {
        c->painter->~RasterPainter();
        mm_free_sized(c->painter, sizeof(RasterPainter));
    }
    if (c->arena_ok) mm_arena_destroy(&c->arena);
    c->~mm_chem();
    mm_free_sized(c, sizeof(mm_chem));
    *cp = nullptr;
}

extern "C" const mm_chem_opts *mm_chem_get_opts(const mm_chem *c) { return &c->o; }

extern "C" void mm_chem_stage_seconds(const mm_chem *c, double out[5])
{
    for (int i = 0; i < 5; i++) out[i] = c->seconds[i];
}

extern "C" long mm_chem_layout_fallbacks(const mm_chem *c) { return c->layout_fallbacks; }

/* ---- result buffers ------------------------------------------------------------------- */

extern "C" void mm_mol_feat_init(mm_mol_feat *f) { memset(f, 0, sizeof *f); }

extern "C" void mm_mol_feat_free(mm_mol_feat *f)
{
    if (f->smiles) mm_free_sized(f->smiles, f->cap_smiles);
    if (f->scaffold) mm_free_sized(f->scaffold, f->cap_scaffold);
    if (f->atom_feat) mm_free_sized(f->atom_feat, f->cap_atoms * 9);
    if (f->xyz) mm_free_sized(f->xyz, f->cap_atoms * 3 * sizeof(float));
    if (f->bond_index) mm_free_sized(f->bond_index, f->cap_bonds * 2 * sizeof(int32_t));
    if (f->bond_feat) mm_free_sized(f->bond_feat, f->cap_bonds * 3);
    if (f->image) mm_free_sized(f->image, f->cap_image);
    if (f->input_atom) mm_free_sized(f->input_atom, f->cap_input * sizeof(int32_t));
    if (f->input_is_h) mm_free_sized(f->input_is_h, f->cap_input);
    memset(f, 0, sizeof *f);
}

static mm_status set_string(char **p, size_t *cap, const char *s)
{
    size_t n = strlen(s) + 1;
    if (n > *cap) {
        size_t ncap = n < 64 ? 64 : n * 2;
        char *np = (char *)mm_malloc(ncap);
        if (!np) return MM_ERR(MM_ERR_NOMEM, "out of memory for a %zu-byte string", n);
        if (*p) mm_free_sized(*p, *cap);
        *p = np;
        *cap = ncap;
    }
    memcpy(*p, s, n);
    return MM_OK;
}

static mm_status reserve_atoms(mm_mol_feat *f, size_t n)
{
    if (n <= f->cap_atoms && f->atom_feat) return MM_OK;
    size_t ncap = n < 32 ? 32 : 2 * n;
    uint8_t *af = (uint8_t *)mm_malloc(ncap * 9);
    float *xyz = (float *)mm_malloc(ncap * 3 * sizeof(float));
    if (!af || !xyz) {
        if (af) mm_free_sized(af, ncap * 9);
        if (xyz) mm_free_sized(xyz, ncap * 3 * sizeof(float));
        return MM_ERR(MM_ERR_NOMEM, "out of memory for %zu atoms", n);
    }
    if (f->atom_feat) mm_free_sized(f->atom_feat, f->cap_atoms * 9);
    if (f->xyz) mm_free_sized(f->xyz, f->cap_atoms * 3 * sizeof(float));
    f->atom_feat = af;
    f->xyz = xyz;
    f->cap_atoms = ncap;
    return MM_OK;
}

static mm_status reserve_input(mm_mol_feat *f, size_t n)
{
    if (n <= f->cap_input && f->input_atom) return MM_OK;
    size_t ncap = n < 32 ? 32 : 2 * n;
    int32_t *ia = (int32_t *)mm_malloc(ncap * sizeof(int32_t));
    uint8_t *ih = (uint8_t *)mm_malloc(ncap);
    if (!ia || !ih) {
        if (ia) mm_free_sized(ia, ncap * sizeof(int32_t));
        if (ih) mm_free_sized(ih, ncap);
        return MM_ERR(MM_ERR_NOMEM, "out of memory for %zu input atoms", n);
    }
    if (f->input_atom) mm_free_sized(f->input_atom, f->cap_input * sizeof(int32_t));
    if (f->input_is_h) mm_free_sized(f->input_is_h, f->cap_input);
    f->input_atom = ia;
    f->input_is_h = ih;
    f->cap_input = ncap;
    return MM_OK;
}

static mm_status reserve_bonds(mm_mol_feat *f, size_t n)
{
    if (n <= f->cap_bonds && f->bond_index) return MM_OK;
    size_t ncap = n < 32 ? 32 : 2 * n;
    int32_t *bi = (int32_t *)mm_malloc(ncap * 2 * sizeof(int32_t));
    uint8_t *bf = (uint8_t *)mm_malloc(ncap * 3);
    if (!bi || !bf) {
        if (bi) mm_free_sized(bi, ncap * 2 * sizeof(int32_t));
        if (bf) mm_free_sized(bf, ncap * 3);
        return MM_ERR(MM_ERR_NOMEM, "out of memory for %zu bonds", n);
    }
    if (f->bond_index) mm_free_sized(f->bond_index, f->cap_bonds * 2 * sizeof(int32_t));
    if (f->bond_feat) mm_free_sized(f->bond_feat, f->cap_bonds * 3);
    f->bond_index = bi;
    f->bond_feat = bf;
    f->cap_bonds = ncap;
    return MM_OK;
}

static mm_status reserve_image(mm_mol_feat *f, size_t bytes)
{
    if (bytes <= f->cap_image && f->image) return MM_OK;
    uint8_t *p = (uint8_t *)mm_malloc(bytes);
    if (!p) return MM_ERR(MM_ERR_NOMEM, "out of memory for a %zu-byte image", bytes);
    if (f->image) mm_free_sized(f->image, f->cap_image);
    f->image = p;
    f->cap_image = bytes;
    return MM_OK;
}

/* Empties the result and fills in the reject reason; returns MM_ERR_CHEM. */
static mm_status reject(mm_mol_feat *f, mm_chem_reject why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static mm_status reject(mm_mol_feat *f, mm_chem_reject why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->reason, sizeof f->reason, fmt, ap);
    va_end(ap);
    f->reject = why;
    f->n_atoms = f->n_bonds = 0;
    f->conf_ok = 0;
    return MM_ERR(MM_ERR_CHEM, "%s: %s", mm_chem_reject_name(why), f->reason);
}

static void reset_result(mm_mol_feat *f)
{
    f->reject = MM_CHEM_OK;
    f->reason[0] = '\0';
    f->n_atoms = f->n_bonds = 0;
    f->n_input_atoms = 0;
    f->conf_ok = f->conf_from_input = f->conf_uff = 0;
    f->image_size = 0;
    memset(f->fingerprint, 0, sizeof f->fingerprint);
    if (f->smiles) f->smiles[0] = '\0';
    if (f->scaffold) f->scaffold[0] = '\0';
}

/* Shortened copy of an input for messages. */
static std::string shown(const char *s, size_t max = 120)
{
    std::string t(s);
    for (char &ch : t)
        if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
    if (t.size() > max) t = t.substr(0, max) + "...";
    return t;
}

static std::string last_ob_error()
{
    std::vector<std::string> m = obErrorLog.GetMessagesOfLevel(obError);
    if (m.empty()) return "";
    std::string s = m.back();
    /* Open Babel's messages are multi-line banners; keep the informative lines */
    std::string out;
    std::istringstream is(s);
    std::string line;
    while (std::getline(is, line)) {
        size_t a = line.find_first_not_of(" =*");
        if (a == std::string::npos) continue;
        if (line.find("Open Babel Error") != std::string::npos) continue;
        if (!out.empty()) out += "; ";
        out += line.substr(a);
    }
    return out;
}

/* ---- the pipeline --------------------------------------------------------------------- */

/* Open Babel's SMILES reader collects the stereocentres it parses in a std::map keyed by
 * OBAtom pointer and adds their OBTetrahedralStereo objects to the molecule in that
 * order: heap-address order, which depends on everything the process allocated before
 * (the molecules featurised earlier, hence the rank count, and the run). Code that walks
 * the stereo objects in the molecule's order inherits it: OBDepict's choice of wedges
 * (TetStereoToWedgeHash gives up at the first centre none of whose bonds it likes, as at
 * the ring fusions of a steroid, so the order decides which centres get wedges) and the
 * builder's repair of a conformer's stereocentres (OBBuilder::CorrectStereoAtoms inverts
 * them one after the other). Sorting them by the atoms they name, right after each read,
 * makes the depiction and the conformer functions of the molecule alone. Only the stereo
 * entries move, among the slots they held; the molecule's other data stay in place. */
static void sort_stereo_data(OBMol &mol)
{
    struct entry {
        int type;
        unsigned long a, b; /* atom ids: the centre (0), or the double bond's ends, lower first */
        OBGenericData *d;
    };
    std::vector<OBGenericData *> &data = mol.GetData();
    std::vector<size_t> slot;
    std::vector<entry> st;
    for (size_t i = 0; i < data.size(); i++) {
        if (data[i]->GetDataType() != OBGenericDataType::StereoData) continue;
        OBStereoBase *sb = static_cast<OBStereoBase *>(data[i]);
        entry e = {(int)sb->GetType(), 0, 0, data[i]};
        if (sb->GetType() == OBStereo::Tetrahedral) {
            e.a = static_cast<OBTetrahedralStereo *>(sb)->GetConfig().center;
        } else if (sb->GetType() == OBStereo::CisTrans) {
            OBCisTransStereo::Config cfg = static_cast<OBCisTransStereo *>(sb)->GetConfig();
            e.a = std::min(cfg.begin, cfg.end);
            e.b = std::max(cfg.begin, cfg.end);
        } else if (sb->GetType() == OBStereo::SquarePlanar) {
            e.a = static_cast<OBSquarePlanarStereo *>(sb)->GetConfig().center;
        }
        slot.push_back(i);
        st.push_back(e);
    }
    std::stable_sort(st.begin(), st.end(), [](const entry &x, const entry &y) {
        if (x.type != y.type) return x.type < y.type;
        return x.a != y.a ? x.a < y.a : x.b < y.b;
    });
    for (size_t k = 0; k < slot.size(); k++) data[slot[k]] = st[k].d;
}

/* Removes every hydrogen atom (isotopic and charged ones too), counting each as a
 * hydrogen on its heavy neighbour. */
static void strip_hydrogens(OBMol &mol)
{
    mol.DeleteHydrogens(); /* the ordinary ones; Open Babel counts them on the neighbour */
    std::vector<OBAtom *> hs;
    FOR_ATOMS_OF_MOL (a, mol)
        if (a->GetAtomicNum() == 1) hs.push_back(&*a);
    /* isotopic, charged or bridging hydrogens: DeleteHydrogen(atom) does not count them */
    for (OBAtom *h : hs) {
        FOR_NBORS_OF_ATOM (nbr, h)
            if (nbr->GetAtomicNum() != 1) nbr->SetImplicitHCount(nbr->GetImplicitHCount() + 1);
        mol.DeleteHydrogen(h);
    }
}

static int valence_of(OBAtom *a)
{
    int v = (int)a->GetImplicitHCount();
    FOR_BONDS_OF_ATOM (b, a) v += (int)b->GetBondOrder();
    return v;
}

/* Hypervalent forms become charge-separated ones, as RDKit's sanitisation (cleanUp)
 * does, so both toolkits see the same charges and bond orders:
 *   C-N(=O)=O -> C-[N+](=O)[O-]     C-N=N#N -> C-N=[N+]=[N-]
 *   Cl(=O)(=O)(=O)O -> [Cl+3]([O-])([O-])([O-])O (also Br, I) */
static void charge_separate(OBMol &mol)
{
    bool changed = false;
    FOR_ATOMS_OF_MOL (a, mol) {
        if (a->GetFormalCharge() != 0) continue;
        int z = (int)a->GetAtomicNum();
        if (z == 7 && valence_of(&*a) == 5) {
            FOR_BONDS_OF_ATOM (b, &*a) {
                OBAtom *o = b->GetNbrAtom(&*a);
                if (b->GetBondOrder() == 2 && o->GetAtomicNum() == 8 && o->GetFormalCharge() == 0) {
                    b->SetBondOrder(1);
                    o->SetFormalCharge(-1);
                    a->SetFormalCharge(1);
                    changed = true;
                    break;
                }
                if (b->GetBondOrder() == 3 && o->GetAtomicNum() == 7 && o->GetFormalCharge() == 0) {
                    b->SetBondOrder(2);
                    o->SetFormalCharge(-1);
                    a->SetFormalCharge(1);
                    changed = true;
                    break;
                }
            }
        } else if ((z == 17 || z == 35 || z == 53) && valence_of(&*a) == 7) {
            int n_double_o = 0;
            FOR_BONDS_OF_ATOM (b, &*a)
                n_double_o += b->GetBondOrder() == 2 && b->GetNbrAtom(&*a)->GetAtomicNum() == 8;
            if (n_double_o != 3) continue;
            FOR_BONDS_OF_ATOM (b, &*a) {
                OBAtom *o = b->GetNbrAtom(&*a);
                if (b->GetBondOrder() == 2 && o->GetAtomicNum() == 8) {
                    b->SetBondOrder(1);
                    o->SetFormalCharge(-1);
                }
            }
            a->SetFormalCharge(3);
            changed = true;
        }
    }
    if (changed) mol.SetAromaticPerceived(false);
}

struct graph_build {
    std::vector<int> order;    /* local index -> Open Babel atom index (1-based) */
    std::vector<int> local_of; /* Open Babel atom index -> local index */
};

static mm_status do_fingerprint(mm_chem *c, OBMol &mol, mm_mol_feat *f)
{
    std::vector<unsigned int> words;
    if (!c->ecfp->GetFingerprint(&mol, words, MM_CHEM_FP_BITS))
        return MM_ERR(MM_ERR_CHEM, "Open Babel's ECFP4 failed on '%s'", f->smiles);
    static_assert(sizeof(unsigned int) == sizeof(uint32_t), "Open Babel fingerprints are 32-bit words");
    /* Open Babel may fold to a shorter length than asked; bits past it stay zero */
    uint32_t full[MM_CHEM_FP_BITS / 32] = {0};
    for (size_t w = 0; w < words.size() && w < MM_CHEM_FP_BITS / 32; w++) full[w] = words[w];
    mm_chem_fp_pack_words(full, MM_CHEM_FP_BITS, f->fingerprint);
    return MM_OK;
}

static mm_status do_scaffold(mm_chem *c, const mm_cgraph *g, mm_mol_feat *f)
{
    int n = g->n_atoms, n_keep = 0;
    uint8_t *keep;
    int *new_h;
    MM_CALL(mm_arena_alloc(&c->arena, (size_t)n + 1, (void **)&keep));
    MM_CALL(mm_arena_alloc(&c->arena, ((size_t)n + 1) * sizeof(int), (void **)&new_h));
    MM_CALL(mm_cg_murcko(g, &c->arena, keep, new_h, &n_keep));
    if (n_keep == 0) return set_string(&f->scaffold, &f->cap_scaffold, "");
    OBMol sm;
    std::vector<int> idx(n, 0);
    sm.BeginModify();
    for (int i = 0; i < n; i++) {
        if (!keep[i]) continue;
        OBAtom *a = sm.NewAtom();
        a->SetAtomicNum(g->atoms[i].z);
        a->SetFormalCharge(g->atoms[i].charge);
        a->SetImplicitHCount((unsigned int)new_h[i]);
        a->SetAromatic(g->atoms[i].aromatic != 0);
        idx[i] = (int)a->GetIdx();
    }
    for (int k = 0; k < g->n_bonds; k++) {
        const mm_cg_bond *b = &g->bonds[k];
        if (!keep[b->a] || !keep[b->b]) continue;
        sm.AddBond(idx[b->a], idx[b->b], b->order >= 1 && b->order <= 3 ? b->order : 1);
        sm.GetBond(sm.NumBonds() - 1)->SetAromatic(b->aromatic != 0);
    }
    sm.EndModify();
    /* the flags are copied from the full molecule, as RDKit keeps them: no re-perception */
    sm.SetAromaticPerceived();
    std::string s = c->out_scaffold.WriteString(&sm, true);
    while (!s.empty() && isspace((unsigned char)s.back())) s.pop_back();
    return set_string(&f->scaffold, &f->cap_scaffold, s.c_str());
}

#define MCDL_MAX_ATOMS 40

/* 2D coordinates for the canonical molecule (atom i + 1 = local atom i): our fast layout,
 * or Open Babel's mcdl layout when ours declines (bridged rings, unresolved clashes). */
static mm_status layout(mm_chem *c, OBMol &m2, const mm_cgraph *g)
{
    int n = g->n_atoms;
    std::vector<int> ring_start(1, 0), ring_atoms;
    std::vector<OBRing *> sssr = m2.GetSSSR();
    for (OBRing *r : sssr) {
        for (int a : r->_path) ring_atoms.push_back(a - 1);
        ring_start.push_back((int)ring_atoms.size());
    }
    /* double bonds drawn with their configuration: (u, a, b, v, u and v cis?) */
    std::vector<int> ct;
    OBStereoFacade facade(&m2);
    FOR_BONDS_OF_MOL (b, m2) {
        if (b->GetBondOrder() != 2 || b->IsAromatic() || !facade.HasCisTransStereo(b->GetId())) continue;
        OBCisTransStereo *st = facade.GetCisTransStereo(b->GetId());
        if (!st || !st->GetConfig().specified) continue;
        OBCisTransStereo::Config cfg = st->GetConfig();
        unsigned long u = OBStereo::NoRef, v = OBStereo::NoRef;
        for (int k = 0; k < 4; k++) {
            unsigned long r = cfg.refs[k];
            if (r == OBStereo::ImplicitRef || r == OBStereo::NoRef) continue;
            OBAtom *at = m2.GetAtomById(r);
            if (!at) continue;
            if (u == OBStereo::NoRef && m2.GetBond(at, m2.GetAtomById(cfg.begin))) u = r;
            else if (v == OBStereo::NoRef && m2.GetBond(at, m2.GetAtomById(cfg.end))) v = r;
        }
        if (u == OBStereo::NoRef || v == OBStereo::NoRef) continue;
        ct.push_back((int)m2.GetAtomById(u)->GetIdx() - 1);
        ct.push_back((int)m2.GetAtomById(cfg.begin)->GetIdx() - 1);
        ct.push_back((int)m2.GetAtomById(cfg.end)->GetIdx() - 1);
        ct.push_back((int)m2.GetAtomById(v)->GetIdx() - 1);
        ct.push_back(st->IsCis(u, v) ? 1 : 0);
    }
    double *xy;
    MM_CALL(mm_arena_alloc(&c->arena, (size_t)(n + 1) * 2 * sizeof(double), (void **)&xy));
    mm_status st = mm_layout2d(g, ring_start.data(), ring_atoms.data(), (int)sssr.size(), ct.data(),
                               (int)(ct.size() / 5), &c->arena, xy);
    if (st == MM_OK) {
        for (int i = 0; i < n; i++) m2.GetAtom(i + 1)->SetVector(xy[2 * i], xy[2 * i + 1], 0.0);
    } else if (st == MM_ERR_CHEM) {
        if (getenv("MMSA_DEBUG_LAYOUT")) fprintf(stderr, "layout fallback: %s\n", mm_error_message());
        mm_error_clear();
        c->layout_fallbacks++;
        /* Open Babel's layout draws cages and bridged rings well but its overlap search
         * explodes on large molecules (a sulfated cyclodextrin ran for minutes): only
         * small molecules go there, the rest to stress majorisation. */
        if (n <= MCDL_MAX_ATOMS) {
            generateDiagram(&m2);
        } else {
            MM_CALL(mm_layout2d_stress(g, &c->arena, xy));
            for (int i = 0; i < n; i++) m2.GetAtom(i + 1)->SetVector(xy[2 * i], xy[2 * i + 1], 0.0);
        }
    } else {
        return st;
    }
    m2.SetDimension(2);
    return MM_OK;
}

static mm_status do_image(mm_chem *c, const OBMol &mol, const mm_cgraph *g, mm_mol_feat *f)
{
    OBMol m2(mol);
    MM_CALL(layout(c, m2, g));
    OBDepict depict(c->painter);
    /* OBDepict sizes a charge by the metrics of whatever font size the painter has when it
     * gets there, before it sets its label size, and leaves that size changed: without this
     * the first charge of a molecule was drawn at the size the previous molecule left
     * behind (cairo's 10 in a fresh painter), so its bytes depended on what came before */
    c->painter->SetFontSize(depict.GetFontSize());
    if (!depict.DrawMolecule(&m2))
        return MM_ERR(MM_ERR_CHEM, "Open Babel could not depict '%s'", f->smiles);
    int s = c->painter->size();
    MM_CALL(reserve_image(f, (size_t)3 * s * s));
    c->painter->copy_chw(f->image);
    f->image_size = s;
    return MM_OK;
}

/* Deterministic 32-bit seed for the C library generator the builder draws from. */
static unsigned int mix_seed(uint64_t seed)
{
    seed += 0x9E3779B97F4A7C15ull;
    seed = (seed ^ (seed >> 30)) * 0xBF58476D1CE4E5B9ull;
    seed = (seed ^ (seed >> 27)) * 0x94D049BB133111EBull;
    return (unsigned int)(seed ^ (seed >> 31));
}

/* mol: the canonical molecule (atom i + 1 is local atom i). */
static void do_conformer(mm_chem *c, const OBMol &mol, uint64_t seed, mm_mol_feat *f)
{
    int n = f->n_atoms;
    memset(f->xyz, 0, (size_t)n * 3 * sizeof(float));
    OBMol m3(mol);
    m3.SetDimension(0);
    m3.AddHydrogens(false, false);
    /* Open Babel's builder draws random vectors from the C library generator */
    srand(mix_seed(seed));
    OBBuilder builder;
    if (!builder.Build(m3, false)) return;
    m3.SetDimension(3);
    bool uff = false;
    /* ff_steps 0 keeps the builder's geometry: no force field is set up (its atom typing
     * costs more than the builder itself) */
    if (c->o.ff_steps > 0) {
        OBForceField *ff = c->mmff;
        if (!ff->Setup(m3)) {
            ff = c->uff;
            uff = true;
            if (!ff->Setup(m3)) return;
        }
        ff->SetLogLevel(OBFF_LOGLVL_NONE);
        ff->ConjugateGradients(c->o.ff_steps, 1e-6);
        ff->GetCoordinates(m3);
    }

    double spread = 0;
    for (int i = 0; i < n; i++) {
        OBAtom *a = m3.GetAtom(i + 1);
        if (!a) return;
        vector3 v = a->GetVector();
        if (!std::isfinite(v.x()) || !std::isfinite(v.y()) || !std::isfinite(v.z())) {
            memset(f->xyz, 0, (size_t)n * 3 * sizeof(float));
            return;
        }
        f->xyz[3 * i] = (float)v.x();
        f->xyz[3 * i + 1] = (float)v.y();
        f->xyz[3 * i + 2] = (float)v.z();
        spread += fabs(v.x() - f->xyz[0]) + fabs(v.y() - f->xyz[1]) + fabs(v.z() - f->xyz[2]);
    }
    if (n > 1 && spread < 1e-3) { /* all atoms in one point: not a conformer */
        memset(f->xyz, 0, (size_t)n * 3 * sizeof(float));
        return;
    }
    f->conf_ok = 1;
    f->conf_uff = uff;
}

/* Everything after reading: hydrogens, limits, canonical SMILES, atom order, graph and
 * features, then the optional stages. input3d: keep the molecule's own coordinates. */
/* An SD record's atoms before the hydrogens go: the Open Babel atom id (which stays with
 * the atom while others are deleted) of each atom of the atom block, for a hydrogen its
 * first heavy neighbour's (none: NO_ATOM). */
struct input_atoms {
    static constexpr unsigned long NO_ATOM = ~0ul;
    std::vector<unsigned long> id;
    std::vector<uint8_t> is_h;
};

static void note_input_atoms(OBMol &mol, input_atoms &in)
{
    in.id.clear();
    in.is_h.clear();
    FOR_ATOMS_OF_MOL (a, mol) { /* in index order: the atom block's */
        unsigned long id = a->GetId();
        bool h = a->GetAtomicNum() == 1;
        if (h) {
            id = input_atoms::NO_ATOM;
            FOR_NBORS_OF_ATOM (nb, &*a)
                if (nb->GetAtomicNum() != 1) {
                    id = nb->GetId();
                    break;
                }
        }
        in.id.push_back(id);
        in.is_h.push_back(h ? 1 : 0);
    }
}

static mm_status featurize_mol(mm_chem *c, OBMol &mol, const char *what, uint64_t seed, bool input3d,
                               mm_mol_feat *f, const input_atoms *in = nullptr)
{
    double t0 = now_s();
    sort_stereo_data(mol);
    strip_hydrogens(mol);
    charge_separate(mol);
    int n = (int)mol.NumAtoms();
    if (n == 0) return reject(f, MM_CHEM_NO_HEAVY_ATOM, "%s has no heavy atom", what);
    if (n > c->o.max_atoms)
        return reject(f, MM_CHEM_TOO_MANY_ATOMS, "%s has %d heavy atoms, more than the limit of %d", what, n,
                      c->o.max_atoms);

    std::string can = c->out_can.WriteString(&mol, true);
    while (!can.empty() && isspace((unsigned char)can.back())) can.pop_back();
    if (can.empty()) return reject(f, MM_CHEM_PARSE, "Open Babel wrote no SMILES for %s", what);
    MM_CALL(set_string(&f->smiles, &f->cap_smiles, can.c_str()));

    graph_build gb;
    {
        OBPairData *pd = dynamic_cast<OBPairData *>(mol.GetData("SMILES Atom Order"));
        if (!pd) return reject(f, MM_CHEM_INCONSISTENT, "Open Babel gave no atom order for %s", what);
        std::istringstream is(pd->GetValue());
        int v;
        while (is >> v) gb.order.push_back(v);
        mol.DeleteData(pd);
    }
    if ((int)gb.order.size() != n)
        return reject(f, MM_CHEM_INCONSISTENT, "canonical SMILES '%s' lists %zu of %d atoms of %s", f->smiles,
                      gb.order.size(), n, what);
    gb.local_of.assign((size_t)n + 1, -1);
    for (int i = 0; i < n; i++) {
        if (gb.order[i] < 1 || gb.order[i] > n || gb.local_of[gb.order[i]] >= 0)
            return reject(f, MM_CHEM_INCONSISTENT, "bad atom order from Open Babel for %s", what);
        gb.local_of[gb.order[i]] = i;
    }
    if (in) {
        MM_CALL(reserve_input(f, in->id.size()));
        for (size_t k = 0; k < in->id.size(); k++) {
            OBAtom *a = in->id[k] == input_atoms::NO_ATOM ? nullptr : mol.GetAtomById(in->id[k]);
            f->input_atom[k] = a && (int)a->GetIdx() <= n ? gb.local_of[a->GetIdx()] : -1;
            f->input_is_h[k] = in->is_h[k];
        }
    }

    mm_smi_graph sg;
    mm_status st = mm_smiles_scan(f->smiles, &c->arena, &sg);
    if (st != MM_OK && st != MM_ERR_CHEM) return st;
    if (st != MM_OK) {
        std::string msg = mm_error_message();
        mm_error_clear();
        return reject(f, MM_CHEM_INCONSISTENT, "cannot scan Open Babel's SMILES for %s: %s", what, msg.c_str());
    }
    if (sg.n_atoms != n || sg.n_bonds != (int)mol.NumBonds())
        return reject(f, MM_CHEM_INCONSISTENT, "SMILES '%s' has %d atoms / %d bonds, the molecule %d / %d",
                      f->smiles, sg.n_atoms, sg.n_bonds, n, (int)mol.NumBonds());

    mm_cgraph g;
    g.n_atoms = n;
    g.n_bonds = sg.n_bonds;
    MM_CALL(mm_arena_calloc(&c->arena, (size_t)n * sizeof(mm_cg_atom), (void **)&g.atoms));
    MM_CALL(mm_arena_calloc(&c->arena, (size_t)(sg.n_bonds + 1) * sizeof(mm_cg_bond), (void **)&g.bonds));
    for (int i = 0; i < n; i++) {
        OBAtom *a = mol.GetAtom(gb.order[i]);
        mm_cg_atom *ga = &g.atoms[i];
        ga->z = (int)a->GetAtomicNum();
        if (ga->z != sg.atoms[i].z || (a->IsAromatic() ? 1 : 0) != sg.atoms[i].aromatic)
            return reject(f, MM_CHEM_INCONSISTENT, "atom %d of SMILES '%s' is not Open Babel's atom %d", i,
                          f->smiles, gb.order[i]);
        ga->charge = a->GetFormalCharge();
        ga->isotope = (int)a->GetIsotope();
        ga->h = (int)a->GetImplicitHCount();
        ga->aromatic = a->IsAromatic();
        ga->in_ring = a->IsInRing();
        ga->bracket = sg.atoms[i].bracket;
        ga->ogb_chiral = sg.atoms[i].ogb_chiral;
    }
    for (int k = 0; k < sg.n_bonds; k++) {
        int ia = sg.bonds[k].begin, ib = sg.bonds[k].end;
        OBBond *b = mol.GetBond(gb.order[ia], gb.order[ib]);
        if (!b)
            return reject(f, MM_CHEM_INCONSISTENT, "SMILES '%s' bonds atoms %d-%d, the molecule does not",
                          f->smiles, ia, ib);
        mm_cg_bond *gbd = &g.bonds[k];
        gbd->a = ia;
        gbd->b = ib;
        gbd->order = (int)b->GetBondOrder();
        gbd->aromatic = b->IsAromatic();
        gbd->in_ring = b->IsInRing();
        gbd->ogb_stereo = 0;
    }
    MM_CALL(mm_cg_prepare(&g, &c->arena));

    /* E/Z: Open Babel knows which neighbours are cis; RDKit names the configuration by
     * the highest-ranked neighbour on each side. */
    {
        OBStereoFacade facade(&mol);
        int *rank = nullptr;
        /* only double bonds the SMILES marks with / or \ on both sides: Open Babel may
         * keep a configuration it does not write (ring double bonds), and the feature must
         * be what the string says */
        std::vector<uint8_t> marked((size_t)n, 0);
        for (int k = 0; k < sg.n_bonds; k++)
            if (sg.bonds[k].symbol == '/' || sg.bonds[k].symbol == '\\') {
                marked[(size_t)sg.bonds[k].begin] = 1;
                marked[(size_t)sg.bonds[k].end] = 1;
            }
        for (int k = 0; k < g.n_bonds; k++) {
            if (g.bonds[k].aromatic || g.bonds[k].order != 2) continue;
            if (!marked[(size_t)g.bonds[k].a] || !marked[(size_t)g.bonds[k].b]) continue;
            OBBond *b = mol.GetBond(gb.order[g.bonds[k].a], gb.order[g.bonds[k].b]);
            if (!facade.HasCisTransStereo(b->GetId())) continue;
            OBCisTransStereo *ct = facade.GetCisTransStereo(b->GetId());
            if (!ct || !ct->GetConfig().specified) continue;
            if (!rank) {
                MM_CALL(mm_arena_alloc(&c->arena, (size_t)n * sizeof(int), (void **)&rank));
                MM_CALL(mm_cg_cip_ranks(&g, &c->arena, rank));
            }
            OBCisTransStereo::Config cfg = ct->GetConfig();
            unsigned long best[2] = {OBStereo::NoRef, OBStereo::NoRef};
            bool tie = false;
            unsigned long ends[2] = {cfg.begin, cfg.end};
            for (int side = 0; side < 2 && !tie; side++) {
                OBAtom *e = mol.GetAtomById(ends[side]);
                OBAtom *other = mol.GetAtomById(ends[1 - side]);
                int best_rank = -1;
                FOR_NBORS_OF_ATOM (nb, e) {
                    if (&*nb == other) continue;
                    int r = rank[gb.local_of[nb->GetIdx()]];
                    if (r == best_rank) tie = true;
                    if (r > best_rank) {
                        best_rank = r;
                        best[side] = nb->GetId();
                        tie = false;
                    }
                }
                if (best[side] == OBStereo::NoRef) tie = true;
            }
            if (tie) continue;
            if (ct->IsCis(best[0], best[1])) g.bonds[k].ogb_stereo = 1;
            else if (ct->IsTrans(best[0], best[1])) g.bonds[k].ogb_stereo = 2;
        }
    }

    MM_CALL(reserve_atoms(f, (size_t)n));
    MM_CALL(reserve_bonds(f, (size_t)g.n_bonds));
    MM_CALL(mm_cg_ogb_features(&g, &c->arena, f->atom_feat, f->bond_feat));
    for (int k = 0; k < g.n_bonds; k++) {
        f->bond_index[2 * k] = g.bonds[k].a;
        f->bond_index[2 * k + 1] = g.bonds[k].b;
    }
    f->n_atoms = n;
    f->n_bonds = g.n_bonds;

    /* Open Babel's atom order for symmetry-equivalent atoms is not reproducible from run
     * to run (it changes after the builder has run, even for the same input), so
     * everything that depends on more than the graph -- the 3D build and the 2D layout --
     * starts from the canonical SMILES itself, whose atom order is the string's. */
    OBMol canon;
    if ((c->o.conformer && !input3d) || c->o.image) {
        if (!c->in_smi.ReadString(&canon, f->smiles) || (int)canon.NumAtoms() != n)
            return reject(f, MM_CHEM_INCONSISTENT, "Open Babel cannot read back its SMILES '%s'", f->smiles);
        sort_stereo_data(canon);
        for (int i = 0; i < n; i++)
            if ((int)canon.GetAtom(i + 1)->GetAtomicNum() != g.atoms[i].z)
                return reject(f, MM_CHEM_INCONSISTENT, "reading back '%s' changed atom %d", f->smiles, i);
    }

    double t1 = now_s();
    c->seconds[0] += t1 - t0;

    memset(f->xyz, 0, (size_t)n * 3 * sizeof(float));
    if (input3d) {
        /* atoms that are symmetry-equivalent in the graph may swap coordinates between runs
         * (see above): a relabelling by a graph automorphism, invisible to any model that
         * is invariant to atom permutations */
        for (int i = 0; i < n; i++) {
            vector3 v = mol.GetAtom(gb.order[i])->GetVector();
            f->xyz[3 * i] = (float)v.x();
            f->xyz[3 * i + 1] = (float)v.y();
            f->xyz[3 * i + 2] = (float)v.z();
        }
        f->conf_ok = 1;
        f->conf_from_input = 1;
    } else if (c->o.conformer) {
        do_conformer(c, canon, seed, f);
    }
    double t2 = now_s();
    c->seconds[1] += t2 - t1;

    if (c->o.image) MM_CALL(do_image(c, canon, &g, f));
    double t3 = now_s();
    c->seconds[2] += t3 - t2;
    if (c->o.fingerprint) MM_CALL(do_fingerprint(c, mol, f));
    double t4 = now_s();
    c->seconds[3] += t4 - t3;
    if (c->o.scaffold) MM_CALL(do_scaffold(c, &g, f));
    else MM_CALL(set_string(&f->scaffold, &f->cap_scaffold, ""));
    c->seconds[4] += now_s() - t4;
    return MM_OK;
}

static mm_status begin_molecule(mm_chem *c, mm_mol_feat *f)
{
    reset_result(f);
    if (!f->smiles) MM_CALL(set_string(&f->smiles, &f->cap_smiles, ""));
    if (!f->scaffold) MM_CALL(set_string(&f->scaffold, &f->cap_scaffold, ""));
    MM_CALL(mm_arena_reset(&c->arena));
    obErrorLog.ClearLog();
    if (g_sink) g_sink->str(std::string());
    return MM_OK;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

static mm_status smiles_impl(mm_chem *c, const char *smiles, uint64_t seed, mm_mol_feat *f)
{
    MM_CALL(begin_molecule(c, f));
    if (blank(smiles)) return reject(f, MM_CHEM_EMPTY, "empty SMILES");
    /* the SMILES is the first token: Open Babel would read the rest as a title */
    const char *s = smiles;
    while (isspace((unsigned char)*s)) s++;
    size_t len = 0;
    while (s[len] && !isspace((unsigned char)s[len])) len++;
    std::string in(s, len);
    const char *rest = s + len;
    if (!blank(rest))
        return reject(f, MM_CHEM_PARSE, "SMILES '%s' contains blanks", shown(smiles).c_str());
    /* Open Babel forgives some broken SMILES (an unclosed '(' is dropped); our own scan
     * of the syntax does not, as RDKit does not. */
    mm_smi_graph syntax;
    mm_status sst = mm_smiles_scan(in.c_str(), &c->arena, &syntax);
    if (sst != MM_OK && sst != MM_ERR_CHEM) return sst;
    if (sst != MM_OK) {
        std::string msg = mm_error_message();
        mm_error_clear();
        return reject(f, MM_CHEM_PARSE, "%s", msg.c_str());
    }
    OBMol mol;
    unsigned int errs = obErrorLog.GetErrorMessageCount();
    bool ok = c->in_smi.ReadString(&mol, in);
    if (!ok || obErrorLog.GetErrorMessageCount() != errs) {
        std::string why = last_ob_error();
        return reject(f, MM_CHEM_PARSE, "Open Babel cannot read SMILES '%s'%s%s", shown(in.c_str()).c_str(),
                      why.empty() ? "" : ": ", why.c_str());
    }
    std::string what = "SMILES '" + shown(in.c_str()) + "'";
    return featurize_mol(c, mol, what.c_str(), seed, false, f);
}

extern "C" mm_status mm_chem_featurize_smiles(mm_chem *c, const char *smiles, uint64_t seed, mm_mol_feat *f)
{
    MM_CHECK_ARG(c && smiles && f, "mm_chem_featurize_smiles: NULL argument");
    return guarded("mm_chem_featurize_smiles", [&] { return smiles_impl(c, smiles, seed, f); });
}

static mm_status sdf_impl(mm_chem *c, const char *record, uint64_t seed, mm_mol_feat *f)
{
    MM_CALL(begin_molecule(c, f));
    if (blank(record)) return reject(f, MM_CHEM_EMPTY, "empty SD record");
    std::string title(record, strcspn(record, "\n"));
    while (!title.empty() && isspace((unsigned char)title.back())) title.pop_back();
    std::string what = "SD record '" + shown(title.c_str(), 60) + "'";
    OBMol mol;
    unsigned int errs = obErrorLog.GetErrorMessageCount();
    std::string rec(record);
    if (rec.find("$$$$") == std::string::npos) rec += "\n$$$$\n";
    bool ok = c->in_sdf.ReadString(&mol, rec);
    if (!ok || obErrorLog.GetErrorMessageCount() != errs) {
        std::string why = last_ob_error();
        return reject(f, MM_CHEM_PARSE, "Open Babel cannot read %s%s%s", what.c_str(), why.empty() ? "" : ": ",
                      why.c_str());
    }
    bool input3d = false;
    if (c->o.keep_input_3d && mol.GetDimension() == 3) {
        /* Files label flat drawings "3D" too (CASCADE's NMR8K, bonds ~0.8 long): a flat
         * record counts as 3D only if its bonds have real lengths (median 1.1-1.8 A), as a
         * planar molecule optimised in the xy plane has. */
        double zspread = 0;
        FOR_ATOMS_OF_MOL (a, mol) zspread += fabs(a->GetZ());
        std::vector<double> len;
        FOR_BONDS_OF_MOL (b, mol)
            if (b->GetBeginAtom()->GetAtomicNum() > 1 && b->GetEndAtom()->GetAtomicNum() > 1) len.push_back(b->GetLength());
        std::sort(len.begin(), len.end());
        double med = len.empty() ? 0 : len[len.size() / 2];
        input3d = zspread > 1e-3 || (med > 1.1 && med < 1.8);
    }
    input_atoms in;
    note_input_atoms(mol, in);
    mm_status st = featurize_mol(c, mol, what.c_str(), seed, input3d, f, &in);
    if (st == MM_OK) f->n_input_atoms = (int32_t)in.id.size();
    return st;
}

extern "C" mm_status mm_chem_featurize_sdf(mm_chem *c, const char *record, uint64_t seed, mm_mol_feat *f)
{
    MM_CHECK_ARG(c && record && f, "mm_chem_featurize_sdf: NULL argument");
    return guarded("mm_chem_featurize_sdf", [&] { return sdf_impl(c, record, seed, f); });
}

/* ---- helpers ---------------------------------------------------------------------------- */

extern "C" mm_status mm_chem_write_png(const uint8_t *image, int h, int w, const char *path)
{
    MM_CHECK_ARG(image && path && h > 0 && w > 0, "mm_chem_write_png: bad argument");
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return MM_ERR(MM_ERR_NOMEM, "cairo could not create a %dx%d image", w, h);
    }
    cairo_surface_flush(s);
    unsigned char *data = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    size_t plane = (size_t)h * w;
    for (int y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(data + (size_t)y * stride);
        for (int x = 0; x < w; x++) {
            size_t o = (size_t)y * w + x;
            row[x] = ((uint32_t)image[o] << 16) | ((uint32_t)image[plane + o] << 8) | image[2 * plane + o];
        }
    }
    cairo_surface_mark_dirty(s);
    cairo_status_t cs = cairo_surface_write_to_png(s, path);
    cairo_surface_destroy(s);
    if (cs != CAIRO_STATUS_SUCCESS)
        return MM_ERR(MM_ERR_IO, "cannot write PNG %s: %s", path, cairo_status_to_string(cs));
    return MM_OK;
}

extern "C" void mm_chem_fp_pack_words(const uint32_t *words, int nbits, uint8_t *out)
{
    memset(out, 0, (size_t)(nbits + 7) / 8);
    for (int j = 0; j < nbits; j++)
        if ((words[j >> 5] >> (j & 31)) & 1u) out[j >> 3] |= (uint8_t)(0x80u >> (j & 7));
}

extern "C" double mm_chem_fp_tanimoto(const uint8_t *a, const uint8_t *b)
{
    int both = 0, na = 0, nb = 0;
    for (int i = 0; i < MM_CHEM_FP_BYTES; i++) {
        both += __builtin_popcount((unsigned)(a[i] & b[i]));
        na += __builtin_popcount(a[i]);
        nb += __builtin_popcount(b[i]);
    }
    int uni = na + nb - both;
    return uni ? (double)both / uni : 0.0;
}

static mm_status formula_impl(mm_chem *c, const char *smiles, char *buf, size_t n)
{
    OBMol mol;
    unsigned int errs = obErrorLog.GetErrorMessageCount();
    if (!c->in_smi.ReadString(&mol, smiles) || obErrorLog.GetErrorMessageCount() != errs || mol.NumAtoms() == 0)
        return MM_ERR(MM_ERR_CHEM, "Open Babel cannot read SMILES '%s'", shown(smiles).c_str());
    std::string s = mol.GetFormula();
    if (s.size() + 1 > n) return MM_ERR(MM_ERR_ARG, "formula %s of '%s' does not fit %zu bytes", s.c_str(), smiles, n);
    memcpy(buf, s.c_str(), s.size() + 1);
    return MM_OK;
}

extern "C" mm_status mm_chem_formula(mm_chem *c, const char *smiles, char *buf, size_t n)
{
    MM_CHECK_ARG(c && smiles && buf && n > 0, "mm_chem_formula: NULL argument");
    return guarded("mm_chem_formula", [&] { return formula_impl(c, smiles, buf, n); });
}
