/* teacher.c: ACML's frozen teachers (acml.h): an encoder of an mmsa_pretrain checkpoint
 * rebuilt from the job stored in it, or a spectrum encoder; eval mode, no gradient. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmsa/acml.h"
#include "mmsa/checkpoint.h"
#include "mmsa/spectrum.h"

const char *const mm_teacher_names[MM_N_TEACHERS + 1] = {"image", "conformer", "fingerprint", "nmr13c", "nmr1h", "all"};

static const unsigned teacher_modality[MM_N_TEACHERS] = {MM_MOD_IMAGE, MM_MOD_CONFORMER, MM_MOD_FINGERPRINT,
                                                         MM_MOD_NMR13C, MM_MOD_NMR1H};

static bool is_spectrum(int kind) { return kind == MM_TEACHER_NMR13C || kind == MM_TEACHER_NMR1H; }

/* image, conformer, fingerprint: the MMSA model of the checkpoint's job, its encoder
 * parameters (every one required) and the BatchNorm statistics. */
static mm_status load_mmsa_teacher(mm_acml_teacher *te, const char *path)
{
    char *text = NULL;
    MM_CALL(mm_ckpt_load_job(path, MPI_COMM_SELF, &text));
    mm_job job;
    mm_status st = MM_OK;
    if (!text[0]) {
        st = MM_ERR(MM_ERR_FORMAT, "%s stores no job: the %s teacher's sizes are unknown", path,
                    mm_teacher_names[te->kind]);
        mm_error_hint("use a checkpoint written by mmsa_pretrain (model.objective mmsa)");
    } else {
        st = mm_cfg_load_string(&mm_job_schema, path, text, &job);
    }
    free(text);
    MM_CALL(st);
    if (job.model.objective != MM_OBJ_MMSA) {
        st = MM_ERR(MM_ERR_CONFIG, "%s is not an MMSA checkpoint (its model.objective is not mmsa): it has no %s encoder",
                    path, mm_teacher_names[te->kind]);
        mm_error_hint("acml.teacher_init must name a step_*.h5 of an mmsa_pretrain run with model.objective mmsa");
        return st;
    }
    bool on[3] = {job.model.use_image, job.model.use_conformer, job.model.use_fingerprint};
    const char *key[3] = {"use_image", "use_conformer", "use_fingerprint"};
    if (!on[te->kind]) {
        st = MM_ERR(MM_ERR_CONFIG, "%s: the run that wrote it had model.%s false, so its %s encoder was never trained",
                    path, key[te->kind], mm_teacher_names[te->kind]);
        mm_error_hint("pick another teacher or a checkpoint of a run that encoded %s", mm_teacher_names[te->kind]);
        return st;
    }
    MM_CALL(mm_model_init(&te->mmsa, &job.model, &job.loss, (uint64_t)job.train.seed));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "enc.%s.", mm_teacher_names[te->kind]);
    MM_CALL(mm_ckpt_load_params_all(path, MPI_COMM_SELF, &te->mmsa.params, prefix));
    MM_CALL(mm_ckpt_load_buffers(path, MPI_COMM_SELF, te->mmsa.buffers, te->mmsa.n_buffers, &te->mmsa.bn_batches));
    te->dim = job.model.embed_dim;
    return MM_OK;
}

mm_status mm_acml_teacher_load(mm_acml_teacher *te, int kind, const char *path)
{
    memset(te, 0, sizeof *te);
    MM_CHECK_ARG(kind >= 0 && kind < MM_N_TEACHERS && path, "teacher: kind %d", kind);
    te->kind = kind;
    te->modality = teacher_modality[kind];
    snprintf(te->init, sizeof te->init, "%s", path);
    if (!path[0]) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "the %s teacher has no checkpoint (acml.%s is empty)", mm_teacher_names[kind],
                              kind == MM_TEACHER_NMR13C ? "teacher_init or acml.nmr13c_init"
                              : kind == MM_TEACHER_NMR1H ? "teacher_init or acml.nmr1h_init"
                                                          : "teacher_init");
        mm_error_hint("point it at the checkpoint the teacher's weights come from");
        return st;
    }
    /* a run directory or its checkpoints/ directory: the latest checkpoint in it */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char dir[MM_CFG_STR_MAX + 16];
        bool found = false;
        snprintf(dir, sizeof dir, "%s/checkpoints", path);
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) snprintf(dir, sizeof dir, "%s", path);
        MM_CALL(mm_ckpt_latest(dir, te->init, sizeof te->init, &found));
        if (!found) {
            mm_status st = MM_ERR(MM_ERR_IO, "the %s teacher's checkpoint: %s holds no checkpoint (no %s/latest)",
                                  mm_teacher_names[kind], path, dir);
            mm_error_hint("point acml.teacher_init at a step_*.h5 file or at a run directory with checkpoints");
            return st;
        }
        path = te->init;
    }
    mm_status st;
    if (is_spectrum(kind)) {
        mm_spectrum_model *sm = NULL;
        st = mm_spectrum_model_load(path, MPI_COMM_SELF, &sm);
        te->spectrum = sm;
        if (st == MM_OK) {
            int want = kind == MM_TEACHER_NMR13C ? MM_NMR_13C : MM_NMR_1H;
            if (mm_spectrum_model_kind(sm) != want) {
                st = MM_ERR(MM_ERR_CONFIG, "%s is a %s spectrum autoencoder, but the teacher is %s", path,
                            want == MM_NMR_13C ? "1H" : "13C", mm_teacher_names[kind]);
                mm_error_hint("use the checkpoint of a spectrum_autoencoder run of the teacher's kind");
            }
            te->dim = mm_spectrum_model_dim(sm);
        }
    } else {
        st = load_mmsa_teacher(te, path);
    }
    if (st != MM_OK) {
        mm_error_push(__FILE__, __LINE__, __func__);
        mm_acml_teacher_free(te);
    }
    return st;
}

void mm_acml_teacher_free(mm_acml_teacher *te)
{
    if (te->spectrum) {
        mm_spectrum_model *sm = te->spectrum;
        mm_spectrum_model_free(&sm);
    }
    mm_model_destroy(&te->mmsa);
    memset(te, 0, sizeof *te);
}

mm_status mm_acml_teacher_encode(mm_acml_teacher *te, mm_tape *t, const mm_molset *ms, float *out, uint8_t *ok)
{
    int64_t n = ms->n, D = te->dim;
    if (!(ms->modalities & te->modality))
        return MM_ERR(MM_ERR_ARG, "teacher %s: the molecules were read without its modality", mm_teacher_names[te->kind]);
    if (n == 0) return MM_OK;
    if (is_spectrum(te->kind)) {
        const mm_spectra *sp = &ms->nmr[te->kind == MM_TEACHER_NMR13C ? MM_NMR_13C : MM_NMR_1H];
        MM_CALL(mm_spectrum_encode(te->spectrum, ms, out));
        for (int64_t i = 0; i < n; i++) ok[i] = sp->ok[i] ? 1 : 0;
        return MM_OK;
    }
    mm_dist self;
    MM_CALL(mm_dist_init(&self, MPI_COMM_SELF));
    bool grad = t->grad_enabled, training = t->training;
    mm_status st = mm_tape_reset(t);
    t->grad_enabled = false;
    t->training = false;
    mm_batch *b = NULL;
    mm_tensor *z = NULL;
    int64_t count = n;
    if (st == MM_OK) st = mm_batch_build(t, &te->mmsa, ms, &self, &count, &b);
    if (st == MM_OK) {
        if (te->kind == MM_TEACHER_IMAGE) st = mm_encode_image(&te->mmsa, t, b, &z);
        else if (te->kind == MM_TEACHER_CONFORMER) st = mm_encode_conformer(&te->mmsa, t, b, &z);
        else st = mm_encode_fingerprint(&te->mmsa, t, b, &z);
    }
    if (st == MM_OK) {
        for (int64_t i = 0; i < n; i++) {
            ok[i] = te->kind == MM_TEACHER_CONFORMER ? (ms->conf_ok[i] ? 1 : 0) : 1;
            if (ok[i]) memcpy(out + i * D, z->data + i * D, (size_t)D * sizeof(float));
            else memset(out + i * D, 0, (size_t)D * sizeof(float));
        }
    }
    t->grad_enabled = grad;
    t->training = training;
    mm_dist_destroy(&self);
    return st;
}
