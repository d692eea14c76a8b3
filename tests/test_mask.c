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

/* Runtime metadata overrides the view's rows in the mask functions */
static void
test_runtime(void)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_runtime_t rt;
    const kvmesh_mask_t *mask = NULL;
    kvmesh_view_t *v = NULL;
    onerank_t o;
    float x[2 * 4 * 2] = { 0 };
    const int32_t starts[2] = { 2, 0 }, indexs[2] = { 3, 4 };
    uint8_t m[2 * 4 * 8];
    int k;

    kvmesh_meta_params_init(&mp);
    mp.batch_size = 2, mp.sequence_length = 8, mp.num_hidden_layers = 1;
    mp.num_heads = 1, mp.head_dim = 2;
    kvmesh_cache_params_init(&cp);
    cp.dtype = KVMESH_F32;
    CU_ASSERT_EQUAL_FATAL(onerank_open(&o, &mp, &cp), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_cache_view(o.cache, 0, &v), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_view_concatenate(v, KVMESH_MODE_PREFILL, 4, KVMESH_F32, x, x,
                                                  &mask), KVMESH_SUCCESS);
    kvmesh_runtime_init(&rt);
    /* nothing overridden: the view's own rows (query 3 is position 3) */
    CU_ASSERT_TRUE(kvmesh_mask_allows_at(mask, &rt, 0, 3, 0));
    CU_ASSERT_TRUE(kvmesh_mask_allows_at(mask, NULL, 0, 3, 3));
    /* runtime starts: row 0's keys start at 2 */
    rt.starts = starts;
    CU_ASSERT_FALSE(kvmesh_mask_allows_at(mask, &rt, 0, 3, 1));
    CU_ASSERT_TRUE(kvmesh_mask_allows_at(mask, &rt, 0, 3, 2));
    CU_ASSERT_TRUE(kvmesh_mask_allows_at(mask, &rt, 1, 3, 0));
    /* postpadded rows hide no key as left padding */
    rt.postpadded = true;
    CU_ASSERT_TRUE(kvmesh_mask_allows_at(mask, &rt, 0, 3, 1));
    /* runtime indexs: row 0 has 3 tokens, its queries are positions -1..2 */
    rt.postpadded = false, rt.starts = NULL, rt.indexs = indexs;
    CU_ASSERT_FALSE(kvmesh_mask_allows_at(mask, &rt, 0, 0, 0));
    CU_ASSERT_TRUE(kvmesh_mask_allows_at(mask, &rt, 0, 3, 2));
    CU_ASSERT_FALSE(kvmesh_mask_allows_at(mask, &rt, 0, 3, 3));
    CU_ASSERT_EQUAL(kvmesh_mask_materialize_at(mask, &rt, m, sizeof m), KVMESH_SUCCESS);
    for (k = 0; k < 8; k++) {
        CU_ASSERT_EQUAL(m[0 * 8 + k], 0);                   /* row 0, query -1 */
        CU_ASSERT_EQUAL(m[3 * 8 + k], k <= 2);              /* row 0, query 2 */
        CU_ASSERT_EQUAL(m[(4 + 3) * 8 + k], k <= 3);        /* row 1, query 3 */
    }
    /* the view's rows again without a runtime */
    CU_ASSERT_EQUAL(kvmesh_mask_materialize(mask, m, sizeof m), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(m[3 * 8 + 3], 1);
    onerank_close(&o);
}

int
add_mask_suite(void)
{
    CU_pSuite s = CU_add_suite("mask", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "predicate", test_predicate) ||
           !CU_add_test(s, "runtime metadata overrides the rows", test_runtime);
}
