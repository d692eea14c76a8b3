/* kvmesh-bench: figures against baselines measured in the same run.
 *
 *   --op init           one whole cache init vs malloc + memset of the same
 *                       bytes per rank
 *   --op insert         kvmesh_cache_insert of a 1-row request on ranks
 *                       0-1 (tp=2) into slot 3 of the cache, vs an
 *                       MPI_Alltoallv of the same bytes per rank pair
 *   --op gather         kvmesh_cache_gather_into rank 0 (a reused pure) vs
 *                       an MPI_Gatherv of the same bytes per rank
 *   --op scatter        kvmesh_cache_scatter of rank 0's pure onto the mesh
 *                       (a new cache each time) vs an MPI_Scatterv
 *   --op reshard        the cache's rows into a preallocated copy on mesh
 *                       --src-mesh (default tp=N) vs an MPI_Alltoallv of
 *                       the same bytes per rank pair
 * The four redistribution ops run on --engine p2p (default), scalapack, or
 * both, interleaved with the baseline in every repetition: then the p2p
 * line also reports its speedup over ScaLAPACK and the largest speedup
 * possible, ScaLAPACK's time over the baseline's (p2p at the baseline). 
 *
 *   --op concat-decode  one decode step (n = 1, every layer, rows at
 *                       different fill levels mid-cache, past the window
 *                       for sliding layers so every append wraps the ring)
 *                       vs a memcpy of the (bf16-equivalent) bytes the
 *                       busiest rank writes, into a warm buffer
 *
 * A and B alternate within each repetition; a repetition's time is the
 * slowest rank's; the figure is the median over repetitions. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kvmesh.h"

typedef struct {
    const char *op, *mesh, *dtype_name;
    int64_t layers, batch, seq, kv_heads, head_dim;
    int64_t window;    /* > 0: every layer SLIDING with this window */
    int64_t ref_seq;   /* concat-decode: a second cache in the same run, */
    int64_t ref_window;/* ... of this length and window (-1: as the first) */
    const char *quant_name;
    kvmesh_quant_t quant;
    int reps, inner;
    kvmesh_dtype_t dtype;
    bool json;
    double fill;       /* insert, gather: filled fraction of the rows */
    int src_ranks;     /* insert: ranks of the source group */
    const char *src_mesh;
    bool src_mesh_given;
    const char *plot;          /* all: draw the figures into this PNG */
    const char *engine_name;   /* insert, gather, scatter, reshard: p2p, */
    kvmesh_engine_t engine;    /* scalapack, or both (interleaved) */
    int nengines;
} opts_t;

static int rank, nranks;

static void
usage(void)
{
    if (rank == 0)
        fprintf(stderr,
            "usage: kvmesh-bench --op init|concat-decode|insert|gather|scatter|reshard|all\n"
            "         [--layers 8] [--batch 8]\n"
            "         [--seq 4096] [--kv-heads 8] [--head-dim 128] [--dtype bf16|f16|f32]\n"
            "         [--mesh tp=2,sp=2] [--reps N] [--inner N] [--window W]\n"
            "         [--quant none|int8|nf4] [--ref-seq S] [--ref-window W] [--json]\n"
            "         [--fill F] [--src-ranks N] [--src-mesh SPEC] [--engine p2p|scalapack|both]\n"
            "               (insert, gather, scatter, reshard; --src-mesh is the request's\n"
            "               mesh for insert, the new one for reshard)\n"
            "  --op all        every op with its baselines; --plot FILE.png also draws\n"
            "               decode-append time against cache length and the four\n"
            "               redistributions' bandwidth against their MPI baselines\n"
            "  --window W      every layer SLIDING with window W (0: FULL)\n"
            "  --ref-seq S, --ref-window W  concat-decode: also time a second cache\n"
            "               (S positions, window W; 0: FULL), interleaved in the same\n"
            "               run, and report seconds / its seconds as ref_ratio\n");
}

static int
default_reps(const char *op)
{
    return !strcmp(op, "init") ? 5 : !strcmp(op, "concat-decode") ? 51 : 11;
}

static int
parse(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        { "op", 1, 0, 'o' }, { "layers", 1, 0, 'l' }, { "batch", 1, 0, 'b' },
        { "seq", 1, 0, 's' }, { "kv-heads", 1, 0, 'k' }, { "head-dim", 1, 0, 'd' },
        { "dtype", 1, 0, 't' }, { "mesh", 1, 0, 'm' }, { "reps", 1, 0, 'r' },
        { "inner", 1, 0, 'i' }, { "ref-seq", 1, 0, 'q' },
        { "window", 1, 0, 'w' }, { "ref-window", 1, 0, 'W' }, { "quant", 1, 0, 'Q' }, { "json", 0, 0, 'j' }, { "help", 0, 0, 'h' },
        { "fill", 1, 0, 'F' }, { "src-ranks", 1, 0, 'R' }, { "src-mesh", 1, 0, 'M' },
        { "engine", 1, 0, 'E' }, { "plot", 1, 0, 'P' },
        { 0, 0, 0, 0 }
    };
    int c;

    *o = (opts_t) { "init", "tp=2,sp=2", "bf16", 8, 8, 4096, 8, 128, 0, 0, -1,
                    "none", KVMESH_QUANT_NONE, 0, 64, KVMESH_BF16, false, 1.0,
                    nranks < 2 ? nranks : 2, NULL, false, NULL, "p2p", KVMESH_ENGINE_P2P, 1 };
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
        case 'q': o->ref_seq = atoll(optarg); break;
        case 'w': o->window = atoll(optarg); break;
        case 'W': o->ref_window = atoll(optarg); break;
        case 'Q': o->quant_name = optarg; break;
        case 'j': o->json = true; break;
        case 'F': o->fill = atof(optarg); break;
        case 'R': o->src_ranks = atoi(optarg); break;
        case 'M': o->src_mesh = optarg, o->src_mesh_given = true; break;
        case 'E': o->engine_name = optarg; break;
        case 'P': o->plot = optarg; break;
        default: return 1;
        }
    }
    if (!strcmp(o->dtype_name, "bf16")) o->dtype = KVMESH_BF16;
    else if (!strcmp(o->dtype_name, "f16")) o->dtype = KVMESH_F16;
    else if (!strcmp(o->dtype_name, "f32")) o->dtype = KVMESH_F32;
    else return 1;
    if (strcmp(o->op, "init") && strcmp(o->op, "concat-decode") &&
        strcmp(o->op, "insert") && strcmp(o->op, "gather") && strcmp(o->op, "reshard") &&
        strcmp(o->op, "scatter") && strcmp(o->op, "all"))
        return 1;
    if (!o->src_mesh && !strcmp(o->op, "reshard")) {
        static char all_tp[32];
        snprintf(all_tp, sizeof all_tp, "tp=%d", nranks);
        o->src_mesh = all_tp;
    }
    if (!o->src_mesh)
        o->src_mesh = o->src_ranks == 2 ? "tp=2" : "";
    if (o->fill <= 0.0 || o->fill > 1.0 || o->src_ranks < 1 || o->src_ranks > nranks)
        return 1;
    if (!strcmp(o->engine_name, "p2p")) o->engine = KVMESH_ENGINE_P2P;
    else if (!strcmp(o->engine_name, "scalapack")) o->engine = KVMESH_ENGINE_SCALAPACK;
    else if (!strcmp(o->engine_name, "both")) o->nengines = 2;
    else return 1;
    if (!strcmp(o->quant_name, "none")) o->quant = KVMESH_QUANT_NONE;
    else if (!strcmp(o->quant_name, "int8")) o->quant = KVMESH_QUANT_INT8;
    else if (!strcmp(o->quant_name, "nf4")) o->quant = KVMESH_QUANT_NF4;
    else return 1;
    if (o->reps <= 0)
        o->reps = default_reps(o->op);
    return o->inner <= 0 || o->layers <= 0 || o->batch <= 0 || o->seq <= 0 ||
           o->kv_heads <= 0 || o->head_dim <= 0;
}

static int64_t
ref_seq_of(const opts_t *o)
{
    return o->ref_seq ? o->ref_seq : o->seq;
}

static int64_t
ref_window_of(const opts_t *o)
{
    return o->ref_window >= 0 ? o->ref_window : o->window;
}

static bool
has_ref(const opts_t *o)
{
    return o->ref_seq || o->ref_window >= 0;
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

/* The last figure reported (rank 0), for --op all. */
static struct {
    double bytes, secs, bsecs;
} last;

static void
report(const opts_t *o, double bytes, double secs, const char *base, double bsecs,
       double ref_secs, double cold_secs)
{
    char extra[320] = "";
    size_t len = 0;

    if (rank != 0)
        return;
    last.bytes = bytes, last.secs = secs, last.bsecs = bsecs;
    len += (size_t) snprintf(extra, sizeof extra, ",\"window\":%ld,\"quant\":\"%s\"",
                             (long) o->window, o->quant_name);
    if (ref_secs > 0.0)
        len += (size_t) snprintf(extra + len, sizeof extra - len, ",\"ref_seq\":%ld,"
                                 "\"ref_window\":%ld,\"ref_seconds_same_bytes\":%.9g,"
                                 "\"ref_ratio\":%.4g", (long) ref_seq_of(o),
                                 (long) ref_window_of(o), ref_secs, secs / ref_secs);
    if (cold_secs > 0.0)
        snprintf(extra + len, sizeof extra - len, ",\"cold_baseline\":"
                 "\"memcpy to untouched lines\",\"cold_seconds\":%.9g,"
                 "\"cold_ratio\":%.4g", cold_secs, secs / cold_secs);
    if (o->json)
        printf("{\"op\":\"%s\",\"ranks\":%d,\"mesh\":\"%s\",\"layers\":%ld,"
               "\"batch\":%ld,\"seq\":%ld,\"kv_heads\":%ld,\"head_dim\":%ld,"
               "\"dtype\":\"%s\",\"reps\":%d,\"bytes\":%.0f,\"seconds\":%.9g,"
               "\"gbps\":%.4g,\"baseline\":\"%s\",\"baseline_seconds\":%.9g,"
               "\"ratio\":%.4g%s}\n",
               o->op, nranks, o->mesh, (long) o->layers, (long) o->batch,
               (long) o->seq, (long) o->kv_heads, (long) o->head_dim,
               o->dtype_name, o->reps, bytes, secs, bytes / secs / 1e9, base,
               bsecs, secs / bsecs, extra);
    else
        printf("%-14s ranks %d mesh %s: %.0f B on the busiest rank in %.3g s "
               "(%.3g GB/s); %s %.3g s; ratio %.3f\n", o->op, nranks, o->mesh,
               bytes, secs, bytes / secs / 1e9, base, bsecs, secs / bsecs);
    if (!o->json && cold_secs > 0.0)
        printf("%-14s memcpy to untouched lines %.3g s; ratio %.3f\n", "",
               cold_secs, secs / cold_secs);
    if (!o->json && ref_secs > 0.0)
        printf("%-14s %ld positions, window %ld: %.3g s; ratio %.3f to %ld positions, "
               "window %ld\n", "", (long) o->seq, (long) o->window, secs,
               secs / ref_secs, (long) ref_seq_of(o), (long) ref_window_of(o));
    fflush(stdout);
}

static kvmesh_status_t
make_cache(const opts_t *o, kvmesh_mesh_t *mesh, kvmesh_partition_t **part,
           kvmesh_cache_t **c)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_meta_t *meta = NULL;
    kvmesh_mask_detail_t *det = NULL;
    kvmesh_status_t st;
    int64_t l;

    kvmesh_meta_params_init(&mp);
    mp.batch_size = o->batch, mp.sequence_length = o->seq;
    mp.num_hidden_layers = o->layers, mp.num_heads = o->kv_heads;
    mp.head_dim = o->head_dim;
    st = kvmesh_meta_create(&mp, &meta);
    if (st == KVMESH_SUCCESS && !*part)
        st = kvmesh_partition_create(mesh, part);
    kvmesh_cache_params_init(&cp);
    cp.dtype = o->dtype;
    cp.quant = o->quant;
    cp.engine = o->engine;
    if (o->window > 0) {
        det = malloc((size_t) o->layers * sizeof *det);
        for (l = 0; det && l < o->layers; l++)
            det[l] = (kvmesh_mask_detail_t) { KVMESH_MASK_SLIDING, o->window, 0 };
        if (!det && st == KVMESH_SUCCESS)
            st = KVMESH_ERR_NOMEM;
        cp.details = det;
    }
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_init(meta, *part, &cp, c);
    kvmesh_meta_free(&meta);
    free(det);
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
        /* keep the compiler from fusing malloc + memset into calloc (which
         * would skip the page touches) or eliding the pair altogether */
        __asm__ __volatile__("" : "+r"(p));
        if (p)
            memset(p, 0, bytes);
        __asm__ __volatile__("" : : "r"(p) : "memory");
        b[r] = slowest(MPI_Wtime() - t0);
        free(p);
        if (!p)
            st = KVMESH_ERR_NOMEM;
    }
    if (st == KVMESH_SUCCESS)
        report(o, (double) bytes, median(a, o->reps), "malloc+memset",
               median(b, o->reps), 0.0, 0.0);
    kvmesh_partition_free(&part);
    free(a);
    free(b);
    return st;
}

/* One decode workload: a cache whose rows sit at different fill levels in
 * the middle of the cache, and one token per row of input. */
typedef struct {
    kvmesh_partition_t *part;
    kvmesh_cache_t *c;
    void *in[2];
    int32_t *idx;
    int64_t seq, done;     /* steps taken since the rows were last reset */
    kvmesh_block_t local;  /* this rank's key block (dimension 1: slots) */
    int64_t len;           /* storage slots per row: seq, or the ring's */
    size_t tok_bytes;      /* K + V bytes of one token of one local row, as
                              bf16 for quantized caches */
    size_t stored_bytes;   /* what the cache stores for them: codes and
                              scales when quantized (DESIGN section 6) */
} decode_t;

static void
decode_free(decode_t *d)
{
    kvmesh_cache_free(&d->c);
    kvmesh_partition_free(&d->part);
    free(d->in[0]);
    free(d->in[1]);
    free(d->idx);
}

static kvmesh_status_t
decode_setup(const opts_t *o, int64_t seq, int64_t window, kvmesh_mesh_t *mesh,
             decode_t *d)
{
    opts_t oo = *o;
    size_t esize = kvmesh_dtype_size(o->dtype);
    kvmesh_status_t st;
    kvmesh_view_t *v = NULL;
    int64_t i, b;
    int t;

    memset(d, 0, sizeof *d);
    oo.seq = seq;
    oo.window = window;
    d->seq = seq;
    d->done = seq;          /* forces a reset before the first run */
    if (seq < 4 * o->inner + 8)
        return KVMESH_ERR_ARG;
    st = make_cache(&oo, mesh, &d->part, &d->c);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_view(d->c, 0, &v);
    for (t = 0; t < 2 && st == KVMESH_SUCCESS; t++) {
        kvmesh_block_t blk;
        size_t n;

        st = kvmesh_cache_input_block(d->c, KVMESH_MODE_DECODE, 1, (kvmesh_kv_t) t, &blk);
        n = (size_t) (blk.shape[0] * blk.shape[1] * blk.shape[2] * blk.shape[3]);
        d->in[t] = malloc(n * esize);
        if (!d->in[t]) {
            st = KVMESH_ERR_NOMEM;
            break;
        }
        for (i = 0; i < (int64_t) n && st == KVMESH_SUCCESS; i++) {
            float x = (float) sin(0.001 * (double) (t * 7919 + i));
            st = kvmesh_convert((char *) d->in[t] + (size_t) i * esize, o->dtype,
                                &x, KVMESH_F32, 1);
        }
        if (st == KVMESH_SUCCESS)
            st = kvmesh_view_local(v, (kvmesh_kv_t) t, NULL, &blk);
        if (t == 0) {
            d->local = blk;
            d->len = blk.global[1];     /* S, or a ring's W + A - 1 and more */
        }
        d->tok_bytes += (size_t) (blk.shape[2] * blk.shape[3]) *
                        (o->quant ? 2 : esize);
        /* int8: D codes + 1 f32 scale per head vector; nf4: two codes a
         * byte + 1 f32 absmax per 64 elements */
        d->stored_bytes += (size_t) blk.shape[2] *
            (o->quant == KVMESH_QUANT_INT8 ? (size_t) blk.shape[3] + 4
             : o->quant == KVMESH_QUANT_NF4 ? (size_t) (blk.shape[3] + 1) / 2 +
                                              4 * (size_t) ((blk.shape[3] + 63) / 64)
             : (size_t) blk.shape[3] * esize);
    }
    if (st == KVMESH_SUCCESS && window > 0 && seq < 2 * d->len + 4 * o->inner)
        st = KVMESH_ERR_ARG;    /* every append must wrap the ring */
    d->idx = malloc((size_t) o->batch * sizeof *d->idx);
    if (!d->idx && st == KVMESH_SUCCESS)
        st = KVMESH_ERR_NOMEM;
    /* full layers: rows spread over the middle half of the cache; rings:
     * past the window (every append overwrites), rows spread evenly over
     * the slots, so each kv block holds as many rows in both layouts */
    for (b = 0; d->idx && b < o->batch; b++)
        d->idx[b] = (int32_t) (window > 0 ? d->len + b * d->len / o->batch
                                          : seq / 4 + b * (seq / 2) / o->batch);
    return st;
}

/* Bytes this rank writes per step, averaged over the next o->inner steps:
 * only the tokens that land in its kv block, in every layer. */
static double
decode_bytes(const opts_t *o, decode_t *d)
{
    const kvmesh_block_t *b = &d->local;
    kvmesh_view_t *v = NULL;
    const int32_t *idx;
    double bytes = 0.0;
    int64_t r, k;

    if (kvmesh_cache_view(d->c, 0, &v) != KVMESH_SUCCESS)
        return 0.0;
    idx = kvmesh_view_indexs(v);
    for (r = b->offset[0]; r < b->offset[0] + b->shape[0]; r++)
        for (k = 0; k < o->inner; k++) {
            int64_t slot = (idx[r] + k) % d->len;    /* = position unless a ring */
            if (slot >= b->offset[1] && slot < b->offset[1] + b->shape[1])
                bytes += (double) d->tok_bytes;
        }
    return bytes * (double) o->layers / o->inner;
}

/* Slowest rank's time of one decode step (all layers), over o->inner steps.
 * Rows keep growing from run to run, so every step writes positions that
 * were not written before (cold lines, as in a real decode); they go back
 * to their initial fill levels when the last row would pass 3/4 of a full
 * cache or the end of a ring's. */
static kvmesh_status_t
decode_run(const opts_t *o, decode_t *d, double *secs, double *bytes)
{
    kvmesh_status_t st = KVMESH_SUCCESS;
    double t0;
    int64_t l;
    int k;

    /* full layers stay in the middle of the cache (rows near 1/4 .. 3/4);
     * rings may run up to the cache's end */
    if (d->idx[o->batch - 1] + d->done + o->inner >
        (d->len < d->seq ? d->seq : d->seq * 3 / 4 + o->inner)) {
        st = kvmesh_cache_insert_index(d->c, 0, o->batch, d->idx);
        d->done = 0;
    }
    d->done += o->inner;
    *bytes = decode_bytes(o, d);
    MPI_Allreduce(MPI_IN_PLACE, bytes, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    for (k = 0; k < o->inner && st == KVMESH_SUCCESS; k++)
        for (l = 0; l < o->layers && st == KVMESH_SUCCESS; l++) {
            kvmesh_view_t *v;
            st = kvmesh_cache_view(d->c, l, &v);
            if (st == KVMESH_SUCCESS)
                st = kvmesh_view_concatenate(v, KVMESH_MODE_DECODE, 1, o->dtype,
                                             d->in[0], d->in[1], NULL);
        }
    *secs = slowest((MPI_Wtime() - t0) / o->inner);
    return st;
}

static kvmesh_status_t
bench_decode(const opts_t *o, kvmesh_mesh_t *mesh)
{
    double *a = calloc((size_t) o->reps, sizeof *a), *b = calloc((size_t) o->reps, sizeof *b);
    double *c = calloc((size_t) o->reps, sizeof *c), *w = calloc((size_t) o->reps, sizeof *w);
    double *cw = calloc((size_t) o->reps, sizeof *cw);
    decode_t main_w, ref_w;
    kvmesh_status_t st, st2 = KVMESH_SUCCESS;
    char *src = NULL, *dst = NULL;
    double *e = calloc((size_t) o->reps, sizeof *e), *f = calloc((size_t) o->reps, sizeof *f);
    char *cold = NULL;
    size_t most, cold_len = 0, cold_off = 0;
    int r, k;

    st = decode_setup(o, o->seq, o->window, mesh, &main_w);
    if (has_ref(o))
        st2 = decode_setup(o, ref_seq_of(o), ref_window_of(o), mesh, &ref_w);
    if (st == KVMESH_SUCCESS)
        st = st2;
    most = (size_t) main_w.local.shape[0] * main_w.tok_bytes * (size_t) o->layers;
    src = malloc(most + 1);
    dst = malloc(most + 1);
    /* the cold baseline writes lines untouched since they were faulted in,
     * as a decode step does: 64 MiB, 4x the last-level cache, reused
     * round-robin */
    cold_len = (size_t) 64 << 20;
    cold = malloc(cold_len + most);
    if ((!src || !dst || !a || !b || !c || !w || !e || !f || !cold) && st == KVMESH_SUCCESS)
        st = KVMESH_ERR_NOMEM;
    if (st != KVMESH_SUCCESS)
        goto done;
    memset(src, 1, most);
    memset(dst, 0, most);
    memset(cold, 0, cold_len + most);
    /* A (and the second length), then B, in every repetition; r = -1 warms.
     * B copies what the busiest rank wrote per step in that repetition. */
    for (r = -1; r < o->reps && st == KVMESH_SUCCESS; r++) {
        double ta, tb, tc = 0.0, tc2, tw, t0, bytes, junk = 0.0;

        st = decode_run(o, &main_w, &ta, &bytes);
        if (st == KVMESH_SUCCESS && has_ref(o))
            st = decode_run(o, &ref_w, &tc, &junk);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        for (k = 0; k < o->inner; k++) {
            memcpy(dst, src, (size_t) bytes);
            __asm__ __volatile__("" : : "r"(dst) : "memory");
        }
        tb = slowest((MPI_Wtime() - t0) / o->inner);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        for (k = 0; k < o->inner; k++) {
            memcpy(cold + cold_off, src, (size_t) bytes);
            __asm__ __volatile__("" : : "r"(cold) : "memory");
            cold_off = (cold_off + (size_t) bytes + 63) / 64 * 64 % cold_len;
        }
        tc2 = slowest((MPI_Wtime() - t0) / o->inner);
        /* the memory's write bandwidth, over as many untouched bytes and as
         * long a time as the measured steps: one memset of inner x bytes */
        if (cold_off + (size_t) bytes * (size_t) o->inner > cold_len)
            cold_off = 0;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        memset(cold + cold_off, r & 0x7f, (size_t) bytes * (size_t) o->inner);
        __asm__ __volatile__("" : : "r"(cold) : "memory");
        tw = slowest(MPI_Wtime() - t0);
        cold_off = (cold_off + (size_t) bytes * (size_t) o->inner + 63) / 64 * 64 % cold_len;
        if (r >= 0)
            a[r] = ta, b[r] = tb, c[r] = tc, w[r] = bytes, e[r] = tc2,
            f[r] = bytes * o->inner / tw, cw[r] = junk;
    }
    if (st == KVMESH_SUCCESS) {
        double secs = median(a, o->reps), cold_secs = median(e, o->reps);
        double bytes = median(w, o->reps), bw = median(f, o->reps);
        double base = median(b, o->reps);
        /* the second cache may put a different share of the rows on the
         * busiest rank: compare seconds per byte */
        report(o, bytes, secs, "memcpy", base,
               has_ref(o) ? median(c, o->reps) * bytes / median(cw, o->reps) : 0.0,
               cold_secs);
        /* no implementation can store these bytes faster than the memory
         * takes them: the least ratio this machine allows (a quantized
         * cache stores fewer bytes than the bf16 ones the ratio counts) */
        double stored = bytes * (double) main_w.stored_bytes / (double) main_w.tok_bytes;
        if (rank == 0 && o->json)
            printf("{\"op\":\"concat-decode-limit\",\"ranks\":%d,\"mesh\":\"%s\","
                   "\"seq\":%ld,\"quant\":\"%s\",\"bytes\":%.0f,\"stored_bytes\":%.0f,"
                   "\"write_gbps\":%.4g,\"limit_seconds\":%.9g,\"baseline_seconds\":%.9g,"
                   "\"limit_ratio\":%.4g,\"ratio\":%.4g,\"fraction_of_limit\":%.4g}\n",
                   nranks, o->mesh, (long) o->seq, o->quant_name, bytes, stored,
                   bw / 1e9, stored / bw, base, stored / bw / base, secs / base,
                   stored / bw / secs);
        else if (rank == 0)
            printf("%-14s memory write bandwidth %.3g GB/s: storing %.0f B takes "
                   ">= %.3g s, ratio >= %.3f; this step runs at %.0f%% of that\n", "",
                   bw / 1e9, stored, stored / bw, stored / bw / base,
                   100.0 * stored / bw / secs);
    }
done:
    free(src);
    free(dst);
    free(cold);
    free(e);
    free(f);
    decode_free(&main_w);
    if (has_ref(o))
        decode_free(&ref_w);
    free(a);
    free(b);
    free(c);
    free(w);
    free(cw);
    return st;
}

/* ---- insert and gather ------------------------------------------------ */

/* Largest growth of the resident set on any rank since \p kib0, MiB. */
static double
rss_growth(long kib0)
{
    struct rusage ru;
    double g;

    getrusage(RUSAGE_SELF, &ru);
    g = (double) (ru.ru_maxrss - kib0) / 1024.0;
    MPI_Allreduce(MPI_IN_PLACE, &g, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return g;
}

static long
rss_now(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Bytes of the filled positions [0, L) of global row \p row that this
 * rank holds of cache c, every layer, K and V. */
static double
held_bytes(kvmesh_cache_t *c, int64_t row, int64_t L)
{
    double bytes = 0;
    int64_t l, lo, hi;
    int t;

    for (l = 0; l < kvmesh_cache_layers(c); l++) {
        kvmesh_view_t *v;
        kvmesh_block_t blk;
        if (kvmesh_cache_view(c, l, &v))
            return 0;
        for (t = 0; t < 2; t++) {
            if (kvmesh_view_local(v, (kvmesh_kv_t) t, NULL, &blk) ||
                row < blk.offset[0] || row >= blk.offset[0] + blk.shape[0])
                continue;
            lo = blk.offset[1], hi = blk.offset[1] + blk.shape[1];
            hi = hi < L ? hi : L;
            if (hi > lo)
                bytes += (double) (hi - lo) * (double) blk.shape[2] *
                         (double) kvmesh_cache_head_bytes(c, (kvmesh_kv_t) t);
        }
    }
    return bytes;
}

/* scatter: the median time of creating the destination alone and touching
 * its bytes for the first time (in the same run), which a scatter includes
 * and its baseline does not */
static double creation;

/* The summary line of a redistribution op on one engine (\p sl: the
 * ScaLAPACK engine's seconds in the same run when this is p2p, else 0). */
static void
report_redist(const opts_t *o, const char *engine, double moved, double secs, const char *base,
              double bsecs, double rss, double sl)
{
    char extra[192] = "", text[192] = "";
    size_t n;

    if (rank != 0)
        return;
    if (strcmp(engine, "scalapack"))
        last.bytes = moved, last.secs = secs, last.bsecs = bsecs;
    if (sl > 0) {
        snprintf(extra, sizeof extra, ",\"speedup_vs_scalapack\":%.4g,\"speedup_bound\":%.4g",
                 sl / secs, sl / bsecs);
        snprintf(text, sizeof text, "; %.3gx ScaLAPACK's speed (at most %.3gx)", sl / secs,
                 sl / bsecs);
    }
    if (creation > 0) {
        n = strlen(extra);
        snprintf(extra + n, sizeof extra - n, ",\"init_seconds\":%.9g,\"ratio_beyond_init\":%.4g",
                 creation, (secs - creation) / bsecs);
        n = strlen(text);
        snprintf(text + n, sizeof text - n, "; creating and first touching the cache alone %.3g s, ratio beyond it "
                 "%.3f", creation, (secs - creation) / bsecs);
    }
    if (o->json)
        printf("{\"op\":\"%s\",\"engine\":\"%s\",\"ranks\":%d,\"mesh\":\"%s\","
               "\"src_mesh\":\"%s\",\"dst_mesh\":\"%s\",\"src_ranks\":%d,\"layers\":%ld,\"batch\":%ld,"
               "\"seq\":%ld,\"kv_heads\":%ld,\"head_dim\":%ld,\"dtype\":\"%s\","
               "\"quant\":\"%s\",\"fill\":%.3g,\"reps\":%d,\"moved_bytes\":%.0f,"
               "\"seconds\":%.9g,\"gbps\":%.4g,\"baseline\":\"%s\","
               "\"baseline_seconds\":%.9g,\"ratio\":%.4g,\"peak_rss_growth_mib\":%.1f%s}\n",
               o->op, engine, nranks, o->mesh,
               strcmp(o->op, "insert") ? o->mesh : o->src_mesh,
               !strcmp(o->op, "reshard") ? o->src_mesh : !strcmp(o->op, "gather") ? "root 0"
                                                                                  : o->mesh,
               strcmp(o->op, "insert") ? nranks : o->src_ranks, (long) o->layers,
               (long) o->batch, (long) o->seq, (long) o->kv_heads, (long) o->head_dim,
               o->dtype_name, o->quant_name, o->fill, o->reps, moved, secs,
               moved / secs / 1e9, base, bsecs, secs / bsecs, rss, extra);
    else
        printf("%-8s %-9s ranks %d mesh %s: %.0f B moved in %.3g s (%.3g GB/s); %s %.3g s; "
               "ratio %.3f; peak RSS growth %.1f MiB%s\n", o->op, engine, nranks, o->mesh,
               moved, secs, moved / secs / 1e9, base, bsecs, secs / bsecs, rss, text);
    fflush(stdout);
}

/* The engines of a run, in the order they are timed. */
static kvmesh_engine_t
engine_at(const opts_t *o, int e)
{
    return o->nengines == 2 ? (e ? KVMESH_ENGINE_SCALAPACK : KVMESH_ENGINE_P2P) : o->engine;
}

/* Reports every engine timed (a: [engine][rep] seconds, b: the baseline). */
static void
report_engines(const opts_t *o, double moved, double *a, const char *base, double *b,
               double rss)
{
    double bs = median(b, o->reps), m[2];
    int e;

    for (e = 0; e < o->nengines; e++)
        m[e] = median(a + e * o->reps, o->reps);
    for (e = 0; e < o->nengines; e++)
        report_redist(o, engine_at(o, e) == KVMESH_ENGINE_P2P ? "p2p" : "scalapack", moved,
                      m[e], base, bs, rss, o->nengines == 2 && e == 0 ? m[1] : 0.0);
}

/* This rank's key block of layer 0 as [lo, len] x 4 (all -1 without c). */
static void
key_box(kvmesh_cache_t *c, int64_t box[8])
{
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    int i;

    for (i = 0; i < 8; i++)
        box[i] = -1;
    if (c && !kvmesh_cache_view(c, 0, &v) && !kvmesh_view_local(v, KVMESH_KEY, NULL, &blk))
        for (i = 0; i < 4; i++)
            box[2 * i] = blk.offset[i], box[2 * i + 1] = blk.shape[i];
}

static int64_t
overlap(const int64_t *a, const int64_t *b, int64_t cap)
{
    int64_t lo = a[0] > b[0] ? a[0] : b[0], hi = a[0] + a[1] < b[0] + b[1] ? a[0] + a[1]
                                                                        : b[0] + b[1];
    hi = hi < cap ? hi : cap;
    return hi > lo ? hi - lo : 0;
}

/* The bytes each rank pair moves when src's rows go to dst's rows from
 * slot on (FULL layers, positions [0, L)): the overlap of their key
 * blocks, each block of the source taken once, from the destination's own
 * rank when it holds a replica, else from the first rank that does.  sc,
 * rc: this rank's sends and receives per rank; returns the total. */
static double
pair_bytes(const opts_t *o, kvmesh_cache_t *dst, kvmesh_cache_t *src, int64_t slot, int64_t L,
           int *sc, int *rc)
{
    int64_t mine[16], *box = malloc(16 * (size_t) nranks * sizeof *box);
    double moved = 0, pair;
    int q, s, k, from;

    if (!box)
        return 0;
    key_box(src, mine);
    if (mine[0] >= 0)
        mine[0] += slot;                /* source rows as destination rows */
    key_box(dst, mine + 8);
    MPI_Allgather(mine, 16, MPI_INT64_T, box, 16, MPI_INT64_T, MPI_COMM_WORLD);
    for (q = 0; q < nranks; q++)
        for (s = 0; s < nranks; s++) {
            const int64_t *bs = box + 16 * s, *bd = box + 16 * q + 8;
            if (bs[0] < 0 || bd[0] < 0)
                continue;
            for (k = 0; k < s && memcmp(box + 16 * k, bs, 8 * sizeof *bs); k++)
                ;
            if (k < s)
                continue;                   /* counted with its first replica */
            from = s;
            for (k = s; k < nranks; k++)
                if (k == q && !memcmp(box + 16 * k, bs, 8 * sizeof *bs))
                    from = q;
            pair = (double) overlap(bs, bd, INT64_MAX) * (double) overlap(bs + 2, bd + 2, L) *
                   (double) overlap(bs + 4, bd + 4, INT64_MAX) *
                   (double) overlap(bs + 6, bd + 6, INT64_MAX) *
                   (double) kvmesh_dtype_size(o->dtype) * 2.0 * (double) o->layers;
            moved += pair;
            if (from == rank)
                sc[q] = (int) pair;
            if (q == rank)
                rc[from] = (int) pair;
        }
    free(box);
    return moved;
}

/* Times n insert calls of src's rows into dst at slot against an
 * MPI_Alltoallv of sc[] / rc[] bytes per rank pair between warm buffers,
 * alternating, and reports them (moved: bytes in all). */
static kvmesh_status_t
insert_vs_alltoallv(const opts_t *o, kvmesh_cache_t *dst, kvmesh_cache_t *src, int64_t slot,
                    int *sc, int *rc, double moved)
{
    double *a = malloc(2 * (size_t) o->reps * sizeof *a);
    double *b = malloc((size_t) o->reps * sizeof *b);
    int *sd = calloc((size_t) nranks, sizeof *sd), *rd = calloc((size_t) nranks, sizeof *rd);
    size_t sn, rn;
    char *sbuf, *rbuf;
    kvmesh_status_t st = KVMESH_SUCCESS;
    long kib0;
    int p, r;

    for (p = 1; sd && rd && p < nranks; p++)
        sd[p] = sd[p - 1] + sc[p - 1], rd[p] = rd[p - 1] + rc[p - 1];
    sn = sd ? (size_t) (sd[nranks - 1] + sc[nranks - 1]) + 1 : 1;
    rn = rd ? (size_t) (rd[nranks - 1] + rc[nranks - 1]) + 1 : 1;
    /* the baseline's buffers warm before the resident set is read: the
     * growth is the library's */
    sbuf = malloc(sn), rbuf = malloc(rn);
    if (!a || !b || !sd || !rd || !sbuf || !rbuf)
        st = KVMESH_ERR_NOMEM;
    else
        memset(sbuf, 1, sn), memset(rbuf, 1, rn);
    kib0 = rss_now();
    for (r = 0; r < o->reps && st == KVMESH_SUCCESS; r++) {
        double t0;
        int e;
        for (e = 0; e < o->nengines && st == KVMESH_SUCCESS; e++) {
            if (dst)
                st = kvmesh_cache_set_engine(dst, engine_at(o, e));
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = MPI_Wtime();
            st = kvmesh_cache_insert(dst, src, slot, MPI_COMM_WORLD);
            a[e * o->reps + r] = slowest(MPI_Wtime() - t0);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        MPI_Alltoallv(sbuf, sc, sd, MPI_BYTE, rbuf, rc, rd, MPI_BYTE, MPI_COMM_WORLD);
        b[r] = slowest(MPI_Wtime() - t0);
    }
    if (st == KVMESH_SUCCESS)
        report_engines(o, moved, a, "MPI_Alltoallv", b, rss_growth(kib0));
    free(a), free(b), free(sd), free(rd), free(sbuf), free(rbuf);
    return st;
}

/* Positions the redistribution ops fill in each row: --fill of --seq, at
 * least one. */
static int64_t
filled(const opts_t *o)
{
    const int64_t L = (int64_t) (o->fill * (double) o->seq);

    return L > 0 ? L : 1;
}

/* Rows [0, B) of c hold L positions (their indexs; the bytes are the
 * zeros of a new cache, which move like any others). */
static kvmesh_status_t
fill_rows(kvmesh_cache_t *c, int64_t B, int64_t L)
{
    int32_t *idx = malloc((size_t) B * sizeof *idx);
    kvmesh_status_t st = idx ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM;
    int64_t row;

    for (row = 0; idx && row < B; row++)
        idx[row] = (int32_t) L;
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_insert_index(c, 0, B, idx);
    free(idx);
    return st;
}

static kvmesh_status_t
bench_insert(const opts_t *o, kvmesh_mesh_t *mesh)
{
    const int in = rank < o->src_ranks;
    const int64_t slot = o->batch > 3 ? 3 : o->batch - 1;
    const int64_t L = filled(o);
    kvmesh_partition_t *dpart = NULL, *spart = NULL;
    kvmesh_cache_t *dst = NULL, *src = NULL;
    kvmesh_mesh_t *smesh = NULL;
    kvmesh_status_t st;
    MPI_Comm group;
    opts_t so = *o;
    double moved = 0;
    int *sc = NULL, *rc = NULL;

    MPI_Comm_split(MPI_COMM_WORLD, in ? 0 : MPI_UNDEFINED, rank, &group);
    so.batch = 1;
    st = make_cache(o, mesh, &dpart, &dst);
    if (st == KVMESH_SUCCESS && in) {
        st = kvmesh_mesh_create(group, o->src_mesh, &smesh);
        if (st == KVMESH_SUCCESS)
            st = make_cache(&so, smesh, &spart, &src);
        if (st == KVMESH_SUCCESS)
            st = fill_rows(src, 1, L);
    }
    MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    sc = calloc((size_t) nranks, sizeof *sc), rc = calloc((size_t) nranks, sizeof *rc);
    if (!sc || !rc)
        st = KVMESH_ERR_NOMEM;
    else
        moved = pair_bytes(o, dst, src, slot, L, sc, rc);
    if (st == KVMESH_SUCCESS)
        st = insert_vs_alltoallv(o, dst, src, slot, sc, rc, moved);
    kvmesh_cache_free(&src);
    kvmesh_cache_free(&dst);
    kvmesh_partition_free(&spart);
    kvmesh_partition_free(&dpart);
    kvmesh_mesh_free(&smesh);
    if (group != MPI_COMM_NULL)
        MPI_Comm_free(&group);
    free(sc), free(rc);
    return st;
}

static kvmesh_status_t
bench_gather(const opts_t *o, kvmesh_mesh_t *mesh)
{
    const int64_t L = filled(o);
    double *a = malloc(2 * (size_t) o->reps * sizeof *a);
    double *b = malloc((size_t) o->reps * sizeof *b), *ci = malloc((size_t) o->reps * sizeof *ci);
    kvmesh_partition_t *part = NULL;
    kvmesh_cache_t *c = NULL;
    kvmesh_pure_t *pure = NULL;
    kvmesh_status_t st;
    int *counts = malloc((size_t) nranks * sizeof *counts);
    int *displs = malloc((size_t) nranks * sizeof *displs);
    double mine = 0, moved = 0;
    char *sbuf, *rbuf = NULL;
    int64_t row;
    long kib0;
    int r, p, count;
    const bool scatter = !strcmp(o->op, "scatter");
    kvmesh_cache_params_t sp;

    kvmesh_cache_params_init(&sp);
    sp.engine = o->engine;
    st = make_cache(o, mesh, &part, &c);
    if (st == KVMESH_SUCCESS)
        st = fill_rows(c, o->batch, L);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_gather(c, 0, &pure);     /* allocated once, reused */
    for (row = 0; row < o->batch; row++)
        mine += held_bytes(c, row, L);
    count = (int) mine;
    MPI_Gather(&count, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    for (p = 0; rank == 0 && p < nranks; p++) {
        displs[p] = p ? displs[p - 1] + counts[p - 1] : 0;
        moved += counts[p];
    }
    MPI_Bcast(&moved, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    sbuf = malloc((size_t) count + 1);
    if (sbuf)
        memset(sbuf, 1, (size_t) count + 1);
    if (rank == 0 && (rbuf = malloc((size_t) moved + 1)))
        memset(rbuf, 1, (size_t) moved + 1);
    if (!sbuf || (rank == 0 && !rbuf))
        st = KVMESH_ERR_NOMEM;
    kib0 = rss_now();
    for (r = 0; r < o->reps && st == KVMESH_SUCCESS; r++) {
        double t0;
        int e;
        kvmesh_cache_t *back = NULL;
        for (e = 0; e < o->nengines && st == KVMESH_SUCCESS; e++) {
            sp.engine = engine_at(o, e);
            st = kvmesh_cache_set_engine(c, sp.engine);
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = MPI_Wtime();
            if (scatter && st == KVMESH_SUCCESS)   /* onto the same mesh, a new cache */
                st = kvmesh_cache_scatter(rank == 0 ? pure : NULL, 0, part, &sp, &back);
            else if (st == KVMESH_SUCCESS)
                st = kvmesh_cache_gather_into(c, 0, rank == 0 ? pure : NULL);
            a[e * o->reps + r] = slowest(MPI_Wtime() - t0);
            kvmesh_cache_free(&back);
        }
        if (scatter && st == KVMESH_SUCCESS) {
            /* the destination's creation alone, and the first touch of as
             * many fresh bytes, which the scatter's receives pay */
            kvmesh_partition_t *p2 = NULL;
            char *fresh;
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = MPI_Wtime();
            st = make_cache(o, mesh, &p2, &back);
            fresh = malloc(kvmesh_cache_local_bytes(back) + 1);
            if (fresh)
                memset(fresh, 1, kvmesh_cache_local_bytes(back) + 1);
            ci[r] = slowest(MPI_Wtime() - t0);
            free(fresh);
            kvmesh_cache_free(&back);
            kvmesh_partition_free(&p2);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        if (scatter)
            MPI_Scatterv(rbuf, counts, displs, MPI_BYTE, sbuf, count, MPI_BYTE, 0,
                         MPI_COMM_WORLD);
        else
            MPI_Gatherv(sbuf, count, MPI_BYTE, rbuf, counts, displs, MPI_BYTE, 0,
                        MPI_COMM_WORLD);
        b[r] = slowest(MPI_Wtime() - t0);
    }
    if (scatter && st == KVMESH_SUCCESS)
        creation = median(ci, o->reps);
    if (st == KVMESH_SUCCESS)
        report_engines(o, moved, a, scatter ? "MPI_Scatterv" : "MPI_Gatherv", b,
                       rss_growth(kib0));
    kvmesh_pure_free(&pure);
    kvmesh_cache_free(&c);
    kvmesh_partition_free(&part);
    free(a), free(b), free(ci), free(counts), free(displs), free(sbuf), free(rbuf);
    return st;
}

static kvmesh_status_t
bench_reshard(const opts_t *o, kvmesh_mesh_t *mesh)
{
    const int64_t L = filled(o);
    kvmesh_partition_t *part = NULL, *dpart = NULL;
    kvmesh_cache_t *c = NULL, *d = NULL;
    kvmesh_mesh_t *dmesh = NULL;
    kvmesh_status_t st;
    int *sc = calloc((size_t) nranks, sizeof *sc), *rc = calloc((size_t) nranks, sizeof *rc);
    double moved = 0;

    st = make_cache(o, mesh, &part, &c);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_mesh_create(MPI_COMM_WORLD, o->src_mesh, &dmesh);
    if (st == KVMESH_SUCCESS)
        st = make_cache(o, dmesh, &dpart, &d);
    if (st == KVMESH_SUCCESS)
        st = fill_rows(c, o->batch, L);
    if (!sc || !rc)
        st = KVMESH_ERR_NOMEM;
    else
        moved = pair_bytes(o, d, c, 0, L, sc, rc);
    if (st == KVMESH_SUCCESS)
        st = insert_vs_alltoallv(o, d, c, 0, sc, rc, moved);
    kvmesh_cache_free(&c);
    kvmesh_cache_free(&d);
    kvmesh_partition_free(&part);
    kvmesh_partition_free(&dpart);
    kvmesh_mesh_free(&dmesh);
    free(sc), free(rc);
    return st;
}

static kvmesh_status_t
bench_one(const opts_t *o, kvmesh_mesh_t *mesh)
{
    creation = 0;
    return !strcmp(o->op, "init") ? bench_init(o, mesh)
         : !strcmp(o->op, "insert") ? bench_insert(o, mesh)
         : !strcmp(o->op, "gather") || !strcmp(o->op, "scatter") ? bench_gather(o, mesh)
         : !strcmp(o->op, "reshard") ? bench_reshard(o, mesh) : bench_decode(o, mesh);
}

/* Draws the figures with gnuplot (rank 0): decode-append time per step
 * against cache length, kvmesh and its memcpy baseline; and the four
 * redistributions' bandwidth against their MPI baselines. */
static int
plot(const opts_t *o, const double (*dec)[3], int nd, const double (*red)[2])
{
    static const char *const names[4] = { "insert", "gather", "scatter", "reshard" };
    char dir[] = "/tmp/kvmesh-plot-XXXXXX", path[2][64], cmd[4096];
    FILE *f;
    int i, rc;

    if (!mkdtemp(dir))
        return -1;
    snprintf(path[0], sizeof path[0], "%s/decode.dat", dir);
    snprintf(path[1], sizeof path[1], "%s/redist.dat", dir);
    if (!(f = fopen(path[0], "w")))
        return -1;
    for (i = 0; i < nd; i++)
        fprintf(f, "%.0f %.6g %.6g\n", dec[i][0], dec[i][1] * 1e6, dec[i][2] * 1e6);
    fclose(f);
    if (!(f = fopen(path[1], "w")))
        return -1;
    for (i = 0; i < 4; i++)
        fprintf(f, "%d %s %.4g %.4g\n", i, names[i], red[i][0], red[i][1]);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "gnuplot -e \"set terminal pngcairo size 1200,480 noenhanced; set output '%s';"
             "set multiplot layout 1,2 title 'kvmesh-bench, %d ranks, mesh %s';"
             "set title 'decode step (every layer, n = 1)'; set logscale x 2;"
             "set xlabel 'cache length (positions)'; set ylabel 'microseconds per step';"
             "set yrange [0:*]; set key bottom right; plot '%s' u 1:2 w lp t 'kvmesh append', "
             "'' u 1:3 w lp t 'memcpy of its bytes';"
             "unset logscale x; set title 'redistribution, GB/s'; set ylabel 'GB/s';"
             "set xlabel ''; set style data histograms; set style fill solid 0.6;"
             "set boxwidth 0.9; set key default; set key inside top left reverse Left;"
             "set yrange [0:*];"
             "plot '%s' u 3:xtic(2) t 'kvmesh (p2p engine)', "
             "'' u 4 t 'MPI baseline, same bytes';"
             "unset multiplot\"", o->plot, nranks, o->mesh, path[0], path[1]);
    rc = system(cmd);
    remove(path[0]);
    remove(path[1]);
    rmdir(dir);
    return rc;
}

/* Every op with its baselines; with --plot, decode at several cache
 * lengths too, and the figures drawn. */
static kvmesh_status_t
bench_all(const opts_t *o, kvmesh_mesh_t *mesh)
{
    static const char *const ops[6] = { "init", "concat-decode", "insert", "gather", "scatter",
                                        "reshard" };
    static const int64_t lengths[6] = { 512, 1024, 2048, 4096, 8192, 16384 };
    double dec[6][3], red[4][2];
    kvmesh_status_t st = KVMESH_SUCCESS;
    int i, nd = 0;
    char all_tp[32];

    snprintf(all_tp, sizeof all_tp, "tp=%d", nranks);
    for (i = 0; i < 6 && st == KVMESH_SUCCESS; i++) {
        opts_t one = *o;
        one.op = ops[i];
        one.reps = default_reps(ops[i]);
        if (!strcmp(ops[i], "reshard") && !o->src_mesh_given)
            one.src_mesh = all_tp;
        if (i >= 2 && o->nengines == 1 && o->engine == KVMESH_ENGINE_P2P)
            one.reps = 5;
        st = bench_one(&one, mesh);
        if (i >= 2)
            red[i - 2][0] = last.bytes / last.secs / 1e9, red[i - 2][1] = last.bytes / last.bsecs / 1e9;
    }
    for (i = 0; o->plot && i < 6 && st == KVMESH_SUCCESS; i++) {
        opts_t one = *o;
        one.op = "concat-decode", one.seq = lengths[i], one.reps = 21;
        st = bench_one(&one, mesh);
        dec[nd][0] = (double) lengths[i], dec[nd][1] = last.secs, dec[nd][2] = last.bsecs;
        nd++;
    }
    if (st == KVMESH_SUCCESS && o->plot && rank == 0 && plot(o, dec, nd, red) != 0) {
        fprintf(stderr, "kvmesh-bench: gnuplot could not draw %s\n", o->plot);
        st = KVMESH_ERR_ARG;
    }
    MPI_Bcast(&st, 1, MPI_INT, 0, MPI_COMM_WORLD);
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
        st = !strcmp(o.op, "all") ? bench_all(&o, mesh) : bench_one(&o, mesh);
    if (st != KVMESH_SUCCESS && rank == 0)
        fprintf(stderr, "kvmesh-bench: %s\n", kvmesh_strerror(st));
    kvmesh_mesh_free(&mesh);
    MPI_Finalize();
    return st == KVMESH_SUCCESS ? 0 : 1;
}
