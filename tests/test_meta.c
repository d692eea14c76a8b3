/* Metadata validation: every error branch, and the fallbacks. */
#include <stdint.h>

#include "kvmesh.h"
#include "suites.h"

static kvmesh_meta_params_t
good(void)
{
    kvmesh_meta_params_t p;
    kvmesh_meta_params_init(&p);
    p.batch_size = 2, p.sequence_length = 16, p.num_hidden_layers = 3;
    p.num_heads = 4, p.head_dim = 8;
    return p;
}

static kvmesh_status_t
create(kvmesh_meta_params_t p)
{
    kvmesh_meta_t *m = NULL;
    kvmesh_status_t st = kvmesh_meta_create(&p, &m);
    CU_ASSERT((st == KVMESH_SUCCESS) == (m != NULL));
    kvmesh_meta_free(&m);
    return st;
}

static void
test_fallbacks(void)
{
    kvmesh_meta_params_t p = good(), r;
    kvmesh_meta_t *m = NULL;

    p.value_dim = 6, p.key_heads = 2;
    p.pad_token_id = -7, p.sliding_window = 5;
    CU_ASSERT_EQUAL_FATAL(kvmesh_meta_create(&p, &m), KVMESH_SUCCESS);
    kvmesh_meta_get(m, &r);
    CU_ASSERT(r.key_dim == 8 && r.value_dim == 6 && r.key_heads == 2 && r.value_heads == 4);
    CU_ASSERT(r.pad_token_id == -7 && r.sliding_window == 5 && r.update_causal_mask);
    kvmesh_meta_free(&m);
    CU_ASSERT_PTR_NULL(m);
    p = good();
    p.head_dim = 0, p.key_dim = 3, p.value_dim = 5;
    p.num_heads = 0, p.key_heads = 1, p.value_heads = 2;
    CU_ASSERT_EQUAL(create(p), KVMESH_SUCCESS);
}

static void
test_errors(void)
{
    kvmesh_meta_params_t p;
    kvmesh_meta_t *m = NULL;

#define BAD(field, value, want) do { p = good(); p.field = value; \
        CU_ASSERT_EQUAL(create(p), want); } while (0)
    BAD(batch_size, 0, KVMESH_ERR_META);
    BAD(batch_size, -1, KVMESH_ERR_META);
    BAD(sequence_length, 0, KVMESH_ERR_META);
    BAD(num_hidden_layers, 0, KVMESH_ERR_META);
    BAD(num_heads, -4, KVMESH_ERR_META);
    BAD(head_dim, -8, KVMESH_ERR_META);
    BAD(key_heads, -1, KVMESH_ERR_META);
    BAD(value_heads, -1, KVMESH_ERR_META);
    BAD(key_dim, -1, KVMESH_ERR_META);
    BAD(value_dim, -1, KVMESH_ERR_META);
    BAD(sliding_window, -3, KVMESH_ERR_META);
    BAD(head_dim, 0, KVMESH_ERR_META);                    /* no dims at all */
    p = good(); p.head_dim = 0; p.key_dim = 8;            /* only one of the pair */
    CU_ASSERT_EQUAL(create(p), KVMESH_ERR_META);
    p = good(); p.num_heads = 0; p.value_heads = 8;
    CU_ASSERT_EQUAL(create(p), KVMESH_ERR_META);
    BAD(sequence_length, INT64_MAX / 2, KVMESH_ERR_OVERFLOW);
    p = good(); p.batch_size = 1 << 20; p.sequence_length = 1 << 20;
    p.num_hidden_layers = 1 << 12; p.head_dim = 1 << 12;
    CU_ASSERT_EQUAL(create(p), KVMESH_ERR_OVERFLOW);
#undef BAD
    CU_ASSERT_EQUAL(kvmesh_meta_create(NULL, &m), KVMESH_ERR_ARG);
    p = good();
    CU_ASSERT_EQUAL(kvmesh_meta_create(&p, NULL), KVMESH_ERR_ARG);
}

/* what a cache reports about itself, and the library version */
static void
test_accessors(void)
{
    static const kvmesh_quant_t quants[3] = { KVMESH_QUANT_NONE, KVMESH_QUANT_INT8,
                                              KVMESH_QUANT_NF4 };
    static const size_t key_bytes[3] = { 70 * 2, 70, 35 }, value_bytes[3] = { 6 * 2, 6, 3 };
    kvmesh_meta_params_t mp, got;
    kvmesh_cache_params_t cp;
    onerank_t o;
    int q, major = -1, minor = -1, patch = -1;

    kvmesh_version(&major, &minor, &patch);
    CU_ASSERT(major == KVMESH_VERSION_MAJOR && minor == KVMESH_VERSION_MINOR &&
              patch == KVMESH_VERSION_PATCH);
    kvmesh_version(NULL, NULL, NULL);
    kvmesh_meta_params_init(&mp);
    mp.batch_size = 2, mp.sequence_length = 8, mp.num_hidden_layers = 1;
    mp.num_heads = 3, mp.key_dim = 70, mp.value_dim = 6;
    for (q = 0; q < 3; q++) {
        kvmesh_cache_params_init(&cp);
        cp.quant = quants[q];
        cp.dtype = KVMESH_F16;
        CU_ASSERT_EQUAL_FATAL(onerank_open(&o, &mp, &cp), KVMESH_SUCCESS);
        CU_ASSERT_EQUAL(kvmesh_cache_dtype(o.cache), KVMESH_F16);
        CU_ASSERT_EQUAL(kvmesh_cache_quant(o.cache), quants[q]);
        CU_ASSERT_EQUAL(kvmesh_cache_head_bytes(o.cache, KVMESH_KEY), key_bytes[q]);
        CU_ASSERT_EQUAL(kvmesh_cache_head_bytes(o.cache, KVMESH_VALUE), value_bytes[q]);
        CU_ASSERT(kvmesh_cache_mesh(o.cache) == o.mesh);
        kvmesh_cache_meta(o.cache, &got);
        CU_ASSERT(got.key_heads == 3 && got.value_heads == 3 && got.key_dim == 70 &&
                  got.value_dim == 6 && got.batch_size == 2);
        {
            char line[400], small[20];
            const char *want[3] = {
                "TransformerCache(layers=1, key=[2, 8, 3, 70], value=[2, 8, 3, 6], "
                "local key=[2, 8, 3, 70], storage=f16, mesh=dp=1,fsdp=1,ep=1,tp=1,sp=1, "
                "rank=0, layers=full, filled=0..0 of 8, max_append=8)",
                "TransformerCache(layers=1, key=[2, 8, 3, 70], value=[2, 8, 3, 6], "
                "local key=[2, 8, 3, 70], storage=int8 f16, mesh=dp=1,fsdp=1,ep=1,tp=1,sp=1, "
                "rank=0, layers=full, filled=0..0 of 8, max_append=8)",
                "TransformerCache(layers=1, key=[2, 8, 3, 70], value=[2, 8, 3, 6], "
                "local key=[2, 8, 3, 70], storage=nf4 f16, mesh=dp=1,fsdp=1,ep=1,tp=1,sp=1, "
                "rank=0, layers=full, filled=0..0 of 8, max_append=8)"
            };
            CU_ASSERT_EQUAL(kvmesh_cache_describe(o.cache, line, sizeof line), KVMESH_SUCCESS);
            CU_ASSERT_STRING_EQUAL(line, want[q]);
            CU_ASSERT_EQUAL(kvmesh_cache_describe(o.cache, small, sizeof small),
                            KVMESH_ERR_OVERFLOW);
            CU_ASSERT_EQUAL(small[sizeof small - 1], '\0');
        }
        onerank_close(&o);
    }
}

/* init_empty: no storage until init_layer, a clear status before */
static void
test_empty(void)
{
    kvmesh_meta_params_t mp;
    kvmesh_meta_t *meta = NULL;
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_partition_t *part = NULL;
    kvmesh_cache_t *c = NULL, *full = NULL;
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    float k[2 * 4] = { 1, 2, 3, 4, 5, 6, 7, 8 }, out[8];

    kvmesh_meta_params_init(&mp);
    mp.batch_size = 1, mp.sequence_length = 8, mp.num_hidden_layers = 2;
    mp.num_heads = 2, mp.head_dim = 2;
    CU_ASSERT_EQUAL_FATAL(kvmesh_mesh_create(MPI_COMM_SELF, "", &mesh), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_partition_create(mesh, &part), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_meta_create(&mp, &meta), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_cache_init_empty(meta, part, NULL, &c), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(kvmesh_cache_init(meta, part, NULL, &full), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_cache_local_bytes(c), 0);
    CU_ASSERT_FALSE(kvmesh_cache_layer_ready(c, 0));
    CU_ASSERT_TRUE(kvmesh_cache_layer_ready(full, 1));
    CU_ASSERT_EQUAL(kvmesh_cache_view(c, 1, &v), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_view_concatenate(v, KVMESH_MODE_PREFILL, 2, KVMESH_F32, k, k, NULL),
                    KVMESH_ERR_EMPTY);
    CU_ASSERT_EQUAL(kvmesh_view_local(v, KVMESH_KEY, NULL, &blk), KVMESH_ERR_EMPTY);
    CU_ASSERT_EQUAL(kvmesh_view_indexs(v)[0], 0);
    /* the pipeline stage owns layer 1 only */
    CU_ASSERT_EQUAL(kvmesh_cache_init_layer(c, 1), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_cache_local_bytes(c), kvmesh_cache_local_bytes(full) / 2);
    CU_ASSERT_EQUAL(kvmesh_cache_init_layer(c, 1), KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_cache_init_layer(c, 2), KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_view_concatenate(v, KVMESH_MODE_PREFILL, 2, KVMESH_F32, k, k, NULL),
                    KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_view_read(v, KVMESH_KEY, 0, 0, 2, KVMESH_F32, out, sizeof out),
                    KVMESH_SUCCESS);
    CU_ASSERT(out[0] == 1 && out[3] == 4 && out[7] == 8);
    CU_ASSERT_EQUAL(kvmesh_cache_view(c, 0, &v), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_view_read(v, KVMESH_KEY, 0, 0, 1, KVMESH_F32, out, sizeof out),
                    KVMESH_ERR_EMPTY);
    CU_ASSERT_EQUAL(kvmesh_cache_init_layer(c, 0), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_cache_local_bytes(c), kvmesh_cache_local_bytes(full));
    CU_ASSERT_EQUAL(kvmesh_cache_free(&c), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_cache_free(&full), KVMESH_SUCCESS);
    kvmesh_meta_free(&meta);
    kvmesh_partition_free(&part);
    kvmesh_mesh_free(&mesh);
}

int
add_meta_suite(void)
{
    CU_pSuite s = CU_add_suite("metadata", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "fallbacks", test_fallbacks) ||
           !CU_add_test(s, "errors", test_errors) ||
           !CU_add_test(s, "cache accessors and version", test_accessors) ||
           !CU_add_test(s, "empty cache, layers initialised one by one", test_empty);
}
