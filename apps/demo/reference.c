/* The demo's one-process reference model: see reference.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

int
ref_init(ref_model_t *r, const model_cfg_t *c, kvmesh_dtype_t dtype, kvmesh_quant_t quant,
         int64_t cap)
{
    const int64_t E = c->hidden, kvd = c->kv_heads * c->head_dim;
    int64_t l;
    int ok;

    memset(r, 0, sizeof *r);
    r->cfg = c, r->dtype = dtype, r->quant = quant, r->cap = cap;
    ok = model_weights(c, 1, 0, &r->w) == 0;
    r->k = calloc((size_t) c->layers, sizeof *r->k);
    r->v = calloc((size_t) c->layers, sizeof *r->v);
    ok = ok && r->k && r->v;
    for (l = 0; ok && l < c->layers; l++) {
        r->k[l] = malloc((size_t) (cap * kvd) * sizeof(float));
        r->v[l] = malloc((size_t) (cap * kvd) * sizeof(float));
        ok = r->k[l] && r->v[l];
    }
    r->x = malloc((size_t) E * sizeof(float));
    r->h = malloc((size_t) E * sizeof(float));
    r->q = malloc((size_t) (c->heads * c->head_dim) * sizeof(float));
    r->kv = malloc((size_t) (2 * kvd) * sizeof(float));
    r->o = malloc((size_t) (c->heads * c->head_dim) * sizeof(float));
    r->a = malloc((size_t) E * sizeof(float));
    r->g = malloc((size_t) c->mlp * sizeof(float));
    r->u = malloc((size_t) c->mlp * sizeof(float));
    r->score = malloc((size_t) cap * sizeof(double));
    ok = ok && r->x && r->h && r->q && r->kv && r->o && r->a && r->g && r->u && r->score;
    if (!ok)
        ref_free(r);
    return ok ? 0 : -1;
}

void
ref_free(ref_model_t *r)
{
    int64_t l;

    for (l = 0; r->k && l < r->cfg->layers; l++)
        free(r->k[l]), free(r->v[l]);
    free(r->k), free(r->v);
    free(r->x), free(r->h), free(r->q), free(r->kv), free(r->o), free(r->a);
    free(r->g), free(r->u), free(r->score);
    if (r->cfg)
        model_weights_free(r->cfg, &r->w);
    memset(r, 0, sizeof *r);
}

void
ref_reset(ref_model_t *r)
{
    r->len = 0;
}

/* A head vector as the cache stores it; nonzero on failure. */
static int
store(const ref_model_t *r, float *v, int64_t D)
{
    uint16_t tmp[1024];

    if (r->quant != KVMESH_QUANT_NONE)
        return kvmesh_quant_roundtrip(r->quant, D, v, v) != KVMESH_SUCCESS;
    if (r->dtype == KVMESH_F32)
        return 0;
    return D > 1024 || kvmesh_convert(tmp, r->dtype, v, KVMESH_F32, (size_t) D) ||
           kvmesh_convert(v, KVMESH_F32, tmp, r->dtype, (size_t) D);
}

/* Its own copy of the rule: may query q see key k (k <= q)? */
static int
sees(const kvmesh_mask_detail_t *d, int64_t q, int64_t k)
{
    if (k > q)
        return 0;
    if (d->kind == KVMESH_MASK_SLIDING)
        return q - k < d->window;
    if (d->kind == KVMESH_MASK_CHUNK)
        return q / d->chunk == k / d->chunk;
    return 1;
}

int
ref_step(ref_model_t *r, int32_t token, float *logits)
{
    const model_cfg_t *c = r->cfg;
    const int64_t E = c->hidden, hd = c->head_dim, kvd = c->kv_heads * hd;
    const int64_t group = c->heads / c->kv_heads, pos = r->len;
    int64_t l, h, p, d, i;

    if (pos >= r->cap)
        return -1;
    memcpy(r->x, r->w.embed + (int64_t) token * E, (size_t) E * sizeof(float));
    for (l = 0; l < c->layers; l++) {
        const struct model_layer *y = &r->w.layer[l];
        const kvmesh_mask_detail_t det = model_layer(c, l);
        float *K = r->k[l], *V = r->v[l];
        model_rmsnorm(r->x, y->attn_norm, E, r->h);
        model_matvec(y->wq, c->heads * hd, E, r->h, r->q);
        model_matvec(y->wk, kvd, E, r->h, K + pos * kvd);
        model_matvec(y->wv, kvd, E, r->h, V + pos * kvd);
        for (h = 0; h < c->heads; h++)
            model_rope(r->q + h * hd, hd, pos);
        for (h = 0; h < c->kv_heads; h++) {
            model_rope(K + pos * kvd + h * hd, hd, pos);
            if (store(r, K + pos * kvd + h * hd, hd) || store(r, V + pos * kvd + h * hd, hd))
                return -1;
        }
        for (h = 0; h < c->heads; h++) {
            const int64_t g = h / group;
            double m = -INFINITY, sum = 0;
            for (p = 0; p <= pos; p++) {
                double s = 0;
                if (!sees(&det, pos, p))
                    continue;
                for (d = 0; d < hd; d++)
                    s += (double) r->q[h * hd + d] * K[p * kvd + g * hd + d];
                r->score[p] = s / sqrt((double) hd);
                m = fmax(m, r->score[p]);
            }
            for (p = 0; p <= pos; p++)
                if (sees(&det, pos, p))
                    sum += r->score[p] = exp(r->score[p] - m);
            for (d = 0; d < hd; d++) {
                double acc = 0;
                for (p = 0; p <= pos; p++)
                    if (sees(&det, pos, p))
                        acc += r->score[p] * V[p * kvd + g * hd + d];
                r->o[h * hd + d] = (float) (acc / sum);
            }
        }
        model_matvec(y->wo, E, c->heads * hd, r->o, r->a);
        for (i = 0; i < E; i++)
            r->x[i] += r->a[i];
        model_rmsnorm(r->x, y->mlp_norm, E, r->h);
        model_matvec(y->wg, c->mlp, E, r->h, r->g);
        model_matvec(y->wu, c->mlp, E, r->h, r->u);
        for (i = 0; i < c->mlp; i++)
            r->g[i] = model_silu(r->g[i]) * r->u[i];
        model_matvec(y->wd, E, c->mlp, r->g, r->a);
        for (i = 0; i < E; i++)
            r->x[i] += r->a[i];
    }
    model_rmsnorm(r->x, r->w.final_norm, E, r->h);
    model_matvec(r->w.embed, c->vocab, E, r->h, logits);
    r->len++;
    return 0;
}
