/* The demo's transformer (decoder only, f32): its configuration, its
 * deterministic weights and the elementwise pieces that the distributed
 * model and the one-process reference share.  Weights come from a
 * counter-based generator, so every rank makes exactly its own shard. */
#ifndef DEMO_MODEL_H
#define DEMO_MODEL_H

#include <stdint.h>

#include <kvmesh.h>

typedef struct {
    int64_t vocab, hidden, heads, kv_heads, head_dim, mlp, layers;
    int64_t window, chunk;      /* of the SLIDING and CHUNK layers */
    uint64_t seed;
} model_cfg_t;

/** Layer l's attention: FULL, SLIDING, CHUNK, FULL, ... */
kvmesh_mask_detail_t model_layer(const model_cfg_t *c, int64_t l);

/** The weights one rank holds on a tensor-parallel group of T ranks, as
 *  rank t: query, key and value rows of its heads and gate and up rows of
 *  its MLP columns (column parallel), the output and down projections'
 *  columns of the same (row parallel); embedding (tied output head) and
 *  norms whole.  Matrices are [out][in], row-major.  T = 1: the whole
 *  model. */
typedef struct {
    int64_t T, t, hl, kvl, ml;     /* group, rank; local heads, kv heads, mlp */
    float *embed;                  /* [vocab][hidden] */
    float *final_norm;             /* [hidden] */
    struct model_layer {
        float *attn_norm, *mlp_norm;        /* [hidden] */
        float *wq, *wk, *wv;                /* [hl | kvl * head_dim][hidden] */
        float *wo;                          /* [hidden][hl * head_dim] */
        float *wg, *wu;                     /* [ml][hidden] */
        float *wd;                          /* [hidden][ml] */
    } *layer;
} model_weights_t;

/** Makes rank t's shard of T (T must divide heads, kv_heads and mlp).
 *  0, or -1 when out of memory. */
int model_weights(const model_cfg_t *c, int64_t T, int64_t t, model_weights_t *w);
void model_weights_free(const model_cfg_t *c, model_weights_t *w);

/** out[i] = x[i] / rms(x) * w[i] over n elements (eps 1e-6). */
void model_rmsnorm(const float *x, const float *w, int64_t n, float *out);
/** Rotary embedding of one head vector at position pos, in place (pairs
 *  (i, i + dim / 2), base 10000). */
void model_rope(float *v, int64_t dim, int64_t pos);
/** out[r] = sum_c m[r][c] x[c], r < rows, c < cols. */
void model_matvec(const float *m, int64_t rows, int64_t cols, const float *x, float *out);
/** x * sigmoid(x). */
float model_silu(float x);
/** Index of the largest of n values (the first on a tie). */
int64_t model_argmax(const float *x, int64_t n);

#endif
