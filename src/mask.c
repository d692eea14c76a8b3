/* Mask details (FULL / SLIDING / CHUNK) and the mask info of an append:
 * causal, pad-excluding visibility after ejkernel's apply_kv_lengths. */
#include "cache.h"

bool
kvmesh_mask_detail_allows(const kvmesh_mask_detail_t *d, int64_t start,
                          int64_t q, int64_t k)
{
    if (k < start || k > q || k < 0)
        return false;
    if (!d)
        return true;
    switch (d->kind) {
    case KVMESH_MASK_FULL:
        return true;
    case KVMESH_MASK_SLIDING:
        return d->window > 0 && k > q - d->window;
    case KVMESH_MASK_CHUNK:
        return d->chunk > 0 && q >= 0 && k / d->chunk == q / d->chunk;
    }
    return false;
}

int64_t
kvmesh_mask_queries(const kvmesh_mask_t *mask)
{
    return mask ? mask->n : 0;
}

bool
kvmesh_mask_allows(const kvmesh_mask_t *m, int64_t row, int64_t i, int64_t k)
{
    const kvmesh_view_t *v;

    if (!m || !m->view || row < 0 || i < 0 || i >= m->n)
        return false;
    v = m->view;
    if (row >= v->cache->B || k >= v->cache->S)
        return false;
    return kvmesh_mask_detail_allows(&v->detail, v->starts[row],
                                     v->indexs[row] - m->n + i, k);
}

kvmesh_status_t
kvmesh_mask_materialize(const kvmesh_mask_t *m, uint8_t *out)
{
    const kvmesh_cache_t *c;
    int64_t r, i, s;

    if (!m || !m->view || !out || m->n <= 0)
        return KVMESH_ERR_ARG;
    c = m->view->cache;
    for (r = 0; r < c->rows.len; r++)
        for (i = 0; i < m->n; i++)
            for (s = 0; s < c->kv.len; s++)   /* FULL storage: slot = position */
                *out++ = kvmesh_mask_allows(m, c->rows.lo + r, i, c->kv.lo + s);
    return KVMESH_SUCCESS;
}
