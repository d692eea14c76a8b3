/* Cache metadata: validation as TransformerCacheMetaData.create, plus the
 * checks EasyDeL leaves out (negative sizes, overflowing products). */
#include <stdlib.h>
#include <string.h>

#include "kvmesh.h"

struct kvmesh_meta {
    kvmesh_meta_params_t p;   /* resolved: key/value heads and dims set */
};

void
kvmesh_meta_params_init(kvmesh_meta_params_t *p)
{
    if (p) {
        memset(p, 0, sizeof *p);
        p->update_causal_mask = true;
    }
}

/* a * b without overflowing INT64_MAX; false on overflow */
static bool
mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a > 0 && b > INT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

kvmesh_status_t
kvmesh_meta_create(const kvmesh_meta_params_t *in, kvmesh_meta_t **out)
{
    kvmesh_meta_params_t p;
    kvmesh_meta_t *m;
    int64_t per_tok, total, heads_dims[2][2];
    int t;

    if (!in || !out)
        return KVMESH_ERR_ARG;
    p = *in;
    if (p.batch_size <= 0 || p.sequence_length <= 0 || p.num_hidden_layers <= 0)
        return KVMESH_ERR_META;
    if (p.num_heads < 0 || p.head_dim < 0 || p.key_heads < 0 ||
        p.value_heads < 0 || p.key_dim < 0 || p.value_dim < 0 ||
        p.sliding_window < 0)
        return KVMESH_ERR_META;
    /* EasyDeL: "Either head_dim or both key_dim and value_dim must be
     * specified", likewise for the heads */
    if (!p.head_dim && (!p.key_dim || !p.value_dim))
        return KVMESH_ERR_META;
    if (!p.num_heads && (!p.key_heads || !p.value_heads))
        return KVMESH_ERR_META;
    if (!p.key_dim) p.key_dim = p.head_dim;
    if (!p.value_dim) p.value_dim = p.head_dim;
    if (!p.key_heads) p.key_heads = p.num_heads;
    if (!p.value_heads) p.value_heads = p.num_heads;

    /* every byte count the cache will form must fit: layers * B * S * H * D
     * elements of at most 4 bytes, for key and value together */
    heads_dims[0][0] = p.key_heads, heads_dims[0][1] = p.key_dim;
    heads_dims[1][0] = p.value_heads, heads_dims[1][1] = p.value_dim;
    total = 0;
    for (t = 0; t < 2; t++) {
        int64_t x;
        if (!mul_ok(heads_dims[t][0], heads_dims[t][1], &per_tok) ||
            !mul_ok(per_tok, p.sequence_length, &x) ||
            !mul_ok(x, p.batch_size, &x) ||
            !mul_ok(x, p.num_hidden_layers, &x) || !mul_ok(x, 8, &x) ||
            x > INT64_MAX - total || (uint64_t) (x + total) > SIZE_MAX / 2)
            return KVMESH_ERR_OVERFLOW;
        total += x;
    }
    m = malloc(sizeof *m);
    if (!m)
        return KVMESH_ERR_NOMEM;
    m->p = p;
    *out = m;
    return KVMESH_SUCCESS;
}

void
kvmesh_meta_get(const kvmesh_meta_t *meta, kvmesh_meta_params_t *p)
{
    if (meta && p)
        *p = meta->p;
}

void
kvmesh_meta_free(kvmesh_meta_t **meta)
{
    if (meta) {
        free(*meta);
        *meta = NULL;
    }
}
