/* BLACS process grids, and the ScaLAPACK routines kvmesh calls (ScaLAPACK
 * ships no C header; Cblacs_* and p?gemr2d index from 1). */
#ifndef KVMESH_BLACS_H
#define KVMESH_BLACS_H

#include <mpi.h>

#include "kvmesh.h"

int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridmap(int *context, int *usermap, int ldumap, int nprow, int npcol);
void Cblacs_gridexit(int context);
void Cpigemr2d(int m, int n, int *a, int ia, int ja, int *desca, int *b, int ib, int jb,
               int *descb, int context);

/** The grids made over one communicator, kept for reuse.  A grid is made
 *  collectively by every rank of the communicator; ranks outside it hold
 *  context -1. */
typedef struct {
    MPI_Comm comm;
    MPI_Comm own;                  /* a duplicate of comm, once needed */
    int sys;                       /* BLACS system handle over own, or -1 */
    struct kvm_grid {
        int nprow, npcol, context;
        int *map;                  /* [nprow * npcol] ranks, column-major */
    } *grid;
    int n, cap;
} kvm_grids_t;

/** An empty set over \p comm (no BLACS call yet).  Local. */
void kvm_grids_init(kvm_grids_t *g, MPI_Comm comm);

/** The context of the grid whose process (i, j) is rank map[i + j * nprow]
 *  of the set's communicator, -1 on the ranks outside it; made when new.
 *  Every rank of the communicator calls it with the same arguments: then
 *  every rank has made the same grids.  Collective on the communicator. */
kvmesh_status_t kvm_grids_get(kvm_grids_t *g, int nprow, int npcol, const int *map,
                              int *context);

/** Leaves every grid and releases the system handle.  Local. */
void kvm_grids_free(kvm_grids_t *g);

#endif
