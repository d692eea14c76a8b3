/* kvmesh-bench: figures against baselines measured in the same run.
 *
 *   --op init           one whole cache init vs malloc + memset of the same
 *                       bytes per rank
 *   --op concat-decode  one decode step (n = 1, every layer, rows at
 *                       different fill levels mid-cache) vs a memcpy of the
 *                       bytes the busiest rank writes, into a warm buffer
 *
 * A and B alternate within each repetition; a repetition's time is the
 * slowest rank's; the figure is the median over repetitions. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmesh.h"

typedef struct {
    const char *op, *mesh, *dtype_name;
    int64_t layers, batch, seq, kv_heads, head_dim;
    int reps, inner;
    kvmesh_dtype_t dtype;
    bool json;
} opts_t;

static int rank, nranks;

static void
usage(void)
{
    if (rank == 0)
        fprintf(stderr,
            "usage: kvmesh-bench --op init|concat-decode [--layers 8] [--batch 8]\n"
            "         [--seq 4096] [--kv-heads 8] [--head-dim 128] [--dtype bf16|f16|f32]\n"
            "         [--mesh tp=2,sp=2] [--reps N] [--inner N] [--json]\n");
}

static int
parse(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        { "op", 1, 0, 'o' }, { "layers", 1, 0, 'l' }, { "batch", 1, 0, 'b' },
        { "seq", 1, 0, 's' }, { "kv-heads", 1, 0, 'k' }, { "head-dim", 1, 0, 'd' },
        { "dtype", 1, 0, 't' }, { "mesh", 1, 0, 'm' }, { "reps", 1, 0, 'r' },
        { "inner", 1, 0, 'i' }, { "json", 0, 0, 'j' }, { "help", 0, 0, 'h' },
        { 0, 0, 0, 0 }
    };
    int c;

    *o = (opts_t) { "init", "tp=2,sp=2", "bf16", 8, 8, 4096, 8, 128, 0, 64,
                    KVMESH_BF16, false };
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o->op = optarg; break;
        case 'l': o->layers = atoll(optarg); break;
        case 'b': o->batch = atoll(optarg); break;
        case 's': o->seq = atoll(optarg); break;
        case 'k': o->kv_heads = atoll(optarg); break;
        case 'd': o->head_dim = atoll(optarg); break;
        case 't': o->dtype_name = optarg; break;
        case 'm': o->mesh = optarg; break;
        case 'r': o->reps = atoi(optarg); break;
        case 'i': o->inner = atoi(optarg); break;
        case 'j': o->json = true; break;
        default: return 1;
        }
    }
    if (!strcmp(o->dtype_name, "bf16")) o->dtype = KVMESH_BF16;
    else if (!strcmp(o->dtype_name, "f16")) o->dtype = KVMESH_F16;
    else if (!strcmp(o->dtype_name, "f32")) o->dtype = KVMESH_F32;
    else return 1;
    if (strcmp(o->op, "init") && strcmp(o->op, "concat-decode"))
        return 1;
    if (o->reps <= 0)
        o->reps = strcmp(o->op, "init") ? 21 : 5;
    return o->inner <= 0 || o->layers <= 0 || o->batch <= 0 || o->seq <= 0 ||
           o->kv_heads <= 0 || o->head_dim <= 0;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* the slowest rank's time */
static double
slowest(double t)
{
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

static void
report(const opts_t *o, double bytes, double secs, const char *base, double bsecs)
{
    if (rank != 0)
        return;
    if (o->json)
        printf("{\"op\":\"%s\",\"ranks\":%d,\"mesh\":\"%s\",\"layers\":%ld,"
               "\"batch\":%ld,\"seq\":%ld,\"kv_heads\":%ld,\"head_dim\":%ld,"
               "\"dtype\":\"%s\",\"reps\":%d,\"bytes\":%.0f,\"seconds\":%.9g,"
               "\"gbps\":%.4g,\"baseline\":\"%s\",\"baseline_seconds\":%.9g,"
               "\"ratio\":%.4g}\n",
               o->op, nranks, o->mesh, (long) o->layers, (long) o->batch,
               (long) o->seq, (long) o->kv_heads, (long) o->head_dim,
               o->dtype_name, o->reps, bytes, secs, bytes / secs / 1e9, base,
               bsecs, secs / bsecs);
    else
        printf("%-14s ranks %d mesh %s: %.0f B on the busiest rank in %.3g s "
               "(%.3g GB/s); %s %.3g s; ratio %.3f\n", o->op, nranks, o->mesh,
               bytes, secs, bytes / secs / 1e9, base, bsecs, secs / bsecs);
    fflush(stdout);
}

static kvmesh_status_t
make_cache(const opts_t *o, kvmesh_mesh_t *mesh, kvmesh_partition_t **part,
           kvmesh_cache_t **c)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_meta_t *meta = NULL;
    kvmesh_status_t st;

    kvmesh_meta_params_init(&mp);
    mp.batch_size = o->batch, mp.sequence_length = o->seq;
    mp.num_hidden_layers = o->layers, mp.num_heads = o->kv_heads;
    mp.head_dim = o->head_dim;
    st = kvmesh_meta_create(&mp, &meta);
    if (st == KVMESH_SUCCESS && !*part)
        st = kvmesh_partition_create(mesh, part);
    kvmesh_cache_params_init(&cp);
    cp.dtype = o->dtype;
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_init(meta, *part, &cp, c);
    kvmesh_meta_free(&meta);
    return st;
}

static kvmesh_status_t
bench_init(const opts_t *o, kvmesh_mesh_t *mesh)
{
    double *a = malloc((size_t) o->reps * sizeof *a), *b = malloc((size_t) o->reps * sizeof *b);
    kvmesh_partition_t *part = NULL;
    kvmesh_status_t st = KVMESH_SUCCESS;
    size_t bytes = 0;
    int r;

    for (r = 0; r < o->reps && st == KVMESH_SUCCESS; r++) {
        kvmesh_cache_t *c = NULL;
        double t0;
        char *p;

        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        st = make_cache(o, mesh, &part, &c);
        a[r] = slowest(MPI_Wtime() - t0);
        bytes = kvmesh_cache_local_bytes(c);
        kvmesh_cache_free(&c);
        if (st != KVMESH_SUCCESS)
            break;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        p = malloc(bytes);
        if (p)
            memset(p, 0, bytes);
        b[r] = slowest(MPI_Wtime() - t0);
        free(p);
        if (!p)
            st = KVMESH_ERR_NOMEM;
    }
    if (st == KVMESH_SUCCESS)
        report(o, (double) bytes, median(a, o->reps), "malloc+memset", median(b, o->reps));
    kvmesh_partition_free(&part);
    free(a);
    free(b);
    return st;
}

static kvmesh_status_t
bench_decode(const opts_t *o, kvmesh_mesh_t *mesh)
{
    double *a = malloc((size_t) o->reps * sizeof *a), *b = malloc((size_t) o->reps * sizeof *b);
    kvmesh_partition_t *part = NULL;
    kvmesh_cache_t *c = NULL;
    kvmesh_status_t st;
    kvmesh_block_t blk[2];
    int32_t *idx = NULL;
    void *in[2] = { NULL, NULL };
    char *src = NULL, *dst = NULL;
    size_t step_bytes = 0, esize = kvmesh_dtype_size(o->dtype);
    double busiest;
    int64_t l, i, bb;
    int r, t, k;

    st = make_cache(o, mesh, &part, &c);
    if (st != KVMESH_SUCCESS)
        goto done;
    for (t = 0; t < 2 && st == KVMESH_SUCCESS; t++) {
        size_t n;
        st = kvmesh_cache_input_block(c, KVMESH_MODE_DECODE, 1, (kvmesh_kv_t) t, &blk[t]);
        n = (size_t) (blk[t].shape[0] * blk[t].shape[1] * blk[t].shape[2] * blk[t].shape[3]);
        in[t] = malloc(n * esize);
        for (i = 0; in[t] && i < (int64_t) n; i++) {
            float x = (float) sin(0.001 * (double) (t * 7919 + i));
            st = kvmesh_convert((char *) in[t] + (size_t) i * esize, o->dtype,
                                &x, KVMESH_F32, 1);
        }
        if (!in[t])
            st = KVMESH_ERR_NOMEM;
    }
    /* bytes this rank writes in one step: its rows x heads x dims, K and V */
    {
        kvmesh_view_t *v = NULL;
        kvmesh_block_t lb;
        if (st == KVMESH_SUCCESS)
            st = kvmesh_cache_view(c, 0, &v);
        for (t = 0; t < 2 && st == KVMESH_SUCCESS; t++) {
            st = kvmesh_view_local(v, (kvmesh_kv_t) t, NULL, &lb);
            step_bytes += (size_t) (lb.shape[0] * lb.shape[2] * lb.shape[3]) * esize;
        }
        step_bytes *= (size_t) o->layers;
    }
    busiest = (double) step_bytes;
    MPI_Allreduce(MPI_IN_PLACE, &busiest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    src = malloc((size_t) busiest);
    dst = malloc((size_t) busiest);
    idx = malloc((size_t) o->batch * sizeof *idx);
    if (!src || !dst || !idx)
        st = KVMESH_ERR_NOMEM;
    if (st != KVMESH_SUCCESS)
        goto done;
    memset(src, 1, (size_t) busiest);
    memset(dst, 0, (size_t) busiest);
    /* rows at different fill levels in the middle of the cache */
    for (bb = 0; bb < o->batch; bb++)
        idx[bb] = (int32_t) (o->seq / 4 + bb * (o->seq / 2) / o->batch);
    if (o->seq < 4 * o->inner + 8) {
        st = KVMESH_ERR_ARG;
        goto done;
    }
    for (r = -1; r < o->reps && st == KVMESH_SUCCESS; r++) {   /* r = -1 warms up */
        double t0, ta;

        st = kvmesh_cache_insert_index(c, 0, o->batch, idx);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        for (k = 0; k < o->inner && st == KVMESH_SUCCESS; k++)
            for (l = 0; l < o->layers && st == KVMESH_SUCCESS; l++) {
                kvmesh_view_t *v;
                st = kvmesh_cache_view(c, l, &v);
                if (st == KVMESH_SUCCESS)
                        st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1,
                                                 o->dtype, in[0], in[1], NULL);
            }
        ta = slowest((MPI_Wtime() - t0) / o->inner);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        for (k = 0; k < o->inner; k++) {
            memcpy(dst, src, (size_t) busiest);
            __asm__ __volatile__("" : : "r"(dst) : "memory");
        }
        if (r >= 0) {
            b[r] = slowest((MPI_Wtime() - t0) / o->inner);
            a[r] = ta;
        } else {
            (void) slowest(0.0);
        }
    }
    if (st == KVMESH_SUCCESS)
        report(o, busiest, median(a, o->reps), "memcpy", median(b, o->reps));
done:
    free(idx);
    free(src);
    free(dst);
    free(in[0]);
    free(in[1]);
    kvmesh_cache_free(&c);
    kvmesh_partition_free(&part);
    free(a);
    free(b);
    return st;
}

int
main(int argc, char **argv)
{
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_status_t st;
    opts_t o;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (parse(argc, argv, &o)) {
        usage();
        MPI_Finalize();
        return 2;
    }
    st = kvmesh_mesh_create(MPI_COMM_WORLD, o.mesh, &mesh);
    if (st == KVMESH_SUCCESS)
        st = strcmp(o.op, "init") ? bench_decode(&o, mesh) : bench_init(&o, mesh);
    if (st != KVMESH_SUCCESS && rank == 0)
        fprintf(stderr, "kvmesh-bench: %s\n", kvmesh_strerror(st));
    kvmesh_mesh_free(&mesh);
    MPI_Finalize();
    return st == KVMESH_SUCCESS ? 0 : 1;
}
