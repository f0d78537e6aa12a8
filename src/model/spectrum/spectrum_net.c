/* spectrum_net.c: binning, the 1-D CNN encoder, the decoder and the reconstruction loss
 * (spectrum.h). */
#include <math.h>
#include <string.h>

#include "mmsa/loss.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"
#include "mmsa/spectrum.h"

const char *const mm_nmr_kind_names[MM_NMR_KINDS] = {"nmr13c", "nmr1h"};

/* peaks are evaluated within this many standard deviations (exp(-8) = 3e-4 beyond) */
#define PEAK_HALF_WIDTH_SIGMAS 4.0

mm_status mm_spectrum_grid_of(const mm_spectrum_config *cfg, int kind, mm_spectrum_grid *g)
{
    if (kind < 0) kind = cfg->kind;
    if (kind != MM_NMR_13C && kind != MM_NMR_1H) return MM_ERR(MM_ERR_ARG, "spectrum: unknown kind %d", kind);
    double lo = kind == MM_NMR_13C ? cfg->nmr13c_min : cfg->nmr1h_min;
    double hi = kind == MM_NMR_13C ? cfg->nmr13c_max : cfg->nmr1h_max;
    double step = kind == MM_NMR_13C ? cfg->nmr13c_step : cfg->nmr1h_step;
    double sigma = kind == MM_NMR_13C ? cfg->nmr13c_sigma : cfg->nmr1h_sigma;
    const char *k = mm_nmr_kind_names[kind];
    if (!(hi > lo) || !(step > 0))
        return MM_ERR(MM_ERR_CONFIG, "spectrum.%s_min (%g) must be below spectrum.%s_max (%g) and spectrum.%s_step (%g) > 0",
                      k, lo, k, hi, k, step);
    if (!(sigma > 0)) return MM_ERR(MM_ERR_CONFIG, "spectrum.%s_sigma (%g) must be > 0", k, sigma);
    /* float keys: 400 / 0.1 is 3999.9999; the nearest whole count is meant */
    double bins = floor((hi - lo) / step + 0.5);
    if (bins < 1 || bins > 1e8)
        return MM_ERR(MM_ERR_CONFIG, "spectrum.%s grid: %g bins from %g to %g ppm at %g", k, bins, lo, hi, step);
    g->min = lo;
    g->step = step;
    g->n_bins = (int64_t)bins;
    g->sigma = sigma;
    return MM_OK;
}

mm_status mm_spectrum_config_validate(const mm_spectrum_config *cfg)
{
    if (cfg->n_channels < 1 || cfg->n_channels > MM_SPECTRUM_MAX_STAGES)
        return MM_ERR(MM_ERR_CONFIG, "spectrum.channels needs 1 to %d stages, got %d", MM_SPECTRUM_MAX_STAGES,
                      cfg->n_channels);
    if (cfg->kernel % 2 == 0)
        return MM_ERR(MM_ERR_CONFIG, "spectrum.kernel (%d) must be odd so that the kernel is centred on its bin",
                      cfg->kernel);
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        mm_spectrum_grid g;
        MM_CALL(mm_spectrum_grid_of(cfg, k, &g));
        if ((g.n_bins >> cfg->n_channels) < 1)
            return MM_ERR(MM_ERR_CONFIG, "spectrum.%s grid has %lld bins, too few for %d stride-2 stages",
                          mm_nmr_kind_names[k], (long long)g.n_bins, cfg->n_channels);
    }
    return MM_OK;
}

void mm_spectrum_bin(const mm_spectrum_grid *g, const mm_spectra *sp, const int64_t *mols, int64_t n, float *x,
                     int64_t *dropped)
{
    int64_t L = g->n_bins, lost = 0;
    double inv2s2 = 1.0 / (2.0 * g->sigma * g->sigma), reach = PEAK_HALF_WIDTH_SIGMAS * g->sigma;
    double hi = g->min + (double)L * g->step;
    memset(x, 0, (size_t)(n * L) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        float *row = x + i * L;
        for (int64_t p = sp->peak_offset[mols[i]]; p < sp->peak_offset[mols[i] + 1]; p++) {
            double s = sp->shift[p];
            if (!(s >= g->min && s < hi)) {
                lost++;
                continue;
            }
            /* bins whose centre c_b = min + (b + 0.5) step lies within reach of s */
            int64_t b0 = (int64_t)ceil((s - reach - g->min) / g->step - 0.5);
            int64_t b1 = (int64_t)floor((s + reach - g->min) / g->step - 0.5);
            if (b0 < 0) b0 = 0;
            if (b1 > L - 1) b1 = L - 1;
            for (int64_t b = b0; b <= b1; b++) {
                double dc = g->min + ((double)b + 0.5) * g->step - s;
                row[b] += (float)exp(-dc * dc * inv2s2);
            }
        }
    }
    if (dropped) *dropped += lost;
}

/* ---- parameters ----------------------------------------------------------------------- */

static mm_status add(mm_params *p, int *ix, int ndim, const int64_t *shape, const char *fmt, int a)
{
    char name[MM_PARAM_NAME_MAX];
    snprintf(name, sizeof name, fmt, a);
    MM_CALL(mm_params_add(p, name, ndim, shape, ix));
    return MM_OK;
}

static mm_status declare(mm_spectrum_net *net)
{
    const mm_spectrum_config *c = &net->cfg;
    mm_params *p = &net->params;
    int64_t cin = 2; /* spectrum + coordinate */
    for (int s = 0; s < c->n_channels; s++) {
        int64_t co = c->channels[s];
        MM_CALL(add(p, &net->conv[s], 3, (int64_t[]){co, cin, c->kernel}, "enc.spectrum.body.%d.weight", 3 * s));
        MM_CALL(add(p, &net->bn_w[s], 1, (int64_t[]){co}, "enc.spectrum.body.%d.weight", 3 * s + 1));
        MM_CALL(add(p, &net->bn_b[s], 1, (int64_t[]){co}, "enc.spectrum.body.%d.bias", 3 * s + 1));
        cin = co;
    }
    int64_t E = c->embed_dim, H = c->decoder_hidden, L = net->grid.n_bins;
    MM_CALL(add(p, &net->out_w, 2, (int64_t[]){E, cin}, "enc.spectrum.out.weight", 0));
    MM_CALL(add(p, &net->out_b, 1, (int64_t[]){E}, "enc.spectrum.out.bias", 0));
    net->dec0_w = net->dec0_b = net->dec2_w = net->dec2_b = -1;
    if (net->decoder) {
        MM_CALL(add(p, &net->dec0_w, 2, (int64_t[]){H, E}, "dec.spectrum.0.weight", 0));
        MM_CALL(add(p, &net->dec0_b, 1, (int64_t[]){H}, "dec.spectrum.0.bias", 0));
        MM_CALL(add(p, &net->dec2_w, 2, (int64_t[]){L, H}, "dec.spectrum.2.weight", 0));
        MM_CALL(add(p, &net->dec2_b, 1, (int64_t[]){L}, "dec.spectrum.2.bias", 0));
    }
    return MM_OK;
}

mm_status mm_spectrum_net_init(mm_spectrum_net *net, const mm_spectrum_config *cfg, float bn_eps, float bn_momentum,
                               bool with_decoder, uint64_t seed)
{
    memset(net, 0, sizeof *net);
    net->cfg = *cfg;
    net->bn_eps = bn_eps;
    net->bn_momentum = bn_momentum;
    net->decoder = with_decoder;
    mm_params_init(&net->params);
    mm_status st;
    MM_CALL_GOTO(st, mm_spectrum_config_validate(cfg), fail);
    MM_CALL_GOTO(st, mm_spectrum_grid_of(cfg, -1, &net->grid), fail);
    MM_CALL_GOTO(st, declare(net), fail);
    MM_CALL_GOTO(st, mm_params_alloc(&net->params), fail);
    /* PyTorch defaults: conv and Linear U(+-1/sqrt(fan_in)) (a bias follows its weight),
     * BatchNorm gain 1 and bias 0 */
    mm_params *p = &net->params;
    for (int i = 0; i < p->count; i++) {
        const mm_param_info *pi = &p->info[i];
        bool bn = false;
        for (int s = 0; s < cfg->n_channels; s++) bn |= i == net->bn_w[s] || i == net->bn_b[s];
        if (bn) mm_params_init_const(p, i, strstr(pi->name, ".bias") ? 0.0f : 1.0f);
        else {
            const mm_param_info *w = pi->ndim == 1 ? &p->info[i - 1] : pi;
            mm_params_init_uniform(p, i, 1.0f / sqrtf((float)(w->n / (size_t)w->shape[0])), seed);
        }
    }
    for (int s = 0; s < cfg->n_channels; s++) net->n_buffers += 2 * (size_t)cfg->channels[s];
    net->buffers = mm_calloc(net->n_buffers, sizeof(float));
    net->coord = mm_malloc((size_t)net->grid.n_bins * sizeof(float));
    if (!net->buffers || !net->coord) {
        st = MM_ERR(MM_ERR_NOMEM, "spectrum encoder buffers");
        goto fail;
    }
    float *b = net->buffers;
    for (int s = 0; s < cfg->n_channels; s++) {
        net->bn_mean[s] = b;
        net->bn_var[s] = b + cfg->channels[s];
        for (int k = 0; k < cfg->channels[s]; k++) net->bn_var[s][k] = 1.0f;
        b += 2 * cfg->channels[s];
    }
    int64_t L = net->grid.n_bins;
    for (int64_t i = 0; i < L; i++) net->coord[i] = L > 1 ? (float)(2.0 * (double)i / (double)(L - 1) - 1.0) : 0.0f;
    return MM_OK;
fail:
    mm_spectrum_net_destroy(net);
    return st;
}

void mm_spectrum_net_destroy(mm_spectrum_net *net)
{
    mm_params_destroy(&net->params);
    if (net->buffers) mm_free_sized(net->buffers, net->n_buffers * sizeof(float));
    if (net->coord) mm_free_sized(net->coord, (size_t)net->grid.n_bins * sizeof(float));
    net->buffers = net->coord = NULL;
}

/* ---- forward ------------------------------------------------------------------------------ */

static mm_status param(mm_spectrum_net *net, mm_tape *t, int i, mm_tensor **out)
{
    MM_CALL(mm_params_tensor(&net->params, t, i, out));
    return MM_OK;
}

static mm_status linear(mm_spectrum_net *net, mm_tape *t, mm_tensor *x, int w, int b, mm_tensor **out)
{
    mm_tensor *W, *B;
    MM_CALL(param(net, t, w, &W));
    MM_CALL(param(net, t, b, &B));
    MM_CALL(mm_linear(t, x, W, B, out));
    return MM_OK;
}

mm_status mm_spectrum_net_encode(mm_spectrum_net *net, mm_tape *t, float *x, int64_t n, mm_tensor **z)
{
    const mm_spectrum_config *c = &net->cfg;
    int64_t L = net->grid.n_bins;
    /* input [n, 2, L]: the spectrum, then the coordinate channel */
    float *in;
    MM_CALL(mm_tape_alloc(t, (size_t)(2 * n * L) * sizeof(float), (void **)&in));
    for (int64_t i = 0; i < n; i++) {
        memcpy(in + (2 * i) * L, x + i * L, (size_t)L * sizeof(float));
        memcpy(in + (2 * i + 1) * L, net->coord, (size_t)L * sizeof(float));
    }
    mm_tensor *h;
    MM_CALL(mm_tensor_wrap(t, in, NULL, 3, (int64_t[]){n, 2, L}, &h));
    for (int s = 0; s < c->n_channels; s++) {
        mm_tensor *w, *gamma, *beta, *y, *yn;
        MM_CALL(param(net, t, net->conv[s], &w));
        MM_CALL(mm_conv1d(t, h, w, NULL, 2, c->kernel / 2, &y));
        MM_CALL(param(net, t, net->bn_w[s], &gamma));
        MM_CALL(param(net, t, net->bn_b[s], &beta));
        MM_CALL(mm_batchnorm(t, y, gamma, beta, net->bn_mean[s], net->bn_var[s], net->bn_momentum, net->bn_eps, &yn));
        MM_CALL(mm_relu(t, yn, &h));
    }
    mm_tensor *pooled;
    MM_CALL(mm_global_avg_pool(t, h, &pooled));                 /* [n, C] */
    MM_CALL(linear(net, t, pooled, net->out_w, net->out_b, z)); /* [n, E] */
    return MM_OK;
}

/* molecules per forward in mm_spectrum_net_encode_set: bounds the arena whatever the set */
#define ENCODE_CHUNK 256

mm_status mm_spectrum_net_encode_set(mm_spectrum_net *net, mm_tape *t, const mm_molset *ms, float *out)
{
    int kind = net->cfg.kind;
    const mm_spectra *sp = &ms->nmr[kind];
    unsigned bit = kind == MM_NMR_13C ? MM_MOD_NMR13C : MM_MOD_NMR1H;
    int64_t E = net->cfg.embed_dim, L = net->grid.n_bins;
    if (!(ms->modalities & bit) || !sp->ok)
        return MM_ERR(MM_ERR_ARG, "spectrum encode: the molecule set was read without its %s spectra",
                      mm_nmr_kind_names[kind]);
    memset(out, 0, (size_t)(ms->n * E) * sizeof(float));
    for (int64_t i0 = 0; i0 < ms->n; i0 += ENCODE_CHUNK) {
        int64_t i1 = i0 + ENCODE_CHUNK < ms->n ? i0 + ENCODE_CHUNK : ms->n, n = 0;
        MM_CALL(mm_tape_reset(t));
        t->grad_enabled = false;
        t->training = false;
        int64_t *mols;
        float *x;
        MM_CALL(mm_tape_alloc(t, (size_t)(i1 - i0) * sizeof(int64_t), (void **)&mols));
        for (int64_t i = i0; i < i1; i++)
            if (sp->ok[i]) mols[n++] = i;
        if (n == 0) continue;
        MM_CALL(mm_tape_alloc(t, (size_t)(n * L) * sizeof(float), (void **)&x));
        mm_spectrum_bin(&net->grid, sp, mols, n, x, NULL);
        mm_tensor *z;
        MM_CALL(mm_spectrum_net_encode(net, t, x, n, &z));
        for (int64_t k = 0; k < n; k++) memcpy(out + mols[k] * E, z->data + k * E, (size_t)E * sizeof(float));
    }
    MM_CALL(mm_tape_reset(t));
    return MM_OK;
}

mm_status mm_spectrum_net_decode(mm_spectrum_net *net, mm_tape *t, mm_tensor *z, mm_tensor **logits)
{
    if (!net->decoder) return MM_ERR(MM_ERR_ARG, "spectrum decoder: the network was built without one");
    mm_tensor *h, *a;
    MM_CALL(linear(net, t, z, net->dec0_w, net->dec0_b, &h)); /* [n, H] */
    MM_CALL(mm_relu(t, h, &a));
    MM_CALL(linear(net, t, a, net->dec2_w, net->dec2_b, logits)); /* [n, L] */
    return MM_OK;
}

mm_status mm_spectrum_loss(mm_tape *t, mm_tensor *logits, const float *x, int64_t n_global, mm_tensor **out)
{
    int64_t n = mm_rows(logits), L = mm_cols(logits);
    if (n_global < n || n_global < 1)
        return MM_ERR(MM_ERR_ARG, "spectrum loss: %lld local rows of a global batch of %lld", (long long)n,
                      (long long)n_global);
    float *y;
    MM_CALL(mm_tape_alloc(t, (size_t)(n * L > 0 ? n * L : 1) * sizeof(float), (void **)&y));
    for (int64_t k = 0; k < n * L; k++) y[k] = x[k] < 1.0f ? x[k] : 1.0f;
    mm_tensor *target, *bce;
    MM_CALL(mm_tensor_wrap(t, y, NULL, 2, (int64_t[]){n, L}, &target));
    MM_CALL(mm_bce_logits_masked(t, logits, target, &bce));
    MM_CALL(mm_affine(t, bce, (float)((double)n / (double)n_global), 0.0f, out));
    return MM_OK;
}
