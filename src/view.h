/* Internal layout of one layer (a view) and its mask info. */
#ifndef KVMESH_VIEW_H
#define KVMESH_VIEW_H

#include "layout.h"
#include "ring.h"

struct kvmesh_mask {
    const kvmesh_view_t *view;
    int64_t n;
};

struct kvmesh_view {
    kvmesh_cache_t *cache;
    int64_t layer;
    kvmesh_mask_detail_t detail;
    bool ring;                    /* SLIDING: slot = position mod len */
    int64_t len;                  /* storage length: S, or a ring's */
    kvmesh_span_t kv;             /* this rank's slots of the storage */
    void *data[2];                /* local key, value shards (or codes) */
    float *scale[2];              /* quantized: their scales */
    int32_t *indexs, *starts;     /* replicated, all B rows */
    bool ready;                   /* storage allocated (init_empty: not yet) */
    void *own;                    /* init_layer's own region, and its bytes */
    size_t own_bytes;
    kvmesh_mask_t mask;
};

/** Absolute position held by storage slot \p slot (of the whole layer) of
 *  global row \p row, or -1 when it holds none yet. */
static inline int64_t
kvm_slot_position(const kvmesh_view_t *v, int64_t row, int64_t slot)
{
    int64_t L = v->indexs[row];
    if (v->ring)
        return kvm_ring_position(v->len, L, slot);
    return slot < L ? slot : -1;
}

#endif
