/* The demo's model on kvmesh: see forward.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"

kvmesh_status_t
fwd_init(fwd_t *f, const model_cfg_t *c, kvmesh_cache_t *cache, int64_t nmax)
{
    const kvmesh_mesh_t *mesh = kvmesh_cache_mesh(cache);
    const int64_t T = kvmesh_mesh_size(mesh, KVMESH_AXIS_TP);
    const int64_t t = kvmesh_mesh_coord(mesh, KVMESH_AXIS_TP);
    const int64_t E = c->hidden, hd = c->head_dim;
    kvmesh_status_t st = KVMESH_SUCCESS;
    kvmesh_block_t blk;
    int64_t l, R, N;
    int ok;

    memset(f, 0, sizeof *f);
    f->cfg = c, f->cache = cache, f->nmax = nmax;
    f->tp = kvmesh_mesh_axis_comm(mesh, KVMESH_AXIS_TP);
    if (c->heads % T || c->kv_heads % T || c->mlp % T)
        st = KVMESH_ERR_LAYOUT;
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_input_block(cache, KVMESH_MODE_DECODE, 1, KVMESH_KEY, &blk);
    if (st == KVMESH_SUCCESS &&
        (blk.shape[2] != c->kv_heads / T || blk.offset[2] != t * (c->kv_heads / T) ||
         blk.shape[3] != hd))
        st = KVMESH_ERR_LAYOUT;    /* heads over tp, head dims whole */
    if (st != KVMESH_SUCCESS)
        return st;
    f->row0 = blk.offset[0], f->rows = blk.shape[0];
    for (l = 0; l < c->layers; l++) {
        kvmesh_view_t *v;
        if ((st = kvmesh_cache_view(cache, l, &v)) ||
            (st = kvmesh_view_local(v, KVMESH_KEY, NULL, &blk)))
            return st;
        f->slots = blk.shape[1] > f->slots ? blk.shape[1] : f->slots;
    }
    if (model_weights(c, T, t, &f->w))
        return KVMESH_ERR_NOMEM;
    R = f->rows, N = R * nmax;
#define ALLOC(p, n) ok = ok && ((p) = malloc((size_t) (n) * sizeof *(p))) != NULL
    ok = 1;
    ALLOC(f->x, N * E);
    ALLOC(f->hn, N * E);
    ALLOC(f->q, N * f->w.hl * hd);
    ALLOC(f->k, N * f->w.kvl * hd);
    ALLOC(f->v, N * f->w.kvl * hd);
    ALLOC(f->kin, N * f->w.kvl * hd);
    ALLOC(f->vin, N * f->w.kvl * hd);
    ALLOC(f->o, N * f->w.hl * hd);
    ALLOC(f->att, N * E);
    ALLOC(f->g, f->w.ml);
    ALLOC(f->u, f->w.ml);
    ALLOC(f->kr, f->slots * f->w.kvl * hd);
    ALLOC(f->vr, f->slots * f->w.kvl * hd);
    ALLOC(f->part, N * f->w.hl * (hd + 1));
    ALLOC(f->gm, N * f->w.hl);
    ALLOC(f->mine, N * f->w.hl);
    ALLOC(f->allow, N * f->slots);
    ALLOC(f->sc, f->slots);
#undef ALLOC
    if (!ok) {
        fwd_free(f);
        return KVMESH_ERR_NOMEM;
    }
    return KVMESH_SUCCESS;
}

void
fwd_free(fwd_t *f)
{
    if (f->cfg)
        model_weights_free(f->cfg, &f->w);
    free(f->x), free(f->hn), free(f->q), free(f->k), free(f->v), free(f->kin);
    free(f->vin), free(f->o), free(f->att), free(f->g), free(f->u), free(f->kr);
    free(f->vr), free(f->part), free(f->gm), free(f->mine), free(f->sc), free(f->allow);
    memset(f, 0, sizeof *f);
}

/* Queries, keys and values of every token of my rows for layer l, with
 * rotary positions from the layer's indexs. */
static void
project(fwd_t *f, int64_t l, int64_t n, const int32_t *indexs)
{
    const model_cfg_t *c = f->cfg;
    const struct model_layer *y = &f->w.layer[l];
    const int64_t E = c->hidden, hd = c->head_dim, hl = f->w.hl, kvl = f->w.kvl;
    int64_t r, j, h;

    for (r = 0; r < f->rows; r++)
        for (j = 0; j < n; j++) {
            const int64_t i = r * n + j, pos = indexs[f->row0 + r] + j;
            model_rmsnorm(f->x + i * E, y->attn_norm, E, f->hn + i * E);
            model_matvec(y->wq, hl * hd, E, f->hn + i * E, f->q + i * hl * hd);
            model_matvec(y->wk, kvl * hd, E, f->hn + i * E, f->k + i * kvl * hd);
            model_matvec(y->wv, kvl * hd, E, f->hn + i * E, f->v + i * kvl * hd);
            for (h = 0; h < hl; h++)
                model_rope(f->q + (i * hl + h) * hd, hd, pos);
            for (h = 0; h < kvl; h++)
                model_rope(f->k + (i * kvl + h) * hd, hd, pos);
        }
}

/* This rank's part of the attention of every query of my rows: over the
 * local slots the mask allows, per (row, query, head) the largest score,
 * the sum of e^(score - largest) and the weighted values. */
static kvmesh_status_t
attend_local(fwd_t *f, kvmesh_view_t *v, const kvmesh_mask_t *mask, int64_t n)
{
    const int64_t hd = f->cfg->head_dim, hl = f->w.hl, kvl = f->w.kvl;
    const int64_t group = hl / kvl;
    const float inv = 1.0f / sqrtf((float) hd);
    kvmesh_block_t blk;
    kvmesh_status_t st;
    int64_t r, j, h, s, d, ns;
    double t0 = MPI_Wtime(), t1;

    st = kvmesh_view_local(v, KVMESH_KEY, NULL, &blk);
    ns = blk.shape[1];
    if (st == KVMESH_SUCCESS)
        st = kvmesh_mask_materialize(mask, f->allow, (size_t) (f->rows * n * ns));
    f->t.kvmesh += MPI_Wtime() - t0;
    for (r = 0; r < f->rows && st == KVMESH_SUCCESS; r++) {
        const size_t bytes = (size_t) (ns * kvl * hd) * sizeof(float);
        t1 = MPI_Wtime();
        st = kvmesh_view_read(v, KVMESH_KEY, f->row0 + r, 0, ns, KVMESH_F32, f->kr, bytes);
        if (st == KVMESH_SUCCESS)
            st = kvmesh_view_read(v, KVMESH_VALUE, f->row0 + r, 0, ns, KVMESH_F32, f->vr, bytes);
        f->t.kvmesh += MPI_Wtime() - t1;
        for (j = 0; j < n && st == KVMESH_SUCCESS; j++) {
            const uint8_t *ok = f->allow + (r * n + j) * ns;
            for (h = 0; h < hl; h++) {
                const int64_t i = (r * n + j) * hl + h, g = h / group;
                const float *qv = f->q + i * hd;
                float *p = f->part + i * (hd + 1), m = -INFINITY;
                for (s = 0; s < ns; s++) {
                    float x = 0;
                    if (!ok[s])
                        continue;
                    for (d = 0; d < hd; d++)
                        x += qv[d] * f->kr[(s * kvl + g) * hd + d];
                    f->sc[s] = x * inv;
                    m = fmaxf(m, f->sc[s]);
                }
                memset(p, 0, (size_t) (hd + 1) * sizeof *p);
                for (s = 0; s < ns; s++) {
                    float w;
                    if (!ok[s])
                        continue;
                    w = expf(f->sc[s] - m);
                    p[0] += w;
                    for (d = 0; d < hd; d++)
                        p[1 + d] += w * f->vr[(s * kvl + g) * hd + d];
                }
                f->gm[i] = m;
            }
        }
    }
    f->t.attend += MPI_Wtime() - t0;
    return st;
}

/* The partial results merged over the ranks of the other kv blocks: every
 * part rescaled to the largest score anywhere, then summed. */
static int
merge(fwd_t *f, MPI_Comm kv, int64_t n)
{
    const int64_t hd = f->cfg->head_dim, cnt = f->rows * n * f->w.hl;
    double t0 = MPI_Wtime();
    int64_t i, d;
    int rc = MPI_SUCCESS, size;

    MPI_Comm_size(kv, &size);
    if (size > 1) {
        float *mine = f->mine;   /* my largest scores, before the max */
        memcpy(mine, f->gm, (size_t) cnt * sizeof *mine);
        rc = MPI_Allreduce(MPI_IN_PLACE, f->gm, (int) cnt, MPI_FLOAT, MPI_MAX, kv);
        for (i = 0; i < cnt; i++) {
            float s = mine[i] == -INFINITY ? 0.0f : expf(mine[i] - f->gm[i]);
            for (d = 0; d <= hd; d++)
                f->part[i * (hd + 1) + d] *= s;
        }
        if (rc == MPI_SUCCESS)
            rc = MPI_Allreduce(MPI_IN_PLACE, f->part, (int) (cnt * (hd + 1)), MPI_FLOAT,
                               MPI_SUM, kv);
        f->t.merge_bytes += (double) (cnt * (hd + 2)) * sizeof(float);
    }
    for (i = 0; i < cnt; i++)
        for (d = 0; d < hd; d++)
            f->o[i * hd + d] = f->part[i * (hd + 1) + 1 + d] / f->part[i * (hd + 1)];
    f->t.merge += MPI_Wtime() - t0;
    return rc;
}

/* x += (the sum over tp of) y. */
static int
residual(fwd_t *f, int64_t count)
{
    double t0 = MPI_Wtime();
    int rc = MPI_SUCCESS, size;
    int64_t i;

    MPI_Comm_size(f->tp, &size);
    if (size > 1) {
        rc = MPI_Allreduce(MPI_IN_PLACE, f->att, (int) count, MPI_FLOAT, MPI_SUM, f->tp);
        f->t.reduce_bytes += (double) count * sizeof(float);
    }
    for (i = 0; i < count; i++)
        f->x[i] += f->att[i];
    f->t.reduce += MPI_Wtime() - t0;
    return rc;
}

kvmesh_status_t
fwd_run(fwd_t *f, kvmesh_mode_t mode, int64_t n, const int32_t *tokens, float *logits)
{
    const model_cfg_t *c = f->cfg;
    const int64_t E = c->hidden, hd = c->head_dim, hl = f->w.hl, kvl = f->w.kvl;
    const int64_t N = f->rows * n;
    kvmesh_status_t st = KVMESH_SUCCESS;
    kvmesh_block_t in;
    int64_t l, r, j, i, k;
    double t0;

    if (n > f->nmax)
        return KVMESH_ERR_ARG;
    st = kvmesh_cache_input_block(f->cache, mode, n, KVMESH_KEY, &in);
    t0 = MPI_Wtime();
    for (r = 0; r < f->rows; r++)
        for (j = 0; j < n; j++)
            memcpy(f->x + (r * n + j) * E, f->w.embed + (int64_t) tokens[(f->row0 + r) * n + j] * E,
                   (size_t) E * sizeof(float));
    f->t.matmul += MPI_Wtime() - t0;
    for (l = 0; l < c->layers && st == KVMESH_SUCCESS; l++) {
        const struct model_layer *y = &f->w.layer[l];
        const kvmesh_mask_t *mask = NULL;
        kvmesh_view_t *v;
        if ((st = kvmesh_cache_view(f->cache, l, &v)))
            break;
        t0 = MPI_Wtime();
        project(f, l, n, kvmesh_view_indexs(v));
        /* my input block: my rows, its query block, my kv heads */
        for (r = 0, i = 0; r < f->rows; r++)
            for (j = in.offset[1]; j < in.offset[1] + in.shape[1]; j++, i++) {
                memcpy(f->kin + i * kvl * hd, f->k + (r * n + j) * kvl * hd,
                       (size_t) (kvl * hd) * sizeof(float));
                memcpy(f->vin + i * kvl * hd, f->v + (r * n + j) * kvl * hd,
                       (size_t) (kvl * hd) * sizeof(float));
            }
        f->t.matmul += MPI_Wtime() - t0;
        t0 = MPI_Wtime();
        st = kvmesh_view_concatenate(v, mode, n, KVMESH_F32, f->kin, f->vin, &mask);
        f->t.append += MPI_Wtime() - t0;
        if (st == KVMESH_SUCCESS)
            st = attend_local(f, v, mask, n);
        if (st == KVMESH_SUCCESS && merge(f, kvmesh_view_kv_comm(v), n) != MPI_SUCCESS)
            st = KVMESH_ERR_MPI;
        if (st != KVMESH_SUCCESS)
            break;
        t0 = MPI_Wtime();
        for (i = 0; i < N; i++)
            model_matvec(y->wo, E, hl * hd, f->o + i * hl * hd, f->att + i * E);
        f->t.matmul += MPI_Wtime() - t0;
        if (residual(f, N * E) != MPI_SUCCESS)
            st = KVMESH_ERR_MPI;
        t0 = MPI_Wtime();
        for (i = 0; i < N; i++) {
            model_rmsnorm(f->x + i * E, y->mlp_norm, E, f->hn);
            model_matvec(y->wg, f->w.ml, E, f->hn, f->g);
            model_matvec(y->wu, f->w.ml, E, f->hn, f->u);
            for (k = 0; k < f->w.ml; k++)
                f->g[k] = model_silu(f->g[k]) * f->u[k];
            model_matvec(y->wd, E, f->w.ml, f->g, f->att + i * E);
        }
        f->t.matmul += MPI_Wtime() - t0;
        if (st == KVMESH_SUCCESS && residual(f, N * E) != MPI_SUCCESS)
            st = KVMESH_ERR_MPI;
    }
    t0 = MPI_Wtime();
    for (i = 0; logits && st == KVMESH_SUCCESS && i < N; i++) {
        model_rmsnorm(f->x + i * E, f->w.final_norm, E, f->hn);
        model_matvec(f->w.embed, c->vocab, E, f->hn, logits + i * c->vocab);
    }
    f->t.matmul += MPI_Wtime() - t0;
    return st;
}
