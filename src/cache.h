/* Internal layout of the cache: its geometry, memory and routing state. */
#ifndef KVMESH_CACHE_H
#define KVMESH_CACHE_H

#include "kvmesh.h"
#include "layout.h"
#include "plan.h"

struct kvmesh_cache {
    kvmesh_meta_params_t meta;
    kvmesh_partition_t part;      /* copy; the mesh it names must outlive us */
    const kvmesh_mesh_t *mesh;
    kvm_layout_t layout;          /* mesh, rules and global shape */
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
    int64_t kblock;               /* this rank's kv-length block */
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

#endif
