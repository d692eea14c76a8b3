/* Internal layout of the cache: its geometry, memory and routing state. */
#ifndef KVMESH_CACHE_H
#define KVMESH_CACHE_H

#include <string.h>

#include "blacs.h"
#include "kvmesh.h"
#include "layout.h"
#include "plan.h"

struct kvmesh_cache {
    kvmesh_meta_params_t meta;
    kvmesh_partition_t part;      /* copy; the mesh it names must outlive us */
    const kvmesh_mesh_t *mesh;
    kvm_layout_t layout;          /* mesh, rules and global shape */
    MPI_Comm comm;                /* private duplicate for cache traffic */
    MPI_Comm kv_comm;             /* ranks of the other kv-length blocks of
                                     my rows and heads; rank = block */
    bool failed;                  /* a call failed on this rank alone
                                     (unchecked mode): refuse the rest */
    kvmesh_dtype_t dtype;
    size_t esize;
    kvmesh_quant_t quant;
    int64_t hbytes[2];            /* storage bytes of one head vector */
    int64_t nscale[2];            /* quantized: scales of one head vector */
    float *qtmp;                  /* quantized: one head vector in f32 */
    char *qcodes;                 /* quantized: codes of one token's heads */
    bool checked;
    kvmesh_engine_t engine;       /* resolved: P2P or SCALAPACK */
    int64_t staging;              /* redistribution cap per rank, bytes */
    kvm_grids_t grids;            /* BLACS grids over comm, made on demand */
    int64_t B, S, H[2], D[2];
    int64_t A;                    /* largest append (max_append) */
    kvmesh_span_t rows, head[2], dim[2];   /* this rank's cache block */
    int64_t kblock;               /* this rank's kv-length block */
    kvmesh_plan_t plan[KVMESH_NMODES][2];   /* [mode][query-length sharded] */
    size_t per_slot[2], scale_slot[2];     /* K, V bytes of a slot (all local rows) */
    void *region;                 /* every layer's K and V shards (not empty) */
    size_t region_bytes, local_bytes;
    int32_t *state;               /* [layers][indexs, starts][B] */
    kvmesh_view_t *views;
    MPI_Request *reqs;
    int64_t nreqs;
    void *scratch;                /* one staged message */
    size_t scratch_bytes;
};

/** The engine \p e names; DEFAULT: KVMESH_ENGINE from the environment
 *  ("scalapack"), else P2P.  Local. */
kvmesh_engine_t kvm_engine(kvmesh_engine_t e);

/** A copy of a layer's detail whose bytes are all defined (padding zero),
 *  so that details hash and compare alike on every rank whatever the
 *  caller's struct held. */
static inline kvmesh_mask_detail_t
kvm_detail(kvmesh_mask_kind_t kind, int64_t window, int64_t chunk)
{
    kvmesh_mask_detail_t d;

    memset(&d, 0, sizeof d);
    d.kind = kind, d.window = window, d.chunk = chunk;
    return d;
}

/** Hash of the replicated per-row state of every layer. */
uint64_t kvm_cache_state(const kvmesh_cache_t *c);

/** Status of a call on \p c that is about to do local work: DIVERGED once
 *  a call failed on this rank alone. */
static inline kvmesh_status_t
kvm_cache_usable(const kvmesh_cache_t *c)
{
    return c->failed ? KVMESH_ERR_DIVERGED : KVMESH_SUCCESS;
}

#endif
