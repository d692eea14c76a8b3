/* Bad input on ONE rank must give the same error on every rank, without a
 * hang, and leave every rank's objects as they were. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define B 4
#define S 16

/* details: NULL for all FULL layers */
static kvmesh_status_t
make_cache(kvmesh_mesh_t *mesh, kvmesh_partition_t **part, kvmesh_cache_t **c,
           int64_t batch, const kvmesh_mask_detail_t *details, bool checked)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_meta_t *meta = NULL;
    kvmesh_status_t st;

    if (!*part && kvmesh_partition_create(mesh, part) != KVMESH_SUCCESS)
        return KVMESH_ERR_NOMEM;
    kvmesh_meta_params_init(&mp);
    mp.batch_size = batch, mp.sequence_length = S, mp.num_hidden_layers = 2;
    mp.num_heads = 4, mp.head_dim = 8;
    st = kvmesh_meta_create(&mp, &meta);
    H_CHECK(st == KVMESH_SUCCESS, "meta: %s", kvmesh_strerror(st));
    kvmesh_cache_params_init(&cp);
    cp.checked = checked;
    cp.details = details;
    st = kvmesh_cache_init(meta, *part, &cp, c);
    kvmesh_meta_free(&meta);
    return st;
}

/* A snapshot of layer 0: local key block and indexs. */
typedef struct {
    void *key;
    size_t bytes;
    int32_t idx[B];
} snap_t;

static snap_t
snapshot(kvmesh_cache_t *c)
{
    snap_t s;
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    const void *data;

    H_OK(kvmesh_cache_view(c, 0, &v));
    H_OK(kvmesh_view_local(v, KVMESH_KEY, &data, &blk));
    s.bytes = (size_t) (blk.shape[0] * blk.shape[1] * blk.shape[2] * blk.shape[3]) * 2;
    s.key = malloc(s.bytes);
    memcpy(s.key, data, s.bytes);
    memcpy(s.idx, kvmesh_view_indexs(v), sizeof s.idx);
    return s;
}

static void
unchanged(kvmesh_cache_t *c, snap_t *s, const char *what)
{
    snap_t now = snapshot(c);
    H_CHECK(!memcmp(now.key, s->key, s->bytes) && !memcmp(now.idx, s->idx, sizeof s->idx),
            "%s: cache changed", what);
    free(now.key);
    free(s->key);
}

int
main(int argc, char **argv)
{
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_partition_t *part = NULL;
    kvmesh_cache_t *c = NULL;
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    kvmesh_status_t st;
    int last;
    char spec[64];
    void *in[2];
    int t;

    h_init(&argc, &argv);
    last = h_rank == h_size - 1;

    /* a malformed mesh spec on one rank */
    snprintf(spec, sizeof spec, last ? "tp=banana" : "tp=%d", h_size);
    st = kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh);
    h_expect_all(st, KVMESH_ERR_MESH_SPEC, "bad spec on one rank");
    H_CHECK(mesh == NULL, "mesh created despite the error");
    /* a valid spec that differs on one rank */
    if (h_size > 1) {
        snprintf(spec, sizeof spec, last ? "sp=%d" : "tp=%d", h_size);
        st = kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh);
        h_expect_all(st, KVMESH_ERR_MISMATCH, "different spec on one rank");
    }
    /* a size that does not match */
    snprintf(spec, sizeof spec, "tp=%d", last ? h_size + 1 : h_size);
    st = kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh);
    h_expect_all(st, KVMESH_ERR_MESH_SIZE, "wrong mesh size on one rank");

    snprintf(spec, sizeof spec, "sp=%d", h_size);
    st = kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh);
    h_expect_all(st, KVMESH_SUCCESS, "good mesh");
    if (st)
        return h_finish("t_errors");

    /* metadata that differs on one rank */
    if (h_size > 1) {
        st = make_cache(mesh, &part, &c, last ? B + 1 : B, NULL, true);
        h_expect_all(st, KVMESH_ERR_MISMATCH, "different metadata on one rank");
        H_CHECK(c == NULL, "cache created despite the error");
    }
    /* a layer kind that differs on one rank, a window of 0 on one rank */
    {
        kvmesh_mask_detail_t full[2] = { { KVMESH_MASK_FULL, 0, 0 },
                                         { KVMESH_MASK_FULL, 0, 0 } };
        kvmesh_mask_detail_t slide[2] = { { KVMESH_MASK_FULL, 0, 0 },
                                          { KVMESH_MASK_SLIDING, 4, 0 } };
        kvmesh_mask_detail_t bad[2] = { { KVMESH_MASK_CHUNK, 0, 4 },
                                        { KVMESH_MASK_SLIDING, 0, 0 } };
        if (h_size > 1) {
            st = make_cache(mesh, &part, &c, B, last ? slide : full, true);
            h_expect_all(st, KVMESH_ERR_MISMATCH, "layer kind differs on one rank");
        }
        st = make_cache(mesh, &part, &c, B, last ? bad : slide, true);
        h_expect_all(st, KVMESH_ERR_ARG, "window 0 on one rank");
        H_CHECK(c == NULL, "cache created despite the error");
    }
    /* a partition rule that differs on one rank */
    if (h_size > 1) {
        if (last)
            H_OK(kvmesh_partition_set_rule(part, KVMESH_RULES_DECODE, KVMESH_BATCH,
                                           NULL, 0));
        st = make_cache(mesh, &part, &c, B, NULL, true);
        h_expect_all(st, KVMESH_ERR_MISMATCH, "different rules on one rank");
        H_OK(kvmesh_partition_unset_decode_rule(part, KVMESH_BATCH));
    }

    st = make_cache(mesh, &part, &c, B, NULL, true);
    h_expect_all(st, KVMESH_SUCCESS, "good cache");
    if (st)
        return h_finish("t_errors");
    H_OK(kvmesh_cache_view(c, 0, &v));

    /* a decode step with data, then errors that must change nothing */
    for (t = 0; t < 2; t++) {
        H_OK(kvmesh_cache_input_block(c, KVMESH_MODE_DECODE, 2, (kvmesh_kv_t) t, &blk));
        in[t] = calloc((size_t) (blk.shape[0] * blk.shape[1] * blk.shape[2] * blk.shape[3]), 4);
        ((float *) in[t])[0] = 1.5f;
    }
    st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1, KVMESH_F32, in[0], in[1], NULL);
    h_expect_all(st, KVMESH_SUCCESS, "decode step");
    {
        int32_t vals[1] = { S - 1 };
        snap_t s;
        st = kvmesh_cache_insert_index(c, 2, 1, vals);
        h_expect_all(st, KVMESH_SUCCESS, "insert_index");

        s = snapshot(c);
        st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 2, KVMESH_F32, in[0], in[1], NULL);
        h_expect_all(st, KVMESH_ERR_CAPACITY, "overflow of one row");
        unchanged(c, &s, "overflow of one row");

        /* more tokens than max_append (by default min(512, S) = S) */
        {
            void *big[2];
            H_CHECK(kvmesh_cache_max_append(c) == S, "default max_append %ld",
                    (long) kvmesh_cache_max_append(c));
            for (t = 0; t < 2; t++) {
                H_OK(kvmesh_cache_input_block(c, KVMESH_MODE_DECODE, S + 1,
                                              (kvmesh_kv_t) t, &blk));
                big[t] = calloc((size_t) (blk.shape[0] * blk.shape[1] * blk.shape[2] *
                                          blk.shape[3]), 4);
            }
            s = snapshot(c);
            st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, S + 1, KVMESH_F32,
                                         big[0], big[1], NULL);
            h_expect_all(st, KVMESH_ERR_TOO_LONG, "append longer than max_append");
            unchanged(c, &s, "append longer than max_append");
            free(big[0]);
            free(big[1]);
        }

        if (h_size > 1) {
            s = snapshot(c);
            st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, last ? 2 : 1,
                                         KVMESH_F32, in[0], in[1], NULL);
            h_expect_all(st, KVMESH_ERR_MISMATCH, "different n on one rank");
            unchanged(c, &s, "different n on one rank");
        }

        s = snapshot(c);
        st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1, KVMESH_F32,
                                     last ? NULL : in[0], in[1], NULL);
        h_expect_all(st, KVMESH_ERR_ARG, "NULL input on one rank");
        unchanged(c, &s, "NULL input on one rank");

        s = snapshot(c);
        if (h_size > 1) {
            vals[0] = last ? 3 : 4;
            st = kvmesh_cache_insert_index(c, 0, 1, vals);
            h_expect_all(st, KVMESH_ERR_MISMATCH, "different insert_index on one rank");
        }
        vals[0] = last ? S + 1 : 4;
        st = kvmesh_cache_insert_index(c, 0, 1, vals);
        h_expect_all(st, KVMESH_ERR_ARG, "index past S on one rank");
        st = kvmesh_cache_insert_starts(c, last ? 4 : 3, 1, vals);
        h_expect_all(st, KVMESH_ERR_ARG, "slot past B on one rank");
        unchanged(c, &s, "bad insert_index");
    }
    kvmesh_cache_free(&c);
    H_CHECK(c == NULL, "free sets NULL");

    /* decode inputs split over sp along heads while the cache holds all
     * heads on every rank: no rank's input covers its cache block */
    {
        static const kvmesh_axis_t sp = KVMESH_AXIS_SP;
        kvmesh_status_t want = h_size == 2 || h_size == 4 ? KVMESH_ERR_LAYOUT
                                                          : KVMESH_SUCCESS;
        snap_t s;

        H_OK(kvmesh_partition_set_rule(part, KVMESH_RULES_DECODE, KVMESH_KV_HEAD, &sp, 1));
        st = make_cache(mesh, &part, &c, B, NULL, true);
        h_expect_all(st, KVMESH_SUCCESS, "cache with split decode heads");
        if (st == KVMESH_SUCCESS) {
            H_OK(kvmesh_cache_view(c, 0, &v));
            s = snapshot(c);
            st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1, KVMESH_F32, in[0],
                                         in[1], NULL);
            h_expect_all(st, want, "input heads do not cover the cache's");
            if (want != KVMESH_SUCCESS)
                unchanged(c, &s, "layout refused");
            else
                free(s.key);
        }
        kvmesh_cache_free(&c);
    }

    /* unchecked mode: a NULL input on one rank only.  That rank alone
     * fails (a decode step sends nothing, so the others go on) and then
     * refuses the cache; the next collective and free fail everywhere. */
    kvmesh_partition_free(&part);
    st = make_cache(mesh, &part, &c, B, NULL, false);     /* default rules */
    h_expect_all(st, KVMESH_SUCCESS, "unchecked cache");
    if (st == KVMESH_SUCCESS) {
        int32_t zero[1] = { 0 };
        float f[64];
        H_OK(kvmesh_cache_view(c, 0, &v));
        st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1, KVMESH_F32,
                                     last ? NULL : in[0], in[1], NULL);
        H_CHECK(st == (last ? KVMESH_ERR_ARG : KVMESH_SUCCESS),
                "unchecked NULL input: %s", kvmesh_strerror(st));
        st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1, KVMESH_F32, in[0], in[1],
                                     NULL);
        H_CHECK(st == (last ? KVMESH_ERR_DIVERGED : KVMESH_SUCCESS),
                "after a local failure: %s", kvmesh_strerror(st));
        H_CHECK(kvmesh_view_indexs(v)[0] == (last ? 0 : 2), "indexs after divergence");
        st = kvmesh_view_read(v, KVMESH_KEY, kvmesh_view_local(v, KVMESH_KEY, NULL, &blk)
                              == KVMESH_SUCCESS ? blk.offset[0] : 0, 0, 1, KVMESH_F32, f,
                              sizeof f);
        H_CHECK(st == (last ? KVMESH_ERR_DIVERGED : KVMESH_SUCCESS),
                "read after a local failure: %s", kvmesh_strerror(st));
        st = kvmesh_cache_insert_starts(c, 0, 1, zero);
        h_expect_all(st, h_size > 1 || last ? KVMESH_ERR_DIVERGED : KVMESH_SUCCESS,
                     "collective after a local failure");
        st = kvmesh_cache_free(&c);
        h_expect_all(st, KVMESH_ERR_DIVERGED, "free after a local failure");
        H_CHECK(c == NULL, "free left the handle");
    }
    /* unchecked, one rank appends to another layer than the others: each
     * call succeeds, the replicated state differs, and the next
     * collective finds it */
    if (h_size > 1) {
        int32_t zero[1] = { 0 };
        st = make_cache(mesh, &part, &c, B, NULL, false);
        h_expect_all(st, KVMESH_SUCCESS, "unchecked cache");
        H_OK(kvmesh_cache_view(c, last, &v));
        H_OK(kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1, KVMESH_F32, in[0], in[1],
                                     NULL));
        st = kvmesh_cache_insert_starts(c, 0, 1, zero);
        h_expect_all(st, KVMESH_ERR_DIVERGED, "collective after a different layer");
        st = kvmesh_cache_free(&c);
        h_expect_all(st, KVMESH_ERR_DIVERGED, "free after a different layer");
    }
    for (t = 0; t < 2; t++)
        free(in[t]);
    H_OK(kvmesh_cache_free(&c));
    kvmesh_partition_free(&part);
    kvmesh_mesh_free(&mesh);
    kvmesh_mesh_free(&mesh);
    return h_finish("t_errors");
}
