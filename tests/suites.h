/* The CUnit suites of the one-process unit test program. */
#ifndef KVMESH_SUITES_H
#define KVMESH_SUITES_H

#include <CUnit/CUnit.h>

#include "kvmesh.h"

/* A cache on MPI_COMM_SELF with the mesh and partition it needs. */
typedef struct {
    kvmesh_mesh_t *mesh;
    kvmesh_partition_t *part;
    kvmesh_cache_t *cache;
} onerank_t;

/** Creates o's mesh, partition and cache; asserts that every step works. */
kvmesh_status_t onerank_open(onerank_t *o, const kvmesh_meta_params_t *mp,
                             const kvmesh_cache_params_t *cp);
/** Frees what onerank_open() made. */
void onerank_close(onerank_t *o);

int add_dtype_suite(void);
int add_mesh_suite(void);
int add_partition_suite(void);
int add_meta_suite(void);
int add_mask_suite(void);
int add_ring_suite(void);
int add_layout_suite(void);
int add_quant_suite(void);

#endif
