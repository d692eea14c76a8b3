/* Mesh specification parsing and its errors; a mesh on one rank. */
#include "kvmesh.h"
#include "suites.h"

static void
expect_sizes(const char *spec, int nranks, int dp, int fsdp, int ep, int tp, int sp)
{
    int s[KVMESH_NAXES];
    CU_ASSERT_EQUAL_FATAL(kvmesh_mesh_parse(spec, nranks, s), KVMESH_SUCCESS);
    CU_ASSERT(s[0] == dp && s[1] == fsdp && s[2] == ep && s[3] == tp && s[4] == sp);
}

static void
test_parse(void)
{
    expect_sizes("dp=1,fsdp=-1,ep=1,tp=1,sp=1", 8, 1, 8, 1, 1, 1);
    expect_sizes("", 6, 1, 6, 1, 1, 1);
    expect_sizes(NULL, 3, 1, 3, 1, 1, 1);
    expect_sizes("tp=2,sp=2", 4, 1, 1, 1, 2, 2);
    expect_sizes(" sp = 2 , tp = -1 ", 8, 1, 1, 1, 4, 2);
    expect_sizes("dp=-1,tp=2", 2, 1, 1, 1, 2, 1);
    expect_sizes("ep=3", 3, 1, 1, 3, 1, 1);
    expect_sizes("sp=2,fsdp=2,dp=2", 8, 2, 2, 1, 1, 2);
}

static void
test_parse_errors(void)
{
    static const char *bad_spec[] = {
        "tp", "tp=", "tp=x", "tp=0", "tp=-2", "tq=2", "tp=2,tp=2",
        "tp=-1,sp=-1", "tp=2,", ",tp=2", "tp=2;sp=2", "tp=2 sp=2",
        "tp=2x", "fsdp=99999999999", "TP=2"
    };
    int s[KVMESH_NAXES];
    size_t i;

    for (i = 0; i < sizeof bad_spec / sizeof *bad_spec; i++)
        CU_ASSERT_EQUAL(kvmesh_mesh_parse(bad_spec[i], 4, s), KVMESH_ERR_MESH_SPEC);
    CU_ASSERT_EQUAL(kvmesh_mesh_parse("tp=2,sp=2", 8, s), KVMESH_ERR_MESH_SIZE);
    CU_ASSERT_EQUAL(kvmesh_mesh_parse("tp=3", 4, s), KVMESH_ERR_MESH_SIZE);
    CU_ASSERT_EQUAL(kvmesh_mesh_parse("tp=3,sp=-1", 4, s), KVMESH_ERR_MESH_SIZE);
    CU_ASSERT_EQUAL(kvmesh_mesh_parse("tp=8,sp=-1", 4, s), KVMESH_ERR_MESH_SIZE);
    CU_ASSERT_EQUAL(kvmesh_mesh_parse("tp=1", 0, s), KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_mesh_parse("tp=1", 1, NULL), KVMESH_ERR_ARG);
}

static void
test_mesh_one_rank(void)
{
    kvmesh_mesh_t *m = NULL;
    int a, coords[KVMESH_NAXES] = { 0 }, size;

    CU_ASSERT_EQUAL_FATAL(kvmesh_mesh_create(MPI_COMM_SELF, "", &m), KVMESH_SUCCESS);
    for (a = 0; a < KVMESH_NAXES; a++) {
        CU_ASSERT_EQUAL(kvmesh_mesh_size(m, (kvmesh_axis_t) a), 1);
        CU_ASSERT_EQUAL(kvmesh_mesh_coord(m, (kvmesh_axis_t) a), 0);
        MPI_Comm_size(kvmesh_mesh_axis_comm(m, (kvmesh_axis_t) a), &size);
        CU_ASSERT_EQUAL(size, 1);
    }
    CU_ASSERT_EQUAL(kvmesh_mesh_rank_of(m, coords), 0);
    coords[3] = 1;
    CU_ASSERT_EQUAL(kvmesh_mesh_rank_of(m, coords), -1);
    kvmesh_mesh_free(&m);
    CU_ASSERT_PTR_NULL(m);
    kvmesh_mesh_free(&m);
    kvmesh_mesh_free(NULL);
    CU_ASSERT_EQUAL(kvmesh_mesh_create(MPI_COMM_SELF, "tp=2", &m), KVMESH_ERR_MESH_SIZE);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL(kvmesh_mesh_create(MPI_COMM_NULL, "", &m), KVMESH_ERR_ARG);
}

int
add_mesh_suite(void)
{
    CU_pSuite s = CU_add_suite("mesh", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "parse", test_parse) ||
           !CU_add_test(s, "parse errors", test_parse_errors) ||
           !CU_add_test(s, "one-rank mesh", test_mesh_one_rank);
}
