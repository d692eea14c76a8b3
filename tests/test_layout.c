/* The layout module on meshes other than the caller's: blocks of every
 * rank of a 2 x 2 mesh described by plain data, ring storage lengths, kv
 * spans, intersections, group members, the axis-overlap refusal and ring
 * runs, against values worked out by hand. */
#include "layout.h"
#include "suites.h"

/* eformer's default rule tables, read off a partition on MPI_COMM_SELF */
static void
default_rules(kvmesh_rule_t rules[2][KVMESH_NLOGICAL])
{
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_partition_t *part = NULL;
    int a, t;

    CU_ASSERT_EQUAL_FATAL(kvmesh_mesh_create(MPI_COMM_SELF, "", &mesh), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_partition_create(mesh, &part), KVMESH_SUCCESS);
    for (t = 0; t < 2; t++)
        for (a = 0; a < KVMESH_NLOGICAL; a++)
            rules[t][a] = part->rules[t][a];
    kvmesh_partition_free(&part);
    kvmesh_mesh_free(&mesh);
}

static int
span_is(kvmesh_span_t s, int64_t lo, int64_t len)
{
    return s.lo == lo && s.len == len;
}

static void
test_blocks(void)
{
    /* tp = 2, sp = 2: rank = 2 tp + sp */
    const int size[KVMESH_NAXES] = { 1, 1, 1, 2, 2 };
    const int64_t H[2] = { 4, 2 }, D[2] = { 32, 5 };
    kvmesh_rule_t rules[2][KVMESH_NLOGICAL];
    kvm_layout_t lo;
    kvm_box_t k, v, x;
    kvmesh_dim_t q;
    int c[KVMESH_NAXES], m[KVMESH_NAXES], r;

    default_rules(rules);
    kvm_layout_init(&lo, size, rules, 4, 48, H, D);
    CU_ASSERT_EQUAL(lo.nranks, 4);
    for (r = 0; r < 4; r++) {
        kvm_layout_coords(&lo, r, c);
        CU_ASSERT(c[KVMESH_AXIS_TP] == r / 2 && c[KVMESH_AXIS_SP] == r % 2);
        CU_ASSERT_EQUAL(kvm_layout_rank(&lo, c), r);
        CU_ASSERT(kvm_layout_cache_box(&lo, c, 0, 48, &k));
        CU_ASSERT(kvm_layout_cache_box(&lo, c, 1, 48, &v));
        CU_ASSERT(span_is(k.d[0], 0, 4) && span_is(k.d[1], 24 * (r % 2), 24));
        CU_ASSERT(span_is(k.d[2], 2 * (r / 2), 2) && span_is(k.d[3], 0, 32));
        CU_ASSERT(span_is(v.d[2], r / 2, 1) && span_is(v.d[3], 0, 5));
        CU_ASSERT_EQUAL(kvm_layout_kblock(&lo, c), r % 2);
    }
    /* a ring of 15 slots does not divide over sp: whole on every rank */
    kvm_layout_coords(&lo, 3, c);
    CU_ASSERT(kvm_layout_cache_box(&lo, c, 0, 15, &k) && span_is(k.d[1], 0, 15));
    CU_ASSERT(span_is(kvm_layout_kv_span(&lo, 14, 1), 7, 7));
    CU_ASSERT(span_is(kvm_layout_kv_span(&lo, 15, 1), 0, 15));
    /* input of 8 tokens split over sp in prefill: rank 3 holds tokens 4..7 */
    CU_ASSERT(kvm_layout_input_box(&lo, KVMESH_MODE_PREFILL, c, 0, 8, 2, &x, &q));
    CU_ASSERT(span_is(x.d[1], 4, 4) && span_is(x.d[2], 2, 2) && q.block == 1);
    /* its group member holding query block 0 is rank 2 */
    kvm_layout_member(&lo, &q, 0, c, m);
    CU_ASSERT_EQUAL(kvm_layout_rank(&lo, m), 2);
    /* rank 3's key block (positions 24..47, heads 2, 3) meets rank 1's
     * (tp 0) and rank 2's (sp 0) nowhere; the input of a 48-token prefill
     * that rank 2 holds (tokens 0..23 of heads 2, 3) covers its rows,
     * heads and dims but not its positions */
    CU_ASSERT(kvm_layout_cache_box(&lo, c, 0, 48, &k));
    kvm_layout_coords(&lo, 1, m);
    CU_ASSERT(kvm_layout_cache_box(&lo, m, 0, 48, &v));
    CU_ASSERT_FALSE(kvm_box_intersect(&k, &v, &x));
    kvm_layout_coords(&lo, 2, m);
    CU_ASSERT(kvm_layout_cache_box(&lo, m, 0, 48, &v));
    CU_ASSERT_FALSE(kvm_box_intersect(&k, &v, &x));
    CU_ASSERT(kvm_layout_input_box(&lo, KVMESH_MODE_PREFILL, m, 0, 48, 2, &v, NULL));
    CU_ASSERT(kvm_box_covers(&v, &k, 1) && !kvm_box_covers(&v, &k, -1));
    /* ... and a box of heads 1..2, positions 20..29 meets it in head 2,
     * positions 24..29 */
    v = k;
    v.d[1] = (kvmesh_span_t) { 20, 10 };
    v.d[2] = (kvmesh_span_t) { 1, 2 };
    CU_ASSERT(kvm_box_intersect(&k, &v, &x));
    CU_ASSERT(span_is(x.d[0], 0, 4) && span_is(x.d[1], 24, 6) && span_is(x.d[2], 2, 1) &&
              span_is(x.d[3], 0, 32));
    /* sliding storage: W + A - 1 rounded up to whole sp blocks, at most S */
    {
        kvmesh_mask_detail_t w8 = { KVMESH_MASK_SLIDING, 8, 0 };
        kvmesh_mask_detail_t w45 = { KVMESH_MASK_SLIDING, 45, 0 };
        kvmesh_mask_detail_t full = { KVMESH_MASK_FULL, 0, 0 };
        CU_ASSERT_EQUAL(kvm_layout_storage(&lo, &w8, 7), 14);
        CU_ASSERT_EQUAL(kvm_layout_storage(&lo, &w8, 8), 16);
        CU_ASSERT_EQUAL(kvm_layout_storage(&lo, &w8, 1), 8);
        CU_ASSERT_EQUAL(kvm_layout_storage(&lo, &w45, 7), 48);
        CU_ASSERT_EQUAL(kvm_layout_storage(&lo, &full, 7), 48);
    }
    /* heads on sp too: the key block would use sp twice */
    rules[KVMESH_RULES_STANDARD][KVMESH_KV_HEAD].axes[0] = KVMESH_AXIS_SP;
    kvm_layout_init(&lo, size, rules, 4, 48, H, D);
    CU_ASSERT_FALSE(kvm_layout_cache_box(&lo, c, 0, 48, &k));
    /* ... but not for a length sp does not split (it stays whole) */
    CU_ASSERT(kvm_layout_cache_box(&lo, c, 0, 15, &k));
}

static void
test_runs(void)
{
    kvm_run_t run[2];
    const kvmesh_span_t lo = { 0, 4 }, hi = { 4, 4 }, all = { 0, 8 };

    /* a ring of 8: positions 6..9 live in slots 6, 7, 0, 1 */
    CU_ASSERT_EQUAL(kvm_layout_runs(8, true, 6, 10, lo, run), 1);
    CU_ASSERT(run[0].p0 == 8 && run[0].p1 == 10 && run[0].slot == 0);
    CU_ASSERT_EQUAL(kvm_layout_runs(8, true, 6, 10, hi, run), 1);
    CU_ASSERT(run[0].p0 == 6 && run[0].p1 == 8 && run[0].slot == 6);
    CU_ASSERT_EQUAL(kvm_layout_runs(8, true, 6, 10, all, run), 2);
    CU_ASSERT(run[1].p0 == 8 && run[1].p1 == 10 && run[1].slot == 0);
    /* positions 3..10 of a ring of 8 wrap through both ends of slots 0..3 */
    CU_ASSERT_EQUAL(kvm_layout_runs(8, true, 3, 11, lo, run), 2);
    CU_ASSERT(run[0].p0 == 3 && run[0].p1 == 4 && run[0].slot == 3);
    CU_ASSERT(run[1].p0 == 8 && run[1].p1 == 11 && run[1].slot == 0);
    /* no ring: slot = position, clipped to the span */
    CU_ASSERT_EQUAL(kvm_layout_runs(16, false, 3, 9, hi, run), 1);
    CU_ASSERT(run[0].p0 == 4 && run[0].p1 == 8 && run[0].slot == 4);
    CU_ASSERT_EQUAL(kvm_layout_runs(16, false, 9, 12, hi, run), 0);
}

int
add_layout_suite(void)
{
    CU_pSuite s = CU_add_suite("layout", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "blocks of a 2 x 2 mesh from plain data", test_blocks) ||
           !CU_add_test(s, "ring runs", test_runs);
}
