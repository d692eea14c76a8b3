/* A pure: a whole cache on one rank in EasyDeL's to_pure shape, per layer
 * key and value [B, S_l, H, D] (S_l = S, or min(W, S) for a SLIDING layer,
 * whose rows hold their last min(W, L) positions oldest first, the rest
 * zero), their scales when quantized, indexs and starts, the metadata and
 * the layers' details.  Gather and scatter move it to and from a cache on
 * any mesh through the redistribution engine (src/redist.c). */
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "mesh.h"
#include "quant.h"
#include "redist.h"
#include "status.h"
#include "view.h"

struct kvmesh_pure {
    kvmesh_meta_params_t meta;
    kvm_side_head_t h;            /* one-rank layout, storage */
    kvmesh_mask_detail_t *detail; /* [nl] */
    int64_t *len;                 /* [nl] S_l */
    char **arr;                   /* [nl][K, V][data, scales] */
    int32_t *state;               /* owned: [nl][indexs, starts][B] */
    int32_t **rows;               /* [nl][indexs, starts]: into state, or the
                                     caller's arrays */
    bool owned;                   /* arr and state are the pure's */
    kvm_grids_t grids;            /* BLACS grids of the ScaLAPACK engine */
};

/* A one-rank layout of the cache's shape: every block whole. */
static void
pure_head(kvm_side_head_t *h, const kvmesh_cache_t *c)
{
    static const int one[KVMESH_NAXES] = { 1, 1, 1, 1, 1 };
    int t;

    memset(h, 0, sizeof *h);
    kvm_layout_init(&h->lo, one, c->layout.rules, c->B, c->S, c->H, c->D);
    h->nl = c->meta.num_hidden_layers;
    h->dtype = c->dtype, h->quant = c->quant, h->esize = (int64_t) c->esize;
    h->canon = 1;
    for (t = 0; t < 2; t++) {
        h->hbytes[t] = c->quant ? c->hbytes[t] : c->D[t] * (int64_t) c->esize;
        h->nscale[t] = c->nscale[t];
    }
}

/* Canonical slots per row of a layer: S, or min(W, S) for a SLIDING one
 * (EasyDeL's to_pure keeps the window, not the ring). */
static int64_t
canon_len(const kvmesh_mask_detail_t *d, int64_t S)
{
    return d->kind == KVMESH_MASK_SLIDING && d->window < S ? d->window : S;
}

/* Bytes of array a of tensor t of layer l. */
static size_t
array_bytes(const kvmesh_pure_t *p, int64_t l, int t, int a)
{
    const size_t per = a ? (size_t) p->h.nscale[t] * sizeof(float) : (size_t) p->h.hbytes[t];
    return (size_t) (p->h.lo.B * p->len[l] * p->h.lo.H[t]) * per;
}

/* A zeroed pure of this header, metadata and layers. */
static kvmesh_status_t
pure_new(const kvm_side_head_t *h, const kvmesh_meta_params_t *meta,
         const kvmesh_mask_detail_t *detail, const int64_t *len, kvmesh_pure_t **out)
{
    kvmesh_pure_t *p = calloc(1, sizeof *p);
    const int64_t nl = h->nl;
    int64_t l;
    int t, a;

    if (!p)
        return KVMESH_ERR_NOMEM;
    kvm_grids_init(&p->grids, MPI_COMM_SELF);
    p->meta = *meta;
    p->h = *h;
    p->detail = calloc((size_t) nl, sizeof *p->detail);
    p->len = malloc((size_t) nl * sizeof *p->len);
    p->arr = calloc((size_t) nl * 4, sizeof *p->arr);
    p->state = calloc((size_t) (nl * 2 * h->lo.B), sizeof *p->state);
    p->rows = malloc((size_t) nl * 2 * sizeof *p->rows);
    p->owned = true;
    if (!p->detail || !p->len || !p->arr || !p->state || !p->rows) {
        kvmesh_pure_free(&p);
        return KVMESH_ERR_NOMEM;
    }
    for (l = 0; l < 2 * nl; l++)
        p->rows[l] = p->state + l * h->lo.B;
    memcpy(p->detail, detail, (size_t) nl * sizeof *detail);
    memcpy(p->len, len, (size_t) nl * sizeof *len);
    for (l = 0; l < nl; l++)
        for (t = 0; t < 2; t++)
            for (a = 0; a < (h->quant ? 2 : 1); a++)
                if (!(p->arr[4 * l + 2 * t + a] = calloc(1, array_bytes(p, l, t, a)))) {
                    kvmesh_pure_free(&p);
                    return KVMESH_ERR_NOMEM;
                }
    *out = p;
    return KVMESH_SUCCESS;
}

/* A zeroed pure of cache c's shape. */
static kvmesh_status_t
pure_alloc(const kvmesh_cache_t *c, kvmesh_pure_t **out)
{
    kvmesh_mask_detail_t *det = malloc((size_t) c->meta.num_hidden_layers * sizeof *det);
    int64_t *len = malloc((size_t) c->meta.num_hidden_layers * sizeof *len), l;
    kvm_side_head_t h;
    kvmesh_status_t st = KVMESH_ERR_NOMEM;

    pure_head(&h, c);
    for (l = 0; det && len && l < h.nl; l++) {
        det[l] = c->views[l].detail;
        len[l] = canon_len(&det[l], c->S);
    }
    if (det && len)
        st = pure_new(&h, &c->meta, det, len, out);
    free(det);
    free(len);
    return st;
}

kvmesh_status_t
kvmesh_pure_dequantize(const kvmesh_pure_t *in, kvmesh_dtype_t dtype, kvmesh_pure_t **out)
{
    kvm_side_head_t h;
    kvmesh_pure_t *p = NULL;
    int64_t l, v, nv;
    float f[4096];
    int t;

    if (!in || !out || !kvm_dtype_size(dtype) || in->h.lo.D[0] > 4096 || in->h.lo.D[1] > 4096)
        return KVMESH_ERR_ARG;
    h = in->h;
    h.dtype = dtype, h.quant = KVMESH_QUANT_NONE, h.esize = (int64_t) kvm_dtype_size(dtype);
    for (t = 0; t < 2; t++)
        h.hbytes[t] = h.lo.D[t] * h.esize, h.nscale[t] = 0;
    KVMESH_TRY(pure_new(&h, &in->meta, in->detail, in->len, &p));
    for (l = 0; l < 2 * h.nl; l++)
        memcpy(p->rows[l], in->rows[l], (size_t) h.lo.B * sizeof(int32_t));
    for (l = 0; l < h.nl; l++)
        for (t = 0; t < 2; t++) {
            const int64_t D = h.lo.D[t];
            const char *src = in->arr[4 * l + 2 * t];
            const float *sc = (const float *) in->arr[4 * l + 2 * t + 1];
            char *dst = p->arr[4 * l + 2 * t];
            nv = h.lo.B * in->len[l] * h.lo.H[t];
            for (v = 0; v < nv; v++) {
                if (in->h.quant == KVMESH_QUANT_INT8)
                    kvm_q8_decode((const int8_t *) src + v * D, sc[v], D, f);
                else if (in->h.quant == KVMESH_QUANT_NF4)
                    kvm_nf4_decode((const uint8_t *) src + v * in->h.hbytes[t],
                                   sc + v * in->h.nscale[t], 0, D, f);
                else
                    kvm_convert(f, KVMESH_F32, src + (size_t) (v * D * in->h.esize),
                                (kvmesh_dtype_t) in->h.dtype, (size_t) D);
                kvm_convert(dst + (size_t) (v * D * h.esize), dtype, f, KVMESH_F32, (size_t) D);
            }
        }
    *out = p;
    return KVMESH_SUCCESS;
}

void
kvmesh_pure_free(kvmesh_pure_t **pure)
{
    kvmesh_pure_t *p;
    int64_t i;

    if (!pure || !*pure)
        return;
    p = *pure;
    for (i = 0; p->owned && p->arr && i < p->h.nl * 4; i++)
        free(p->arr[i]);
    free(p->arr);
    free(p->rows);
    free(p->detail);
    free(p->len);
    free(p->state);
    kvm_grids_free(&p->grids);
    free(p);
    *pure = NULL;
}

/* Does pure p have cache c's shape and storage? */
static bool
pure_fits(const kvmesh_pure_t *p, const kvmesh_cache_t *c)
{
    kvm_side_head_t h;
    int64_t l;

    pure_head(&h, c);
    if (p->h.nl != h.nl || p->h.lo.B != h.lo.B || p->h.lo.S != h.lo.S ||
        memcmp(p->h.lo.H, h.lo.H, sizeof h.lo.H) || memcmp(p->h.lo.D, h.lo.D, sizeof h.lo.D) ||
        p->h.dtype != h.dtype || p->h.quant != h.quant)
        return false;
    for (l = 0; l < h.nl; l++)
        if (memcmp(&p->detail[l], &c->views[l].detail, sizeof p->detail[l]))
            return false;
    return true;
}

/* The side of pure p held by this rank (NULL: outside, me -1). */
static kvmesh_status_t
pure_side(kvm_side_t *s, kvmesh_pure_t *p)
{
    int64_t l;

    memset(s, 0, sizeof *s);
    s->me = -1;
    if (!p)
        return KVMESH_SUCCESS;
    KVMESH_TRY(kvm_side_member(s, 0, &p->h));
    memcpy(s->detail, p->detail, (size_t) p->h.nl * sizeof *s->detail);
    memcpy(s->len, p->len, (size_t) p->h.nl * sizeof *s->len);
    for (l = 0; l < 2 * p->h.nl; l++)
        memcpy(s->state + l * p->h.lo.B, p->rows[l], (size_t) p->h.lo.B * sizeof(int32_t));
    for (l = 0; l < p->h.nl * 4; l++)
        s->base[l] = p->arr[l];
    s->grids = &p->grids;
    s->hash = kvm_hash(0, s->state, (size_t) (p->h.nl * 2 * p->h.lo.B) * sizeof *s->state);
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_cache_gather_into(const kvmesh_cache_t *c, int root, kvmesh_pure_t *pure)
{
    kvm_side_t src, dst;
    kvmesh_status_t st = KVMESH_SUCCESS, local;
    MPI_Comm comm;
    int64_t v = root, l;
    int t, a;

    if (!c)
        return KVMESH_ERR_ARG;
    if (root < 0 || root >= c->mesh->nranks || (c->mesh->rank == root) != (pure != NULL) ||
        (pure && !pure_fits(pure, c)))
        st = KVMESH_ERR_ARG;
    KVMESH_TRY(kvm_agree_same(c->comm, st, &v, 1));
    KVMESH_TRY(kvm_redist_comm(c->comm, &comm));
    /* canonical arrays hold zeros where no position is: past each row's
     * filled slots (the root is a member of the cache: it knows them) */
    for (l = 0; pure && l < pure->h.nl; l++)
        for (t = 0; t < 2; t++)
            for (a = 0; a < (pure->h.quant ? 2 : 1); a++) {
                const size_t row = array_bytes(pure, l, t, a) / (size_t) pure->h.lo.B;
                const size_t slot = row / (size_t) pure->len[l];
                int64_t b;
                for (b = 0; b < pure->h.lo.B; b++) {
                    int64_t k = c->views[l].indexs[b];
                    k = k < pure->len[l] ? k : pure->len[l];
                    memset(pure->arr[4 * l + 2 * t + a] + (size_t) b * row + (size_t) k * slot,
                           0, (size_t) (pure->len[l] - k) * slot);
                }
            }
    local = kvm_side_of_cache(&src, c);
    st = pure_side(&dst, pure);
    st = kvm_redist_move(&src, &dst, 0, comm, c, local > st ? local : st);
    for (l = 0; st == KVMESH_SUCCESS && pure && l < 2 * pure->h.nl; l++)
        memcpy(pure->rows[l], src.state + l * pure->h.lo.B,
               (size_t) pure->h.lo.B * sizeof(int32_t));
    kvm_side_free(&src);
    kvm_side_free(&dst);
    return st;
}

kvmesh_status_t
kvmesh_cache_gather(const kvmesh_cache_t *c, int root, kvmesh_pure_t **pure)
{
    kvmesh_pure_t *p = NULL;
    kvmesh_status_t st = KVMESH_SUCCESS;

    if (!c)
        return KVMESH_ERR_ARG;
    if (!pure)
        st = KVMESH_ERR_ARG;
    else if (root >= 0 && root < c->mesh->nranks && c->mesh->rank == root)
        st = pure_alloc(c, &p);
    KVMESH_TRY(kvm_agree(c->comm, st));
    st = kvmesh_cache_gather_into(c, root, p);
    if (st != KVMESH_SUCCESS)
        kvmesh_pure_free(&p);
    *pure = p;
    return st;
}

kvmesh_status_t
kvmesh_pure_wrap(const kvmesh_meta_params_t *mp, const kvmesh_mask_detail_t *details,
                 kvmesh_dtype_t dtype, kvmesh_quant_t quant, const kvmesh_pure_layer_t *layers,
                 kvmesh_pure_t **out)
{
    static const int one[KVMESH_NAXES] = { 1, 1, 1, 1, 1 };
    kvmesh_rule_t rules[2][KVMESH_NLOGICAL];
    kvmesh_meta_t *meta = NULL;
    kvmesh_meta_params_t m;
    kvmesh_pure_t *p;
    int64_t l, b, H[2], D[2];
    int t;

    if (!mp || !layers || !out || !kvm_dtype_size(dtype) ||
        (quant != KVMESH_QUANT_NONE && quant != KVMESH_QUANT_INT8 && quant != KVMESH_QUANT_NF4))
        return KVMESH_ERR_ARG;
    KVMESH_TRY(kvmesh_meta_create(mp, &meta));
    kvmesh_meta_get(meta, &m);
    kvmesh_meta_free(&meta);
    for (l = 0; l < m.num_hidden_layers; l++) {
        const kvmesh_pure_layer_t *y = &layers[l];
        const kvmesh_mask_detail_t *d = details ? &details[l] : NULL;
        if (!y->key || !y->value || !y->indexs || !y->starts ||
            (quant && (!y->key_scales || !y->value_scales)) ||
            (d && ((d->kind == KVMESH_MASK_SLIDING && d->window <= 0) ||
                   (d->kind == KVMESH_MASK_CHUNK && d->chunk <= 0) ||
                   d->kind > KVMESH_MASK_CHUNK)))
            return KVMESH_ERR_ARG;
        for (b = 0; b < m.batch_size; b++)
            if (y->indexs[b] < 0 || y->indexs[b] > m.sequence_length || y->starts[b] < 0 ||
                y->starts[b] > m.sequence_length)
                return KVMESH_ERR_ARG;
    }
    p = calloc(1, sizeof *p);
    if (!p)
        return KVMESH_ERR_NOMEM;
    kvm_grids_init(&p->grids, MPI_COMM_SELF);
    p->meta = m;
    memset(rules, 0, sizeof rules);
    H[0] = m.key_heads, H[1] = m.value_heads, D[0] = m.key_dim, D[1] = m.value_dim;
    kvm_layout_init(&p->h.lo, one, rules, m.batch_size, m.sequence_length, H, D);
    p->h.nl = m.num_hidden_layers;
    p->h.dtype = dtype, p->h.quant = quant, p->h.esize = (int64_t) kvm_dtype_size(dtype);
    p->h.canon = 1;
    for (t = 0; t < 2; t++) {
        p->h.hbytes[t] = quant ? kvm_quant_code_bytes(quant, D[t]) : D[t] * p->h.esize;
        p->h.nscale[t] = kvm_quant_scales(quant, D[t]);
    }
    p->detail = calloc((size_t) p->h.nl, sizeof *p->detail);
    p->len = malloc((size_t) p->h.nl * sizeof *p->len);
    p->arr = calloc((size_t) p->h.nl * 4, sizeof *p->arr);
    p->rows = malloc((size_t) p->h.nl * 2 * sizeof *p->rows);
    if (!p->detail || !p->len || !p->arr || !p->rows) {
        kvmesh_pure_free(&p);
        return KVMESH_ERR_NOMEM;
    }
    for (l = 0; l < p->h.nl; l++) {
        const kvmesh_pure_layer_t *y = &layers[l];
        kvmesh_mask_detail_t *d = &p->detail[l];
        *d = kvm_detail(KVMESH_MASK_FULL, 0, 0);
        if (details)
            *d = kvm_detail(details[l].kind, details[l].window, details[l].chunk);
        else if (m.sliding_window > 0)
            *d = kvm_detail(KVMESH_MASK_SLIDING, m.sliding_window, 0);
        p->len[l] = canon_len(d, m.sequence_length);
        p->arr[4 * l] = y->key, p->arr[4 * l + 2] = y->value;
        p->arr[4 * l + 1] = (char *) y->key_scales, p->arr[4 * l + 3] = (char *) y->value_scales;
        p->rows[2 * l] = y->indexs, p->rows[2 * l + 1] = y->starts;
    }
    *out = p;
    return KVMESH_SUCCESS;
}

/* ---- accessors -------------------------------------------------------- */

int64_t
kvmesh_pure_layers(const kvmesh_pure_t *p)
{
    return p ? p->h.nl : 0;
}

void
kvmesh_pure_meta(const kvmesh_pure_t *p, kvmesh_meta_params_t *meta)
{
    if (p && meta)
        *meta = p->meta;
}

kvmesh_dtype_t
kvmesh_pure_dtype(const kvmesh_pure_t *p)
{
    return p ? (kvmesh_dtype_t) p->h.dtype : KVMESH_BF16;
}

kvmesh_quant_t
kvmesh_pure_quant(const kvmesh_pure_t *p)
{
    return p ? (kvmesh_quant_t) p->h.quant : KVMESH_QUANT_NONE;
}

kvmesh_status_t
kvmesh_pure_detail(const kvmesh_pure_t *p, int64_t layer, kvmesh_mask_detail_t *detail)
{
    if (!p || !detail || layer < 0 || layer >= p->h.nl)
        return KVMESH_ERR_ARG;
    *detail = p->detail[layer];
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_pure_array(const kvmesh_pure_t *p, int64_t layer, kvmesh_kv_t which, void **data,
                  int64_t shape[4])
{
    if (!p || layer < 0 || layer >= p->h.nl || (which != KVMESH_KEY && which != KVMESH_VALUE))
        return KVMESH_ERR_ARG;
    if (data)
        *data = p->arr[4 * layer + 2 * which];
    if (shape) {
        shape[0] = p->h.lo.B, shape[1] = p->len[layer];
        shape[2] = p->h.lo.H[which], shape[3] = p->h.lo.D[which];
    }
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_pure_scales(const kvmesh_pure_t *p, int64_t layer, kvmesh_kv_t which, float **scales,
                   int64_t *per_head)
{
    if (!p || layer < 0 || layer >= p->h.nl || (which != KVMESH_KEY && which != KVMESH_VALUE) ||
        !scales || !per_head)
        return KVMESH_ERR_ARG;
    *scales = p->h.quant ? (float *) p->arr[4 * layer + 2 * which + 1] : NULL;
    *per_head = p->h.nscale[which];
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_pure_rows(const kvmesh_pure_t *p, int64_t layer, int32_t **indexs, int32_t **starts)
{
    if (!p || layer < 0 || layer >= p->h.nl)
        return KVMESH_ERR_ARG;
    if (indexs)
        *indexs = p->rows[2 * layer];
    if (starts)
        *starts = p->rows[2 * layer + 1];
    return KVMESH_SUCCESS;
}

/* ---- scatter (from_pure) ---------------------------------------------- */

typedef struct {
    kvmesh_meta_params_t meta;
    kvm_side_head_t h;
} pure_head_t;

kvmesh_status_t
kvmesh_cache_scatter(const kvmesh_pure_t *pure, int root, const kvmesh_partition_t *part,
                     const kvmesh_cache_params_t *params, kvmesh_cache_t **out)
{
    pure_head_t ph;
    kvmesh_mask_detail_t *det = NULL;
    kvmesh_cache_params_t cp;
    kvmesh_meta_t *meta = NULL;
    kvmesh_cache_t *c = NULL;
    kvm_side_t src, dst;
    kvmesh_status_t st = KVMESH_SUCCESS, local;
    MPI_Comm mc, comm = MPI_COMM_NULL;
    int64_t v = root;
    int rc;

    if (!part)
        return KVMESH_ERR_ARG;
    mc = part->mesh->cart;
    if (!out || root < 0 || root >= part->mesh->nranks ||
        (part->mesh->rank == root) != (pure != NULL))
        st = KVMESH_ERR_ARG;
    KVMESH_TRY(kvm_agree_same(mc, st, &v, 1));
    /* the pure's metadata, storage and layers, from the root */
    memset(&ph, 0, sizeof ph);
    if (pure)
        ph.meta = pure->meta, ph.h = pure->h;
    rc = MPI_Bcast(&ph, (int) sizeof ph, MPI_BYTE, root, mc);
    KVMESH_TRY(kvm_agree(mc, KVMESH_MPI(rc)));
    det = malloc((size_t) ph.h.nl * sizeof *det);
    KVMESH_TRY(kvm_agree(mc, det ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM));
    if (pure)
        memcpy(det, pure->detail, (size_t) ph.h.nl * sizeof *det);
    rc = MPI_Bcast(det, (int) (ph.h.nl * (int64_t) sizeof *det), MPI_BYTE, root, mc);
    KVMESH_GOTO(st, kvm_agree(mc, KVMESH_MPI(rc)));
    /* the cache: the caller's options, the pure's storage and layers */
    kvmesh_cache_params_init(&cp);
    if (params)
        cp = *params;
    cp.dtype = (kvmesh_dtype_t) ph.h.dtype, cp.quant = (kvmesh_quant_t) ph.h.quant;
    cp.details = det, cp.starts = NULL;
    st = kvmesh_meta_create(&ph.meta, &meta);
    KVMESH_GOTO(st, kvm_agree(mc, st));
    KVMESH_GOTO(st, kvmesh_cache_init(meta, part, &cp, &c));
    KVMESH_GOTO(st, kvm_redist_comm(c->comm, &comm));
    local = pure_side(&src, (kvmesh_pure_t *) pure);
    st = kvm_side_of_cache(&dst, c);
    st = kvm_redist_move(&src, &dst, 0, comm, c, local > st ? local : st);
    if (st == KVMESH_SUCCESS)
        kvm_redist_rows(&src, c->state, c->B, 0);
    kvm_side_free(&src);
    kvm_side_free(&dst);
    if (st == KVMESH_SUCCESS) {
        *out = c;
        c = NULL;
    }
fail:
    (void) kvmesh_cache_free(&c);
    kvmesh_meta_free(&meta);
    free(det);
    return st;
}
