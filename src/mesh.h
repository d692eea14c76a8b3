/* Internal view of the mesh, shared by the partition manager and cache. */
#ifndef KVMESH_MESH_H
#define KVMESH_MESH_H

#include "kvmesh.h"

struct kvmesh_mesh {
    MPI_Comm cart;                 /* Cartesian, row-major, not reordered */
    MPI_Comm axis[KVMESH_NAXES];   /* ranks that differ only along one axis */
    int size[KVMESH_NAXES];
    int coord[KVMESH_NAXES];
    int nranks, rank;
};

#endif
