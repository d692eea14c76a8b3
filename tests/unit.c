/* One-process unit tests (CUnit).  The exit status comes from the failure
 * count: CU_basic_run_tests returns 0 even when tests fail. */
#include <stdio.h>

#include <CUnit/Basic.h>
#include <mpi.h>

#include "suites.h"

kvmesh_status_t
onerank_open(onerank_t *o, const kvmesh_meta_params_t *mp,
             const kvmesh_cache_params_t *cp)
{
    kvmesh_meta_t *meta = NULL;
    kvmesh_status_t st;

    o->mesh = NULL, o->part = NULL, o->cache = NULL;
    CU_ASSERT_EQUAL(kvmesh_mesh_create(MPI_COMM_SELF, "", &o->mesh), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_partition_create(o->mesh, &o->part), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_meta_create(mp, &meta), KVMESH_SUCCESS);
    st = kvmesh_cache_init(meta, o->part, cp, &o->cache);
    CU_ASSERT_EQUAL(st, KVMESH_SUCCESS);
    kvmesh_meta_free(&meta);
    return st;
}

void
onerank_close(onerank_t *o)
{
    kvmesh_cache_free(&o->cache);
    kvmesh_partition_free(&o->part);
    kvmesh_mesh_free(&o->mesh);
}

int
main(int argc, char **argv)
{
    unsigned failures;

    MPI_Init(&argc, &argv);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    if (add_dtype_suite() || add_mesh_suite() || add_partition_suite() ||
        add_meta_suite() || add_mask_suite() || add_ring_suite() || add_layout_suite() ||
        add_quant_suite()) {
        fprintf(stderr, "unit: cannot register suites: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        MPI_Finalize();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    MPI_Finalize();
    return failures ? 1 : 0;
}
