/* The logical mesh: an MPI Cartesian communicator over the axes
 * dp, fsdp, ep, tp, sp, built from a "name=size,..." specification. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "mesh.h"
#include "status.h"

static const char *const axis_names[KVMESH_NAXES] = {
    "dp", "fsdp", "ep", "tp", "sp"
};

static const char *
skip_space(const char *s)
{
    while (isspace((unsigned char) *s))
        s++;
    return s;
}

kvmesh_status_t
kvmesh_mesh_parse(const char *spec, int nranks, int sizes[KVMESH_NAXES])
{
    bool seen[KVMESH_NAXES] = { false };
    int a, infer = -1;
    long long prod = 1;
    const char *s;

    if (!sizes || nranks <= 0)
        return KVMESH_ERR_ARG;
    for (a = 0; a < KVMESH_NAXES; a++)
        sizes[a] = 1;
    s = skip_space(spec ? spec : "");
    if (*s == '\0')
        s = "fsdp=-1";          /* EasyDeL's default mesh */
    for (;;) {
        size_t len;
        long v;
        char *end;

        s = skip_space(s);
        for (len = 0; isalpha((unsigned char) s[len]); len++)
            ;
        for (a = 0; a < KVMESH_NAXES; a++)
            if (strlen(axis_names[a]) == len && !strncmp(s, axis_names[a], len))
                break;
        if (a == KVMESH_NAXES || seen[a])
            return KVMESH_ERR_MESH_SPEC;
        seen[a] = true;
        s = skip_space(s + len);
        if (*s++ != '=')
            return KVMESH_ERR_MESH_SPEC;
        s = skip_space(s);
        if (!(isdigit((unsigned char) *s) || *s == '-'))
            return KVMESH_ERR_MESH_SPEC;
        errno = 0;
        v = strtol(s, &end, 10);
        if (end == s || errno || v == 0 || v < -1 || v > (1L << 30))
            return KVMESH_ERR_MESH_SPEC;
        if (v == -1) {
            if (infer >= 0)
                return KVMESH_ERR_MESH_SPEC;
            infer = a;
        }
        sizes[a] = (int) v;
        s = skip_space(end);
        if (*s == '\0')
            break;
        if (*s++ != ',')
            return KVMESH_ERR_MESH_SPEC;
    }
    for (a = 0; a < KVMESH_NAXES; a++)
        if (a != infer)
            prod *= sizes[a];
    if (infer >= 0) {
        if (prod > nranks || nranks % prod)
            return KVMESH_ERR_MESH_SIZE;
        sizes[infer] = (int) (nranks / prod);
    } else if (prod != nranks) {
        return KVMESH_ERR_MESH_SIZE;
    }
    return KVMESH_SUCCESS;
}

int
kvmesh_mesh_rank_of(const kvmesh_mesh_t *mesh, const int coords[KVMESH_NAXES])
{
    return mesh && coords ? kvm_rank_of(mesh->size, coords) : -1;
}

kvmesh_status_t
kvmesh_mesh_create(MPI_Comm comm, const char *spec, kvmesh_mesh_t **out)
{
    kvmesh_mesh_t *m = NULL;
    int64_t vals[KVMESH_NAXES];
    int nranks = 0, rc, a, periods[KVMESH_NAXES] = { 0 };
    kvmesh_status_t st = KVMESH_SUCCESS;

    if (comm == MPI_COMM_NULL)
        return KVMESH_ERR_ARG;
    rc = MPI_Comm_size(comm, &nranks);
    if (rc != MPI_SUCCESS)
        return KVMESH_MPI(rc);
    m = calloc(1, sizeof *m);
    if (m) {
        m->cart = MPI_COMM_NULL;
        for (a = 0; a < KVMESH_NAXES; a++)
            m->axis[a] = MPI_COMM_NULL;
    }
    if (!out || !m)
        st = out ? KVMESH_ERR_NOMEM : KVMESH_ERR_ARG;
    if (st == KVMESH_SUCCESS)
        st = kvmesh_mesh_parse(spec, nranks, m->size);
    for (a = 0; a < KVMESH_NAXES; a++)
        vals[a] = st == KVMESH_SUCCESS ? m->size[a] : 0;
    KVMESH_GOTO(st, kvm_agree_same(comm, st, vals, KVMESH_NAXES));
    rc = MPI_Cart_create(comm, KVMESH_NAXES, m->size, periods, 0, &m->cart);
    KVMESH_GOTO(st, KVMESH_MPI(rc));
    MPI_Comm_set_errhandler(m->cart, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->cart, &m->rank);
    m->nranks = nranks;
    rc = MPI_Cart_coords(m->cart, m->rank, KVMESH_NAXES, m->coord);
    for (a = 0; a < KVMESH_NAXES && rc == MPI_SUCCESS; a++) {
        int remain[KVMESH_NAXES] = { 0 };
        remain[a] = 1;
        rc = MPI_Cart_sub(m->cart, remain, &m->axis[a]);
    }
    KVMESH_GOTO(st, kvm_agree(m->cart, KVMESH_MPI(rc)));
    *out = m;
    return KVMESH_SUCCESS;
fail:
    kvmesh_mesh_free(&m);
    return st;
}

void
kvmesh_mesh_free(kvmesh_mesh_t **mesh)
{
    kvmesh_mesh_t *m;
    int a;

    if (!mesh || !*mesh)
        return;
    m = *mesh;
    for (a = 0; a < KVMESH_NAXES; a++)
        if (m->axis[a] != MPI_COMM_NULL)
            MPI_Comm_free(&m->axis[a]);
    if (m->cart != MPI_COMM_NULL)
        MPI_Comm_free(&m->cart);
    free(m);
    *mesh = NULL;
}

int
kvmesh_mesh_size(const kvmesh_mesh_t *mesh, kvmesh_axis_t axis)
{
    return mesh && axis < KVMESH_NAXES ? mesh->size[axis] : 0;
}

int
kvmesh_mesh_coord(const kvmesh_mesh_t *mesh, kvmesh_axis_t axis)
{
    return mesh && axis < KVMESH_NAXES ? mesh->coord[axis] : -1;
}

MPI_Comm
kvmesh_mesh_comm(const kvmesh_mesh_t *mesh)
{
    return mesh ? mesh->cart : MPI_COMM_NULL;
}

MPI_Comm
kvmesh_mesh_axis_comm(const kvmesh_mesh_t *mesh, kvmesh_axis_t axis)
{
    return mesh && axis < KVMESH_NAXES ? mesh->axis[axis] : MPI_COMM_NULL;
}
