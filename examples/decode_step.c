/* How to embed kvmesh: a chunked prefill, then decode steps whose attention
 * is computed on each rank's shard of the cache and merged over the
 * sequence-parallel ranks (flash-decoding style), checked against a serial
 * attention over the whole sequence.  README shows it shortened.
 *
 *   mpiexec -n 4 ./decode_step        (mesh tp=2,sp=2; any rank count works)
 *
 * The "model" is a deterministic generator: key, value and query of row b,
 * position p, head h, dim d are sines of those indices, so every rank makes
 * its own shard and the serial check makes them all. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <kvmesh.h>

enum { B = 2, S = 64, LAYERS = 2, H = 4, D = 16, PREFILL = 40, CHUNK = 16, STEPS = 5 };

static float
gen(int what, int64_t l, int64_t b, int64_t p, int64_t h, int64_t d)
{
    return (float) sin(0.01 * (double) (what * 7919 + l * 1009 + b * 101 + p * 7 + h * 3 + d));
}

/* bf16 rounding, as the cache stores keys and values */
static float
bf16(float x)
{
    return kvmesh_bf16_to_f32(kvmesh_f32_to_bf16(x));
}

/* Appends n tokens to layer l: this rank fills its input block of K and V
 * (what = 0, 1) for positions indexs[b] + j. */
static kvmesh_status_t
append(kvmesh_cache_t *c, int64_t l, kvmesh_mode_t mode, int64_t n,
       const kvmesh_mask_t **mask)
{
    kvmesh_view_t *v;
    kvmesh_block_t blk[2];
    float *in[2] = { NULL, NULL };
    kvmesh_status_t st = kvmesh_cache_view(c, l, &v);
    int t;

    for (t = 0; t < 2 && st == KVMESH_SUCCESS; t++) {
        int64_t b, j, h, d, i = 0;
        st = kvmesh_cache_input_block(c, mode, n, (kvmesh_kv_t) t, &blk[t]);
        in[t] = malloc(sizeof(float) * (size_t) (blk[t].shape[0] * blk[t].shape[1] *
                                                 blk[t].shape[2] * blk[t].shape[3]));
        for (b = blk[t].offset[0]; b < blk[t].offset[0] + blk[t].shape[0]; b++)
            for (j = blk[t].offset[1]; j < blk[t].offset[1] + blk[t].shape[1]; j++)
                for (h = blk[t].offset[2]; h < blk[t].offset[2] + blk[t].shape[2]; h++)
                    for (d = blk[t].offset[3]; d < blk[t].offset[3] + blk[t].shape[3]; d++)
                        in[t][i++] = gen(t, l, b, kvmesh_view_indexs(v)[b] + j, h, d);
    }
    if (st == KVMESH_SUCCESS)
        st = kvmesh_view_concatenate(v, mode, n, KVMESH_F32, in[0], in[1], mask);
    free(in[0]);
    free(in[1]);
    return st;
}

/* Attention of the new token of every local row and head of layer l over
 * the whole sequence.  Each rank scores its local slots that the mask
 * allows, keeping per (row, head) the largest score m, the sum of weights
 * e^(x - m) and the weighted sum of values; the partial results are merged
 * over the layer's kv communicator.  out: [rows][heads][D]. */
static kvmesh_status_t
attend(kvmesh_cache_t *c, int64_t l, const kvmesh_mask_t *mask, float *out)
{
    kvmesh_view_t *v;
    kvmesh_block_t kb;
    kvmesh_status_t st = kvmesh_cache_view(c, l, &v);

    if (st == KVMESH_SUCCESS)
        st = kvmesh_view_local(v, KVMESH_KEY, NULL, &kb);
    if (st != KVMESH_SUCCESS)
        return st;
    const int64_t R = kb.shape[0], ns = kb.shape[1], nh = kb.shape[2];
    const size_t row_bytes = sizeof(float) * (size_t) (ns * nh * D);
    float *k = malloc(row_bytes), *val = malloc(row_bytes), *x = malloc(sizeof(float) * (size_t) ns);
    float *m = malloc(sizeof(float) * (size_t) (R * nh)), *gm = malloc(sizeof(float) * (size_t) (R * nh));
    float *acc = calloc((size_t) (R * nh * (D + 1)), sizeof(float));  /* sum, o[D] */
    uint8_t *allow = malloc((size_t) (R * ns));

    st = kvmesh_mask_materialize(mask, allow, (size_t) (R * ns));
    for (int64_t r = 0; r < R && st == KVMESH_SUCCESS; r++) {
        int64_t row = kb.offset[0] + r, q = kvmesh_view_indexs(v)[row] - 1;
        st = kvmesh_view_read(v, KVMESH_KEY, row, 0, ns, KVMESH_F32, k, row_bytes);
        if (st == KVMESH_SUCCESS)
            st = kvmesh_view_read(v, KVMESH_VALUE, row, 0, ns, KVMESH_F32, val, row_bytes);
        for (int64_t h = 0; h < nh; h++) {
            float *a = acc + (r * nh + h) * (D + 1), mh = -INFINITY;
            for (int64_t s = 0; s < ns; s++) {
                x[s] = 0;
                for (int64_t d = 0; d < D; d++)
                    x[s] += gen(2, l, row, q, kb.offset[2] + h, d) * k[(s * nh + h) * D + d];
                x[s] /= sqrtf((float) D);
                if (allow[r * ns + s])
                    mh = fmaxf(mh, x[s]);
            }
            for (int64_t s = 0; s < ns; s++)
                if (allow[r * ns + s]) {
                    float w = expf(x[s] - mh);
                    a[0] += w;
                    for (int64_t d = 0; d < D; d++)
                        a[1 + d] += w * val[(s * nh + h) * D + d];
                }
            m[r * nh + h] = mh;
        }
    }
    /* merge: rescale every rank's part to the global max, then add */
    MPI_Comm kv = kvmesh_view_kv_comm(v);
    MPI_Allreduce(m, gm, (int) (R * nh), MPI_FLOAT, MPI_MAX, kv);
    for (int64_t i = 0; i < R * nh; i++) {
        float f = m[i] == -INFINITY ? 0.0f : expf(m[i] - gm[i]);
        for (int64_t d = 0; d <= D; d++)
            acc[i * (D + 1) + d] *= f;
    }
    MPI_Allreduce(MPI_IN_PLACE, acc, (int) (R * nh * (D + 1)), MPI_FLOAT, MPI_SUM, kv);
    for (int64_t i = 0; i < R * nh; i++)
        for (int64_t d = 0; d < D; d++)
            out[i * D + d] = acc[i * (D + 1) + 1 + d] / acc[i * (D + 1)];
    free(k), free(val), free(x), free(m), free(gm), free(acc), free(allow);
    return st;
}

/* The same attention, serially over every visible position (the check). */
static double
serial_error(kvmesh_cache_t *c, int64_t l, const float *out)
{
    kvmesh_view_t *v;
    kvmesh_block_t kb;
    double err = 0;

    if (kvmesh_cache_view(c, l, &v) || kvmesh_view_local(v, KVMESH_KEY, NULL, &kb))
        return INFINITY;
    kvmesh_mask_detail_t det = kvmesh_view_detail(v);
    for (int64_t r = 0; r < kb.shape[0]; r++)
        for (int64_t h = 0; h < kb.shape[2]; h++) {
            int64_t row = kb.offset[0] + r, gh = kb.offset[2] + h;
            int64_t q = kvmesh_view_indexs(v)[row] - 1, start = kvmesh_view_starts(v)[row];
            double x[S], m = -INFINITY, sum = 0, o[D] = { 0 };
            for (int64_t p = 0; p <= q; p++) {
                x[p] = 0;
                for (int64_t d = 0; d < D; d++)
                    x[p] += (double) gen(2, l, row, q, gh, d) * bf16(gen(0, l, row, p, gh, d));
                x[p] /= sqrt((double) D);
                if (kvmesh_mask_detail_allows(&det, start, q, p))
                    m = fmax(m, x[p]);
            }
            for (int64_t p = 0; p <= q; p++)
                if (kvmesh_mask_detail_allows(&det, start, q, p)) {
                    double w = exp(x[p] - m);
                    sum += w;
                    for (int64_t d = 0; d < D; d++)
                        o[d] += w * bf16(gen(1, l, row, p, gh, d));
                }
            for (int64_t d = 0; d < D; d++)
                err = fmax(err, fabs(out[(r * kb.shape[2] + h) * D + d] - o[d] / sum));
        }
    return err;
}

int
main(int argc, char **argv)
{
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_partition_t *part = NULL;
    kvmesh_meta_t *meta = NULL;
    kvmesh_cache_t *cache = NULL;
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    const kvmesh_mask_t *mask = NULL;
    kvmesh_mask_detail_t det[LAYERS] = { { KVMESH_MASK_FULL, 0, 0 },
                                         { KVMESH_MASK_SLIDING, 12, 0 } };
    kvmesh_status_t st;
    double err = 0;
    float out[B * H * D];
    int rank, size, step, l, n;
    char spec[32];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* heads over tp, positions over sp */
    snprintf(spec, sizeof spec, "tp=%d,sp=%d", size % 2 ? 1 : 2, size % 2 ? size : size / 2);
    kvmesh_meta_params_init(&mp);
    mp.batch_size = B, mp.sequence_length = S, mp.num_hidden_layers = LAYERS;
    mp.num_heads = H, mp.head_dim = D;
    kvmesh_cache_params_init(&cp);
    cp.details = det;
    cp.max_append = CHUNK;
    st = kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_partition_create(mesh, &part);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_meta_create(&mp, &meta);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_init(meta, part, &cp, &cache);
    /* prefill in chunks of at most max_append tokens, then decode */
    for (n = 0; st == KVMESH_SUCCESS && n < PREFILL; n += CHUNK)
        for (l = 0; l < LAYERS && st == KVMESH_SUCCESS; l++)
            st = append(cache, l, KVMESH_MODE_PREFILL,
                        PREFILL - n < CHUNK ? PREFILL - n : CHUNK, NULL);
    for (step = 0; step < STEPS && st == KVMESH_SUCCESS; step++)
        for (l = 0; l < LAYERS && st == KVMESH_SUCCESS; l++) {
            st = append(cache, l, KVMESH_MODE_DECODE, 1, &mask);
            if (st == KVMESH_SUCCESS)
                st = attend(cache, l, mask, out);
            if (st == KVMESH_SUCCESS)
                err = fmax(err, serial_error(cache, l, out));
        }
    MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
        printf("decode_step ranks=%d mesh %s: %s, largest |attention - serial| %.3g\n",
               size, spec, kvmesh_strerror(st), err);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_free(&cache);
    kvmesh_meta_free(&meta);
    kvmesh_partition_free(&part);
    kvmesh_mesh_free(&mesh);
    MPI_Finalize();
    return st == KVMESH_SUCCESS && err < 1e-5 ? 0 : 1;
}
