/* Sliding-window rings: the slot/position helpers and canonical order
 * against a brute-force simulation, and the partial-window append EasyDeL
 * gets wrong, on a real one-rank cache. */
#include <string.h>

#include "kvmesh.h"
#include "ring.h"
#include "suites.h"

/* brute force: write positions 0..L-1 one by one into slot p mod W */
static void
test_helpers(void)
{
    int64_t W, L, s, i;
    long bad = 0;

    for (W = 1; W <= 7; W++)
        for (L = 0; L <= 3 * W + 2; L++) {
            int64_t slot_pos[8];
            for (s = 0; s < W; s++)
                slot_pos[s] = -1;
            for (i = 0; i < L; i++)
                slot_pos[i % W] = i;
            for (s = 0; s < W; s++)
                bad += kvm_ring_position(W, L, s) != slot_pos[s];
            /* canonical i: position L - W + i when full, else i (or zero) */
            for (i = 0; i < W; i++) {
                int64_t cs = kvm_ring_canonical_slot(W, L, i);
                int64_t want = L >= W ? L - W + i : (i < L ? i : -1);
                bad += cs < 0 ? want != -1 : slot_pos[cs] != want;
            }
        }
    CU_ASSERT_EQUAL(bad, 0);
}

/* a one-rank cache: 1 row, 1 head, head dim 2, f32, one SLIDING layer */
static kvmesh_status_t
ring_cache(int64_t W, onerank_t *o)
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
    return onerank_open(o, &mp, &cp);
}

/* appends tokens first..first+n-1 (token t has key (t, -t), value (t, t)) */
static void
append(kvmesh_view_t *v, int first, int n, const kvmesh_mask_t **mask)
{
    float k[32], val[32];
    int i;

    for (i = 0; i < n; i++) {
        k[2 * i] = (float) (first + i), k[2 * i + 1] = (float) -(first + i);
        val[2 * i] = val[2 * i + 1] = (float) (first + i);
    }
    CU_ASSERT_EQUAL(kvmesh_view_concatenate(v, KVMESH_MODE_PREFILL, n, KVMESH_F32,
                                            k, val, mask), KVMESH_SUCCESS);
}

/* the window in canonical (oldest-first) order: key[0] of each entry, 0
 * where empty */
static void
canonical(kvmesh_view_t *v, int64_t W, float *out)
{
    int64_t L = kvmesh_view_indexs(v)[0], i;

    for (i = 0; i < W; i++) {
        int64_t s = kvm_ring_canonical_slot(W, L, i);
        float kv[2] = { 0, 0 };
        if (s >= 0)
            CU_ASSERT_EQUAL(kvmesh_view_read(v, KVMESH_KEY, 0, s, s + 1, KVMESH_F32, kv),
                            KVMESH_SUCCESS);
        out[i] = kv[0];
    }
}

static void
test_partial_window(void)
{
    onerank_t o;
    kvmesh_view_t *v = NULL;
    const kvmesh_mask_t *mask = NULL;
    float win[4];
    uint8_t m[2 * 4];
    int64_t pos;
    /* EasyDeL's overflow branch, concat(old[n:], new), on the same input:
     * old = [t1, t2, t3, empty] -> [t3, empty, t4, t5] */
    const float easydel[4] = { 3, 0, 4, 5 }, right[4] = { 2, 3, 4, 5 };

    CU_ASSERT_EQUAL_FATAL(ring_cache(4, &o), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_cache_view(o.cache, 0, &v), KVMESH_SUCCESS);
    append(v, 1, 3, NULL);                  /* t1 t2 t3: window 4, 3 cached */
    canonical(v, 4, win);
    CU_ASSERT(win[0] == 1 && win[1] == 2 && win[2] == 3 && win[3] == 0);
    append(v, 4, 2, &mask);                 /* t4 t5 cross the boundary */
    canonical(v, 4, win);
    CU_ASSERT(memcmp(win, right, sizeof win) == 0);
    CU_ASSERT(memcmp(win, easydel, sizeof win) != 0);
    CU_ASSERT_EQUAL(kvmesh_view_indexs(v)[0], 5);
    /* slot 0 now holds position 4 (t5), slot 1 position 1 (t2) */
    CU_ASSERT(kvmesh_view_slot_position(v, 0, 0, &pos) == KVMESH_SUCCESS && pos == 4);
    CU_ASSERT(kvmesh_view_slot_position(v, 0, 1, &pos) == KVMESH_SUCCESS && pos == 1);
    CU_ASSERT_EQUAL(kvmesh_view_slot_position(v, 0, 4, &pos), KVMESH_ERR_ARG);
    /* the mask in slot order: t4 (q 3) sees positions 1..3, t5 sees 1..4 */
    CU_ASSERT_EQUAL(kvmesh_mask_materialize(mask, m), KVMESH_SUCCESS);
    CU_ASSERT(m[0] == 0 && m[1] == 1 && m[2] == 1 && m[3] == 1);
    CU_ASSERT(m[4] == 1 && m[5] == 1 && m[6] == 1 && m[7] == 1);
    CU_ASSERT_FALSE(kvmesh_mask_allows(mask, 0, 1, 0));   /* t1 left the ring */
    CU_ASSERT_TRUE(kvmesh_mask_allows(mask, 0, 1, 1));
    /* n >= W keeps the last W new tokens: t6..t11 -> t8..t11 */
    append(v, 6, 6, NULL);
    canonical(v, 4, win);
    CU_ASSERT(win[0] == 8 && win[1] == 9 && win[2] == 10 && win[3] == 11);
    onerank_close(&o);
}

int
add_ring_suite(void)
{
    CU_pSuite s = CU_add_suite("sliding window", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "ring helpers and canonical order", test_helpers) ||
           !CU_add_test(s, "EasyDeL partial-window case", test_partial_window);
}
