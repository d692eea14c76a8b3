/* Partition resolution on a 16-rank mesh described by hand (no MPI
 * needed): defaults, overrides, decode mode, non-divisible dims dropped,
 * and owners of an element. */
#include <string.h>

#include "kvmesh.h"
#include "mesh.h"
#include "suites.h"

static struct kvmesh_mesh fake;

static void
setup(int dp, int fsdp, int tp, int sp)
{
    memset(&fake, 0, sizeof fake);
    fake.size[KVMESH_AXIS_DP] = 2, fake.size[KVMESH_AXIS_FSDP] = 2;
    fake.size[KVMESH_AXIS_EP] = 1, fake.size[KVMESH_AXIS_TP] = 2;
    fake.size[KVMESH_AXIS_SP] = 2;
    fake.nranks = 16;
    fake.coord[KVMESH_AXIS_DP] = dp, fake.coord[KVMESH_AXIS_FSDP] = fsdp;
    fake.coord[KVMESH_AXIS_TP] = tp, fake.coord[KVMESH_AXIS_SP] = sp;
}

static kvmesh_dim_t
resolve(kvmesh_partition_t *p, kvmesh_mode_t mode, kvmesh_logical_t l, int64_t size)
{
    kvmesh_dim_t d;
    CU_ASSERT_EQUAL(kvmesh_partition_resolve(p, mode, l, size, NULL, &d), KVMESH_SUCCESS);
    return d;
}

static void
test_defaults(void)
{
    kvmesh_partition_t *p = NULL;
    kvmesh_dim_t d;

    setup(1, 1, 0, 1);
    CU_ASSERT_EQUAL_FATAL(kvmesh_partition_create(&fake, &p), KVMESH_SUCCESS);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_BATCH, 8);   /* (fsdp, dp) */
    CU_ASSERT(d.naxes == 2 && d.axes[0] == KVMESH_AXIS_FSDP && d.axes[1] == KVMESH_AXIS_DP);
    CU_ASSERT(d.nblocks == 4 && d.block == 3 && d.local_size == 2 && d.offset == 6);
    setup(0, 1, 0, 1);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_BATCH, 8);   /* fsdp major */
    CU_ASSERT(d.block == 2 && d.offset == 4);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_KV_LENGTH, 10);
    CU_ASSERT(d.nblocks == 2 && d.block == 1 && d.local_size == 5 && d.offset == 5);
    d = resolve(p, KVMESH_MODE_DECODE, KVMESH_QUERY_LENGTH, 4);
    CU_ASSERT(d.nblocks == 2 && d.block == 1 && d.local_size == 2);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_KV_HEAD, 8);
    CU_ASSERT(d.nblocks == 2 && d.block == 0 && d.local_size == 4 && d.offset == 0);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_HEAD, 8);
    CU_ASSERT(d.nblocks == 2 && d.axes[0] == KVMESH_AXIS_TP);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_KV_HEAD_DIM, 128);
    CU_ASSERT(d.naxes == 0 && d.nblocks == 1 && d.local_size == 128 && d.offset == 0);
    kvmesh_partition_free(&p);
    CU_ASSERT_PTR_NULL(p);
}

static void
test_not_divisible(void)
{
    kvmesh_partition_t *p = NULL;
    kvmesh_dim_t d;

    setup(1, 1, 1, 1);
    CU_ASSERT_EQUAL_FATAL(kvmesh_partition_create(&fake, &p), KVMESH_SUCCESS);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_BATCH, 6);   /* 6 % 4: dropped whole */
    CU_ASSERT(d.naxes == 0 && d.nblocks == 1 && d.local_size == 6 && d.offset == 0);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_QUERY_LENGTH, 1);   /* decode n = 1 */
    CU_ASSERT(d.naxes == 0 && d.local_size == 1);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_KV_HEAD, 3);
    CU_ASSERT(d.naxes == 0 && d.local_size == 3);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_BATCH, 2);   /* 2 < 4 blocks */
    CU_ASSERT(d.naxes == 0 && d.local_size == 2);
    kvmesh_partition_free(&p);
}

static void
test_overrides(void)
{
    static const kvmesh_axis_t dp = KVMESH_AXIS_DP;
    static const kvmesh_axis_t tpsp[2] = { KVMESH_AXIS_TP, KVMESH_AXIS_SP };
    static const kvmesh_axis_t dup[2] = { KVMESH_AXIS_TP, KVMESH_AXIS_TP };
    static const kvmesh_axis_t eptp[2] = { KVMESH_AXIS_EP, KVMESH_AXIS_TP };
    kvmesh_partition_t *p = NULL;
    kvmesh_dim_t d;

    setup(1, 0, 1, 0);
    CU_ASSERT_EQUAL_FATAL(kvmesh_partition_create(&fake, &p), KVMESH_SUCCESS);
    /* a decode rule changes generation modes only */
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, KVMESH_RULES_DECODE, KVMESH_BATCH, &dp, 1),
                    KVMESH_SUCCESS);
    d = resolve(p, KVMESH_MODE_DECODE, KVMESH_BATCH, 8);
    CU_ASSERT(d.nblocks == 2 && d.block == 1 && d.local_size == 4);
    d = resolve(p, KVMESH_MODE_INSERT, KVMESH_BATCH, 8);
    CU_ASSERT(d.nblocks == 2 && d.block == 1);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_BATCH, 8);
    CU_ASSERT(d.nblocks == 4 && d.block == 1);
    /* a decode rule may replicate */
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, KVMESH_RULES_DECODE, KVMESH_KV_HEAD, NULL, 0),
                    KVMESH_SUCCESS);
    d = resolve(p, KVMESH_MODE_DECODE, KVMESH_KV_HEAD, 8);
    CU_ASSERT(d.naxes == 0 && d.local_size == 8);
    CU_ASSERT_EQUAL(kvmesh_partition_unset_decode_rule(p, KVMESH_BATCH), KVMESH_SUCCESS);
    d = resolve(p, KVMESH_MODE_DECODE, KVMESH_BATCH, 8);
    CU_ASSERT(d.nblocks == 4);
    /* a standard override, two axes, tp major */
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_KV_HEAD, tpsp, 2),
                    KVMESH_SUCCESS);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_KV_HEAD, 8);
    CU_ASSERT(d.nblocks == 4 && d.block == 2 && d.local_size == 2 && d.offset == 4);
    d = resolve(p, KVMESH_MODE_DECODE, KVMESH_KV_HEAD, 8);   /* decode rule still wins */
    CU_ASSERT(d.naxes == 0);
    /* mesh axes of size 1 are kept */
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_HEAD, eptp, 2),
                    KVMESH_SUCCESS);
    d = resolve(p, KVMESH_MODE_PREFILL, KVMESH_HEAD, 6);
    CU_ASSERT(d.naxes == 2 && d.nblocks == 2 && d.block == 1 && d.local_size == 3);
    /* errors */
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_HEAD, dup, 2),
                    KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_NLOGICAL, &dp, 1),
                    KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, (kvmesh_rules_t) 5, KVMESH_HEAD, &dp, 1),
                    KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_HEAD, NULL, 1),
                    KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_partition_resolve(p, KVMESH_MODE_PREFILL, KVMESH_HEAD, 0, NULL, &d),
                    KVMESH_ERR_ARG);
    kvmesh_partition_free(&p);
}

static void
test_owners(void)
{
    static const kvmesh_logical_t ax[4] = { KVMESH_BATCH, KVMESH_KV_LENGTH,
                                            KVMESH_KV_HEAD, KVMESH_KV_HEAD_DIM };
    const int64_t shape[4] = { 8, 10, 4, 8 }, index[4] = { 5, 7, 1, 0 };
    kvmesh_partition_t *p = NULL;
    int ranks[16], n = 0;

    setup(0, 0, 0, 0);
    CU_ASSERT_EQUAL_FATAL(kvmesh_partition_create(&fake, &p), KVMESH_SUCCESS);
    /* batch block 2 = (fsdp 1, dp 0), sp block 1, tp block 0: one rank,
     * (dp, fsdp, ep, tp, sp) = (0, 1, 0, 0, 1) in row-major order = 5 */
    CU_ASSERT_EQUAL(kvmesh_partition_owners(p, KVMESH_MODE_PREFILL, 4, ax, shape, index,
                                            ranks, 16, &n), KVMESH_SUCCESS);
    CU_ASSERT(n == 1 && ranks[0] == 5);
    /* a batch-only array is replicated over tp and sp: four owners */
    CU_ASSERT_EQUAL(kvmesh_partition_owners(p, KVMESH_MODE_PREFILL, 1, ax, shape, index,
                                            ranks, 16, &n), KVMESH_SUCCESS);
    CU_ASSERT(n == 4 && ranks[0] == 4 && ranks[1] == 5 && ranks[2] == 6 && ranks[3] == 7);
    CU_ASSERT_EQUAL(kvmesh_partition_owners(p, KVMESH_MODE_PREFILL, 4, ax, shape, shape,
                                            ranks, 16, &n), KVMESH_ERR_ARG);
    /* four owners do not fit in room for three */
    CU_ASSERT_EQUAL(kvmesh_partition_owners(p, KVMESH_MODE_PREFILL, 1, ax, shape, index,
                                            ranks, 3, &n), KVMESH_ERR_ARG);
    kvmesh_partition_free(&p);
}

int
add_partition_suite(void)
{
    CU_pSuite s = CU_add_suite("partition", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "default rules", test_defaults) ||
           !CU_add_test(s, "non-divisible dims dropped", test_not_divisible) ||
           !CU_add_test(s, "overrides and decode mode", test_overrides) ||
           !CU_add_test(s, "owners", test_owners);
}
