/* The CUnit suites of the one-process unit test program. */
#ifndef KVMESH_SUITES_H
#define KVMESH_SUITES_H

#include <CUnit/CUnit.h>

int add_dtype_suite(void);
int add_mesh_suite(void);
int add_partition_suite(void);
int add_meta_suite(void);
int add_mask_suite(void);
int add_ring_suite(void);
int add_quant_suite(void);

#endif
