/* Internal status helpers: check-and-return macros and the collective
 * agreement that makes every rank return the same status. */
#ifndef KVMESH_STATUS_H
#define KVMESH_STATUS_H

#include "kvmesh.h"

/** Return \p s from the current function if it is not success. */
#define KVMESH_TRY(s) do { kvmesh_status_t try_s_ = (s); \
        if (try_s_ != KVMESH_SUCCESS) return try_s_; } while (0)
/** Set status \p st to \p s and jump to fail if \p s is not success. */
#define KVMESH_GOTO(st, s) do { (st) = (s); \
        if ((st) != KVMESH_SUCCESS) goto fail; } while (0)
/** Status of an MPI return code. */
#define KVMESH_MPI(rc) ((rc) == MPI_SUCCESS ? KVMESH_SUCCESS : \
        (kvmesh_status_t) (KVMESH_ERR_MPI + (rc)))

/** Largest status over \p comm.  Collective on \p comm. */
kvmesh_status_t kvm_agree(MPI_Comm comm, kvmesh_status_t local);

/** Largest status over \p comm, or KVMESH_ERR_MISMATCH when all statuses are
 *  success but the \p n values (n <= KVMESH_AGREE_MAX) differ between ranks.
 *  One MPI_Allreduce.  Collective on \p comm. */
#define KVMESH_AGREE_MAX 16
kvmesh_status_t kvm_agree_same(MPI_Comm comm, kvmesh_status_t local,
                                  const int64_t *vals, int n);

/** As kvm_agree_same(), and KVMESH_ERR_DIVERGED on every rank when the
 *  \p state hashes differ (or a rank passes KVMESH_ERR_DIVERGED): a state
 *  that should be replicated has diverged, which outranks any other
 *  verdict.  One MPI_Allreduce.  Collective on \p comm. */
kvmesh_status_t kvm_agree_state(MPI_Comm comm, kvmesh_status_t local, uint64_t state,
                                const int64_t *vals, int n);

/** 64-bit FNV-1a hash of bytes, chained from \p h (start with 0). */
uint64_t kvm_hash(uint64_t h, const void *data, size_t len);

#endif
