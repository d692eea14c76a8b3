/* The mask predicate against the reference's, over a grid of rows,
 * queries and keys for every kind of layer. */
#include "kvmesh.h"
#include "reference.h"
#include "suites.h"

static void
test_predicate(void)
{
    static const kvmesh_mask_detail_t det[] = {
        { KVMESH_MASK_FULL, 0, 0 },    { KVMESH_MASK_SLIDING, 1, 0 },
        { KVMESH_MASK_SLIDING, 4, 0 }, { KVMESH_MASK_SLIDING, 64, 0 },
        { KVMESH_MASK_CHUNK, 0, 1 },   { KVMESH_MASK_CHUNK, 0, 3 },
        { KVMESH_MASK_CHUNK, 0, 8 }
    };
    size_t i;
    long bad = 0, visible = 0;
    int64_t start, q, k;

    for (i = 0; i < sizeof det / sizeof *det; i++)
        for (start = 0; start < 6; start++)
            for (q = 0; q < 24; q++)
                for (k = -1; k < 26; k++) {
                    bool got = kvmesh_mask_detail_allows(&det[i], start, q, k);
                    bool want = k >= 0 && ref_allows((int) det[i].kind, det[i].window,
                                                     det[i].chunk, start, q, k);
                    bad += got != want;
                    visible += got;
                }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(visible > 1000);   /* the grid is not trivially all-false */
    /* spot values */
    CU_ASSERT_TRUE(kvmesh_mask_detail_allows(&det[0], 2, 5, 2));
    CU_ASSERT_FALSE(kvmesh_mask_detail_allows(&det[0], 2, 5, 1));     /* padding */
    CU_ASSERT_FALSE(kvmesh_mask_detail_allows(&det[0], 0, 5, 6));     /* future */
    CU_ASSERT_TRUE(kvmesh_mask_detail_allows(&det[2], 0, 9, 6));
    CU_ASSERT_FALSE(kvmesh_mask_detail_allows(&det[2], 0, 9, 5));     /* outside W */
    CU_ASSERT_TRUE(kvmesh_mask_detail_allows(&det[5], 0, 8, 6));
    CU_ASSERT_FALSE(kvmesh_mask_detail_allows(&det[5], 0, 8, 5));     /* other chunk */
    CU_ASSERT_TRUE(kvmesh_mask_detail_allows(NULL, 0, 3, 3));
    CU_ASSERT_EQUAL(kvmesh_mask_queries(NULL), 0);
    CU_ASSERT_FALSE(kvmesh_mask_allows(NULL, 0, 0, 0));
    CU_ASSERT_EQUAL(kvmesh_mask_materialize(NULL, NULL, 0), KVMESH_ERR_ARG);
}

int
add_mask_suite(void)
{
    CU_pSuite s = CU_add_suite("mask", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "predicate", test_predicate);
}
