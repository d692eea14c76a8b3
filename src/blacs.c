/* BLACS process grids: see blacs.h. */
#include <stdlib.h>
#include <string.h>

#include "blacs.h"
#include "status.h"

void
kvm_grids_init(kvm_grids_t *g, MPI_Comm comm)
{
    memset(g, 0, sizeof *g);
    g->comm = comm;
    g->sys = -1;
}

kvmesh_status_t
kvm_grids_get(kvm_grids_t *g, int nprow, int npcol, const int *map, int *context)
{
    const size_t bytes = (size_t) nprow * (size_t) npcol * sizeof *map;
    struct kvm_grid *e = NULL;
    kvmesh_status_t st = KVMESH_SUCCESS;
    int i;

    for (i = 0; i < g->n; i++)
        if (g->grid[i].nprow == nprow && g->grid[i].npcol == npcol &&
            !memcmp(g->grid[i].map, map, bytes)) {
            *context = g->grid[i].context;
            return KVMESH_SUCCESS;
        }
    /* a new grid: every rank makes it, or none does */
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 8;
        struct kvm_grid *more = realloc(g->grid, (size_t) cap * sizeof *more);
        if (more)
            g->grid = more, g->cap = cap;
    }
    if (g->n < g->cap) {
        e = &g->grid[g->n];
        e->map = malloc(bytes);
    }
    st = kvm_agree(g->comm, e && e->map ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM);
    if (st != KVMESH_SUCCESS) {
        if (e)
            free(e->map);
        return st;
    }
    memcpy(e->map, map, bytes);
    if (g->sys < 0) {
        /* BLACS keys system handles by communicator: one of our own */
        st = kvm_agree(g->comm, KVMESH_MPI(MPI_Comm_dup(g->comm, &g->own)));
        if (st != KVMESH_SUCCESS) {
            free(e->map);
            return st;
        }
        g->sys = Csys2blacs_handle(g->own);
    }
    e->context = g->sys;
    Cblacs_gridmap(&e->context, e->map, nprow, nprow, npcol);
    e->nprow = nprow, e->npcol = npcol;
    g->n++;
    *context = e->context;
    return KVMESH_SUCCESS;
}

void
kvm_grids_free(kvm_grids_t *g)
{
    int i;

    for (i = 0; i < g->n; i++) {
        if (g->grid[i].context >= 0)
            Cblacs_gridexit(g->grid[i].context);
        free(g->grid[i].map);
    }
    free(g->grid);
    if (g->sys >= 0) {
        Cfree_blacs_system_handle(g->sys);
        MPI_Comm_free(&g->own);
    }
    kvm_grids_init(g, g->comm);
}
