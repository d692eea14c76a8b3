/* Model-based test of concatenate: on every mesh that factors the rank
 * count, under several partition rules, dtypes, cache lengths and largest
 * appends A, a cache that mixes FULL, SLIDING and CHUNK layers runs random
 * sequences of prefill chunks (aligned and misaligned with the sp blocks,
 * rows at different fill levels, some longer than A or past S) and decode
 * steps, then every append length 1..A from every fill level of the
 * sliding layers' rings, on kvmesh and on the serial reference.  After
 * every append each rank's local blocks must equal the reference bit for
 * bit, and so must the indexs, the slot positions and the mask; and the
 * keys every query sees, gathered from all ranks, must be exactly the
 * ones the attention rule allows. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "reference.h"

#define NL 5
/* key head dim 32 takes the int8 encoder's all-heads vector path */
static const int64_t B = 4, H[2] = { 4, 2 }, D[2] = { 32, 5 };
/* S = 48 splits over 1-4 kv blocks, S = 45 only over 1 and 3: then FULL
 * layers stay whole while rings (W + A - 1 rounded up to whole blocks)
 * split, or a ring as long as S stays whole beside split layers, and one
 * routed message may carry more tokens than a kv block holds.  W = 14 is
 * longer than S / 4. */
static int64_t S;
static const int kinds[NL] = { REF_FULL, REF_SLIDING, REF_CHUNK, REF_SLIDING,
                               REF_SLIDING };
static const int64_t windows[NL] = { 0, 8, 0, 6, 14 }, chunks[NL] = { 0, 0, 5, 0, 0 };

enum { NVARIANTS = 5 };
static const char *variant_names[NVARIANTS] = {
    "default rules", "decode inputs replicated", "query on tp, kv on sp",
    "lengths on (sp,dp), batch on fsdp", "query on sp, kv on (sp,dp), batch replicated"
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
    } else if (v == 4) {
        /* query blocks longer than kv blocks: one routed message may carry
         * more tokens than S / (kv blocks) */
        st = kvmesh_partition_set_rule(p, KVMESH_RULES_STANDARD, KVMESH_BATCH, NULL, 0);
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
/* Elements of an unquantized local block that differ from the reference,
 * bit for bit. */
static int64_t
compare_plain(ref_cache_t *r, int64_t l, int t, const void *data,
              const kvmesh_block_t *blk)
{
    int64_t b, s, h, d, i = 0, bad = 0;

    for (b = 0; b < blk->shape[0]; b++)
        for (s = 0; s < blk->shape[1]; s++)
            for (h = 0; h < blk->shape[2]; h++)
                for (d = 0; d < blk->shape[3]; d++, i++) {
                    double want = *ref_at(r, l, t, blk->offset[0] + b,
                                          blk->offset[1] + s, blk->offset[2] + h,
                                          blk->offset[3] + d);
                    bad += get(data, i, r->dtype) != ref_encode(want, r->dtype);
                }
    return bad;
}

/* Codes and scales of a quantized local block that differ from the
 * reference's. */
static int64_t
compare_quant(ref_cache_t *r, int64_t l, int t, const kvmesh_view_t *v,
              const void *data, const kvmesh_block_t *blk)
{
    const int64_t Dt = D[t], cb = r->quant == REF_Q8 ? Dt : (Dt + 1) / 2;
    const float *sc = NULL;
    int64_t b, s, h, d, k, per = -1, bad = 0, vec = 0;

    H_OK(kvmesh_view_scales(v, (kvmesh_kv_t) t, &sc, &per));
    H_CHECK(per == r->nscale[t], "scales per head %ld, want %ld", (long) per,
            (long) r->nscale[t]);
    for (b = 0; b < blk->shape[0]; b++)
        for (s = 0; s < blk->shape[1]; s++)
            for (h = 0; h < blk->shape[2]; h++, vec++) {
                int64_t rv = ((blk->offset[0] + b) * r->len[l] + blk->offset[1] + s) *
                             H[t] + blk->offset[2] + h;
                const unsigned char *codes = (const unsigned char *) data + vec * cb;
                for (d = 0; d < Dt; d++) {
                    int got = r->quant == REF_Q8 ? (int) (signed char) codes[d]
                            : d % 2 ? codes[d / 2] & 15 : codes[d / 2] >> 4;
                    bad += got != r->code[2 * l + t][rv * Dt + d];
                }
                for (k = 0; k < per && per == r->nscale[t]; k++)
                    bad += memcmp(&sc[vec * per + k], &r->scale[2 * l + t][rv * per + k],
                                  sizeof(float)) != 0;
            }
    return bad;
}

/* Local blocks, indexs, starts and slot positions of layer l (all layers
 * when l < 0) against the reference. */
static void
compare(kvmesh_cache_t *c, ref_cache_t *r, int64_t only, const char *ctx)
{
    int64_t l, b, s, h, d, bad, i;
    int t;

    for (l = only < 0 ? 0 : only; l < (only < 0 ? NL : only + 1); l++) {
        kvmesh_view_t *v;
        H_OK(kvmesh_cache_view(c, l, &v));
        for (t = 0; t < 2; t++) {
            const void *data;
            kvmesh_block_t blk;
            H_OK(kvmesh_view_local(v, (kvmesh_kv_t) t, &data, &blk));
            bad = r->quant == REF_QNONE ? compare_plain(r, l, t, data, &blk)
                                        : compare_quant(r, l, t, v, data, &blk);
            H_CHECK(bad == 0, "%s: layer %ld %s: %ld stored elements differ", ctx,
                    (long) l, t ? "value" : "key", (long) bad);
            /* the converting (dequantizing) read of the last local row
             * (a global row number) gives the reference's values */
            {
                int64_t per = blk.shape[1] * blk.shape[2] * blk.shape[3];
                int64_t row = blk.shape[0] - 1, grow = blk.offset[0] + row;
                size_t fb = (size_t) per * sizeof(float);
                float *f = malloc(fb);
                H_OK(kvmesh_view_read(v, (kvmesh_kv_t) t, grow, 0, blk.shape[1],
                                      KVMESH_F32, f, fb));
                bad = 0, i = 0;
                for (s = 0; s < blk.shape[1]; s++)
                    for (h = 0; h < blk.shape[2]; h++)
                        for (d = 0; d < blk.shape[3]; d++, i++)
                            bad += (double) f[i] != *ref_at(r, l, t, blk.offset[0] + row,
                                                            blk.offset[1] + s,
                                                            blk.offset[2] + h,
                                                            blk.offset[3] + d);
                H_CHECK(bad == 0, "%s: view_read differs in %ld elements", ctx, (long) bad);
                H_CHECK(kvmesh_view_read(v, (kvmesh_kv_t) t, grow, 1, 0, KVMESH_F32, f, fb)
                        == KVMESH_ERR_ARG, "%s: view_read accepts slot0 > slot1", ctx);
                H_CHECK(kvmesh_view_read(v, (kvmesh_kv_t) t, grow, 0, blk.shape[1],
                                         KVMESH_F32, f, fb - 1) == KVMESH_ERR_ARG,
                        "%s: view_read accepts a buffer too small", ctx);
                H_CHECK(blk.shape[0] == B ||
                        kvmesh_view_read(v, (kvmesh_kv_t) t,
                                         (blk.offset[0] + blk.shape[0]) % B, 0, 1,
                                         KVMESH_F32, f, fb) == KVMESH_ERR_ARG,
                        "%s: view_read accepts a row of another rank", ctx);
                free(f);
            }
        }
        {
            kvmesh_block_t blk;
            H_OK(kvmesh_view_local(v, KVMESH_KEY, NULL, &blk));
            bad = 0;
            for (b = 0; b < B; b++)
                for (s = 0; s < blk.shape[1]; s++) {
                    int64_t pos = -2;
                    H_OK(kvmesh_view_slot_position(v, b, s, &pos));
                    bad += pos != ref_slot_position(r, l, b, blk.offset[1] + s);
                }
            H_CHECK(bad == 0, "%s: layer %ld: %ld slot positions differ", ctx,
                    (long) l, (long) bad);
            H_CHECK(blk.global[1] == r->len[l], "%s: layer %ld storage length", ctx,
                    (long) l);
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

/* The keys each query of the append sees, as an attention kernel finds
 * them (each rank's materialized mask over its slots, and the positions
 * those slots hold), gathered from every rank, against the keys the rule
 * allows in the reference: no key missing, none extra. */
static void
check_visible_sets(kvmesh_cache_t *c, ref_cache_t *r, int64_t l,
                   const kvmesh_mask_t *m, int64_t n, const char *ctx)
{
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    uint8_t *out, *seen;
    int64_t b, i, s, k, pos, bad = 0, wrong = 0, at = 0;

    H_OK(kvmesh_cache_view(c, l, &v));
    H_OK(kvmesh_view_local(v, KVMESH_KEY, NULL, &blk));
    out = malloc((size_t) (blk.shape[0] * n * blk.shape[1]));
    seen = calloc((size_t) (B * n * S), 1);
    H_OK(kvmesh_mask_materialize(m, out, (size_t) (blk.shape[0] * n * blk.shape[1])));
    for (b = 0; b < blk.shape[0]; b++)
        for (i = 0; i < n; i++)
            for (s = 0; s < blk.shape[1]; s++)
                if (out[at++]) {
                    H_OK(kvmesh_view_slot_position(v, blk.offset[0] + b, s, &pos));
                    if (pos < 0 || pos >= S)
                        wrong++;
                    else
                        seen[((blk.offset[0] + b) * n + i) * S + pos] = 1;
                }
    MPI_Allreduce(MPI_IN_PLACE, seen, (int) (B * n * S), MPI_UINT8_T, MPI_MAX,
                  MPI_COMM_WORLD);
    for (b = 0; b < B; b++)
        for (i = 0; i < n; i++)
            for (k = 0; k < S; k++)
                bad += seen[(b * n + i) * S + k] !=
                       ref_visible(r, l, b, r->indexs[l * B + b] - n + i, k);
    H_CHECK(wrong == 0, "%s: %ld visible slots hold no position", ctx, (long) wrong);
    H_CHECK(bad == 0, "%s: %ld (query, key) pairs seen wrongly across ranks", ctx,
            (long) bad);
    free(out);
    free(seen);
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
    H_CHECK(kvmesh_mask_materialize(m, out, (size_t) (blk.shape[0] * n * blk.shape[1]))
            == KVMESH_SUCCESS, "%s: materialize", ctx);
    H_CHECK(kvmesh_mask_materialize(m, out, (size_t) (blk.shape[0] * n * blk.shape[1]) - 1)
            == KVMESH_ERR_ARG, "%s: materialize into a buffer too small", ctx);
    for (b = 0; b < blk.shape[0]; b++)
        for (i = 0; i < n; i++)
            for (s = 0; s < blk.shape[1]; s++) {
                int64_t gb = blk.offset[0] + b;
                int64_t q = r->indexs[l * B + gb] - n + i;
                bad += out[k++] != ref_slot_visible(r, l, gb, q, blk.offset[1] + s);
            }
    /* the predicate answers for any global row and absolute position,
     * exactly by the attention rule: a ring still holds every key */
    for (b = 0; b < B; b++)
        for (i = 0; i < n; i++)
            for (s = 0; s < S; s++)
                bad += kvmesh_mask_allows(m, b, i, s) !=
                       ref_visible(r, l, b, r->indexs[l * B + b] - n + i, s);
    H_CHECK(bad == 0, "%s: %ld mask entries differ", ctx, (long) bad);
    free(out);
    check_visible_sets(c, r, l, m, n, ctx);
}

typedef struct {
    kvmesh_cache_t *c;
    ref_cache_t *r;
    int idt;                 /* input type */
    char ctx[512];
} model_t;

/* One append of n tokens to layer l on both sides, then every check.
 * Returns whether it fitted. */
static bool
append_and_check(model_t *mo, int64_t l, kvmesh_mode_t mode, int64_t n,
                 const char *what)
{
    const kvmesh_mask_t *mask = NULL;
    kvmesh_view_t *v;
    kvmesh_status_t st;
    double *g[2];
    void *in[2];
    char sctx[700];
    bool fits;
    int t, verdict;

    snprintf(sctx, sizeof sctx, "%s, %s layer %ld mode %d n %ld", mo->ctx, what,
             (long) l, (int) mode, (long) n);
    for (t = 0; t < 2; t++) {
        g[t] = malloc((size_t) (B * n * H[t] * D[t]) * sizeof(double));
        in[t] = make_input(mo->c, mo->r, l, t, mode, n, mo->idt, g[t]);
    }
    H_OK(kvmesh_cache_view(mo->c, l, &v));
    st = kvmesh_view_concatenate(v, mode, n, (kvmesh_dtype_t) mo->idt, in[0], in[1],
                                 &mask);
    verdict = ref_concat(mo->r, l, n, (const double *const *) g);
    fits = verdict == REF_OK;
    h_expect_all(st, fits ? KVMESH_SUCCESS : verdict == REF_CAPACITY ? KVMESH_ERR_CAPACITY
                                                                      : KVMESH_ERR_TOO_LONG,
                 sctx);
    if (st == KVMESH_SUCCESS)
        check_mask(mo->c, mo->r, l, mask, n, sctx);
    compare(mo->c, mo->r, l, sctx);
    for (t = 0; t < 2; t++) {
        free(g[t]);
        free(in[t]);
    }
    return fits;
}

/* Sets every layer's indexs (and starts) on both sides. */
static void
set_rows(model_t *mo, const int32_t *idx, const int32_t *starts)
{
    int64_t l, b;

    H_OK(kvmesh_cache_insert_index(mo->c, 0, B, idx));
    if (starts)
        H_OK(kvmesh_cache_insert_starts(mo->c, 0, B, starts));
    for (l = 0; l < NL; l++)
        for (b = 0; b < B; b++) {
            mo->r->indexs[l * B + b] = idx[b];
            if (starts)
                mo->r->starts[l * B + b] = starts[b];
        }
}

static void
run_sequence(const char *spec, int variant, int combo, uint64_t seed, bool sweep,
             int quant)
{
    static const int dts[5][2] = {   /* cache type, input type */
        { REF_BF16, REF_F32 }, { REF_BF16, REF_BF16 }, { REF_F16, REF_F32 },
        { REF_F32, REF_BF16 }, { REF_F16, REF_BF16 }
    };
    const int cdt = dts[combo % 5][0];
    kvmesh_mask_detail_t det[NL];
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_partition_t *part = NULL;
    kvmesh_meta_t *meta = NULL;
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    model_t mo = { NULL, NULL, dts[combo % 5][1], "" };
    int32_t idx[4], starts[4];
    int step, sp;
    int64_t b, l, n, base, kblocks;
    kvmesh_status_t st;

    st = kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh);
    H_CHECK(st == KVMESH_SUCCESS, "mesh %s: %s", spec, kvmesh_strerror(st));
    if (st)
        return;
    sp = kvmesh_mesh_size(mesh, KVMESH_AXIS_SP);
    H_OK(kvmesh_partition_create(mesh, &part));
    apply_variant(part, variant);
    kvmesh_meta_params_init(&mp);
    S = combo % 4 == 3 ? 45 : 48;
    mp.batch_size = B, mp.sequence_length = S, mp.num_hidden_layers = NL;
    mp.key_heads = H[0], mp.value_heads = H[1], mp.key_dim = D[0], mp.value_dim = D[1];
    H_OK(kvmesh_meta_create(&mp, &meta));
    for (l = 0; l < NL; l++)
        det[l] = (kvmesh_mask_detail_t) { (kvmesh_mask_kind_t) kinds[l], windows[l],
                                          chunks[l] };
    kvmesh_cache_params_init(&cp);
    cp.dtype = (kvmesh_dtype_t) cdt;
    cp.quant = (kvmesh_quant_t) quant;
    cp.details = det;
    cp.checked = combo % 2 == 0;   /* half the runs take the unchecked path */
    cp.max_append = combo % 3 == 0 ? 7 : combo % 3 == 1 ? 3 : 0;   /* 0: S */
    st = kvmesh_cache_init(meta, part, &cp, &mo.c);
    snprintf(mo.ctx, sizeof mo.ctx, "%.64s, %s, dtypes %d<-%d, quant %d", spec,
             variant_names[variant], cdt, mo.idt, quant);
    H_CHECK(st == KVMESH_SUCCESS, "%s: init: %s", mo.ctx, kvmesh_strerror(st));
    kblocks = sp * (variant >= 3 ? kvmesh_mesh_size(mesh, KVMESH_AXIS_DP) : 1);
    mo.r = ref_create(NL, B, S, H, D, cdt, quant, kinds, windows, chunks,
                      cp.max_append ? cp.max_append : S, kblocks);
    snprintf(mo.ctx + strlen(mo.ctx), sizeof mo.ctx - strlen(mo.ctx), ", S %ld, A %ld",
             (long) S, (long) mo.r->A);
    if (st)
        goto done;

    /* rows at different fill levels, with left padding */
    for (b = 0; b < B; b++) {
        idx[b] = (int32_t) (h_rand(&seed) % 9);
        starts[b] = (int32_t) (h_rand(&seed) % (uint64_t) (idx[b] + 1));
    }
    set_rows(&mo, idx, starts);
    for (step = 0; step < 16; step++) {
        uint64_t pick = h_rand(&seed) % 8;
        kvmesh_mode_t mode = pick < 4 ? KVMESH_MODE_PREFILL : KVMESH_MODE_DECODE;

        if (pick < 2)
            n = sp * (int64_t) (1 + h_rand(&seed) % 3);    /* aligned chunks */
        else if (pick < 4)
            n = 1 + (int64_t) (h_rand(&seed) % 7);          /* any length */
        else if (pick < 7)
            n = 1;                                          /* decode */
        else
            n = 2 + (int64_t) (h_rand(&seed) % 30);         /* may overflow */
        for (l = 0; l < NL; l++)
            (void) append_and_check(&mo, l, mode, n, "random step");
    }

    /* every append length 1..A, and A + 1, from every fill level 0..R
     * of a sliding layer's ring of R slots, rows at different levels;
     * tokens before the fill level are whatever the ring holds, on both
     * sides.  (With A = S the rings are as long as S and never wrap.) */
    for (l = 0; sweep && mo.r->A < S && l < NL; l++)
        for (n = 1; kinds[l] == REF_SLIDING && n <= mo.r->A + 1; n++)
            for (base = 0; base <= mo.r->len[l]; base++) {
                for (b = 0; b < B; b++)
                    idx[b] = (int32_t) ((base + 3 * b) % (mo.r->len[l] + 1));
                set_rows(&mo, idx, NULL);
                (void) append_and_check(&mo, l, n > 1 ? KVMESH_MODE_PREFILL
                                                      : KVMESH_MODE_DECODE,
                                        n, "sweep");
            }
done:
    ref_free(mo.r);
    H_OK(kvmesh_cache_free(&mo.c));
    kvmesh_meta_free(&meta);
    kvmesh_partition_free(&part);
    kvmesh_mesh_free(&mesh);
}

int
main(int argc, char **argv)
{
    char specs[64][64];
    int nm, m, v, q, combo = 0;

    h_init(&argc, &argv);
    nm = h_meshes(h_size, specs, 64);
    H_CHECK(nm > 0, "no meshes");
    /* every mesh, rule set and storage type; the length sweep for the
     * default rules in every storage type and for (sp, dp) lengths */
    for (m = 0; m < nm; m++)
        for (v = 0; v < NVARIANTS; v++)
            for (q = REF_QNONE; q <= REF_NF4; q++, combo++)
                run_sequence(specs[m], v, combo, 1000003u * (uint64_t) combo + 17u,
                             v == 0 || (v >= 3 && q == REF_QNONE), q);
    return h_finish("t_concat");
}
