/* Routing plans of concatenate (src/route.c): for each mode, which rank
 * holds which new tokens and which rank must store them. */
#ifndef KVMESH_PLAN_H
#define KVMESH_PLAN_H

#include "layout.h"

/* How the input blocks of one mode reach the cache.  Built at init from
 * the layout alone, so every rank holds the same verdict and the same
 * communication pattern without a message. */
typedef struct {
    kvmesh_status_t verdict;      /* SUCCESS or ERR_LAYOUT on every rank */
    int64_t qprod;                /* query-length blocks (1: replicated) */
    int64_t qblock;               /* this rank's query-length block */
    kvm_box_t in[2];              /* this rank's input block of K, V for
                                     n = qprod (rows, heads, dims) */
    int *peer;                    /* [qprod] rank holding each query block in
                                     this rank's group (peer[qblock] = me) */
    kvmesh_span_t *peer_rows;     /* [qprod] their cache rows */
    int64_t *peer_kblock;         /* [qprod] their kv-length block index */
} kvmesh_plan_t;

/** Builds the routing plans of \p c, and its request array and staging
 *  buffer (its layout and its views' storage lengths must be set). */
kvmesh_status_t kvm_plans_build(kvmesh_cache_t *c);
/** Frees what kvm_plans_build() made. */
void kvm_plans_free(kvmesh_cache_t *c);

/** The plan of an append of \p n tokens in \p mode: the split one when the
 *  query length is sharded and n divides, else the replicated one. */
const kvmesh_plan_t *kvm_plan_of(const kvmesh_cache_t *c, kvmesh_mode_t mode, int64_t n);

#endif
