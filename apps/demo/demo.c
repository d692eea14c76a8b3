/* kvmesh-demo: a small tensor- and sequence-parallel transformer serving a
 * stream of requests with continuous batching.  A prefill group runs each
 * prompt in chunks on a one-row cache; kvmesh_cache_insert puts the
 * request's cache into a free slot of the decode group's cache; every
 * decode step makes one token for every active slot; a finished request's
 * slot is evicted and refilled.  With --check a one-process reference
 * model on rank 0 consumes the same tokens and every logit vector is
 * compared, and at the end the decode cache gathered to rank 0 is compared
 * with the reference's own keys and values.
 *
 *   mpiexec -n 4 kvmesh-demo --check
 *
 * Every rank runs the same scheduler on the same seeded stream, so the
 * groups agree on what happens next without messages. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "reference.h"

/* ---- options ------------------------------------------------------------ */

typedef struct {
    model_cfg_t m;
    int64_t requests, pmin, pmax, omin, omax, batch, seq, chunk;
    int plo, phi, dlo, dhi;              /* world ranks [lo, hi] of each group */
    char pmesh[64], dmesh[64];
    kvmesh_dtype_t dtype;
    kvmesh_quant_t quant;
    int check, quiet;
} opts_t;

static int rank, nranks;

static const char *
dtype_name(kvmesh_dtype_t t)
{
    return t == KVMESH_F32 ? "f32" : t == KVMESH_F16 ? "f16" : "bf16";
}

static const char *
quant_name(kvmesh_quant_t q)
{
    return q == KVMESH_QUANT_INT8 ? "int8" : q == KVMESH_QUANT_NF4 ? "nf4" : "none";
}

static void
defaults(opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->m = (model_cfg_t) { 512, 256, 8, 4, 32, 768, 6, 64, 128, 1 };
    o->requests = 16, o->pmin = 16, o->pmax = 160, o->omin = 8, o->omax = 48;
    o->batch = 4, o->seq = 512, o->chunk = 32;
    o->dtype = KVMESH_BF16, o->quant = KVMESH_QUANT_NONE;
    /* prefill on the first half of the ranks, decode on all of them */
    o->plo = 0, o->phi = nranks > 1 ? nranks / 2 - 1 : 0;
    o->dlo = 0, o->dhi = nranks - 1;
    snprintf(o->pmesh, sizeof o->pmesh, o->phi == 1 ? "tp=2" : "");
    snprintf(o->dmesh, sizeof o->dmesh, nranks == 4 ? "tp=2,sp=2" : nranks == 2 ? "tp=2"
                                        : nranks > 1 ? "sp=%d" : "", nranks);
}

static void
usage(const opts_t *d)
{
    if (rank)
        return;
    printf("usage: mpiexec -n N kvmesh-demo [options]\n"
           "  --requests R        requests in the stream (%ld)\n"
           "  --prompt A-B        prompt lengths drawn in [A, B] (%ld-%ld)\n"
           "  --output A-B        output lengths drawn in [A, B] (%ld-%ld)\n"
           "  --batch B           decode slots (%ld)\n"
           "  --seq S             positions per slot (%ld)\n"
           "  --chunk C           prefill chunk, tokens (%ld)\n"
           "  --prefill-ranks A-B world ranks of the prefill group (%d-%d)\n"
           "  --decode-ranks A-B  world ranks of the decode group, with rank 0 (%d-%d)\n"
           "  --prefill-mesh M    its mesh (\"%s\")\n"
           "  --decode-mesh M     its mesh (\"%s\")\n"
           "  --dtype T           cache storage: bf16, f16, f32 (bf16)\n"
           "  --quant Q           none, int8, nf4 (none)\n"
           "  --layers L --hidden E --heads H --kv-heads K --head-dim D --mlp M\n"
           "  --vocab V --window W --attn-chunk C --seed N\n"
           "                      the model (%ld %ld %ld %ld %ld %ld, %ld, %ld, %ld, %lu);\n"
           "                      layers cycle FULL, SLIDING (W), CHUNK (C)\n"
           "  --check             compare with a one-process reference on rank 0\n"
           "  --quiet             no progress line\n"
           "  --help\n",
           (long) d->requests, (long) d->pmin, (long) d->pmax, (long) d->omin,
           (long) d->omax, (long) d->batch, (long) d->seq, (long) d->chunk, d->plo, d->phi,
           d->dlo, d->dhi, d->pmesh, d->dmesh, (long) d->m.layers, (long) d->m.hidden,
           (long) d->m.heads, (long) d->m.kv_heads, (long) d->m.head_dim, (long) d->m.mlp,
           (long) d->m.vocab, (long) d->m.window, (long) d->m.chunk,
           (unsigned long) d->m.seed);
}

static int
range(const char *s, int64_t *a, int64_t *b)
{
    char *end;

    *a = strtoll(s, &end, 10);
    *b = *end == '-' ? strtoll(end + 1, &end, 10) : *a;
    return *end || *a > *b;
}

/* 0 ok, 1 bad, 2 help */
static int
parse(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        { "requests", 1, 0, 'r' }, { "prompt", 1, 0, 'p' }, { "output", 1, 0, 'o' },
        { "batch", 1, 0, 'b' }, { "seq", 1, 0, 's' }, { "chunk", 1, 0, 'c' },
        { "prefill-ranks", 1, 0, 'P' }, { "decode-ranks", 1, 0, 'D' },
        { "prefill-mesh", 1, 0, 'M' }, { "decode-mesh", 1, 0, 'N' },
        { "dtype", 1, 0, 't' }, { "quant", 1, 0, 'q' }, { "layers", 1, 0, 'l' },
        { "hidden", 1, 0, 'e' }, { "heads", 1, 0, 'h' }, { "kv-heads", 1, 0, 'k' },
        { "head-dim", 1, 0, 'd' }, { "mlp", 1, 0, 'm' }, { "vocab", 1, 0, 'v' },
        { "window", 1, 0, 'w' }, { "attn-chunk", 1, 0, 'C' }, { "seed", 1, 0, 'S' },
        { "check", 0, 0, 'K' }, { "quiet", 0, 0, 'Q' }, { "help", 0, 0, 'H' },
        { 0, 0, 0, 0 }
    };
    int64_t a, b;
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'r': o->requests = atoll(optarg); break;
        case 'p': if (range(optarg, &o->pmin, &o->pmax)) return 1; break;
        case 'o': if (range(optarg, &o->omin, &o->omax)) return 1; break;
        case 'b': o->batch = atoll(optarg); break;
        case 's': o->seq = atoll(optarg); break;
        case 'c': o->chunk = atoll(optarg); break;
        case 'P': if (range(optarg, &a, &b)) return 1; o->plo = (int) a, o->phi = (int) b; break;
        case 'D': if (range(optarg, &a, &b)) return 1; o->dlo = (int) a, o->dhi = (int) b; break;
        case 'M': snprintf(o->pmesh, sizeof o->pmesh, "%s", optarg); break;
        case 'N': snprintf(o->dmesh, sizeof o->dmesh, "%s", optarg); break;
        case 't':
            if (!strcmp(optarg, "bf16")) o->dtype = KVMESH_BF16;
            else if (!strcmp(optarg, "f16")) o->dtype = KVMESH_F16;
            else if (!strcmp(optarg, "f32")) o->dtype = KVMESH_F32;
            else return 1;
            break;
        case 'q':
            if (!strcmp(optarg, "none")) o->quant = KVMESH_QUANT_NONE;
            else if (!strcmp(optarg, "int8")) o->quant = KVMESH_QUANT_INT8;
            else if (!strcmp(optarg, "nf4")) o->quant = KVMESH_QUANT_NF4;
            else return 1;
            break;
        case 'l': o->m.layers = atoll(optarg); break;
        case 'e': o->m.hidden = atoll(optarg); break;
        case 'h': o->m.heads = atoll(optarg); break;
        case 'k': o->m.kv_heads = atoll(optarg); break;
        case 'd': o->m.head_dim = atoll(optarg); break;
        case 'm': o->m.mlp = atoll(optarg); break;
        case 'v': o->m.vocab = atoll(optarg); break;
        case 'w': o->m.window = atoll(optarg); break;
        case 'C': o->m.chunk = atoll(optarg); break;
        case 'S': o->m.seed = strtoull(optarg, NULL, 10); break;
        case 'K': o->check = 1; break;
        case 'Q': o->quiet = 1; break;
        case 'H': return 2;
        default: return 1;
        }
    }
    if (optind < argc || o->requests < 1 || o->pmin < 1 || o->omin < 1 || o->batch < 1 ||
        o->chunk < 1 || o->pmax + o->omax - 1 > o->seq || o->plo < 0 || o->phi >= nranks ||
        o->dlo != 0 || o->dhi >= nranks || o->m.layers < 1 || o->m.hidden < 1 ||
        o->m.heads < 1 || o->m.kv_heads < 1 || o->m.heads % o->m.kv_heads ||
        o->m.head_dim < 2 || o->m.head_dim % 2 || o->m.mlp < 1 || o->m.vocab < 2 ||
        o->m.window < 1 || o->m.chunk < 1)
        return 1;
    return 0;
}

/* ---- the request stream --------------------------------------------------- */

typedef struct {
    int64_t prompt, output;        /* lengths */
    int32_t *tokens;               /* prompt, then the generated tokens */
    int64_t made;                  /* tokens generated so far */
} request_t;

static uint64_t
next_rand(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static request_t *
make_requests(const opts_t *o)
{
    request_t *q = calloc((size_t) o->requests, sizeof *q);
    uint64_t s = 0x2545f4914f6cdd1dull ^ (o->m.seed * 0x9e3779b97f4a7c15ull);
    int64_t i, j;

    for (i = 0; q && i < o->requests; i++) {
        q[i].prompt = o->pmin + (int64_t) (next_rand(&s) % (uint64_t) (o->pmax - o->pmin + 1));
        q[i].output = o->omin + (int64_t) (next_rand(&s) % (uint64_t) (o->omax - o->omin + 1));
        q[i].tokens = malloc((size_t) (q[i].prompt + q[i].output) * sizeof *q[i].tokens);
        if (!q[i].tokens)
            return NULL;
        for (j = 0; j < q[i].prompt; j++)
            q[i].tokens[j] = (int32_t) (next_rand(&s) % (uint64_t) o->m.vocab);
    }
    return q;
}

/* ---- a group: its ranks, mesh, cache and model ------------------------- */

typedef struct {
    int lo, hi, in, leader;        /* world ranks [lo, hi]; am I in; its rank 0 */
    MPI_Comm comm;
    kvmesh_mesh_t *mesh;
    kvmesh_partition_t *part;
    kvmesh_cache_t *cache;
    fwd_t fwd;
} group_t;

static kvmesh_status_t
group_open(group_t *g, const opts_t *o, int lo, int hi, const char *spec, int64_t B,
           int64_t A)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_mask_detail_t *det = malloc((size_t) o->m.layers * sizeof *det);
    kvmesh_meta_t *meta = NULL;
    kvmesh_status_t st = det ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM;
    int64_t l;

    memset(g, 0, sizeof *g);
    g->lo = lo, g->hi = hi, g->leader = lo;
    g->in = rank >= lo && rank <= hi;
    MPI_Comm_split(MPI_COMM_WORLD, g->in ? 0 : MPI_UNDEFINED, rank, &g->comm);
    if (!g->in || st != KVMESH_SUCCESS) {
        free(det);
        return st;
    }
    for (l = 0; l < o->m.layers; l++)
        det[l] = model_layer(&o->m, l);
    kvmesh_meta_params_init(&mp);
    mp.batch_size = B, mp.sequence_length = o->seq, mp.num_hidden_layers = o->m.layers;
    mp.num_heads = o->m.kv_heads, mp.head_dim = o->m.head_dim;
    kvmesh_cache_params_init(&cp);
    cp.dtype = o->dtype, cp.quant = o->quant, cp.details = det, cp.max_append = A;
    st = kvmesh_mesh_create(g->comm, spec, &g->mesh);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_partition_create(g->mesh, &g->part);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_meta_create(&mp, &meta);
    if (st == KVMESH_SUCCESS)
        st = kvmesh_cache_init(meta, g->part, &cp, &g->cache);
    if (st == KVMESH_SUCCESS)
        st = fwd_init(&g->fwd, &o->m, g->cache, A);
    kvmesh_meta_free(&meta);
    free(det);
    return st;
}

static void
group_close(group_t *g)
{
    fwd_free(&g->fwd);
    (void) kvmesh_cache_free(&g->cache);
    kvmesh_partition_free(&g->part);
    kvmesh_mesh_free(&g->mesh);
    if (g->comm != MPI_COMM_NULL)
        MPI_Comm_free(&g->comm);
}

/* Does this rank contribute its rows' results (one rank per batch block:
 * coordinate 0 on every axis the rows are not split over)? */
static int
row_owner(const group_t *g)
{
    return kvmesh_mesh_coord(g->mesh, KVMESH_AXIS_TP) == 0 &&
           kvmesh_mesh_coord(g->mesh, KVMESH_AXIS_SP) == 0 &&
           kvmesh_mesh_coord(g->mesh, KVMESH_AXIS_EP) == 0;
}

/* ---- the check ------------------------------------------------------------ */

typedef struct {
    ref_model_t *ref;              /* one per slot, on rank 0 */
    float *want;                   /* one logit vector */
    double worst;                  /* largest |logit - reference| */
    double seconds;                /* spent in the reference */
    int64_t vectors, ties, wrong;  /* compared; near ties; token mismatches */
    double bound;
} check_t;

/* The documented bound on |logit - reference|.  The two models' keys and
 * values differ in their last f32 bits (summation order over tp, the
 * merge over sp, f32 against double attention); once stored, such a
 * difference is nothing in f32 (measured 3e-6) but can round to the
 * neighbouring bf16 / f16 value or int8 / nf4 code, which moves the
 * logits by up to about a storage step times the weights: measured with
 * the default model 7.6e-4 for f16, 1.2e-3 for bf16, 7e-3 for int8, 4e-3
 * for nf4.  The bounds leave a factor of 2.6 (f16) or more. */
static double
logit_bound(const opts_t *o)
{
    if (o->quant != KVMESH_QUANT_NONE)
        return o->quant == KVMESH_QUANT_INT8 ? 3e-2 : 5e-2;
    return o->dtype == KVMESH_F32 ? 1e-4 : o->dtype == KVMESH_F16 ? 2e-3 : 5e-3;
}

/* One logit vector of the run against the reference's for the same token;
 * `chosen` is the token the run picked from it. */
static void
check_logits(check_t *k, int64_t vocab, const float *got, int32_t chosen)
{
    int64_t i, best = model_argmax(k->want, vocab), second = best ? 0 : 1;
    double d = 0;

    for (i = 0; i < vocab; i++) {
        d = fmax(d, fabs((double) got[i] - k->want[i]));
        if (i != best && k->want[i] > k->want[second])
            second = i;
    }
    k->worst = fmax(k->worst, d);
    k->vectors++;
    if (chosen >= 0 && chosen != best) {
        if (k->want[best] - k->want[second] < k->bound)
            k->ties++;
        else
            k->wrong++;
    }
}

/* The tolerance of a stored element against the reference's.  The two
 * models' keys differ in their last f32 bits (2e-4 of the head vector's
 * largest magnitude covers it) and may round to neighbouring stored
 * values: one step of the storage there, an ulp of bf16 / f16, a code of
 * the vector's int8 scale, the widest NF4 gap of its absmax.  Such a flip
 * in an earlier layer reaches later layers' keys too: half a step of the
 * vector's magnitude more (measured up to 0.3 of it with f16). */
static double
step(const opts_t *o, double w, double got, double amax)
{
    const double a = fmax(fabs(w), fabs(got)), f32 = 2e-4 * amax + 1e-6;
    const double ulp = o->dtype == KVMESH_BF16 ? 0x1p-7 : o->dtype == KVMESH_F16 ? 0x1p-10 : 0;

    if (o->quant == KVMESH_QUANT_INT8)
        return f32 + 1.5 * amax / 127.0;
    if (o->quant == KVMESH_QUANT_NF4)
        return f32 + 0.3 * amax;
    return f32 + (a + 0.5 * amax) * ulp;
}

/* The gathered decode cache (dequantized) against every slot's reference
 * keys and values, in EasyDeL's canonical order: [0, L) of FULL and CHUNK
 * rows, the last min(W, L) of SLIDING rows, zeros after.  Rank 0. */
static int
cache_check(const opts_t *o, const check_t *k, const kvmesh_pure_t *f32, const int64_t *flen)
{
    const int64_t hd = o->m.head_dim, kvd = o->m.kv_heads * hd;
    double worst = 0, over = 0;
    int64_t l, b, p, h, e, rows = 0;
    int t, ok = 1;

    for (l = 0; l < o->m.layers; l++)
        for (t = 0; t < 2; t++) {
            void *data;
            int64_t shape[4];
            int32_t *ix, *sx;
            if (kvmesh_pure_array(f32, l, (kvmesh_kv_t) t, &data, shape) ||
                kvmesh_pure_rows(f32, l, &ix, &sx))
                return 0;
            for (b = 0; b < o->batch; b++) {
                const int64_t L = flen[b], keep = L < shape[1] ? L : shape[1];
                const float *want = t ? k->ref[b].v[l] : k->ref[b].k[l];
                ok = ok && ix[b] == L && k->ref[b].len == L;
                rows += L > 0;
                for (p = 0; p < shape[1]; p++)
                    for (h = 0; h < o->m.kv_heads; h++) {
                        const float *g = (const float *) data + (b * shape[1] + p) * kvd + h * hd;
                        const float *w = p < keep ? want + (L - keep + p) * kvd + h * hd : NULL;
                        double amax = 0;
                        for (e = 0; w && e < hd; e++)
                            amax = fmax(amax, fabs(w[e]));
                        for (e = 0; e < hd; e++) {
                            const double d = fabs((double) g[e] - (w ? w[e] : 0.0));
                            worst = fmax(worst, d);
                            over = fmax(over, d / step(o, w ? w[e] : 0.0, g[e], amax));
                        }
                    }
            }
        }
    printf("gathered decode cache (%ld rows) against the reference's keys and values: largest "
           "difference %.3g, %.2f of a storage step%s\n", (long) rows / (2 * o->m.layers),
           worst, over, ok ? "" : "; rows' lengths differ");
    return ok && over <= 1.0;
}

/* ---- figures ------------------------------------------------------------- */

typedef struct {
    double prefill, insert, decode, index;     /* seconds (rank 0's view) */
    int64_t prefill_tokens, decode_tokens, inserts, evictions, steps;
    double insert_bytes, gather_bytes, tp_bytes, merge_bytes;
} figures_t;

/* Bytes of a row of L tokens that a move carries: every layer's K and V
 * of its positions, the last W of a SLIDING layer (codes and scales when
 * quantized). */
static double
row_bytes(const opts_t *o, int64_t L)
{
    const int64_t D = o->m.head_dim;
    const double head = o->quant == KVMESH_QUANT_INT8 ? (double) D + 4
                      : o->quant == KVMESH_QUANT_NF4
                      ? (double) ((D + 1) / 2) + 4.0 * (double) ((D + 63) / 64)
                      : (double) D * (double) kvmesh_dtype_size(o->dtype);
    double bytes = 0;
    int64_t l;

    for (l = 0; l < o->m.layers; l++)
        bytes += (double) (model_layer(&o->m, l).kind == KVMESH_MASK_SLIDING && L > o->m.window
                           ? o->m.window : L);
    return bytes * head * (double) o->m.kv_heads * 2.0;
}

/* Rank 0's progress line: updated in place on a terminal (at most five
 * times a second), else a plain line every two seconds; always at the end.
 * (Open MPI gives ranks a pseudo-terminal, so a log of an mpiexec run
 * shows a few in-place updates.) */
static void
progress(const opts_t *o, const figures_t *f, int64_t done, int64_t active, double t0, int end)
{
    static double last = -1e9;
    const int tty = isatty(1);
    const double now = MPI_Wtime() - t0;

    if (rank || o->quiet || (!end && now - last < (tty ? 0.2 : 2.0)))
        return;
    last = now;
    printf("%srequests %ld/%ld  active %ld  decode %.0f tok/s  prefill %.0f tok/s  %.1f s%s",
           tty ? "\r" : "", (long) done, (long) o->requests, (long) active,
           f->decode > 0 ? (double) f->decode_tokens / f->decode : 0.0,
           f->prefill > 0 ? (double) f->prefill_tokens / f->prefill : 0.0, now,
           tty && !end ? "   " : "\n");
    fflush(stdout);
}

/* ---- the job ---------------------------------------------------------------- */

/* The reference's logits of prompt tokens [at, at + n) against the run's;
 * the last prompt token's argmax is the first output token. */
static void
reference(const opts_t *o, check_t *k, ref_model_t *ref, const request_t *r, int64_t at,
          int64_t n, const float *logits)
{
    const int64_t V = o->m.vocab;
    const double t0 = MPI_Wtime();
    int64_t j;

    for (j = 0; j < n; j++) {
        if (ref_step(ref, r->tokens[at + j], k->want))
            k->wrong++;                    /* full or out of memory: fail */
        check_logits(k, V, logits + j * V,
                     at + j == r->prompt - 1 ? (int32_t) model_argmax(logits + j * V, V) : -1);
    }
    k->seconds += MPI_Wtime() - t0;
}

/* Runs request r's prompt through the prefill group in chunks; its logits
 * go to world rank 0 when checking; the first output token is chosen on
 * the prefill leader and broadcast to the world. */
static kvmesh_status_t
prefill(const opts_t *o, group_t *p, request_t *r, check_t *k, ref_model_t *ref, float *logits,
        figures_t *f)
{
    const int64_t V = o->m.vocab;
    kvmesh_status_t st = KVMESH_SUCCESS;
    int64_t at, n;
    int32_t first = 0;
    double t0 = MPI_Wtime(), before = k->seconds;

    if (p->in)
        st = kvmesh_cache_evict(p->cache, 0, 1);          /* a new request */
    /* the group runs the chunks; rank 0 checks each chunk's logits (sent
     * by the group's leader when rank 0 is not in the group: every chunk,
     * even after a failure, so that nobody waits) */
    for (at = 0; at < r->prompt && (p->in || (o->check && rank == 0)); at += n) {
        n = r->prompt - at < o->chunk ? r->prompt - at : o->chunk;
        if (p->in && st == KVMESH_SUCCESS)
            st = fwd_run(&p->fwd, KVMESH_MODE_PREFILL, n, r->tokens + at, logits);
        if (o->check && rank == p->leader && p->leader != 0)
            MPI_Send(logits, (int) (n * V), MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
        if (o->check && rank == 0) {
            if (p->leader != 0)
                MPI_Recv(logits, (int) (n * V), MPI_FLOAT, p->leader, 7, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
            reference(o, k, ref, r, at, n, logits);
        }
        if (at + n == r->prompt && rank == p->leader)
            first = (int32_t) model_argmax(logits + (n - 1) * V, V);
    }
    MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Bcast(&first, 1, MPI_INT32_T, p->leader, MPI_COMM_WORLD);
    r->tokens[r->prompt] = first;
    r->made = 1;
    f->prefill += MPI_Wtime() - t0 - (k->seconds - before);
    f->prefill_tokens += r->prompt;
    return st;
}

int
main(int argc, char **argv)
{
    opts_t o, d;
    group_t pg, dg;
    request_t *req = NULL;
    figures_t fig;
    check_t chk;
    kvmesh_status_t st = KVMESH_SUCCESS;
    int64_t *slot = NULL, *flen = NULL, next = 0, done = 0, b, i, V;
    int32_t *tokens = NULL, *idx = NULL;
    float *logits = NULL, *all = NULL;
    int pr, ok = 1, vmaj, vmin, vpat;
    double t0, tstep;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    defaults(&o);
    d = o;
    pr = parse(argc, argv, &o);
    if (pr) {
        usage(&d);
        if (pr == 1 && rank == 0)
            fprintf(stderr, "kvmesh-demo: bad options\n");
        MPI_Finalize();
        return pr == 2 ? 0 : 2;
    }
    V = o.m.vocab;
    memset(&fig, 0, sizeof fig);
    memset(&chk, 0, sizeof chk);
    chk.bound = logit_bound(&o);
    kvmesh_version(&vmaj, &vmin, &vpat);
    if (rank == 0)
        printf("kvmesh-demo (kvmesh %d.%d.%d): %d ranks; model: %ld layers (FULL, SLIDING %ld, CHUNK %ld), "
               "hidden %ld, %ld query / %ld kv heads of %ld, MLP %ld, vocab %ld; cache %s%s%s\n"
               "  prefill group: ranks %d-%d mesh \"%s\", chunks of %ld\n"
               "  decode group:  ranks %d-%d mesh \"%s\", %ld slots of %ld positions\n"
               "  %ld requests, prompts %ld-%ld, outputs %ld-%ld tokens, seed %lu%s\n",
               vmaj, vmin, vpat, nranks, (long) o.m.layers, (long) o.m.window,
               (long) o.m.chunk, (long) o.m.hidden, (long) o.m.heads, (long) o.m.kv_heads,
               (long) o.m.head_dim, (long) o.m.mlp, (long) V, dtype_name(o.dtype),
               o.quant ? " " : "", o.quant ? quant_name(o.quant) : "", o.plo, o.phi, o.pmesh,
               (long) o.chunk, o.dlo, o.dhi, o.dmesh, (long) o.batch, (long) o.seq,
               (long) o.requests, (long) o.pmin, (long) o.pmax, (long) o.omin, (long) o.omax,
               (unsigned long) o.m.seed, o.check ? "; checked against a one-process reference" : "");
    req = make_requests(&o);
    st = req ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM;
    if (st == KVMESH_SUCCESS)
        st = group_open(&pg, &o, o.plo, o.phi, o.pmesh, 1, o.chunk);
    MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (st == KVMESH_SUCCESS)
        st = group_open(&dg, &o, o.dlo, o.dhi, o.dmesh, o.batch, 2);
    /* decode appends one token; max_append 2 gives SLIDING rings a spare
     * slot, so that the token an idle row takes in a step (and is put past
     * its end again) never overwrites a key of its window */
    MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    slot = malloc((size_t) o.batch * sizeof *slot);
    flen = calloc((size_t) o.batch, sizeof *flen);
    tokens = calloc((size_t) o.batch, sizeof *tokens);
    idx = malloc((size_t) o.batch * sizeof *idx);
    logits = malloc((size_t) (o.batch > o.chunk ? o.batch : o.chunk) * (size_t) V * sizeof *logits);
    all = calloc((size_t) (o.batch * V), sizeof *all);
    if (st == KVMESH_SUCCESS && (!slot || !flen || !tokens || !idx || !logits || !all))
        st = KVMESH_ERR_NOMEM;
    if (st == KVMESH_SUCCESS && o.check && rank == 0) {
        chk.ref = calloc((size_t) o.batch, sizeof *chk.ref);
        chk.want = malloc((size_t) V * sizeof *chk.want);
        for (b = 0; chk.ref && b < o.batch && st == KVMESH_SUCCESS; b++)
            if (ref_init(&chk.ref[b], &o.m, o.dtype, o.quant, o.seq))
                st = KVMESH_ERR_NOMEM;
        if (!chk.ref || !chk.want)
            st = KVMESH_ERR_NOMEM;
    }
    MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    for (b = 0; slot && b < o.batch; b++)
        slot[b] = -1;
    t0 = MPI_Wtime();
    while (st == KVMESH_SUCCESS && done < o.requests) {
        int64_t active = 0, idle = 0;
        /* refill free and finished slots */
        for (b = 0; b < o.batch && next < o.requests && st == KVMESH_SUCCESS; b++) {
            double ti;
            request_t *r = &req[next];
            if (slot[b] >= 0 && req[slot[b]].made < req[slot[b]].output)
                continue;
            if (rank == 0 && o.check)
                ref_reset(&chk.ref[b]);
            st = prefill(&o, &pg, r, &chk, chk.ref ? &chk.ref[b] : NULL, logits, &fig);
            ti = MPI_Wtime();
            if (st == KVMESH_SUCCESS && slot[b] >= 0 && dg.in) {
                st = kvmesh_cache_evict(dg.cache, b, 1);
                fig.evictions++;
            }
            MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            if (st == KVMESH_SUCCESS)
                st = kvmesh_cache_insert(dg.in ? dg.cache : NULL, pg.in ? pg.cache : NULL, b,
                                         MPI_COMM_WORLD);
            fig.insert += MPI_Wtime() - ti;
            fig.inserts++;
            fig.insert_bytes += row_bytes(&o, r->prompt);
            slot[b] = next++;
            flen[b] = r->prompt;
        }
        /* one decode step for every slot; idle ones compute too */
        for (b = 0; b < o.batch; b++) {
            const request_t *r = slot[b] >= 0 ? &req[slot[b]] : NULL;
            if (r && r->made < r->output)
                active++, tokens[b] = r->tokens[r->prompt + r->made - 1];
            else
                idle++, tokens[b] = 0;
        }
        if (st != KVMESH_SUCCESS || active == 0)
            break;
        tstep = MPI_Wtime();
        if (dg.in) {
            fwd_t *f = &dg.fwd;
            int32_t *pick = idx;
            st = fwd_run(f, KVMESH_MODE_DECODE, 1, tokens, logits);
            for (b = 0; b < o.batch; b++)
                pick[b] = -1;
            for (b = 0; st == KVMESH_SUCCESS && b < f->rows; b++)
                pick[f->row0 + b] = (int32_t) model_argmax(logits + b * V, V);
            MPI_Allreduce(MPI_IN_PLACE, pick, (int) o.batch, MPI_INT32_T, MPI_MAX, dg.comm);
            if (o.check) {
                memset(all, 0, (size_t) (o.batch * V) * sizeof *all);
                if (row_owner(&dg))
                    memcpy(all + f->row0 * V, logits, (size_t) (f->rows * V) * sizeof *all);
                MPI_Reduce(rank == 0 ? MPI_IN_PLACE : all, all, (int) (o.batch * V), MPI_FLOAT,
                           MPI_SUM, 0, dg.comm);
            }
        }
        MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        MPI_Bcast(idx, (int) o.batch, MPI_INT32_T, dg.leader, MPI_COMM_WORLD);
        fig.decode += MPI_Wtime() - tstep;
        fig.steps++;
        for (b = 0; st == KVMESH_SUCCESS && b < o.batch; b++) {
            request_t *r = slot[b] >= 0 ? &req[slot[b]] : NULL;
            if (!r || r->made >= r->output)
                continue;
            if (o.check && rank == 0) {
                if (ref_step(&chk.ref[b], tokens[b], chk.want))
                    chk.wrong++;
                check_logits(&chk, V, all + b * V, idx[b]);
            }
            r->tokens[r->prompt + r->made++] = idx[b];
            flen[b]++;
            fig.decode_tokens++;
            if (r->made == r->output)
                done++;
        }
        /* the token every idle row took is put past its end again */
        if (st == KVMESH_SUCCESS && idle && dg.in) {
            double ti = MPI_Wtime();
            for (b = 0; b < o.batch; b++)
                idx[b] = (int32_t) flen[b];
            st = kvmesh_cache_insert_index(dg.cache, 0, o.batch, idx);
            fig.index += MPI_Wtime() - ti;
        }
        MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        progress(&o, &fig, done, active, t0, 0);
    }
    progress(&o, &fig, done, 0, t0, 1);
    /* the decode cache, gathered to rank 0, against the reference's own */
    if (st == KVMESH_SUCCESS && dg.in) {
        kvmesh_pure_t *pure = NULL, *f32 = NULL;
        st = kvmesh_cache_gather(dg.cache, 0, &pure);
        fig.gather_bytes = 0;
        for (b = 0; b < o.batch; b++)
            fig.gather_bytes += row_bytes(&o, flen[b]);
        if (st == KVMESH_SUCCESS && pure)
            st = kvmesh_pure_dequantize(pure, KVMESH_F32, &f32);
        if (st == KVMESH_SUCCESS && f32 && o.check)
            ok = cache_check(&o, &chk, f32, flen) && ok;
        kvmesh_pure_free(&f32);
        kvmesh_pure_free(&pure);
    }
    MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0 && st == KVMESH_SUCCESS) {
        const fwd_times_t *ft = &dg.fwd.t;
        const double inside = ft->append + ft->kvmesh + fig.index + fig.insert;
        printf("\n  %-28s %ld (%ld inserts, %ld evictions)\n", "requests", (long) o.requests,
               (long) fig.inserts, (long) fig.evictions);
        printf("  %-28s %ld in %.3f s: %.0f tok/s\n", "prefill tokens",
               (long) fig.prefill_tokens, fig.prefill,
               (double) fig.prefill_tokens / fig.prefill);
        printf("  %-28s %ld in %ld steps, %.3f s: %.0f tok/s\n", "decode tokens",
               (long) fig.decode_tokens, (long) fig.steps, fig.decode,
               (double) fig.decode_tokens / fig.decode);
        printf("\n  %-28s %10s\n", "time (rank 0)", "seconds");
        printf("  %-28s %10.3f\n", "prefill (prefill group)", fig.prefill);
        printf("  %-28s %10.3f   kvmesh\n", "insert + evict", fig.insert);
        printf("  %-28s %10.3f\n", "decode steps", fig.decode + fig.index);
        printf("  %-28s %10.3f\n", "  matmuls, norms, head", ft->matmul);
        printf("  %-28s %10.3f   kvmesh\n", "  append", ft->append);
        printf("  %-28s %10.3f   of which %.3f in kvmesh (mask, reads)\n", "  attention",
               ft->attend, ft->kvmesh);
        printf("  %-28s %10.3f\n", "  merge over sp", ft->merge);
        printf("  %-28s %10.3f\n", "  allreduce over tp", ft->reduce);
        printf("  %-28s %10.3f   kvmesh\n", "  idle rows' index reset", fig.index);
        printf("  %-28s %9.1f%%   of decode + insert time\n", "inside kvmesh calls",
               100.0 * inside / (fig.decode + fig.index + fig.insert));
        printf("\n  %-28s %10s\n", "bytes moved", "MB");
        printf("  %-28s %10.2f   %ld calls\n", "kvmesh_cache_insert", fig.insert_bytes / 1e6,
               (long) fig.inserts);
        printf("  %-28s %10.2f\n", "kvmesh_cache_gather", fig.gather_bytes / 1e6);
        printf("  %-28s %10.2f   rank 0's payload\n", "merge over sp (allreduce)",
               ft->merge_bytes / 1e6);
        printf("  %-28s %10.2f   rank 0's payload\n", "allreduce over tp", ft->reduce_bytes / 1e6);
        printf("\n");
        if (o.check) {
            ok = ok && chk.wrong == 0 && chk.worst <= chk.bound;
            printf("  check: %ld logit vectors, largest |difference| %.3g (bound %.3g); "
                   "%ld greedy tokens differ at near ties, %ld elsewhere: %s\n",
                   (long) chk.vectors, chk.worst, chk.bound, (long) chk.ties,
                   (long) chk.wrong, ok ? "PASSED" : "FAILED");
        }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (st != KVMESH_SUCCESS && rank == 0)
        fprintf(stderr, "kvmesh-demo: %s\n", kvmesh_strerror(st));
    for (b = 0; chk.ref && b < o.batch; b++)
        ref_free(&chk.ref[b]);
    free(chk.ref), free(chk.want);
    for (i = 0; req && i < o.requests; i++)
        free(req[i].tokens);
    free(req), free(slot), free(flen), free(tokens), free(idx), free(logits), free(all);
    group_close(&pg);
    group_close(&dg);
    MPI_Finalize();
    return st == KVMESH_SUCCESS && ok ? 0 : 1;
}
