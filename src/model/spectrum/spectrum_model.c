/* spectrum_model.c: the frozen spectrum encoder loaded from an autoencoder checkpoint,
 * the API of the ACML teacher (spectrum.h). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/checkpoint.h"
#include "mmsa/spectrum.h"

struct mm_spectrum_model {
    mm_spectrum_net net;       /* encoder only */
    mm_tape tape;
};

/* The keys the encoder is built from: the spectrum section, and of the model section the
 * objective and the BatchNorm constants. The rest of the stored job (the other sections,
 * written whole by the run) is left out, so that a key added to or renamed in another
 * section by a later build does not make the checkpoint unloadable. */
static bool keep_key(const char *section, const char *line)
{
    if (!strcmp(section, "spectrum")) return true;
    if (strcmp(section, "model") != 0) return false;
    while (*line == ' ') line++;
    static const char *const keys[] = {"objective:", "bn_eps:", "bn_momentum:"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (!strncmp(line, keys[k], strlen(keys[k]))) return true;
    return false;
}

/* text's lines kept by keep_key, with their section headers, into a new string */
static char *encoder_sections(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n + 1), section[64] = "";
    if (!out) return NULL;
    size_t w = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        bool header = line[0] != ' ' && line[0] != '#' && line[0] != '\n';
        if (header) {
            size_t k = 0;
            while (k + 1 < sizeof section && line[k] && line[k] != ':' && line[k] != '\n') {
                section[k] = line[k];
                k++;
            }
            section[k] = '\0';
        }
        if (header ? !strcmp(section, "model") || !strcmp(section, "spectrum") : keep_key(section, line)) {
            memcpy(out + w, line, len);
            w += len;
        }
        line += len;
    }
    out[w] = '\0';
    return out;
}

/* The job stored in the checkpoint, which must be a spectrum autoencoder's. */
static mm_status stored_job(const char *path, MPI_Comm comm, mm_job *job)
{
    char *text = NULL;
    MM_CALL(mm_ckpt_load_job(path, comm, &text));
    mm_status st = MM_OK;
    char *kept = NULL;
    if (!text[0]) {
        st = MM_ERR(MM_ERR_FORMAT, "%s holds no job text, so it is not a spectrum-autoencoder checkpoint", path);
        mm_error_hint("pass a checkpoint written by mmsa_pretrain with model.objective: spectrum_autoencoder");
    } else if (!(kept = encoder_sections(text))) {
        st = MM_ERR(MM_ERR_NOMEM, "the job stored in %s", path);
    } else {
        char name[1100];
        snprintf(name, sizeof name, "the model and spectrum sections of the job stored in %s", path);
        st = mm_cfg_load_string(&mm_job_schema, name, kept, job);
        if (st == MM_OK && job->model.objective != MM_OBJ_SPECTRUM_AE) {
            st = MM_ERR(MM_ERR_FORMAT, "%s is not a spectrum-autoencoder checkpoint (its job has model.objective %s)",
                        path, job->model.objective == MM_OBJ_MMSA ? "mmsa" : "other than spectrum_autoencoder");
            mm_error_hint("an NMR teacher needs a checkpoint of model.objective: spectrum_autoencoder "
                          "(configs/spectrum_ae_nmr13c.yaml)");
        }
    }
    free(kept);
    free(text);
    return st;
}

mm_status mm_spectrum_model_load(const char *ckpt_path, MPI_Comm comm, mm_spectrum_model **out)
{
    *out = NULL;
    mm_job job;
    MM_CALL(stored_job(ckpt_path, comm, &job));
    mm_spectrum_model *m = mm_calloc(1, sizeof *m);
    if (!m) return MM_ERR(MM_ERR_NOMEM, "spectrum model");
    mm_status st;
    MM_CALL_GOTO(st, mm_spectrum_net_init(&m->net, &job.spectrum, job.model.bn_eps, job.model.bn_momentum, false, 0), fail);
    /* one parameter at a time, so that a missing one is named */
    for (int i = 0; i < m->net.params.count; i++) {
        const char *name = m->net.params.info[i].name;
        int n = 0;
        MM_CALL_GOTO(st, mm_ckpt_load_params(ckpt_path, comm, &m->net.params, name, &n), fail);
        if (n < 1) {
            st = MM_ERR(MM_ERR_FORMAT, "%s lacks the spectrum encoder parameter %s", ckpt_path, name);
            mm_error_hint("the checkpoint's job describes a spectrum autoencoder, but the file does not hold its "
                          "encoder; write it again with mmsa_pretrain");
            goto fail;
        }
    }
    MM_CALL_GOTO(st, mm_ckpt_load_buffers(ckpt_path, comm, m->net.buffers, m->net.n_buffers, &m->net.bn_batches), fail);
    MM_CALL_GOTO(st, mm_tape_init(&m->tape, 8u << 20), fail);
    m->tape.grad_enabled = false;
    m->tape.training = false;
    *out = m;
    return MM_OK;
fail:
    mm_spectrum_model_free(&m);
    return st;
}

void mm_spectrum_model_free(mm_spectrum_model **m)
{
    if (!m || !*m) return;
    mm_spectrum_net_destroy(&(*m)->net);
    mm_tape_destroy(&(*m)->tape);
    mm_free_sized(*m, sizeof **m);
    *m = NULL;
}

int mm_spectrum_model_kind(const mm_spectrum_model *m) { return m->net.cfg.kind; }
int64_t mm_spectrum_model_dim(const mm_spectrum_model *m) { return m->net.cfg.embed_dim; }
const mm_spectrum_grid *mm_spectrum_model_grid(const mm_spectrum_model *m) { return &m->net.grid; }
const mm_spectrum_net *mm_spectrum_model_net(const mm_spectrum_model *m) { return &m->net; }

mm_status mm_spectrum_encode(mm_spectrum_model *m, const mm_molset *ms, float *out)
{
    MM_CALL(mm_spectrum_net_encode_set(&m->net, &m->tape, ms, out));
    return MM_OK;
}
