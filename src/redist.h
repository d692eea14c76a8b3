/* The redistribution engine (DESIGN §5): moves the filled positions of a
 * cache's rows -- every layer's K and V, their scales, and the rows'
 * indexs and starts -- from one layout to another over a parent
 * communicator.  Insert is its first user; gather, scatter and reshard
 * are the next. */
#ifndef KVMESH_REDIST_H
#define KVMESH_REDIST_H

#include "blacs.h"
#include "cache.h"

typedef struct kvm_side kvm_side_t;

/* What every parent rank knows of one side (plain data, sent as bytes). */
typedef struct {
    kvm_layout_t lo;
    int64_t nl;
    int64_t dtype, quant;
    int64_t esize, hbytes[2], nscale[2];
    int64_t canon;                 /* SLIDING rows oldest first (a pure) */
} kvm_side_head_t;

struct kvm_side {
    kvm_side_head_t h;
    char *blob;                    /* detail, len and state, one allocation */
    kvmesh_mask_detail_t *detail;  /* [nl] */
    int64_t *len;                  /* [nl] storage slots per row */
    int32_t *state;                /* [nl][indexs, starts][B] */
    int *parent;                   /* [mesh ranks] parent rank of each */
    int me;                        /* my mesh rank, -1 outside the side */
    kvm_grids_t *grids;            /* mine: BLACS grids over the side's ranks */
    char **base;                   /* mine: [nl][K, V][data, scales] */
    uint64_t hash;                 /* mine: hash of the replicated state */
    kvmesh_status_t status;        /* mine: DIVERGED when it can't take part */
};

/** A member's side of a cache (NULL: outside; then only me = -1). */
kvmesh_status_t kvm_side_of_cache(kvm_side_t *s, const kvmesh_cache_t *c);
/** A member's side, for other kinds of storage (a pure): its header set,
 *  its description arrays and bases allocated for it to fill. */
kvmesh_status_t kvm_side_member(kvm_side_t *s, int me, const kvm_side_head_t *h);
void kvm_side_free(kvm_side_t *s);

/** Array a (0: K or V storage, 1: its scales) of tensor t of layer l held
 *  by mesh rank r of side s: its block in units, and a unit's bytes. */
void kvm_side_box(const kvm_side_t *s, int r, int64_t l, int t, int a, kvm_box_t *box,
                  size_t *unit);

/** The runs of positions [p0, p1) of a row holding L tokens that land in
 *  slots kv of side s (at most two). */
int kvm_side_runs(const kvm_side_t *s, int64_t l, int64_t L, int64_t p0, int64_t p1,
                  kvmesh_span_t kv, kvm_run_t run[2]);

/** Moves the filled positions of src's rows [0, B_src) into dst's rows
 *  [slot, slot + B_src) (kvmesh_cache_insert's semantics), with \p local
 *  the caller's own verdict so far, on the engine and within the staging
 *  cap of \p opts (the cache whose options apply; NULL: no opinion, the
 *  other ranks' then hold).  Every rank of comm (a private
 *  communicator) takes part; sides a rank is not in have me = -1.  On
 *  success the caller updates the destination's rows: kvm_redist_rows().
 *  Collective on \p comm. */
kvmesh_status_t kvm_redist_move(kvm_side_t *src, kvm_side_t *dst, int64_t slot,
                                MPI_Comm comm, const kvmesh_cache_t *opts,
                                kvmesh_status_t local);

/** Default staging cap of a move, per rank (block lists and datatypes). */
#define KVM_STAGING ((int64_t) 64 << 20)

/** The data movement of kvm_redist_move() with ScaLAPACK's p?gemr2d, once
 *  every rank knows both sides and has agreed that the move is valid
 *  (KVMESH_ERR_LAYOUT, nothing moved, when a layout splits head dims while
 *  a block holds several heads).  Collective on \p comm. */
kvmesh_status_t kvm_scalapack_move(kvm_side_t *src, kvm_side_t *dst, int64_t slot,
                                   MPI_Comm comm);
/** src's indexs and starts into rows [slot, ...) of a state array of B
 *  rows ([layers][indexs, starts][B]). */
void kvm_redist_rows(const kvm_side_t *src, int32_t *state, int64_t B, int64_t slot);

/** The engine's private duplicate of \p parent (so that its messages never
 *  meet the caller's), made on first use and kept on \p parent until it is
 *  freed; the caller does not free it.  Collective on \p parent. */
kvmesh_status_t kvm_redist_comm(MPI_Comm parent, MPI_Comm *comm);

/** Rows [0, B_src) of \p src into rows [slot, slot + B_src) of \p dst;
 *  either may be NULL on ranks outside its group.  Collective on
 *  \p parent. */
kvmesh_status_t kvm_redist_insert(kvmesh_cache_t *dst, const kvmesh_cache_t *src,
                                  int64_t slot, MPI_Comm parent);

/** \p old on \p part's mesh, as a new cache in *out on the ranks that
 *  pass a partition.  Collective on \p parent. */
kvmesh_status_t kvm_redist_reshard(const kvmesh_cache_t *old, const kvmesh_partition_t *part,
                                   MPI_Comm parent, kvmesh_cache_t **out);

#endif
