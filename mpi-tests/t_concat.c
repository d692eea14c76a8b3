/* Model-based test of concatenate: on every mesh that factors the rank
 * count, under several partition rules and dtypes, random sequences of
 * prefill chunks (aligned and misaligned with the sp blocks, rows at
 * different fill levels) and decode steps run on kvmesh and on the serial
 * reference; after every step each rank's local blocks must equal the
 * reference bit for bit, and so must the indexs and the mask. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "reference.h"

#define NL 2
static const int64_t B = 4, S = 24, H[2] = { 4, 2 }, D[2] = { 8, 6 };

enum { NVARIANTS = 4 };
static const char *variant_names[NVARIANTS] = {
    "default rules", "decode inputs replicated", "query on tp, kv on sp",
    "lengths on (sp,dp), batch on fsdp"
};

static void
apply_variant(kvmesh_partition_t *p, int v)
{
    static const kvmesh_axis_t tp = KVMESH_AXIS_TP, fsdp = KVMESH_AXIS_FSDP;
    static const kvmesh_axis_t spdp[2] = { KVMESH_AXIS_SP, KVMESH_AXIS_DP };
    kvmesh_status_t st = KVMESH_SUCCESS;

    if (v == 1) {
        st = kvmesh_partition_set_rule(p, KVMESH_RULES_DECODE, KVMESH_BATCH, NULL, 0);
        if (!st)
            st = kvmesh_partition_set_rule(p, KVMESH_RULES_DECODE, KVMESH_KV_HEAD, NULL, 0);
    } else if (v == 2) {
        st = kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_QUERY_LENGTH, &tp, 1);
        if (!st)
            st = kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_KV_HEAD, NULL, 0);
    } else if (v == 3) {
        st = kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_BATCH, &fsdp, 1);
        if (!st)
            st = kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_QUERY_LENGTH, spdp, 2);
        if (!st)
            st = kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_KV_LENGTH, spdp, 2);
    }
    H_CHECK(st == KVMESH_SUCCESS, "set_rule: %s", kvmesh_strerror(st));
}

static void
put(void *buf, int64_t i, int dt, uint32_t bits)
{
    if (ref_size(dt) == 4)
        ((uint32_t *) buf)[i] = bits;
    else
        ((uint16_t *) buf)[i] = (uint16_t) bits;
}

static uint32_t
get(const void *buf, int64_t i, int dt)
{
    return ref_size(dt) == 4 ? ((const uint32_t *) buf)[i]
                             : ((const uint16_t *) buf)[i];
}

/* Builds this rank's input block and the global input of tensor t. */
static void *
make_input(kvmesh_cache_t *c, const ref_cache_t *r, int64_t l, int t,
           kvmesh_mode_t mode, int64_t n, int in_dt, double *global)
{
    kvmesh_block_t blk;
    kvmesh_status_t st = kvmesh_cache_input_block(c, mode, n, (kvmesh_kv_t) t, &blk);
    int64_t b, j, h, d, i = 0;
    void *buf;

    H_CHECK(st == KVMESH_SUCCESS, "input_block: %s", kvmesh_strerror(st));
    for (b = 0; b < B; b++)
        for (j = 0; j < n; j++)
            for (h = 0; h < H[t]; h++)
                for (d = 0; d < D[t]; d++)
                    global[((b * n + j) * H[t] + h) * D[t] + d] = ref_round(
                        ref_synth(t, l, b, r->indexs[l * B + b] + j, h, d), in_dt);
    buf = malloc((size_t) (blk.shape[0] * blk.shape[1] * blk.shape[2] *
                           blk.shape[3] * 4 + 4));
    for (b = 0; b < blk.shape[0]; b++)
        for (j = 0; j < blk.shape[1]; j++)
            for (h = 0; h < blk.shape[2]; h++)
                for (d = 0; d < blk.shape[3]; d++) {
                    int64_t gb = blk.offset[0] + b, gj = blk.offset[1] + j;
                    int64_t gh = blk.offset[2] + h, gd = blk.offset[3] + d;
                    put(buf, i++, in_dt,
                        ref_encode(global[((gb * n + gj) * H[t] + gh) * D[t] + gd], in_dt));
                }
    return buf;
}

/* Local blocks, indexs and starts of every layer against the reference. */
static void
compare(kvmesh_cache_t *c, ref_cache_t *r, const char *ctx)
{
    int64_t l, b, s, h, d, bad, i;
    int t;

    for (l = 0; l < NL; l++) {
        kvmesh_view_t *v;
        H_OK(kvmesh_cache_view(c, l, &v));
        for (t = 0; t < 2; t++) {
            const void *data;
            kvmesh_block_t blk;
            H_OK(kvmesh_view_local(v, (kvmesh_kv_t) t, &data, &blk));
            bad = 0, i = 0;
            for (b = 0; b < blk.shape[0]; b++)
                for (s = 0; s < blk.shape[1]; s++)
                    for (h = 0; h < blk.shape[2]; h++)
                        for (d = 0; d < blk.shape[3]; d++, i++) {
                            double want = *ref_at(r, l, t, blk.offset[0] + b,
                                                  blk.offset[1] + s,
                                                  blk.offset[2] + h, blk.offset[3] + d);
                            if (get(data, i, r->dtype) != ref_encode(want, r->dtype))
                                bad++;
                        }
            H_CHECK(bad == 0, "%s: layer %ld %s: %ld elements differ", ctx,
                    (long) l, t ? "value" : "key", (long) bad);
            /* the converting read of the last local row gives the same values */
            {
                int64_t per = blk.shape[1] * blk.shape[2] * blk.shape[3];
                int64_t row = blk.shape[0] - 1;
                float *f = malloc((size_t) per * sizeof *f);
                H_OK(kvmesh_view_read(v, (kvmesh_kv_t) t, row, 0, blk.shape[1],
                                      KVMESH_F32, f));
                bad = 0;
                for (i = 0; i < per; i++)
                    bad += (double) f[i] != ref_decode(get(data, row * per + i, r->dtype),
                                                       r->dtype);
                H_CHECK(bad == 0, "%s: view_read differs in %ld elements", ctx, (long) bad);
                H_CHECK(kvmesh_view_read(v, (kvmesh_kv_t) t, row, 1, 0, KVMESH_F32, f)
                        == KVMESH_ERR_ARG, "%s: view_read accepts pos0 > pos1", ctx);
                free(f);
            }
        }
        for (b = 0; b < B; b++) {
            H_CHECK(kvmesh_view_indexs(v)[b] == r->indexs[l * B + b],
                    "%s: indexs[%ld] %d want %d", ctx, (long) b,
                    kvmesh_view_indexs(v)[b], r->indexs[l * B + b]);
            H_CHECK(kvmesh_view_starts(v)[b] == r->starts[l * B + b],
                    "%s: starts[%ld]", ctx, (long) b);
        }
    }
}

static void
check_mask(kvmesh_cache_t *c, ref_cache_t *r, int64_t l, const kvmesh_mask_t *m,
           int64_t n, const char *ctx)
{
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    uint8_t *out;
    int64_t b, i, s, bad = 0, k = 0;

    H_OK(kvmesh_cache_view(c, l, &v));
    H_OK(kvmesh_view_local(v, KVMESH_KEY, NULL, &blk));
    H_CHECK(kvmesh_mask_queries(m) == n, "%s: mask n", ctx);
    out = malloc((size_t) (blk.shape[0] * n * blk.shape[1]));
    H_CHECK(kvmesh_mask_materialize(m, out) == KVMESH_SUCCESS, "%s: materialize", ctx);
    for (b = 0; b < blk.shape[0]; b++)
        for (i = 0; i < n; i++)
            for (s = 0; s < blk.shape[1]; s++) {
                int64_t gb = blk.offset[0] + b;
                int64_t q = r->indexs[l * B + gb] - n + i;
                bool want = ref_allows(REF_FULL, 0, 0, r->starts[l * B + gb], q,
                                       blk.offset[1] + s);
                bad += out[k++] != want;
            }
    /* the predicate answers for any global row, not just local ones */
    for (b = 0; b < B; b++)
        for (s = 0; s < S; s++) {
            int64_t q = r->indexs[l * B + b] - 1;
            bad += kvmesh_mask_allows(m, b, n - 1, s) !=
                   ref_allows(REF_FULL, 0, 0, r->starts[l * B + b], q, s);
        }
    H_CHECK(bad == 0, "%s: %ld mask entries differ", ctx, (long) bad);
    free(out);
}

static void
run_sequence(const char *spec, int variant, int combo, uint64_t seed)
{
    static const int dts[5][2] = {   /* cache type, input type */
        { REF_BF16, REF_F32 }, { REF_BF16, REF_BF16 }, { REF_F16, REF_F32 },
        { REF_F32, REF_BF16 }, { REF_F16, REF_BF16 }
    };
    const int cdt = dts[combo % 5][0], idt = dts[combo % 5][1];
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_partition_t *part = NULL;
    kvmesh_meta_t *meta = NULL;
    kvmesh_cache_t *c = NULL;
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    ref_cache_t *r;
    int32_t idx[4], starts[4];
    char ctx[512];
    int step, sp;
    int64_t b, l;
    kvmesh_status_t st;

    st = kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh);
    H_CHECK(st == KVMESH_SUCCESS, "mesh %s: %s", spec, kvmesh_strerror(st));
    if (st)
        return;
    sp = kvmesh_mesh_size(mesh, KVMESH_AXIS_SP);
    H_OK(kvmesh_partition_create(mesh, &part));
    apply_variant(part, variant);
    kvmesh_meta_params_init(&mp);
    mp.batch_size = B, mp.sequence_length = S, mp.num_hidden_layers = NL;
    mp.key_heads = H[0], mp.value_heads = H[1], mp.key_dim = D[0], mp.value_dim = D[1];
    H_OK(kvmesh_meta_create(&mp, &meta));
    kvmesh_cache_params_init(&cp);
    cp.dtype = (kvmesh_dtype_t) cdt;
    cp.checked = combo % 2 == 0;   /* half the runs take the unchecked path */
    st = kvmesh_cache_init(meta, part, &cp, &c);
    snprintf(ctx, sizeof ctx, "%.64s, %s, dtypes %d<-%d", spec, variant_names[variant],
             cdt, idt);
    H_CHECK(st == KVMESH_SUCCESS, "%s: init: %s", ctx, kvmesh_strerror(st));
    r = ref_create(NL, B, S, H, D, cdt);
    if (st)
        goto done;

    /* rows at different fill levels, with left padding */
    for (b = 0; b < B; b++) {
        idx[b] = (int32_t) (h_rand(&seed) % 9);
        starts[b] = (int32_t) (h_rand(&seed) % (uint64_t) (idx[b] + 1));
    }
    st = kvmesh_cache_insert_index(c, 0, B, idx);
    H_CHECK(st == KVMESH_SUCCESS, "%s: insert_index: %s", ctx, kvmesh_strerror(st));
    st = kvmesh_cache_insert_starts(c, 0, B, starts);
    H_CHECK(st == KVMESH_SUCCESS, "%s: insert_starts: %s", ctx, kvmesh_strerror(st));
    for (l = 0; l < NL; l++)
        for (b = 0; b < B; b++)
            r->indexs[l * B + b] = idx[b], r->starts[l * B + b] = starts[b];

    for (step = 0; step < 16; step++) {
        uint64_t pick = h_rand(&seed) % 8;
        kvmesh_mode_t mode = pick < 4 ? KVMESH_MODE_PREFILL : KVMESH_MODE_DECODE;
        int64_t n;

        if (pick < 2)
            n = sp * (int64_t) (1 + h_rand(&seed) % 3);    /* aligned chunks */
        else if (pick < 4)
            n = 1 + (int64_t) (h_rand(&seed) % 7);          /* any length */
        else if (pick < 7)
            n = 1;                                          /* decode */
        else
            n = 2 + (int64_t) (h_rand(&seed) % 18);         /* may overflow */
        for (l = 0; l < NL; l++) {
            double *g[2];
            void *in[2];
            const kvmesh_mask_t *mask = NULL;
            bool fits;
            int t;
                    char sctx[640];

            snprintf(sctx, sizeof sctx, "%s, step %d layer %ld mode %d n %ld", ctx,
                     step, (long) l, (int) mode, (long) n);
            for (t = 0; t < 2; t++) {
                g[t] = malloc((size_t) (B * n * H[t] * D[t]) * sizeof(double));
                in[t] = make_input(c, r, l, t, mode, n, idt, g[t]);
            }
            kvmesh_view_t *v;
            H_OK(kvmesh_cache_view(c, l, &v));
            st = kvmesh_view_concatenate(v, mode, n, (kvmesh_dtype_t) idt, in[0],
                                         in[1], &mask);
            fits = ref_concat(r, l, n, (const double *const *) g);
            h_expect_all(st, fits ? KVMESH_SUCCESS : KVMESH_ERR_CAPACITY, sctx);
            if (st == KVMESH_SUCCESS)
                check_mask(c, r, l, mask, n, sctx);
            compare(c, r, sctx);
            for (t = 0; t < 2; t++) {
                free(g[t]);
                free(in[t]);
            }
        }
    }
done:
    ref_free(r);
    kvmesh_cache_free(&c);
    kvmesh_meta_free(&meta);
    kvmesh_partition_free(&part);
    kvmesh_mesh_free(&mesh);
}

int
main(int argc, char **argv)
{
    char specs[64][64];
    int nm, m, v, combo = 0;

    h_init(&argc, &argv);
    nm = h_meshes(h_size, specs, 64);
    H_CHECK(nm > 0, "no meshes");
    for (m = 0; m < nm; m++)
        for (v = 0; v < NVARIANTS; v++, combo++)
            run_sequence(specs[m], v, combo, 1000003u * (uint64_t) combo + 17u);
    return h_finish("t_concat");
}
