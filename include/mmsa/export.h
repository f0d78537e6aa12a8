/* export.h: embeddings of a dataset from a checkpoint, into one HDF5 file (mmsa_embed).
 *
 * Promises: the output has, for every molecule of the dataset in order, the encoder
 * outputs z_<modality> [N, E], the L2-normalised projections p_<modality> [N, P], the
 * unified embedding u [N, E], the modality mask [N, 4] and source_row [N]; attributes
 * format="mmsa-embeddings", checkpoint, step, dataset. Each rank embeds and writes its
 * own block of rows (collective parallel HDF5); the file appears only when complete. */
#ifndef MMSA_EXPORT_H
#define MMSA_EXPORT_H

#include "mmsa/dist.h"
#include "mmsa/job.h"

/* job: the run's resolved job (run_dir/job.yaml); ckpt: a checkpoint of that run. */
mm_status mm_export_embeddings(const mm_job *job, const char *ckpt, const char *dataset, const char *out,
                               mm_dist *d, int64_t chunk);

#endif
