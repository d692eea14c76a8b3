/* The demo's transformer: see model.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

kvmesh_mask_detail_t
model_layer(const model_cfg_t *c, int64_t l)
{
    static const kvmesh_mask_kind_t kinds[3] = { KVMESH_MASK_FULL, KVMESH_MASK_SLIDING,
                                                 KVMESH_MASK_CHUNK };
    kvmesh_mask_detail_t d = { kinds[l % 3], 0, 0 };

    if (d.kind == KVMESH_MASK_SLIDING)
        d.window = c->window;
    if (d.kind == KVMESH_MASK_CHUNK)
        d.chunk = c->chunk;
    return d;
}

/* A uniform number in [-1, 1) from a counter (splitmix64). */
static float
uniform(uint64_t seed, uint64_t tensor, uint64_t index)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (tensor * 0x100000001b3ull + index + 1);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float) ((double) (z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

enum { T_EMBED, T_FINAL, T_ATTN_NORM, T_MLP_NORM, T_Q, T_K, T_V, T_O, T_G, T_U, T_D, T_N };

/* Rows [r0, r0 + rows) x columns [c0, c0 + cols) of tensor `which` of
 * layer l, a matrix of `in` columns, scaled by 1 / sqrt(in). */
static float *
block(const model_cfg_t *c, int which, int64_t l, int64_t in, int64_t r0, int64_t rows,
      int64_t c0, int64_t cols)
{
    float *m = malloc((size_t) (rows * cols) * sizeof *m);
    const float scale = 1.0f / sqrtf((float) in);
    const uint64_t tensor = (uint64_t) (l * T_N + which);
    int64_t r, k;

    for (r = 0; m && r < rows; r++)
        for (k = 0; k < cols; k++)
            m[r * cols + k] = scale * uniform(c->seed, tensor, (uint64_t) ((r0 + r) * in + c0 + k));
    return m;
}

/* A norm's weights: 1 + u / 8. */
static float *
norm(const model_cfg_t *c, int which, int64_t l)
{
    float *w = malloc((size_t) c->hidden * sizeof *w);
    int64_t i;

    for (i = 0; w && i < c->hidden; i++)
        w[i] = 1.0f + 0.125f * uniform(c->seed, (uint64_t) (l * T_N + which), (uint64_t) i);
    return w;
}

int
model_weights(const model_cfg_t *c, int64_t T, int64_t t, model_weights_t *w)
{
    const int64_t E = c->hidden, hd = c->head_dim;
    int64_t l;
    int ok;

    memset(w, 0, sizeof *w);
    w->T = T, w->t = t;
    w->hl = c->heads / T, w->kvl = c->kv_heads / T, w->ml = c->mlp / T;
    w->embed = block(c, T_EMBED, 0, E, 0, c->vocab, 0, E);
    w->final_norm = norm(c, T_FINAL, 0);
    w->layer = calloc((size_t) c->layers, sizeof *w->layer);
    ok = w->embed && w->final_norm && w->layer;
    for (l = 0; ok && l < c->layers; l++) {
        struct model_layer *y = &w->layer[l];
        y->attn_norm = norm(c, T_ATTN_NORM, l);
        y->mlp_norm = norm(c, T_MLP_NORM, l);
        y->wq = block(c, T_Q, l, E, t * w->hl * hd, w->hl * hd, 0, E);
        y->wk = block(c, T_K, l, E, t * w->kvl * hd, w->kvl * hd, 0, E);
        y->wv = block(c, T_V, l, E, t * w->kvl * hd, w->kvl * hd, 0, E);
        y->wo = block(c, T_O, l, c->heads * hd, 0, E, t * w->hl * hd, w->hl * hd);
        y->wg = block(c, T_G, l, E, t * w->ml, w->ml, 0, E);
        y->wu = block(c, T_U, l, E, t * w->ml, w->ml, 0, E);
        y->wd = block(c, T_D, l, c->mlp, 0, E, t * w->ml, w->ml);
        ok = y->attn_norm && y->mlp_norm && y->wq && y->wk && y->wv && y->wo && y->wg &&
             y->wu && y->wd;
    }
    if (!ok)
        model_weights_free(c, w);
    return ok ? 0 : -1;
}

void
model_weights_free(const model_cfg_t *c, model_weights_t *w)
{
    int64_t l;

    for (l = 0; w->layer && l < c->layers; l++) {
        struct model_layer *y = &w->layer[l];
        free(y->attn_norm), free(y->mlp_norm), free(y->wq), free(y->wk), free(y->wv);
        free(y->wo), free(y->wg), free(y->wu), free(y->wd);
    }
    free(w->layer);
    free(w->embed);
    free(w->final_norm);
    memset(w, 0, sizeof *w);
}

void
model_rmsnorm(const float *x, const float *w, int64_t n, float *out)
{
    double ss = 0;
    float r;
    int64_t i;

    for (i = 0; i < n; i++)
        ss += (double) x[i] * x[i];
    r = (float) (1.0 / sqrt(ss / (double) n + 1e-6));
    for (i = 0; i < n; i++)
        out[i] = x[i] * r * w[i];
}

void
model_rope(float *v, int64_t dim, int64_t pos)
{
    const int64_t half = dim / 2;
    int64_t i;

    for (i = 0; i < half; i++) {
        const double a = (double) pos * pow(10000.0, -2.0 * (double) i / (double) dim);
        const float cs = (float) cos(a), sn = (float) sin(a), x = v[i], y = v[i + half];
        v[i] = x * cs - y * sn;
        v[i + half] = x * sn + y * cs;
    }
}

void
model_matvec(const float *m, int64_t rows, int64_t cols, const float *x, float *out)
{
    int64_t r, c;

    for (r = 0; r < rows; r++) {
        float s = 0;
        for (c = 0; c < cols; c++)
            s += m[r * cols + c] * x[c];
        out[r] = s;
    }
}

float
model_silu(float x)
{
    return x / (1.0f + expf(-x));
}

int64_t
model_argmax(const float *x, int64_t n)
{
    int64_t i, best = 0;

    for (i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}
