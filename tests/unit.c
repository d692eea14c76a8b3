/* One-process unit tests (CUnit).  The exit status comes from the failure
 * count: CU_basic_run_tests returns 0 even when tests fail. */
#include <stdio.h>

#include <CUnit/Basic.h>
#include <mpi.h>

#include "suites.h"

int
main(int argc, char **argv)
{
    unsigned failures;

    MPI_Init(&argc, &argv);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    if (add_dtype_suite() || add_mesh_suite() || add_partition_suite() ||
        add_meta_suite() || add_mask_suite() || add_ring_suite() ||
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
