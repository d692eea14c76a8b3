/* The redistribution engine (DESIGN §5): moves the filled positions of a
 * cache's rows -- every layer's K and V, their scales, and the rows'
 * indexs and starts -- from one layout to another over a parent
 * communicator.  Insert is its first user; gather, scatter and reshard
 * are the next. */
#ifndef KVMESH_REDIST_H
#define KVMESH_REDIST_H

#include "cache.h"

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
