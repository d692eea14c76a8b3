/* Internal layout of the cache, its layer views and their routing plans. */
#ifndef KVMESH_CACHE_H
#define KVMESH_CACHE_H

#include "kvmesh.h"
#include "partition.h"

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
    kvmesh_span_t *peer_kv;       /* [qprod] their cache kv positions */
} kvmesh_plan_t;

struct kvmesh_mask {
    const kvmesh_view_t *view;
    int64_t n;
};

struct kvmesh_view {
    kvmesh_cache_t *cache;
    int64_t layer;
    kvmesh_mask_detail_t detail;
    void *data[2];                /* local key, value shards */
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
    bool checked;
    int64_t B, S, H[2], D[2];
    kvmesh_span_t rows, kv, head[2], dim[2];   /* this rank's cache block */
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

/** Builds the routing plans of \p c (its block spans must be set). */
kvmesh_status_t kvm_plans_build(kvmesh_cache_t *c);
/** Frees the plans' arrays. */
void kvm_plans_free(kvmesh_cache_t *c);

#endif
