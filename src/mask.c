/* Mask details (FULL / SLIDING / CHUNK) and the mask info of an append:
 * causal, pad-excluding visibility after ejkernel's apply_kv_lengths.
 * For every kind the keys a query sees form one range [lo, q], which makes
 * the predicate a pair of comparisons and, where slot = position, the
 * materialized mask two memsets per query.  A ring (SLIDING) is laid out
 * by slot, so its mask goes slot by slot. */
#include <string.h>

#include "cache.h"
#include "status.h"
#include "view.h"

/* Lowest key position query q may see (q + 1 when it sees none). */
static int64_t
visible_lo(const kvmesh_mask_detail_t *d, int64_t start, int64_t q)
{
    int64_t lo = start > 0 ? start : 0;

    if (q < 0 || !d)
        return q < 0 ? q + 1 : lo;
    if (d->kind == KVMESH_MASK_SLIDING) {
        if (d->window <= 0)
            return q + 1;
        if (q - d->window + 1 > lo)
            lo = q - d->window + 1;
    } else if (d->kind == KVMESH_MASK_CHUNK) {
        if (d->chunk <= 0)
            return q + 1;
        if (q / d->chunk * d->chunk > lo)
            lo = q / d->chunk * d->chunk;
    } else if (d->kind != KVMESH_MASK_FULL) {
        return q + 1;
    }
    return lo;
}

/* the one predicate; the exported kvmesh_mask_allows() calls it rather
 * than kvmesh_mask_detail_allows(), a call through the PLT per element */
static inline bool
allows(const kvmesh_mask_detail_t *d, int64_t start, int64_t q, int64_t k)
{
    return k <= q && k >= visible_lo(d, start, q);
}

bool
kvmesh_mask_detail_allows(const kvmesh_mask_detail_t *d, int64_t start,
                          int64_t q, int64_t k)
{
    return allows(d, start, q, k);
}

int64_t
kvmesh_mask_queries(const kvmesh_mask_t *mask)
{
    return mask ? mask->n : 0;
}

void
kvmesh_runtime_init(kvmesh_runtime_t *rt)
{
    if (rt) {
        rt->postpadded = false;
        rt->starts = rt->indexs = NULL;
    }
}

/* The row's left padding and tokens written, the runtime's where it gives
 * them (NULL runtime: the view's own) */
static inline int64_t
row_start(const kvmesh_view_t *v, const kvmesh_runtime_t *rt, int64_t row)
{
    if (rt && rt->postpadded)
        return 0;
    return rt && rt->starts ? rt->starts[row] : v->starts[row];
}

static inline int64_t
row_index(const kvmesh_view_t *v, const kvmesh_runtime_t *rt, int64_t row)
{
    return rt && rt->indexs ? rt->indexs[row] : v->indexs[row];
}

/* the predicate with runtime rows; both exported forms call it directly,
 * not one another (a call through the PLT per element) */
static inline bool
allows_at(const kvmesh_mask_t *m, const kvmesh_runtime_t *rt, int64_t row, int64_t i,
          int64_t pos)
{
    const kvmesh_view_t *v;

    if (!m || !m->view || row < 0 || i < 0 || i >= m->n)
        return false;
    v = m->view;
    if (row >= v->cache->B || pos >= v->cache->S || pos >= v->indexs[row])
        return false;             /* not stored (yet) */
    /* a ring only still holds the last R positions (R >= W + n - 1, so
     * every key the window allows) */
    if (v->ring && pos < (int64_t) v->indexs[row] - v->len)
        return false;
    return allows(&v->detail, row_start(v, rt, row), row_index(v, rt, row) - m->n + i, pos);
}

bool
kvmesh_mask_allows_at(const kvmesh_mask_t *m, const kvmesh_runtime_t *rt, int64_t row,
                      int64_t i, int64_t pos)
{
    return allows_at(m, rt, row, i, pos);
}

bool
kvmesh_mask_allows(const kvmesh_mask_t *m, int64_t row, int64_t i, int64_t pos)
{
    return allows_at(m, NULL, row, i, pos);
}

static kvmesh_status_t
materialize_at(const kvmesh_mask_t *m, const kvmesh_runtime_t *rt, uint8_t *out,
               size_t out_bytes)
{
    const kvmesh_view_t *v;
    const kvmesh_cache_t *c;
    const kvmesh_span_t *kv;
    int64_t r, i, s;

    if (!m || !m->view || !out || m->n <= 0)
        return KVMESH_ERR_ARG;
    v = m->view;
    c = v->cache;
    kv = &v->kv;
    KVMESH_TRY(kvm_cache_usable(c));
    if ((size_t) (c->rows.len * m->n) > out_bytes / (size_t) kv->len)
        return KVMESH_ERR_ARG;
    for (r = 0; r < c->rows.len; r++) {
        int64_t row = c->rows.lo + r;
        for (i = 0; i < m->n; i++, out += kv->len) {
            int64_t q = row_index(v, rt, row) - m->n + i;
            int64_t lo = visible_lo(&v->detail, row_start(v, rt, row), q);
            int64_t hi;

            if (v->ring) {
                for (s = 0; s < kv->len; s++) {
                    int64_t k = kvm_slot_position(v, row, kv->lo + s);
                    out[s] = k >= 0 && k >= lo && k <= q;
                }
                continue;
            }
            /* slot s holds position kv.lo + s, up to what is stored */
            hi = q + 1 < v->indexs[row] ? q + 1 : v->indexs[row];
            lo -= kv->lo;
            hi -= kv->lo;
            lo = lo < 0 ? 0 : lo > kv->len ? kv->len : lo;
            hi = hi < lo ? lo : hi > kv->len ? kv->len : hi;
            memset(out, 0, (size_t) lo);
            memset(out + lo, 1, (size_t) (hi - lo));
            memset(out + hi, 0, (size_t) (kv->len - hi));
        }
    }
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_mask_materialize_at(const kvmesh_mask_t *m, const kvmesh_runtime_t *rt, uint8_t *out,
                           size_t out_bytes)
{
    return materialize_at(m, rt, out, out_bytes);
}

kvmesh_status_t
kvmesh_mask_materialize(const kvmesh_mask_t *m, uint8_t *out, size_t out_bytes)
{
    return materialize_at(m, NULL, out, out_bytes);
}
