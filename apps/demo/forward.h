/* The demo's model on kvmesh: heads split over the mesh's tp axis
 * (column-parallel query/key/value and MLP input, row-parallel output
 * projections, an allreduce over tp each), the cache's positions over sp
 * (each rank attends over its kv slots with the mask info; partial softmax
 * results merged flash-decoding style over the layer's kv communicator),
 * batch rows over dp / fsdp. */
#ifndef DEMO_FORWARD_H
#define DEMO_FORWARD_H

#include <mpi.h>

#include "model.h"

/** Seconds spent, summed over calls. */
typedef struct {
    double matmul;     /* projections, norms, rope, MLP, output head */
    double append;     /* kvmesh_view_concatenate */
    double attend;     /* mask, reads of the local slots (kvmesh) and scores */
    double kvmesh;     /* of which inside kvmesh calls: mask, reads */
    double merge;      /* softmax merge over the kv communicator */
    double reduce;     /* allreduce over tp */
    double merge_bytes, reduce_bytes;   /* this rank's payload of each */
} fwd_times_t;

typedef struct {
    const model_cfg_t *cfg;
    model_weights_t w;
    kvmesh_cache_t *cache;
    MPI_Comm tp;
    int64_t row0, rows, nmax, slots;   /* my batch block; largest n; local slots */
    float *x, *hn, *q, *k, *v, *o, *att, *g, *u, *kin, *vin, *kr, *vr, *part, *gm, *mine, *sc;
    uint8_t *allow;
    fwd_times_t t;
} fwd_t;

/** A model on \p cache's mesh for appends of up to \p nmax tokens.
 *  KVMESH_ERR_LAYOUT when the tp axis does not divide the heads, kv heads
 *  and MLP or the cache splits head dims.  Collective on the mesh. */
kvmesh_status_t fwd_init(fwd_t *f, const model_cfg_t *cfg, kvmesh_cache_t *cache,
                         int64_t nmax);
void fwd_free(fwd_t *f);

/** Runs n tokens of every row through the model, appending their keys and
 *  values to the cache; tokens[b * n + j] for global rows b.  The logits
 *  of my rows' tokens go to logits[((b - row0) * n + j) * vocab] when
 *  \p logits is not NULL.  Collective on the mesh. */
kvmesh_status_t fwd_run(fwd_t *f, kvmesh_mode_t mode, int64_t n, const int32_t *tokens,
                        float *logits);

#endif
