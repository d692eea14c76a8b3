/* Block geometry of any layout on any mesh (DESIGN §2, §4).  From plain
 * data -- mesh axis sizes, the partition's rule tables, the cache's global
 * shape -- it gives the block that any mesh coordinates hold of a layer's
 * K/V storage or of an append's input, intersects blocks, and splits a
 * position range into ring runs.  It is the one place that computes who
 * holds what: init, the routing plans, the input-block query and the view
 * use it, and so will the redistribution engine and the checkpoints, which
 * describe meshes other than the calling rank's. */
#ifndef KVMESH_LAYOUT_H
#define KVMESH_LAYOUT_H

#include "partition.h"

/** A contiguous range [lo, lo + len) of one dimension. */
typedef struct {
    int64_t lo, len;
} kvmesh_span_t;

/** A block of a 4-d array [batch, length, head, dim]. */
typedef struct {
    kvmesh_span_t d[4];
} kvm_box_t;

/** A layout: a mesh (sizes only, row-major ranks as MPI_Cart_create), the
 *  rules that split the cache's arrays over it, and the global shape. */
typedef struct {
    int size[KVMESH_NAXES];
    int nranks;
    kvmesh_rule_t rules[2][KVMESH_NLOGICAL];   /* [kvmesh_rules_t][logical] */
    int64_t B, S, H[2], D[2];                  /* batch, length, K/V heads, dims */
} kvm_layout_t;

/** A layout from plain data: axis sizes, rule tables and global shape
 *  (H, D NULL: one head of one element). */
void kvm_layout_init(kvm_layout_t *lo, const int size[KVMESH_NAXES],
                     const kvmesh_rule_t rules[2][KVMESH_NLOGICAL], int64_t B,
                     int64_t S, const int64_t H[2], const int64_t D[2]);

/** The layout of \p part's rules on its mesh for arrays of this shape. */
void kvm_layout_of(kvm_layout_t *lo, const kvmesh_partition_t *part, int64_t B,
                   int64_t S, const int64_t H[2], const int64_t D[2]);

/** Coordinates of mesh rank \p rank. */
void kvm_layout_coords(const kvm_layout_t *lo, int rank, int coords[KVMESH_NAXES]);
/** Rank at \p coords, -1 when out of range. */
int kvm_layout_rank(const kvm_layout_t *lo, const int coords[KVMESH_NAXES]);
/** The same for a mesh of these axis sizes. */
int kvm_rank_of(const int size[KVMESH_NAXES], const int coords[KVMESH_NAXES]);

/** How a dimension of \p size along \p logical splits in \p mode, for the
 *  ranks at \p coords: a size that the rule's axes do not divide stays
 *  whole (DESIGN §2). */
void kvm_layout_dim(const kvm_layout_t *lo, kvmesh_mode_t mode,
                    kvmesh_logical_t logical, int64_t size, const int *coords,
                    kvmesh_dim_t *dim);

/** Blocks the rule of \p logical in \p mode makes (product of its axis
 *  sizes, before the divisibility correction). */
int64_t kvm_layout_nblocks(const kvm_layout_t *lo, kvmesh_mode_t mode,
                           kvmesh_logical_t logical);

/** Index of the kv-length block that the ranks at \p coords hold. */
int64_t kvm_layout_kblock(const kvm_layout_t *lo, const int *coords);

/** Slots of a layer storage of \p len held by kv-length block \p kblock:
 *  equal blocks, or all of it when len does not divide. */
kvmesh_span_t kvm_layout_kv_span(const kvm_layout_t *lo, int64_t len, int64_t kblock);

/** Storage slots per row of a layer of kind \p d in a cache whose largest
 *  append is \p A: S, or for a SLIDING layer of window W a ring that still
 *  holds every key the queries of an append of A tokens may see,
 *  min(S, W + A - 1), rounded up to whole kv-length blocks (at most S). */
int64_t kvm_layout_storage(const kvm_layout_t *lo, const kvmesh_mask_detail_t *d,
                           int64_t A);

/** True when two split dimensions share a mesh axis of size > 1. */
bool kvm_layout_overlap(const kvm_layout_t *lo, const kvmesh_dim_t *a,
                        const kvmesh_dim_t *b);

/** The block of a layer's key (t = 0) or value (t = 1) storage
 *  [B, len, H_t, D_t] that the ranks at \p coords hold: [BATCH, KV_LENGTH,
 *  KV_HEAD, KV_HEAD_DIM] in PREFILL mode.  False when the rules split two
 *  of its dimensions over one mesh axis. */
bool kvm_layout_cache_box(const kvm_layout_t *lo, const int *coords, int t,
                          int64_t len, kvm_box_t *box);

/** The block of an append's input [B, n, H_t, D_t] that the ranks at
 *  \p coords pass in \p mode: [BATCH, QUERY_LENGTH, KV_HEAD, KV_HEAD_DIM],
 *  the query length split in \p qblocks equal blocks (1: replicated; else
 *  the rule's block count, which must divide n).  Its query block goes to
 *  \p qdim when not NULL.  False as kvm_layout_cache_box(). */
bool kvm_layout_input_box(const kvm_layout_t *lo, kvmesh_mode_t mode,
                          const int *coords, int t, int64_t n, int64_t qblocks,
                          kvm_box_t *box, kvmesh_dim_t *qdim);

/** Coordinates of the rank that differs from \p coords only along \p dim's
 *  axes and holds its block \p k. */
void kvm_layout_member(const kvm_layout_t *lo, const kvmesh_dim_t *dim, int64_t k,
                       const int *coords, int out[KVMESH_NAXES]);

/** The intersection of two blocks; false when it is empty. */
bool kvm_box_intersect(const kvm_box_t *a, const kvm_box_t *b, kvm_box_t *out);

/** True when \p outer contains \p inner in every dimension but \p skip. */
bool kvm_box_covers(const kvm_box_t *outer, const kvm_box_t *inner, int skip);

/** Positions [p0, p1) that land in consecutive storage slots from slot on. */
typedef struct {
    int64_t p0, p1, slot;
} kvm_run_t;

/** Splits positions [p0, p1) of a storage of \p len slots into the runs
 *  that land in slots \p kv: position p lives in slot p (p mod len for a
 *  \p ring).  A ring range must be no longer than the ring; it wraps at
 *  most once, so there are at most two runs (one without a ring).
 *  Returns how many. */
int kvm_layout_runs(int64_t len, bool ring, int64_t p0, int64_t p1,
                    kvmesh_span_t kv, kvm_run_t run[2]);

/** One row of a layer's storage array as a ScaLAPACK matrix, read column
 *  by column: a column is a storage slot, its rows the slot's bytes of
 *  every head in elements of \p elem bytes (4: one word, 1: one byte).  A
 *  rank's block is a block of the 2-d block distribution with one block a
 *  process (equal blocks, the layout's rule). */
typedef struct {
    int64_t m, n, mb, nb;        /* global elements x slots; block */
    int64_t nprow, npcol;        /* process grid */
    int64_t prow, pcol;          /* the block at hand */
    size_t row_bytes;            /* local bytes of one row of the array */
} kvm_matrix_t;

/** The matrix geometry of block \p box (in units of \p unit bytes; \p H
 *  heads of \p U units each, \p len slots).  False when the block's
 *  columns are no contiguous range (dims split while a block holds several
 *  heads) or its column bytes are no whole number of elements. */
bool kvm_layout_matrix(const kvm_box_t *box, int64_t H, int64_t U, int64_t len,
                       size_t unit, int64_t elem, kvm_matrix_t *m);

#endif
