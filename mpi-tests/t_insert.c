/* kvmesh_cache_insert across meshes and rank groups: a source cache of a
 * few rows, filled with the synthetic workload to different lengths, goes
 * into the first, a middle and the last slots of a destination cache, for
 * every destination mesh, from sources on the same ranks, on a subset, on
 * one rank and on disjoint ranks, with FULL, SLIDING (rings of different
 * lengths on the two sides) and CHUNK layers in bf16, f32, int8 and nf4.
 * After each insert every destination rank's stored values must be the
 * source's at the same positions (the source's values gathered from all
 * its ranks), everything else unchanged, and indexs and starts copied;
 * two decode steps on the inserted rows then match the serial reference's
 * rule and values; bad arguments give one status everywhere and change
 * nothing; evict empties rows.  Reshard chains keep the gathered contents,
 * and appends after a round trip agree with the same appends on the
 * original.  The suite runs on the p2p engine, again with a staging cap
 * that forces rounds, and on the ScaLAPACK engine; an insert gives the
 * same bytes on both; rows read through kvmesh_cache_scalapack()'s
 * descriptors equal the gathered pure's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blacs.h"       /* the ScaLAPACK prototypes (it ships no C header) */
#include "harness.h"
#include "reference.h"

#define NL 3
static const int64_t H[2] = { 4, 2 }, D[2] = { 32, 5 };
static const kvmesh_mask_detail_t det[NL] = {
    { KVMESH_MASK_FULL, 0, 0 }, { KVMESH_MASK_SLIDING, 6, 0 }, { KVMESH_MASK_CHUNK, 0, 5 }
};

typedef struct {
    MPI_Comm comm;            /* the group (MPI_COMM_NULL outside) */
    kvmesh_mesh_t *mesh;
    kvmesh_partition_t *part;
    kvmesh_cache_t *c;
} side_t;

/* A cache of B rows, S positions, on the ranks [lo, hi) of the world with
 * mesh spec; NULL handles outside. */
static bool open_empty;   /* side_open makes an empty cache (init_empty) */
static const kvmesh_mask_detail_t *open_det = det;   /* ... with these layers */
static kvmesh_engine_t engine = KVMESH_ENGINE_P2P;   /* of the caches side_open makes */
static int64_t staging;                              /* and their staging cap */

static void
side_open(side_t *s, int lo, int hi, const char *spec, int64_t B, int64_t S,
          int64_t A, kvmesh_dtype_t dt, kvmesh_quant_t q)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_meta_t *meta = NULL;
    int in = h_rank >= lo && h_rank < hi;

    memset(s, 0, sizeof *s);
    MPI_Comm_split(MPI_COMM_WORLD, in ? 0 : MPI_UNDEFINED, h_rank, &s->comm);
    if (!in)
        return;
    H_OK(kvmesh_mesh_create(s->comm, spec, &s->mesh));
    H_OK(kvmesh_partition_create(s->mesh, &s->part));
    kvmesh_meta_params_init(&mp);
    mp.batch_size = B, mp.sequence_length = S, mp.num_hidden_layers = NL;
    mp.key_heads = H[0], mp.value_heads = H[1], mp.key_dim = D[0], mp.value_dim = D[1];
    H_OK(kvmesh_meta_create(&mp, &meta));
    kvmesh_cache_params_init(&cp);
    cp.dtype = dt, cp.quant = q, cp.details = open_det, cp.max_append = A, cp.checked = true;
    cp.engine = engine, cp.staging_bytes = staging;
    if (open_empty)
        H_OK(kvmesh_cache_init_empty(meta, s->part, &cp, &s->c));
    else
        H_OK(kvmesh_cache_init(meta, s->part, &cp, &s->c));
    kvmesh_meta_free(&meta);
}

static void
side_close(side_t *s)
{
    if (s->c)
        H_OK(kvmesh_cache_free(&s->c));
    kvmesh_partition_free(&s->part);
    kvmesh_mesh_free(&s->mesh);
    if (s->comm != MPI_COMM_NULL)
        MPI_Comm_free(&s->comm);
}

/* The synthetic token of row b, position p, as fill() passes it (f32). */
static float
token(int64_t salt, int t, int64_t l, int64_t b, int64_t p, int64_t h, int64_t d)
{
    return (float) sin(0.01 * (double) (salt + t * 7919 + l * 1009 + b * 101 + p * 7 +
                                        h * 3 + d));
}

/* Appends n synthetic tokens (token()) to every layer; each layer's mask
 * goes to masks[l] when masks is not NULL. */
static void
fill_masks(side_t *s, int64_t n, int64_t salt, const kvmesh_mask_t **masks)
{
    int64_t l, b, j, h, d, i;
    int t;

    for (l = 0; l < NL; l++) {
        kvmesh_view_t *v;
        float *in[2];
        kvmesh_block_t blk[2];
        H_OK(kvmesh_cache_view(s->c, l, &v));
        for (t = 0; t < 2; t++) {
            H_OK(kvmesh_cache_input_block(s->c, KVMESH_MODE_PREFILL, n, (kvmesh_kv_t) t,
                                          &blk[t]));
            in[t] = malloc(sizeof(float) * (size_t) (blk[t].shape[0] * blk[t].shape[1] *
                                                      blk[t].shape[2] * blk[t].shape[3]));
            i = 0;
            for (b = blk[t].offset[0]; b < blk[t].offset[0] + blk[t].shape[0]; b++)
                for (j = blk[t].offset[1]; j < blk[t].offset[1] + blk[t].shape[1]; j++)
                    for (h = blk[t].offset[2]; h < blk[t].offset[2] + blk[t].shape[2]; h++)
                        for (d = blk[t].offset[3]; d < blk[t].offset[3] + blk[t].shape[3]; d++)
                            in[t][i++] = token(salt, t, l, b, kvmesh_view_indexs(v)[b] + j,
                                               h, d);
        }
        H_OK(kvmesh_view_concatenate(v, KVMESH_MODE_PREFILL, n, KVMESH_F32, in[0], in[1],
                                     masks ? &masks[l] : NULL));
        free(in[0]);
        free(in[1]);
    }
}

static void
fill(side_t *s, int64_t n, int64_t salt)
{
    fill_masks(s, n, salt, NULL);
}

/* Every stored value of a cache as f32, [layer][t] -> [B][S][H][D] by
 * absolute position (NAN where no rank stores it), gathered over the
 * world from whichever ranks hold it. */
static float *
gather_values(side_t *s, int64_t B, int64_t S, int64_t l, int t)
{
    const size_t n = (size_t) (B * S * H[t] * D[t]);
    float *all = malloc(n * sizeof *all), *row;
    int64_t b, k, h, d;
    size_t i;

    for (i = 0; i < n; i++)
        all[i] = -INFINITY;
    if (s->c) {
        kvmesh_view_t *v;
        kvmesh_block_t blk;
        H_OK(kvmesh_cache_view(s->c, l, &v));
        H_OK(kvmesh_view_local(v, (kvmesh_kv_t) t, NULL, &blk));
        row = malloc(sizeof(float) * (size_t) (blk.shape[1] * blk.shape[2] * blk.shape[3]));
        for (b = blk.offset[0]; b < blk.offset[0] + blk.shape[0]; b++) {
            H_OK(kvmesh_view_read(v, (kvmesh_kv_t) t, b, 0, blk.shape[1], KVMESH_F32, row,
                                  sizeof(float) * (size_t) (blk.shape[1] * blk.shape[2] *
                                                            blk.shape[3])));
            for (k = 0; k < blk.shape[1]; k++) {
                int64_t pos;
                H_OK(kvmesh_view_slot_position(v, b, k, &pos));
                if (pos < 0)
                    continue;
                for (h = 0; h < blk.shape[2]; h++)
                    for (d = 0; d < blk.shape[3]; d++)
                        all[((b * S + pos) * H[t] + blk.offset[2] + h) * D[t] +
                            blk.offset[3] + d] =
                            row[(k * blk.shape[2] + h) * blk.shape[3] + d];
            }
        }
        free(row);
    }
    MPI_Allreduce(MPI_IN_PLACE, all, (int) n, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

/* This rank's local values of a layer tensor, as read, for "unchanged" checks. */
static float *
local_values(side_t *s, int64_t l, int t, kvmesh_block_t *blk)
{
    kvmesh_view_t *v;
    size_t per;
    float *out;
    int64_t b;

    H_OK(kvmesh_cache_view(s->c, l, &v));
    H_OK(kvmesh_view_local(v, (kvmesh_kv_t) t, NULL, blk));
    per = (size_t) (blk->shape[1] * blk->shape[2] * blk->shape[3]);
    out = malloc(per * (size_t) blk->shape[0] * sizeof *out);
    for (b = 0; b < blk->shape[0]; b++)
        H_OK(kvmesh_view_read(v, (kvmesh_kv_t) t, blk->offset[0] + b, 0, blk->shape[1],
                              KVMESH_F32, out + (size_t) b * per, per * sizeof *out));
    return out;
}

typedef struct {
    side_t src, dst;
    int64_t Bs, Ss, Bd, Sd;
    kvmesh_dtype_t dt;
    kvmesh_quant_t q;
    char what[256];
} run_t;

/* Two decode steps on the destination after an insert (one token into
 * every row each): for every inserted row, the last query's mask allows
 * exactly the keys of the serial reference's rule (ref_allows), and every
 * key it allows holds, on some rank, the source's value below the
 * inserted length and the appended token (rounded to the storage type
 * as the reference rounds it) above; a quantized cache's new tokens are
 * checked by position only. */
static void
decode_after(run_t *r, int64_t slot, float *src_vals[NL][2], int32_t sidx[NL][8],
             int32_t sst[NL][8], kvmesh_dtype_t dt, kvmesh_quant_t q)
{
    const kvmesh_mask_t *m[NL];
    int64_t k, l, b, p, h, d, bad = 0, masked = 0;
    int t;

    for (k = 0; k < 2; k++)
        if (r->dst.c)
            fill_masks(&r->dst, 1, 900 + k, m);
    for (l = 0; l < NL; l++)
        for (t = 0; t < 2; t++) {
            float *x = gather_values(&r->dst, r->Bd, r->Sd, l, t);
            for (b = slot; b < slot + r->Bs; b++) {
                const int64_t L = sidx[l][b - slot], N = L + 2;
                for (p = 0; p < r->Sd; p++) {
                    bool see = p < N && ref_allows(det[l].kind, det[l].window, det[l].chunk,
                                                   sst[l][b - slot], N - 1, p);
                    if (r->dst.c && t == 0)
                        masked += kvmesh_mask_allows(m[l], b, 0, p) != see;
                    if (!see)
                        continue;
                    for (h = 0; h < H[t]; h++)
                        for (d = 0; d < D[t]; d++) {
                            const float got = x[((b * r->Sd + p) * H[t] + h) * D[t] + d];
                            float want;
                            if (p < L)
                                want = src_vals[l][t][(((b - slot) * r->Ss + p) * H[t] + h) *
                                                      D[t] + d];
                            else if (q == KVMESH_QUANT_NONE)
                                want = (float) ref_round(
                                    token(900 + p - L, t, l, b, p, h, d), (int) dt);
                            else
                                want = got == -INFINITY ? 0.0f : got;
                            bad += memcmp(&got, &want, sizeof got) != 0;
                        }
                }
            }
            free(x);
        }
    H_CHECK(bad == 0 && masked == 0,
            "%s: slot %ld: decode after insert: %ld values, %ld mask entries differ from "
            "the reference", r->what, (long) slot, (long) bad, (long) masked);
}

/* One insert at slot and its checks. */
static void
insert_and_check(run_t *r, int64_t slot)
{
    float *src_vals[NL][2], *before[NL][2] = { { NULL } };
    kvmesh_block_t blk;
    int32_t sidx[NL][8], sst[NL][8];
    int64_t l, b, k, h, d, bad = 0, moved = 0;
    kvmesh_status_t st;
    int t;

    for (l = 0; l < NL; l++)
        for (t = 0; t < 2; t++) {
            src_vals[l][t] = gather_values(&r->src, r->Bs, r->Ss, l, t);
            if (r->dst.c)
                before[l][t] = local_values(&r->dst, l, t, &blk);
        }
    /* the source's rows, as every rank knows them after the insert */
    memset(sidx, 0, sizeof sidx);
    memset(sst, 0, sizeof sst);
    if (r->src.c)
        for (l = 0; l < NL; l++) {
            kvmesh_view_t *v;
            H_OK(kvmesh_cache_view(r->src.c, l, &v));
            memcpy(sidx[l], kvmesh_view_indexs(v), (size_t) r->Bs * sizeof(int32_t));
            memcpy(sst[l], kvmesh_view_starts(v), (size_t) r->Bs * sizeof(int32_t));
        }
    MPI_Allreduce(MPI_IN_PLACE, sidx, (int) (NL * 8), MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, sst, (int) (NL * 8), MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);

    st = kvmesh_cache_insert(r->dst.c, r->src.c, slot, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_SUCCESS, r->what);
    for (l = 0; r->dst.c && l < NL; l++) {
        kvmesh_view_t *v;
        H_OK(kvmesh_cache_view(r->dst.c, l, &v));
        for (b = 0; b < r->Bs; b++) {
            H_CHECK(kvmesh_view_indexs(v)[slot + b] == sidx[l][b] &&
                    kvmesh_view_starts(v)[slot + b] == sst[l][b],
                    "%s: slot %ld: row %ld's indexs/starts", r->what, (long) slot, (long) b);
        }
        for (t = 0; t < 2; t++) {
            float *now = local_values(&r->dst, l, t, &blk);
            int64_t i = 0;
            for (b = blk.offset[0]; b < blk.offset[0] + blk.shape[0]; b++)
                for (k = 0; k < blk.shape[1]; k++) {
                    /* an inserted row's slot holds the source's value
                     * wherever the source holds its position (the
                     * positions both rings hold), its old one elsewhere */
                    int64_t pos = -1, L = 0;
                    bool ins = b >= slot && b < slot + r->Bs;
                    H_OK(kvmesh_view_slot_position(v, b, k, &pos));
                    if (ins)
                        L = sidx[l][b - slot];
                    for (h = 0; h < blk.shape[2]; h++)
                        for (d = 0; d < blk.shape[3]; d++, i++) {
                            float want = before[l][t][i];
                            if (ins && pos >= 0 && pos < L &&
                                src_vals[l][t][(((b - slot) * r->Ss + pos) * H[t] +
                                                blk.offset[2] + h) * D[t] + blk.offset[3] + d]
                                != -INFINITY) {
                                want = src_vals[l][t][(((b - slot) * r->Ss + pos) * H[t] +
                                                       blk.offset[2] + h) * D[t] +
                                                      blk.offset[3] + d];
                                moved++;
                            }
                            bad += memcmp(&now[i], &want, sizeof want) != 0;
                        }
                }
            free(now);
        }
    }
    H_CHECK(bad == 0, "%s: slot %ld: %ld values differ from the source's (or changed)",
            r->what, (long) slot, (long) bad);
    MPI_Allreduce(MPI_IN_PLACE, &moved, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    H_CHECK(moved > 0, "%s: nothing moved", r->what);
    decode_after(r, slot, src_vals, sidx, sst, r->dt, r->q);
    for (l = 0; l < NL; l++)
        for (t = 0; t < 2; t++) {
            free(src_vals[l][t]);
            free(before[l][t]);
        }
}

/* Two caches of one layout on the same ranks hold the same bytes: every
 * layer's local K and V storage (codes and scales) and rows. */
static void
same_bytes(side_t *a, side_t *b, const char *what)
{
    int64_t l, bad = 0;
    int t;

    for (l = 0; a->c && l < NL; l++) {
        kvmesh_view_t *va, *vb;
        H_OK(kvmesh_cache_view(a->c, l, &va));
        H_OK(kvmesh_cache_view(b->c, l, &vb));
        bad += memcmp(kvmesh_view_indexs(va), kvmesh_view_indexs(vb), 8 * sizeof(int32_t)) != 0;
        for (t = 0; t < 2; t++) {
            const void *x, *y;
            const float *sx, *sy;
            kvmesh_block_t bx, by;
            int64_t per, n;
            H_OK(kvmesh_view_local(va, (kvmesh_kv_t) t, &x, &bx));
            H_OK(kvmesh_view_local(vb, (kvmesh_kv_t) t, &y, &by));
            n = bx.shape[0] * bx.shape[1] * bx.shape[2];
            bad += memcmp(&bx, &by, sizeof bx) != 0 ||
                   memcmp(x, y, (size_t) n * kvmesh_cache_head_bytes(a->c, (kvmesh_kv_t) t));
            H_OK(kvmesh_view_scales(va, (kvmesh_kv_t) t, &sx, &per));
            H_OK(kvmesh_view_scales(vb, (kvmesh_kv_t) t, &sy, &per));
            bad += per && memcmp(sx, sy, (size_t) (n * per) * sizeof *sx);
        }
    }
    H_CHECK(bad == 0, "%s: %ld arrays differ between the engines", what, (long) bad);
}

/* The same insert with each engine into two equal destinations: the same
 * bytes everywhere. */
static void
engines_agree(run_t *r, int dlo, int dhi, const char *dspec, kvmesh_dtype_t dt,
              kvmesh_quant_t q, int64_t slot)
{
    side_t d[2];
    int e;

    for (e = 0; e < 2; e++) {
        side_open(&d[e], dlo, dhi, dspec, r->Bd, r->Sd, 4, dt, q);
        if (d[e].c) {
            fill(&d[e], 4, 500);
            H_OK(kvmesh_cache_set_engine(d[e].c, e ? KVMESH_ENGINE_SCALAPACK
                                                   : KVMESH_ENGINE_P2P));
        }
        h_expect_all(kvmesh_cache_insert(d[e].c, r->src.c, slot, MPI_COMM_WORLD),
                     KVMESH_SUCCESS, e ? "insert, ScaLAPACK engine" : "insert, p2p engine");
    }
    same_bytes(&d[0], &d[1], r->what);
    side_close(&d[0]);
    side_close(&d[1]);
}

/* Source on world ranks [slo, shi) with mesh sspec, destination on
 * [dlo, dhi) with dspec. */
static void
run(int slo, int shi, const char *sspec, int dlo, int dhi, const char *dspec,
    kvmesh_dtype_t dt, kvmesh_quant_t q)
{
    run_t r;
    int32_t idx[2] = { 3, 9 };

    r.Bs = 2, r.Ss = 24, r.Bd = 6, r.Sd = 48, r.dt = dt, r.q = q;
    snprintf(r.what, sizeof r.what, "insert [%d,%d) %s -> [%d,%d) %s dtype %d quant %d",
             slo, shi, sspec, dlo, dhi, dspec, (int) dt, (int) q);
    side_open(&r.src, slo, shi, sspec, r.Bs, r.Ss, 3, dt, q);
    side_open(&r.dst, dlo, dhi, dspec, r.Bd, r.Sd, 4, dt, q);   /* rings 8 and 9+ */
    /* destination rows hold something already */
    if (r.dst.c)
        fill(&r.dst, 4, 500);
    if (r.src.c) {
        H_OK(kvmesh_cache_insert_index(r.src.c, 0, 2, idx));
        fill(&r.src, 3, 0);
        fill(&r.src, 2, 0);
    }
    insert_and_check(&r, 0);
    insert_and_check(&r, 2);
    if (engine == KVMESH_ENGINE_P2P)
        engines_agree(&r, dlo, dhi, dspec, dt, q, 2);
    insert_and_check(&r, r.Bd - r.Bs);
    side_close(&r.src);
    side_close(&r.dst);
}

/* Both caches' rows (indexs, starts) and, gathered, the values of every
 * key a query may still see: all filled positions of FULL and CHUNK rows,
 * the last W of SLIDING rows (rings may hold more, by their lengths). */
static void
same_contents(side_t *a, side_t *b, int64_t B, int64_t S, const char *what)
{
    int64_t l, r, p, e, bad = 0;
    int t;

    for (l = 0; l < NL; l++) {
        int32_t s[2][16] = { { 0 } };
        kvmesh_view_t *v;
        if (a->c) {
            H_OK(kvmesh_cache_view(a->c, l, &v));
            memcpy(s[0], kvmesh_view_indexs(v), (size_t) B * sizeof(int32_t));
            memcpy(s[0] + 8, kvmesh_view_starts(v), (size_t) B * sizeof(int32_t));
        }
        if (b->c) {
            H_OK(kvmesh_cache_view(b->c, l, &v));
            memcpy(s[1], kvmesh_view_indexs(v), (size_t) B * sizeof(int32_t));
            memcpy(s[1] + 8, kvmesh_view_starts(v), (size_t) B * sizeof(int32_t));
        }
        MPI_Allreduce(MPI_IN_PLACE, s, 32, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
        bad += memcmp(s[0], s[1], sizeof s[0]) != 0;
        for (t = 0; t < 2; t++) {
            float *x = gather_values(a, B, S, l, t), *y = gather_values(b, B, S, l, t);
            const int64_t per = H[t] * D[t];
            for (r = 0; r < B; r++)
                for (p = 0; p < s[0][r]; p++) {
                    if (det[l].kind == KVMESH_MASK_SLIDING && p < s[0][r] - det[l].window)
                        continue;
                    for (e = 0; e < per; e++)
                        bad += memcmp(&x[(r * S + p) * per + e], &y[(r * S + p) * per + e],
                                      sizeof *x) != 0 || x[(r * S + p) * per + e] == -INFINITY;
                }
            free(x);
            free(y);
        }
    }
    H_CHECK(bad == 0, "%s: %ld values or rows differ", what, (long) bad);
}

/* Gathers side s to its mesh rank root and checks the pure against the
 * values gathered from every rank: EasyDeL's to_pure order, zeros past
 * the filled positions; then again into the same pure after an append. */
static void
gather_check(side_t *s, int root, int64_t B, int64_t S, const char *what)
{
    kvmesh_pure_t *pure = NULL;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        kvmesh_pure_t *f32 = NULL;
        kvmesh_status_t st = KVMESH_SUCCESS;
        int64_t l, b, i, e, bad = 0;
        float *vals[NL][2];
        int32_t rows[NL][2][8];
        int t, am_root = 0;

        for (l = 0; l < NL; l++)
            for (t = 0; t < 2; t++)
                vals[l][t] = gather_values(s, B, S, l, t);
        memset(rows, 0, sizeof rows);
        for (l = 0; s->c && l < NL; l++) {
            kvmesh_view_t *v;
            H_OK(kvmesh_cache_view(s->c, l, &v));
            memcpy(rows[l][0], kvmesh_view_indexs(v), (size_t) B * sizeof(int32_t));
            memcpy(rows[l][1], kvmesh_view_starts(v), (size_t) B * sizeof(int32_t));
        }
        MPI_Allreduce(MPI_IN_PLACE, rows, NL * 16, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
        if (s->c) {
            int me;
            MPI_Comm_rank(kvmesh_mesh_comm(s->mesh), &me);
            am_root = me == root;
            st = pass ? kvmesh_cache_gather_into(s->c, root, am_root ? pure : NULL)
                      : kvmesh_cache_gather(s->c, root, &pure);
            H_CHECK(st == KVMESH_SUCCESS, "%s: gather: %s", what, kvmesh_strerror(st));
            H_CHECK((pure != NULL) == am_root, "%s: a pure off the root", what);
        }
        if (pure && st == KVMESH_SUCCESS) {
            H_OK(kvmesh_pure_dequantize(pure, KVMESH_F32, &f32));
            for (l = 0; f32 && l < NL; l++) {
                int32_t *idx, *sts;
                H_OK(kvmesh_pure_rows(pure, l, &idx, &sts));
                for (b = 0; b < B; b++)
                    bad += idx[b] != rows[l][0][b] || sts[b] != rows[l][1][b];
                for (t = 0; t < 2; t++) {
                    void *data;
                    int64_t shape[4];
                    const int64_t per = H[t] * D[t];
                    H_OK(kvmesh_pure_array(f32, l, (kvmesh_kv_t) t, &data, shape));
                    bad += shape[1] != (det[l].kind == KVMESH_MASK_SLIDING ? det[l].window : S);
                    for (b = 0; b < B; b++) {
                        const int64_t L = rows[l][0][b];
                        const int64_t k = det[l].kind == KVMESH_MASK_SLIDING && L > shape[1]
                                        ? shape[1] : L;
                        for (i = 0; i < shape[1]; i++)
                            for (e = 0; e < per; e++) {
                                float got = ((float *) data)[(b * shape[1] + i) * per + e];
                                float want = i < k ? vals[l][t][(b * S + L - k + i) * per + e]
                                                   : 0.0f;
                                bad += got != want;
                            }
                    }
                }
            }
            kvmesh_pure_free(&f32);
        }
        H_CHECK(bad == 0, "%s: pass %d: %ld pure entries differ", what, pass, (long) bad);
        /* scatter(gather(c)) onto the whole world, another mesh: the same;
         * the second time from a pure around the caller's arrays (the
         * first pure's, handed over as a Python user would) */
        {
            side_t w;
            char spec[32];
            int wroot = -1, me_root = am_root ? h_rank : -1;
            kvmesh_pure_t *wrapped = NULL, *from = pure;
            kvmesh_cache_params_t wp;
            if (pass == 1 && pure) {
                kvmesh_pure_layer_t y[NL];
                kvmesh_mask_detail_t dd[NL];
                kvmesh_meta_params_t mp;
                int64_t per;
                for (l = 0; l < NL; l++) {
                    H_OK(kvmesh_pure_array(pure, l, KVMESH_KEY, &y[l].key, NULL));
                    H_OK(kvmesh_pure_array(pure, l, KVMESH_VALUE, &y[l].value, NULL));
                    H_OK(kvmesh_pure_scales(pure, l, KVMESH_KEY, &y[l].key_scales, &per));
                    H_OK(kvmesh_pure_scales(pure, l, KVMESH_VALUE, &y[l].value_scales, &per));
                    H_OK(kvmesh_pure_rows(pure, l, &y[l].indexs, &y[l].starts));
                    H_OK(kvmesh_pure_detail(pure, l, &dd[l]));
                }
                kvmesh_pure_meta(pure, &mp);
                H_OK(kvmesh_pure_wrap(&mp, dd, kvmesh_pure_dtype(pure), kvmesh_pure_quant(pure),
                                      y, &wrapped));
                from = wrapped;
            }
            MPI_Allreduce(&me_root, &wroot, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            memset(&w, 0, sizeof w);
            w.comm = MPI_COMM_NULL;
            snprintf(spec, sizeof spec, "tp=%d,fsdp=-1", h_size % 2 ? 1 : 2);
            H_OK(kvmesh_mesh_create(MPI_COMM_WORLD, spec, &w.mesh));
            H_OK(kvmesh_partition_create(w.mesh, &w.part));
            kvmesh_cache_params_init(&wp);
            wp.engine = engine;
            st = kvmesh_cache_scatter(h_rank == wroot ? from : NULL, wroot, w.part, &wp, &w.c);
            h_expect_all(st, KVMESH_SUCCESS, "scatter of a gather");
            if (st == KVMESH_SUCCESS)
                same_contents(s, &w, B, S, pass ? "scatter(wrap(gather(c)))"
                                                 : "scatter(gather(c))");
            side_close(&w);
            kvmesh_pure_free(&wrapped);
        }
        for (l = 0; l < NL; l++)
            for (t = 0; t < 2; t++)
                free(vals[l][t]);
        if (s->c && pass == 0)
            fill(s, 2, 31);
    }
    kvmesh_pure_free(&pure);
    if (s->c) {
        kvmesh_status_t st = kvmesh_cache_gather(s->c, -1, &pure);
        H_CHECK(st == KVMESH_ERR_ARG && pure == NULL, "%s: gather to root -1", what);
    }
}

/* side b: a reshard of side a onto ranks [lo, hi) with mesh spec */
static void
reshard_to(side_t *a, side_t *b, int lo, int hi, const char *spec, int64_t B, int64_t S,
           const char *what)
{
    int in = h_rank >= lo && h_rank < hi;
    kvmesh_status_t st;

    memset(b, 0, sizeof *b);
    MPI_Comm_split(MPI_COMM_WORLD, in ? 0 : MPI_UNDEFINED, h_rank, &b->comm);
    if (in) {
        H_OK(kvmesh_mesh_create(b->comm, spec, &b->mesh));
        H_OK(kvmesh_partition_create(b->mesh, &b->part));
    }
    st = kvmesh_cache_reshard(a->c, b->part, MPI_COMM_WORLD, in ? &b->c : NULL);
    h_expect_all(st, KVMESH_SUCCESS, what);
    H_CHECK((b->c != NULL) == in, "%s: a cache where there should be none, or none", what);
    if (st == KVMESH_SUCCESS)
        same_contents(a, b, B, S, what);
}

/* A chain of reshards (4 ranks: tp=2,sp=2 -> tp=4 -> 2 ranks sp=2 ->
 * tp=2,sp=2), each with the same gathered contents, then decode-sized
 * appends on the last one match the same appends on the first. */
static void
reshard_chain(kvmesh_dtype_t dt, kvmesh_quant_t q)
{
    const int half = h_size > 1 ? h_size / 2 : 1;
    char first[32], all_tp[32], part_sp[32];
    side_t a, b, c, d;
    int32_t idx[4] = { 2, 11, 5, 0 };

    snprintf(first, sizeof first, h_size == 4 ? "tp=2,sp=2" : "sp=%d", h_size);
    snprintf(all_tp, sizeof all_tp, "tp=%d", h_size);
    snprintf(part_sp, sizeof part_sp, "sp=%d", half);
    side_open(&a, 0, h_size, first, 4, 32, 4, dt, q);
    H_OK(kvmesh_cache_insert_index(a.c, 0, 4, idx));
    fill(&a, 4, 7);
    fill(&a, 3, 7);
    reshard_to(&a, &b, 0, h_size, all_tp, 4, 32, "reshard to all tp");
    gather_check(&a, h_size - 1, 4, 32, "gather of the original");
    reshard_to(&b, &c, 0, half, part_sp, 4, 32, "reshard to half the ranks");
    gather_check(&c, 0, 4, 32, "gather of a half-rank cache");
    reshard_to(&c, &d, 0, h_size, first, 4, 32, "reshard back");
    same_contents(&a, &d, 4, 32, "round trip");
    /* the same appends on both ends of the chain keep them equal */
    fill(&a, 1, 99);
    fill(&d, 1, 99);
    fill(&a, 4, 99);
    fill(&d, 4, 99);
    same_contents(&a, &d, 4, 32, "appends after the round trip");
    side_close(&a);
    side_close(&b);
    side_close(&c);
    side_close(&d);
}

/* Errors: one status everywhere, nothing changed. */
static void
errors(void)
{
    side_t a, b, c;
    kvmesh_status_t st;
    char spec[32];

    snprintf(spec, sizeof spec, "sp=%d", h_size);
    side_open(&a, 0, h_size, spec, 2, 24, 3, KVMESH_BF16, KVMESH_QUANT_NONE);
    side_open(&b, 0, h_size, "", 6, 48, 4, KVMESH_BF16, KVMESH_QUANT_NONE);
    side_open(&c, 0, h_size, "", 6, 16, 4, KVMESH_BF16, KVMESH_QUANT_INT8);
    fill(&a, 3, 0);
    st = kvmesh_cache_insert(b.c, a.c, 5, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_ERR_ARG, "slot + B_src > B_dst");
    st = kvmesh_cache_insert(b.c, a.c, -1, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_ERR_ARG, "negative slot");
    st = kvmesh_cache_insert(c.c, a.c, 0, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_ERR_ARG, "bf16 into int8");
    st = kvmesh_cache_insert(b.c, b.c, 0, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_ERR_ARG, "a cache into itself");
    if (h_size > 1) {
        st = kvmesh_cache_insert(b.c, a.c, h_rank == h_size - 1 ? 1 : 0, MPI_COMM_WORLD);
        h_expect_all(st, KVMESH_ERR_MISMATCH, "a different slot on one rank");
        st = kvmesh_cache_insert(h_rank == h_size - 1 ? c.c : b.c, a.c, 0, MPI_COMM_WORLD);
        h_expect_all(st, KVMESH_ERR_MISMATCH, "an int8 destination on one rank");
    }
    side_close(&c);
    side_open(&c, 0, h_size, "", 6, 16, 4, KVMESH_BF16, KVMESH_QUANT_NONE);
    st = kvmesh_cache_insert(c.c, a.c, 0, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_ERR_CAPACITY, "S_src > S_dst");
    /* nothing changed: b's rows are all empty still */
    {
        kvmesh_view_t *v;
        int64_t r, l;
        for (l = 0; l < NL; l++) {
            H_OK(kvmesh_cache_view(b.c, l, &v));
            for (r = 0; r < 6; r++)
                H_CHECK(kvmesh_view_indexs(v)[r] == 0, "a failed insert changed indexs");
        }
    }
    /* evict: the rows become empty */
    st = kvmesh_cache_insert(b.c, a.c, 1, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_SUCCESS, "insert before evict");
    H_OK(kvmesh_cache_evict(b.c, 1, 1));
    {
        kvmesh_view_t *v;
        H_OK(kvmesh_cache_view(b.c, 0, &v));
        H_CHECK(kvmesh_view_indexs(v)[1] == 0 && kvmesh_view_indexs(v)[2] == 3,
                "evict: indexs %d %d", kvmesh_view_indexs(v)[1], kvmesh_view_indexs(v)[2]);
    }
    st = kvmesh_cache_evict(b.c, 5, 2);
    h_expect_all(st, KVMESH_ERR_ARG, "evict past B");
    /* details whose padding bytes differ between ranks (a caller's stack)
     * are the same details: the insert goes through */
    {
        kvmesh_mask_detail_t junk[NL];
        int64_t l;
        side_close(&c);
        memset(junk, 0x40 + h_rank, sizeof junk);
        for (l = 0; l < NL; l++)
            junk[l].kind = det[l].kind, junk[l].window = det[l].window,
            junk[l].chunk = det[l].chunk;
        open_det = junk;
        side_open(&c, 0, h_size, "", 6, 48, 4, KVMESH_BF16, KVMESH_QUANT_NONE);
        open_det = det;
        st = kvmesh_cache_insert(c.c, a.c, 0, MPI_COMM_WORLD);
        h_expect_all(st, KVMESH_SUCCESS, "details with different padding on each rank");
    }
    /* an empty cache takes an insert only once every layer has storage */
    side_close(&c);
    open_empty = true;
    side_open(&c, 0, h_size, "", 6, 48, 4, KVMESH_BF16, KVMESH_QUANT_NONE);
    open_empty = false;
    st = kvmesh_cache_insert(c.c, a.c, 0, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_ERR_EMPTY, "insert into an empty cache");
    H_OK(kvmesh_cache_init_layer(c.c, 0));
    st = kvmesh_cache_init_layer(c.c, h_rank == h_size - 1 ? 2 : 1);
    h_expect_all(st, h_size > 1 ? KVMESH_ERR_MISMATCH : KVMESH_SUCCESS,
                 "init_layer of different layers on one rank");
    if (st != KVMESH_SUCCESS)
        H_OK(kvmesh_cache_init_layer(c.c, 2));
    H_OK(kvmesh_cache_init_layer(c.c, 1));
    st = kvmesh_cache_insert(c.c, a.c, 0, MPI_COMM_WORLD);
    h_expect_all(st, KVMESH_SUCCESS, "insert once every layer has storage");
    side_close(&a);
    side_close(&b);
    side_close(&c);
}

/* Rows of FULL and CHUNK layers handed to ScaLAPACK in place: pigemr2d
 * from their descriptors to one block on world rank 0 gives the gathered
 * pure's row, byte for byte (codes and scales of an int8 cache too). */
static void
scalapack_access(const char *spec, kvmesh_quant_t q)
{
    static const int64_t layers[2] = { 0, 2 };
    side_t a;
    kvmesh_pure_t *pure = NULL;
    MPI_Comm dup;
    int sys, all, root = -1, zero = 0, *umap, i, x;
    int64_t r, bad = 0, holes = 0;
    kvmesh_scalapack_t m;
    kvmesh_status_t st;
    char what[128];

    snprintf(what, sizeof what, "ScaLAPACK view of %s quant %d", spec, (int) q);
    side_open(&a, 0, h_size, spec, 2, 24, 3, KVMESH_BF16, q);
    fill(&a, 3, 0);
    fill(&a, 2, 0);
    H_OK(kvmesh_cache_gather(a.c, 0, &pure));
    MPI_Comm_dup(MPI_COMM_WORLD, &dup);
    umap = malloc((size_t) h_size * sizeof *umap);
    for (i = 0; i < h_size; i++)
        umap[i] = i;
    sys = Csys2blacs_handle(dup);
    all = sys;
    Cblacs_gridmap(&all, umap, 1, 1, h_size);
    root = sys;
    Cblacs_gridmap(&root, &zero, 1, 1, 1);
    for (i = 0; i < 2; i++)
        for (r = 0; r < 2; r++)
            for (x = 0; x < (q ? 2 : 1); x++) {
                kvmesh_view_t *v;
                kvmesh_block_t blk;
                const void *data;
                int *desc, *buf, dr[9], M, N;
                void *want;
                H_OK(kvmesh_cache_scalapack(a.c, layers[i], KVMESH_KEY, r, &m));
                H_OK(kvmesh_cache_view(a.c, layers[i], &v));
                H_OK(kvmesh_view_local(v, KVMESH_KEY, &data, &blk));
                /* I am in a grid exactly when I hold the row */
                holes += (m.context >= 0) != (r >= blk.offset[0] &&
                                              r < blk.offset[0] + blk.shape[0]);
                desc = x ? m.scale_desc : m.desc;
                M = desc[2], N = desc[3];
                buf = calloc((size_t) M * (size_t) N, sizeof *buf);
                memcpy(dr, (int[9]) { 1, root, M, N, M, N, 0, 0, M }, sizeof dr);
                Cpigemr2d(M, N, x ? (int *) (void *) m.scale_local : (int *) m.local, 1, 1,
                          desc, buf, 1, 1, dr, all);
                if (pure) {
                    int64_t shape[4], per;
                    float *sc;
                    H_OK(kvmesh_pure_array(pure, layers[i], KVMESH_KEY, &want, shape));
                    H_OK(kvmesh_pure_scales(pure, layers[i], KVMESH_KEY, &sc, &per));
                    want = x ? (void *) (sc + r * shape[1] * shape[2] * per)
                             : (char *) want + (size_t) (r * M * N) * 4;
                    bad += memcmp(buf, want, (size_t) M * (size_t) N * 4) != 0;
                }
                free(buf);
            }
    H_CHECK(bad == 0 && holes == 0, "%s: %ld rows differ, %ld grid memberships wrong", what,
            (long) bad, (long) holes);
    /* a value head dim of 5 (10 bytes in bf16, 5 int8 codes): whole words
     * only for some head counts */
    {
        kvmesh_view_t *v;
        kvmesh_block_t blk;
        const void *data;
        int odd;
        H_OK(kvmesh_cache_view(a.c, 0, &v));
        H_OK(kvmesh_view_local(v, KVMESH_VALUE, &data, &blk));
        odd = blk.shape[2] * (int64_t) kvmesh_cache_head_bytes(a.c, KVMESH_VALUE) % 4 != 0;
        MPI_Allreduce(MPI_IN_PLACE, &odd, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
        st = kvmesh_cache_scalapack(a.c, 0, KVMESH_VALUE, 0, &m);
        h_expect_all(st, odd ? KVMESH_ERR_LAYOUT : KVMESH_SUCCESS, "ScaLAPACK view of values");
        st = kvmesh_cache_scalapack(a.c, 0, KVMESH_KEY, h_rank == h_size - 1 ? 1 : 0, &m);
        h_expect_all(st, h_size > 1 ? KVMESH_ERR_MISMATCH : KVMESH_SUCCESS,
                     "ScaLAPACK view of another row on one rank");
        st = kvmesh_cache_scalapack(a.c, 0, KVMESH_KEY, 2, &m);
        h_expect_all(st, KVMESH_ERR_ARG, "ScaLAPACK view of a row past B");
    }
    Cblacs_gridexit(all);
    if (root >= 0)
        Cblacs_gridexit(root);
    Cfree_blacs_system_handle(sys);
    MPI_Comm_free(&dup);
    free(umap);
    kvmesh_pure_free(&pure);
    side_close(&a);
}

/* Every case on this world's meshes, with the caches' engine. */
static void
suite(void)
{
    static const kvmesh_dtype_t dts[4] = { KVMESH_BF16, KVMESH_F32, KVMESH_BF16, KVMESH_BF16 };
    static const kvmesh_quant_t qs[4] = { KVMESH_QUANT_NONE, KVMESH_QUANT_NONE,
                                          KVMESH_QUANT_INT8, KVMESH_QUANT_NF4 };
    char specs[64][64], one[32], half[32];
    int nm, m, k, half_n = h_size > 1 ? h_size / 2 : 1;

    nm = h_meshes(h_size, specs, 64);
    snprintf(half, sizeof half, "tp=%d", half_n);
    snprintf(one, sizeof one, "sp=%d", h_size);
    for (m = 0; m < nm; m++)
        for (k = 0; k < 4; k++) {
            /* the same ranks, another mesh; a subset; one rank */
            run(0, h_size, one, 0, h_size, specs[m], dts[k], qs[k]);
            run(0, half_n, half, 0, h_size, specs[m], dts[k], qs[k]);
            run(h_size - 1, h_size, "", 0, h_size, specs[m], dts[k], qs[k]);
        }
    /* disjoint groups: the upper half into the lower half */
    if (h_size > 1)
        for (k = 0; k < 4; k++) {
            char lo[32];
            snprintf(lo, sizeof lo, "sp=%d", half_n);
            run(half_n, h_size, "", 0, half_n, lo, dts[k], qs[k]);
        }
    for (k = 0; k < 4; k++)
        reshard_chain(dts[k], qs[k]);
    errors();
}

int
main(int argc, char **argv)
{
    char specs[64][64];
    int nm, m;

    h_init(&argc, &argv);
    nm = h_meshes(h_size, specs, 64);
    for (m = 0; m < nm; m++) {
        scalapack_access(specs[m], KVMESH_QUANT_NONE);
        scalapack_access(specs[m], KVMESH_QUANT_INT8);
    }
    suite();
    staging = 2048;                     /* moves in rounds of a few head rows */
    suite();
    staging = 0;
    engine = KVMESH_ENGINE_SCALAPACK;   /* the oracle engine: the same checks */
    suite();
    return h_finish("t_insert");
}
