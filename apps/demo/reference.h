/* The one-process reference of the demo: the same weights as whole arrays,
 * plain loops, one request at a time, keys and values rounded to the
 * cache's storage exactly as kvmesh stores them (kvmesh_convert,
 * kvmesh_quant_roundtrip), attention in double over every position its
 * own copy of the mask rule allows. */
#ifndef DEMO_REFERENCE_H
#define DEMO_REFERENCE_H

#include "model.h"

typedef struct {
    const model_cfg_t *cfg;
    model_weights_t w;             /* the whole model */
    kvmesh_dtype_t dtype;
    kvmesh_quant_t quant;
    int64_t cap, len;              /* positions it can hold, holds */
    float **k, **v;                /* [layer] -> [cap][kv_heads][head_dim] */
    float *x, *h, *q, *kv, *o, *a, *g, *u;   /* one token's scratch */
    double *score;                 /* [cap] */
} ref_model_t;

/** 0, or -1 when out of memory. */
int ref_init(ref_model_t *r, const model_cfg_t *cfg, kvmesh_dtype_t dtype,
             kvmesh_quant_t quant, int64_t cap);
void ref_free(ref_model_t *r);
/** Forgets every position: a new request. */
void ref_reset(ref_model_t *r);
/** Feeds \p token at position len (then len + 1); its logits to \p logits
 *  [vocab].  -1 when the model is full. */
int ref_step(ref_model_t *r, int32_t token, float *logits);

#endif
