/* Internal layout of the cache, its layer views and their routing plans. */
#ifndef KVMESH_CACHE_H
#define KVMESH_CACHE_H

#include "kvmesh.h"
#include "partition.h"
#include "ring.h"

typedef struct {
    int64_t lo, len;
} kvmesh_span_t;

static inline kvmesh_span_t
kvm_span_of(const kvmesh_dim_t *d)
{
    kvmesh_span_t s = { d->offset, d->local_size };
    return s;
}

/* How the input blocks of one mode reach the cache.  Built at init from
 * mesh geometry alone, so every rank holds the same verdict and the same
 * communication pattern without a message. */
typedef struct {
    kvmesh_status_t verdict;      /* SUCCESS or ERR_LAYOUT on every rank */
    int64_t qprod;                /* query-length blocks (1: replicated) */
    int64_t qblock;               /* this rank's query-length block */
    kvmesh_span_t in_rows;        /* this rank's input rows */
    kvmesh_span_t in_head[2], in_dim[2];    /* its input heads, dims (K, V) */
    int *peer;                    /* [qprod] rank holding each query block in
                                     this rank's group (peer[qblock] = me) */
    kvmesh_span_t *peer_rows;     /* [qprod] their cache rows */
    int64_t *peer_kblock;         /* [qprod] their kv-length block index */
} kvmesh_plan_t;

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
    kvmesh_mask_t mask;
};

struct kvmesh_cache {
    kvmesh_meta_params_t meta;
    kvmesh_partition_t part;      /* copy; the mesh it names must outlive us */
    const kvmesh_mesh_t *mesh;
    MPI_Comm comm;                /* private duplicate for cache traffic */
    kvmesh_dtype_t dtype;
    size_t esize;
    kvmesh_quant_t quant;
    int64_t hbytes[2];            /* storage bytes of one head vector */
    int64_t nscale[2];            /* quantized: scales of one head vector */
    float *qtmp;                  /* quantized: one head vector in f32 */
    char *qcodes;                 /* quantized: codes of one token's heads */
    bool checked;
    int64_t B, S, H[2], D[2];
    int64_t A;                    /* largest append (max_append) */
    kvmesh_span_t rows, head[2], dim[2];   /* this rank's cache block */
    int64_t kprod, kblock;        /* kv-length blocks, this rank's block */
    kvmesh_plan_t plan[KVMESH_NMODES][2];   /* [mode][query-length sharded] */
    void *region;                 /* every layer's K and V shards */
    size_t region_bytes, local_bytes;
    int32_t *state;               /* [layers][indexs, starts][B] */
    kvmesh_view_t *views;
    MPI_Request *reqs;
    int64_t nreqs;
    void *scratch;                /* one staged message */
    size_t scratch_bytes;
};

/** Slots of a storage of \p len held by kv-length block \p kblock: equal
 *  blocks, or all of it when len does not divide (DESIGN §2). */
static inline kvmesh_span_t
kvm_kv_span(const kvmesh_cache_t *c, int64_t len, int64_t kblock)
{
    kvmesh_span_t s = { 0, len };
    if (len % c->kprod == 0) {
        s.len = len / c->kprod;
        s.lo = kblock * s.len;
    }
    return s;
}

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

/** Builds the routing plans of \p c (its block spans and its views' storage
 *  spans must be set). */
kvmesh_status_t kvm_plans_build(kvmesh_cache_t *c);
/** Frees the plans' arrays. */
void kvm_plans_free(kvmesh_cache_t *c);

#endif
