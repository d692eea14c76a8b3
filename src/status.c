/* Status codes, their text, and the agreement of one status over a
 * communicator (DESIGN §9). */
#include <stdio.h>
#include <string.h>

#include "status.h"

const char *
kvmesh_strerror(kvmesh_status_t status)
{
    static _Thread_local char buf[MPI_MAX_ERROR_STRING + 64];

    switch (status) {
    case KVMESH_SUCCESS: return "success";
    case KVMESH_ERR_ARG: return "invalid argument";
    case KVMESH_ERR_MESH_SPEC: return "malformed mesh specification";
    case KVMESH_ERR_MESH_SIZE: return "mesh size does not match the communicator";
    case KVMESH_ERR_META: return "invalid cache metadata";
    case KVMESH_ERR_LAYOUT: return "partition layout not usable for this call";
    case KVMESH_ERR_UNSUPPORTED: return "feature not supported";
    case KVMESH_ERR_CAPACITY: return "append exceeds the cache length";
    case KVMESH_ERR_TOO_LONG: return "append longer than the cache's max_append";
    case KVMESH_ERR_EMPTY: return "layer not initialised (kvmesh_cache_init_layer)";
    case KVMESH_ERR_OVERFLOW: return "size overflow";
    case KVMESH_ERR_MISMATCH: return "ranks passed different arguments";
    case KVMESH_ERR_DIVERGED:
        return "the cache's replicated state differs between ranks after a call "
               "that failed on some ranks only; free the cache";
    case KVMESH_ERR_NOMEM: return "out of memory";
    default: break;
    }
    if (status >= KVMESH_ERR_MPI) {
        char mpi[MPI_MAX_ERROR_STRING];
        int len = 0, init = 0, fin = 0;
        int code = (int) status - KVMESH_ERR_MPI;

        MPI_Initialized(&init);
        MPI_Finalized(&fin);
        if (!init || fin || MPI_Error_string(code, mpi, &len) != MPI_SUCCESS)
            len = 0;
        mpi[len] = '\0';
        snprintf(buf, sizeof buf, "MPI error %d: %s", code,
                 len ? mpi : "(no MPI error string)");
        return buf;
    }
    return "unknown status";
}

kvmesh_status_t
kvm_agree(MPI_Comm comm, kvmesh_status_t local)
{
    return kvm_agree_same(comm, local, NULL, 0);
}

/* The largest status, and in *first the first of the n values that
 * differs between ranks (-1: none).  One allreduce. */
static kvmesh_status_t
agree(MPI_Comm comm, kvmesh_status_t local, const int64_t *vals, int n, int *first)
{
    /* max(~v) = ~min(v), so one MAX reduction of v and ~v gives both ends
     * of the range; equal ends mean every rank has the same v */
    int64_t buf[1 + 2 * (KVMESH_AGREE_MAX + 1)];
    int rc, i;

    *first = -1;
    if (n < 0 || n > KVMESH_AGREE_MAX + 1)
        local = KVMESH_ERR_ARG, n = 0;
    buf[0] = (int64_t) local;
    for (i = 0; i < n; i++) {
        buf[1 + 2 * i] = vals[i];
        buf[2 + 2 * i] = ~vals[i];
    }
    rc = MPI_Allreduce(MPI_IN_PLACE, buf, 1 + 2 * n, MPI_INT64_T, MPI_MAX, comm);
    if (rc != MPI_SUCCESS)
        return KVMESH_MPI(rc);
    for (i = 0; i < n && *first < 0; i++)
        if (buf[1 + 2 * i] != ~buf[2 + 2 * i])
            *first = i;
    return (kvmesh_status_t) buf[0];
}

kvmesh_status_t
kvm_agree_same(MPI_Comm comm, kvmesh_status_t local, const int64_t *vals,
               int n)
{
    int first;
    kvmesh_status_t st;

    if (n > KVMESH_AGREE_MAX)
        local = KVMESH_ERR_ARG, n = 0;
    st = agree(comm, local, vals, n, &first);
    if (st == KVMESH_SUCCESS && first >= 0)
        return KVMESH_ERR_MISMATCH;
    return st;
}

kvmesh_status_t
kvm_agree_state(MPI_Comm comm, kvmesh_status_t local, uint64_t state,
                const int64_t *vals, int n)
{
    int64_t all[KVMESH_AGREE_MAX + 1];
    int first, i;
    kvmesh_status_t st;

    if (n < 0 || n > KVMESH_AGREE_MAX)
        local = KVMESH_ERR_ARG, n = 0;
    all[0] = (int64_t) state;
    for (i = 0; i < n; i++)
        all[1 + i] = vals[i];
    st = agree(comm, local, all, n + 1, &first);
    if (st != KVMESH_SUCCESS && st != KVMESH_ERR_DIVERGED && first != 0)
        return st;
    if (st == KVMESH_ERR_DIVERGED || first == 0)
        return KVMESH_ERR_DIVERGED;
    return first > 0 ? KVMESH_ERR_MISMATCH : KVMESH_SUCCESS;
}

uint64_t
kvm_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;

    if (h == 0)
        h = 14695981039346656037ULL;
    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
