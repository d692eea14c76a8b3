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
    case KVMESH_ERR_OVERFLOW: return "size overflow";
    case KVMESH_ERR_MISMATCH: return "ranks passed different arguments";
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

kvmesh_status_t
kvm_agree_same(MPI_Comm comm, kvmesh_status_t local, const int64_t *vals,
               int n)
{
    /* max(~v) = ~min(v), so one MAX reduction of v and ~v gives both ends
     * of the range; equal ends mean every rank has the same v */
    int64_t buf[1 + 2 * KVMESH_AGREE_MAX];
    int rc, i;

    if (n < 0 || n > KVMESH_AGREE_MAX)
        local = KVMESH_ERR_ARG, n = 0;
    buf[0] = (int64_t) local;
    for (i = 0; i < n; i++) {
        buf[1 + 2 * i] = vals[i];
        buf[2 + 2 * i] = ~vals[i];
    }
    rc = MPI_Allreduce(MPI_IN_PLACE, buf, 1 + 2 * n, MPI_INT64_T, MPI_MAX, comm);
    if (rc != MPI_SUCCESS)
        return KVMESH_MPI(rc);
    if (buf[0] != KVMESH_SUCCESS)
        return (kvmesh_status_t) buf[0];
    for (i = 0; i < n; i++)
        if (buf[1 + 2 * i] != ~buf[2 + 2 * i])
            return KVMESH_ERR_MISMATCH;
    return KVMESH_SUCCESS;
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
