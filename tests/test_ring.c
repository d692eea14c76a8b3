/* Sliding-window rings: the slot/position helpers and canonical order
 * against a brute-force simulation; on a real one-rank cache, the
 * partial-window append EasyDeL gets wrong and the earlier queries of a
 * chunk that a ring of W slots would starve; meta.sliding_window. */
#include <string.h>

#include "kvmesh.h"
#include "ring.h"
#include "suites.h"

/* brute force: write positions 0..L-1 one by one into slot p mod R */
static void
test_helpers(void)
{
    int64_t R, W, L, s, i;
    long bad = 0;

    for (R = 1; R <= 7; R++)
        for (L = 0; L <= 3 * R + 2; L++) {
            int64_t slot_pos[8];
            for (s = 0; s < R; s++)
                slot_pos[s] = -1;
            for (i = 0; i < L; i++)
                slot_pos[i % R] = i;
            for (s = 0; s < R; s++)
                bad += kvm_ring_position(R, L, s) != slot_pos[s];
            /* canonical i of a window W <= R: position L - W + i when
             * L >= W, else i (zero past L) */
            for (W = 1; W <= R; W++)
                for (i = 0; i < W; i++) {
                    int64_t cs = kvm_ring_canonical_slot(R, W, L, i);
                    int64_t want = L >= W ? L - W + i : (i < L ? i : -1);
                    bad += cs < 0 ? want != -1 : slot_pos[cs] != want;
                }
        }
    CU_ASSERT_EQUAL(bad, 0);
}

/* a one-rank cache: 1 row, 1 head, head dim 2, f32, one SLIDING layer of
 * window W, largest append A */
static kvmesh_status_t
ring_cache(int64_t W, int64_t A, onerank_t *o)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_mask_detail_t det = { KVMESH_MASK_SLIDING, W, 0 };

    kvmesh_meta_params_init(&mp);
    mp.batch_size = 1, mp.sequence_length = 16, mp.num_hidden_layers = 1;
    mp.num_heads = 1, mp.head_dim = 2;
    kvmesh_cache_params_init(&cp);
    cp.dtype = KVMESH_F32;
    cp.details = &det;
    cp.max_append = A;
    return onerank_open(o, &mp, &cp);
}

/* appends tokens first..first+n-1 (token t has key (t, -t), value (t, t)) */
static kvmesh_status_t
append(kvmesh_view_t *v, int first, int n, const kvmesh_mask_t **mask)
{
    float k[32], val[32];
    int i;

    for (i = 0; i < n; i++) {
        k[2 * i] = (float) (first + i), k[2 * i + 1] = (float) -(first + i);
        val[2 * i] = val[2 * i + 1] = (float) (first + i);
    }
    return kvmesh_view_concatenate(v, KVMESH_MODE_PREFILL, n, KVMESH_F32, k, val, mask);
}

/* the window in canonical (oldest-first) order: key[0] of each entry, 0
 * where empty */
static void
canonical(kvmesh_view_t *v, int64_t R, int64_t W, float *out)
{
    int64_t L = kvmesh_view_indexs(v)[0], i;

    for (i = 0; i < W; i++) {
        int64_t s = kvm_ring_canonical_slot(R, W, L, i);
        float kv[2] = { 0, 0 };
        if (s >= 0)
            CU_ASSERT_EQUAL(kvmesh_view_read(v, KVMESH_KEY, 0, s, s + 1, KVMESH_F32, kv,
                                             sizeof kv), KVMESH_SUCCESS);
        out[i] = kv[0];
    }
}

/* the materialized mask of the last append, one row of R slots per query */
static int
mask_is(const kvmesh_mask_t *mask, const char *want)
{
    uint8_t m[64];
    size_t i;

    if (kvmesh_mask_materialize(mask, m, sizeof m) != KVMESH_SUCCESS)
        return 0;
    for (i = 0; want[i]; i++)
        if (m[i] != (want[i] == '1'))
            return 0;
    return 1;
}

/* W = 4, A = 3: a ring of R = W + A - 1 = 6 slots */
static void
test_partial_window(void)
{
    onerank_t o;
    kvmesh_view_t *v = NULL;
    const kvmesh_mask_t *mask = NULL;
    kvmesh_block_t blk;
    float win[4];
    int64_t pos;
    /* EasyDeL's overflow branch, concat(old[n:], new), on the same input:
     * old = [t1, t2, t3, empty] -> [t3, empty, t4, t5] */
    const float easydel[4] = { 3, 0, 4, 5 }, right[4] = { 2, 3, 4, 5 };
    const float later[4] = { 5, 6, 7, 8 };

    CU_ASSERT_EQUAL_FATAL(ring_cache(4, 3, &o), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_cache_view(o.cache, 0, &v), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_cache_max_append(o.cache), 3);
    CU_ASSERT_EQUAL(kvmesh_view_local(v, KVMESH_KEY, NULL, &blk), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(blk.global[1], 6);
    CU_ASSERT_EQUAL(append(v, 1, 3, NULL), KVMESH_SUCCESS);  /* t1 t2 t3 */
    canonical(v, 6, 4, win);
    CU_ASSERT(win[0] == 1 && win[1] == 2 && win[2] == 3 && win[3] == 0);
    CU_ASSERT_EQUAL(append(v, 4, 2, &mask), KVMESH_SUCCESS); /* t4 t5 cross W */
    canonical(v, 6, 4, win);
    CU_ASSERT(memcmp(win, right, sizeof win) == 0);
    CU_ASSERT(memcmp(win, easydel, sizeof win) != 0);
    CU_ASSERT_EQUAL(kvmesh_view_indexs(v)[0], 5);
    /* slots 0-4 hold positions 0-4 (t1-t5), slot 5 none yet */
    CU_ASSERT(kvmesh_view_slot_position(v, 0, 0, &pos) == KVMESH_SUCCESS && pos == 0);
    CU_ASSERT(kvmesh_view_slot_position(v, 0, 4, &pos) == KVMESH_SUCCESS && pos == 4);
    CU_ASSERT(kvmesh_view_slot_position(v, 0, 5, &pos) == KVMESH_SUCCESS && pos == -1);
    CU_ASSERT_EQUAL(kvmesh_view_slot_position(v, 0, 6, &pos), KVMESH_ERR_ARG);
    /* t4 (q 3) sees positions 0..3, t5 (q 4) sees 1..4 */
    CU_ASSERT(mask_is(mask, "111100" "011110"));
    CU_ASSERT_TRUE(kvmesh_mask_allows(mask, 0, 0, 0));
    CU_ASSERT_FALSE(kvmesh_mask_allows(mask, 0, 1, 0));
    /* t6 t7 t8 (positions 5-7 in slots 5, 0, 1): the first of them still
     * sees positions 2 and 3, which a ring of W slots would have lost */
    CU_ASSERT_EQUAL(append(v, 6, 3, &mask), KVMESH_SUCCESS);
    CU_ASSERT(mask_is(mask, "001111" "100111" "110011"));
    CU_ASSERT_TRUE(kvmesh_mask_allows(mask, 0, 0, 2));
    CU_ASSERT_FALSE(kvmesh_mask_allows(mask, 0, 0, 1));
    canonical(v, 6, 4, win);
    CU_ASSERT(memcmp(win, later, sizeof win) == 0);
    /* n > A is refused, nothing changed */
    CU_ASSERT_EQUAL(append(v, 9, 4, &mask), KVMESH_ERR_TOO_LONG);
    CU_ASSERT_EQUAL(kvmesh_view_indexs(v)[0], 8);
    canonical(v, 6, 4, win);
    CU_ASSERT(memcmp(win, later, sizeof win) == 0);
    onerank_close(&o);
}

/* meta.sliding_window makes every layer SLIDING when no details are given;
 * explicit details win; the default A is min(512, S) */
static void
test_meta_window(void)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_mask_detail_t full[2] = { { KVMESH_MASK_FULL, 0, 0 },
                                     { KVMESH_MASK_CHUNK, 0, 4 } };
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    onerank_t o;

    kvmesh_meta_params_init(&mp);
    mp.batch_size = 1, mp.sequence_length = 1024, mp.num_hidden_layers = 2;
    mp.num_heads = 1, mp.head_dim = 2, mp.sliding_window = 100;
    kvmesh_cache_params_init(&cp);
    CU_ASSERT_EQUAL_FATAL(onerank_open(&o, &mp, &cp), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_cache_max_append(o.cache), 512);
    CU_ASSERT_EQUAL(kvmesh_cache_view(o.cache, 1, &v), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_view_detail(v).kind, KVMESH_MASK_SLIDING);
    CU_ASSERT_EQUAL(kvmesh_view_detail(v).window, 100);
    CU_ASSERT_EQUAL(kvmesh_view_local(v, KVMESH_KEY, NULL, &blk), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(blk.global[1], 100 + 512 - 1);
    onerank_close(&o);
    cp.details = full;
    cp.max_append = 5000;                   /* above S: means S */
    CU_ASSERT_EQUAL_FATAL(onerank_open(&o, &mp, &cp), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_cache_max_append(o.cache), 1024);
    CU_ASSERT_EQUAL(kvmesh_cache_view(o.cache, 1, &v), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_view_detail(v).kind, KVMESH_MASK_CHUNK);
    onerank_close(&o);
}

int
add_ring_suite(void)
{
    CU_pSuite s = CU_add_suite("sliding window", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "ring helpers and canonical order", test_helpers) ||
           !CU_add_test(s, "EasyDeL partial-window case, W 4, A 3", test_partial_window) ||
           !CU_add_test(s, "meta sliding_window and default max_append", test_meta_window);
}
