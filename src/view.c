/* One layer: the concatenate collective (DESIGN §4) and read access to the
 * rank-local K/V shards.  The decode path allocates nothing and, when the
 * input's query length is replicated or lines up with the cache's kv
 * blocks, sends no message: every decision is taken from the replicated
 * indexs and the plans built at init.  FULL and CHUNK layers store
 * position p in slot p; SLIDING layers in slot p mod R (src/ring.h). */
#include <string.h>

#include "cache.h"
#include "copy.h"
#include "dtype.h"
#include "quant.h"
#include "ring.h"
#include "status.h"
#include "view.h"

/* A run of new tokens [j0, j1) of one row that lands in consecutive
 * storage slots from slot on. */
typedef struct {
    int64_t j0, j1, slot;
} kvm_tokrun_t;

/* The runs of query block [qlo, qlo + nq) of a row holding c tokens that
 * land in slots kv: at most two (a ring wraps at most once, as an append
 * is never longer than a ring: n <= A <= len). */
static int
runs_into(const kvmesh_view_t *v, int64_t c, int64_t qlo, int64_t nq,
          kvmesh_span_t kv, kvm_tokrun_t out[2])
{
    kvm_run_t run[2];
    int i, count = kvm_layout_runs(v->len, v->ring, c + qlo, c + qlo + nq, kv, run);

    for (i = 0; i < count; i++)
        out[i] = (kvm_tokrun_t) { run[i].p0 - c, run[i].p1 - c, run[i].slot };
    return count;
}

/* Quantizes one head vector of D elements (type sdt) into codes and scales. */
static void
quantize(const kvmesh_cache_t *c, int t, const char *src, kvmesh_dtype_t sdt,
         char *codes, float *scales)
{
    kvm_convert(c->qtmp, KVMESH_F32, src, sdt, (size_t) c->D[t]);
    if (c->quant == KVMESH_QUANT_INT8)
        kvm_q8_encode(c->qtmp, c->D[t], (int8_t *) codes, scales);
    else
        kvm_nf4_encode(c->qtmp, c->D[t], (uint8_t *) codes, scales);
}

/* Where one concatenate stores K (t = 0) or V (t = 1): worked out once per
 * call, so that storing a run of tokens costs a few multiply-adds. */
typedef struct {
    const kvmesh_cache_t *c;
    int t;
    kvmesh_dtype_t sdt;         /* the input's element type */
    size_t ses;                 /* ... and size */
    char *data;                 /* the layer's local shard (or its codes) */
    float *scale;               /* quantized: the codes' scales */
    int64_t H, D, slots;        /* local heads, their dims; slots per row */
    int64_t in_tok, in_vec;     /* input elements of a token, of a head */
    int64_t skip;               /* ... before my first head's first element */
    bool whole;                 /* an input token is exactly my heads */
} kvm_put_t;

static kvm_put_t
put_of(const kvmesh_view_t *v, const kvmesh_plan_t *pl, int t, kvmesh_dtype_t sdt)
{
    const kvmesh_cache_t *c = v->cache;
    const kvmesh_span_t ih = pl->in[t].d[2], id = pl->in[t].d[3];
    const kvmesh_span_t h = c->head[t], d = c->dim[t];

    return (kvm_put_t) { c, t, sdt, sdt == KVMESH_F32 ? 4 : 2, (char *) v->data[t],
                         v->scale[t], h.len, d.len, v->kv.len, ih.len * id.len,
                         id.len, (h.lo - ih.lo) * id.len + d.lo - id.lo,
                         ih.len == h.len && id.len == d.len };
}

static void
copy_plain(void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
}

/* place() for unquantized and nf4 caches */
static void
place_other(const kvm_put_t *p, int64_t first, const char *src, int64_t ntok, int stream)
{
    void (*out_copy)(void *, const void *, size_t) = stream ? kvm_stream_copy : copy_plain;
    const kvmesh_cache_t *c = p->c;
    const int64_t hbytes = c->hbytes[p->t];
    char *dst = p->data + first * hbytes;
    int64_t i, j;

    if (!c->quant && p->whole) {                        /* one run */
        if (p->sdt == c->dtype)
            out_copy(dst, src, (size_t) (ntok * p->in_tok) * c->esize);
        else
            kvm_convert(dst, c->dtype, src, p->sdt, (size_t) (ntok * p->in_tok));
        return;
    }
    for (i = 0; i < ntok; i++, first += p->H) {
        /* nf4: a token's codes for all its heads are contiguous: build
         * them aside and stream them out like unquantized tokens */
        char *out = c->quant ? c->qcodes : dst;
        for (j = 0; j < p->H; j++) {
            const char *s = src + (size_t) (i * p->in_tok + p->skip + j * p->in_vec) * p->ses;
            if (c->quant)
                quantize(c, p->t, s, p->sdt, out + j * hbytes,
                         p->scale + (first + j) * c->nscale[p->t]);
            else
                kvm_convert(out + j * hbytes, c->dtype, s, p->sdt, (size_t) p->D);
        }
        if (c->quant)
            out_copy(dst, c->qcodes, (size_t) (p->H * hbytes));
        dst += p->H * hbytes;
    }
}

/* int8: a token at src, whose heads are whole vectors consecutive in the
 * input, coded into local row \p row, slot \p slot */
static inline kvm_q8_run_t
q8_run(const kvm_put_t *p, int64_t row, int64_t slot, const char *src, int stream)
{
    const int64_t first = (row * p->slots + slot) * p->H;      /* head vector */

    return (kvm_q8_run_t) { src + (size_t) p->skip * p->ses,
                            (int8_t *) p->data + first * p->D, p->scale + first,
                            p->H, p->D, stream };
}

/* Writes ntok tokens of local row \p row into local slots from \p slot on,
 * streamed or not.  src is laid out [ntok][in_head][in_dim] in type p->sdt. */
static inline void
place(const kvm_put_t *p, int64_t row, int64_t slot, const char *src, int64_t ntok,
      int stream)
{
    int64_t i;

    if (p->c->quant != KVMESH_QUANT_INT8) {
        place_other(p, (row * p->slots + slot) * p->H, src, ntok, stream);
        return;
    }
    for (i = 0; i < ntok; i++) {
        const kvm_q8_run_t run = q8_run(p, row, slot + i, src + (size_t) (i * p->in_tok) *
                                                                p->ses, stream);
        kvm_q8_encode_runs(&run, 1, p->sdt, p->c->qtmp);
    }
}

/* A quantized cache's scales take plain stores, into lines a decode step
 * reaches every few steps (a line holds the scales of 16 / H slots), most
 * not touched since init: an append starts fetching the line of each slot
 * it will write, and the row's next line, before it quantizes anything. */
static inline void
prefetch_scales(const kvmesh_view_t *v, int64_t row, int64_t slot)
{
    const kvmesh_cache_t *c = v->cache;
    int t;

    for (t = 0; t < 2; t++) {
        const int64_t per = c->head[t].len * c->nscale[t];     /* floats a slot */
        const char *p = (const char *) (v->scale[t] + (row * v->kv.len + slot) * per);
        __builtin_prefetch(p, 1);
        if (p + 64 < (const char *) (v->scale[t] + (row + 1) * v->kv.len * per))
            __builtin_prefetch(p + 64, 1);
    }
}

/* The local slot where row gb's next token goes, or -1 if another rank
 * stores it */
static inline int64_t
next_slot(const kvmesh_view_t *v, int64_t gb)
{
    int64_t s = v->ring ? v->indexs[gb] % v->len : v->indexs[gb];
    return s >= v->kv.lo && s < v->kv.lo + v->kv.len ? s - v->kv.lo : -1;
}

/* The decode step with the input on every rank that stores it (n = 1,
 * query length replicated): one slot per row, no message, and for FULL
 * layers no division.  tok: input bytes of one row's token.  int8 codes
 * K and V of up to KVM_BATCH / 2 rows in one call, so that their scales'
 * latencies overlap.
 *
 * The fence that ends an append waits for the streamed stores still in
 * flight, which takes as long as a row's worth of work.  So the last row
 * takes plain stores, into lines fetched at the start with the scales':
 * by the time it is stored, the rows streamed before it have drained. */
#define KVM_BATCH 16

static void
append_one(const kvmesh_view_t *v, const kvmesh_plan_t *pl, const kvm_put_t put[2],
           const void *const in[2], const size_t tok[2])
{
    const kvmesh_cache_t *c = v->cache;
    kvm_q8_run_t batch[KVM_BATCH];
    int64_t gb, s, last = -1, o;
    int t, nb = 0;

    for (gb = c->rows.lo; gb < c->rows.lo + c->rows.len; gb++)
        if ((s = next_slot(v, gb)) >= 0) {
            if (c->quant)
                prefetch_scales(v, gb - c->rows.lo, s);
            last = gb;
        }
    if (last < 0)
        return;
    s = next_slot(v, last);
    for (t = 0; t < 2; t++) {
        const int64_t bytes = put[t].H * c->hbytes[t];
        const char *line = put[t].data + ((last - c->rows.lo) * put[t].slots + s) * bytes;
        for (o = 0; o < bytes; o += 64)
            __builtin_prefetch(line + o, 1);
    }
    for (gb = c->rows.lo; gb <= last; gb++) {
        if ((s = next_slot(v, gb)) < 0)
            continue;
        for (t = 0; t < 2; t++) {
            const char *src = (const char *) in[t] + (size_t) (gb - pl->in[0].d[0].lo) * tok[t];
            if (c->quant == KVMESH_QUANT_INT8)
                batch[nb++] = q8_run(&put[t], gb - c->rows.lo, s, src, gb != last);
            else
                place(&put[t], gb - c->rows.lo, s, src, 1, gb != last);
        }
        if (nb == KVM_BATCH || (nb > 0 && gb == last)) {
            kvm_q8_encode_runs(batch, nb, put[0].sdt, c->qtmp);
            nb = 0;
        }
    }
}

/* Moves the new tokens to their owners and stores them. */
static kvmesh_status_t
route(kvmesh_view_t *v, const kvmesh_plan_t *pl, int64_t n,
      kvmesh_dtype_t dt, const void *const in[2])
{
    kvmesh_cache_t *c = v->cache;
    const size_t ses = dt == KVMESH_F32 ? 4 : 2;    /* dt checked by caller */
    /* the decode step divides nothing: a 64-bit division takes as long as
     * quantizing a head vector */
    const int64_t nq = pl->qprod == 1 ? n : n / pl->qprod, qlo = pl->qblock * nq;
    kvm_tokrun_t run[2];
    kvm_put_t put[2];
    size_t tok[2];
    int64_t k, gb, nreq = 0;
    int t, r, nrun, rc = MPI_SUCCESS;
    bool direct = dt == c->dtype && !c->quant;

    for (t = 0; t < 2; t++) {
        put[t] = put_of(v, pl, t, dt);
        tok[t] = (size_t) put[t].in_tok * ses;
        direct = direct && put[t].whole;
    }
    if (pl->qprod == 1 && n == 1) {
        append_one(v, pl, put, in, tok);
        kvm_stream_fence();
        return KVMESH_SUCCESS;
    }
    /* sends: my query block's tokens that other members of my group store */
    for (k = 0; k < pl->qprod && rc == MPI_SUCCESS; k++) {
        kvmesh_span_t kv;
        if (k == pl->qblock)
            continue;
        kv = kvm_layout_kv_span(&c->layout, v->len, pl->peer_kblock[k]);
        for (gb = pl->peer_rows[k].lo;
             gb < pl->peer_rows[k].lo + pl->peer_rows[k].len; gb++) {
            nrun = runs_into(v, v->indexs[gb], qlo, nq, kv, run);
            for (r = 0; r < nrun; r++)
                for (t = 0; t < 2 && rc == MPI_SUCCESS; t++) {
                    const char *s = (const char *) in[t] + (size_t)
                        ((gb - pl->in[0].d[0].lo) * nq + run[r].j0 - qlo) * tok[t];
                    rc = MPI_Isend(s, (int) ((size_t) (run[r].j1 - run[r].j0) * tok[t]),
                                   MPI_BYTE, pl->peer[k], t, c->comm, &c->reqs[nreq++]);
                }
        }
    }
    for (gb = c->rows.lo; c->quant && gb < c->rows.lo + c->rows.len; gb++) {
        nrun = runs_into(v, v->indexs[gb], qlo, nq, v->kv, run);
        for (r = 0; r < nrun; r++)
            prefetch_scales(v, gb - c->rows.lo, run[r].slot - v->kv.lo);
    }
    /* my own tokens that I store */
    for (gb = c->rows.lo; gb < c->rows.lo + c->rows.len; gb++) {
        nrun = runs_into(v, v->indexs[gb], qlo, nq, v->kv, run);
        for (r = 0; r < nrun; r++)
            for (t = 0; t < 2; t++)
                place(&put[t], gb - c->rows.lo, run[r].slot - v->kv.lo,
                      (const char *) in[t] + (size_t) ((gb - pl->in[0].d[0].lo) * nq +
                                                       run[r].j0 - qlo) * tok[t],
                      run[r].j1 - run[r].j0, 1);
    }
    /* receives, in the order each peer sent them */
    for (k = 0; k < pl->qprod && rc == MPI_SUCCESS; k++) {
        if (k == pl->qblock)
            continue;
        for (gb = c->rows.lo; gb < c->rows.lo + c->rows.len; gb++) {
            int64_t row = gb - c->rows.lo;
            nrun = runs_into(v, v->indexs[gb], k * nq, nq, v->kv, run);
            for (r = 0; r < nrun; r++)
                for (t = 0; t < 2 && rc == MPI_SUCCESS; t++) {
                    int64_t slot = run[r].slot - v->kv.lo, ntok = run[r].j1 - run[r].j0;
                    int bytes = (int) ((size_t) ntok * tok[t]);
                    if (direct) {
                        char *d = (char *) v->data[t] + (size_t) ((row * v->kv.len + slot) *
                            c->head[t].len * c->hbytes[t]);
                        rc = MPI_Irecv(d, bytes, MPI_BYTE, pl->peer[k], t, c->comm,
                                       &c->reqs[nreq++]);
                    } else {
                        rc = MPI_Recv(c->scratch, bytes, MPI_BYTE, pl->peer[k], t,
                                      c->comm, MPI_STATUS_IGNORE);
                        if (rc == MPI_SUCCESS)
                            place(&put[t], row, slot, c->scratch, ntok, 1);
                    }
                }
        }
    }
    kvm_stream_fence();
    if (nreq) {
        int wrc = MPI_Waitall((int) nreq, c->reqs, MPI_STATUSES_IGNORE);
        if (rc == MPI_SUCCESS)
            rc = wrc;
    }
    return KVMESH_MPI(rc);
}

kvmesh_status_t
kvmesh_view_concatenate(kvmesh_view_t *v, kvmesh_mode_t mode, int64_t n,
                        kvmesh_dtype_t dtype, const void *key,
                        const void *value, const kvmesh_mask_t **mask)
{
    const void *in[2] = { key, value };
    kvmesh_status_t st = KVMESH_SUCCESS;
    const kvmesh_plan_t *pl;
    kvmesh_cache_t *c;
    int64_t b;

    if (!v)
        return KVMESH_ERR_ARG;
    c = v->cache;
    if (mode >= KVMESH_NMODES || n <= 0 || kvm_dtype_size(dtype) == 0 ||
        !key || !value)
        st = KVMESH_ERR_ARG;
    if (c->checked) {
        /* arguments that may differ between ranks cost a message to agree
         * on; the replicated state rides along */
        int64_t vals[4] = { (int64_t) mode, n, (int64_t) dtype, v->layer };
        if (st == KVMESH_SUCCESS)
            st = kvm_cache_usable(c);
        KVMESH_TRY(kvm_agree_state(c->comm, st, kvm_cache_state(c), vals, 4));
    }
    KVMESH_TRY(kvm_cache_usable(c));
    if (st != KVMESH_SUCCESS) {
        c->failed = true;      /* unchecked: the other ranks may have gone on */
        return st;
    }
    if (!v->ready)
        return KVMESH_ERR_EMPTY;   /* replicated: every rank says so */
    if (n > c->A)
        return KVMESH_ERR_TOO_LONG;
    /* from here on every verdict comes from replicated state; every layer
     * kind counts tokens up to S, so the layers of one model stay in step */
    for (b = 0; b < c->B; b++)
        if (n > c->S - v->indexs[b])
            return KVMESH_ERR_CAPACITY;
    pl = kvm_plan_of(c, mode, n);
    KVMESH_TRY(pl->verdict);
    st = route(v, pl, n, dtype, in);
    if (st != KVMESH_SUCCESS) {
        c->failed = true;      /* some tokens may be stored, some not */
        return st;
    }
    for (b = 0; b < c->B; b++)
        v->indexs[b] += (int32_t) n;
    v->mask.n = n;
    if (mask)
        *mask = &v->mask;
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_view_local(const kvmesh_view_t *v, kvmesh_kv_t which, const void **data,
                  kvmesh_block_t *blk)
{
    const kvmesh_cache_t *c;

    if (!v || (which != KVMESH_KEY && which != KVMESH_VALUE) || !blk)
        return KVMESH_ERR_ARG;
    c = v->cache;
    KVMESH_TRY(kvm_cache_usable(c));
    if (!v->ready)
        return KVMESH_ERR_EMPTY;
    if (data)
        *data = v->data[which];
    blk->global[0] = c->B, blk->global[1] = v->len;
    blk->global[2] = c->H[which], blk->global[3] = c->D[which];
    blk->offset[0] = c->rows.lo, blk->shape[0] = c->rows.len;
    blk->offset[1] = v->kv.lo, blk->shape[1] = v->kv.len;
    blk->offset[2] = c->head[which].lo, blk->shape[2] = c->head[which].len;
    blk->offset[3] = c->dim[which].lo, blk->shape[3] = c->dim[which].len;
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_view_read(const kvmesh_view_t *v, kvmesh_kv_t which, int64_t row,
                 int64_t slot0, int64_t slot1, kvmesh_dtype_t dtype, void *out,
                 size_t out_bytes)
{
    const kvmesh_cache_t *c;
    int64_t vec, D, i0, r;
    size_t per, osize = kvm_dtype_size(dtype);

    if (!v || (which != KVMESH_KEY && which != KVMESH_VALUE) || !out || !osize)
        return KVMESH_ERR_ARG;
    c = v->cache;
    KVMESH_TRY(kvm_cache_usable(c));
    if (!v->ready)
        return KVMESH_ERR_EMPTY;
    r = row - c->rows.lo;
    if (r < 0 || r >= c->rows.len || slot0 < 0 || slot0 > slot1 || slot1 > v->kv.len)
        return KVMESH_ERR_ARG;
    per = (size_t) (c->head[which].len * c->dim[which].len);
    if ((size_t) (slot1 - slot0) * per > out_bytes / osize)
        return KVMESH_ERR_ARG;
    if (!c->quant)
        return kvmesh_convert(out, dtype, (const char *) v->data[which] +
                              (size_t) (r * v->kv.len + slot0) * per * c->esize,
                              c->dtype, (size_t) (slot1 - slot0) * per);
    /* dequantize head vector by head vector, 64 elements at a time through
     * the stack, so concurrent readers share nothing */
    D = c->D[which];
    for (vec = (r * v->kv.len + slot0) * c->head[which].len;
         vec < (r * v->kv.len + slot1) * c->head[which].len; vec++) {
        const char *codes = (const char *) v->data[which] + vec * c->hbytes[which];
        const float *sc = v->scale[which] + vec * c->nscale[which];
        for (i0 = 0; i0 < D; i0 += KVM_NF4_BLOCK) {
            int64_t i1 = i0 + KVM_NF4_BLOCK < D ? i0 + KVM_NF4_BLOCK : D;
            float f[KVM_NF4_BLOCK];
            float *dst = dtype == KVMESH_F32 ? (float *) out : f;
            if (c->quant == KVMESH_QUANT_INT8)
                kvm_q8_decode((const int8_t *) codes + i0, *sc, i1 - i0, dst);
            else
                kvm_nf4_decode((const uint8_t *) codes, sc, i0, i1, dst);
            if (dtype != KVMESH_F32)
                kvm_convert(out, dtype, f, KVMESH_F32, (size_t) (i1 - i0));
            out = (char *) out + (size_t) (i1 - i0) * osize;
        }
    }
    return KVMESH_SUCCESS;
}

MPI_Comm
kvmesh_view_kv_comm(const kvmesh_view_t *v)
{
    if (!v)
        return MPI_COMM_NULL;
    return kvmesh_view_whole(v) ? MPI_COMM_SELF : v->cache->kv_comm;
}

bool
kvmesh_view_whole(const kvmesh_view_t *v)
{
    return v && v->kv.len == v->len;
}

kvmesh_status_t
kvmesh_view_scales(const kvmesh_view_t *v, kvmesh_kv_t which,
                   const float **scales, int64_t *per_head)
{
    if (!v || (which != KVMESH_KEY && which != KVMESH_VALUE) || !scales || !per_head)
        return KVMESH_ERR_ARG;
    KVMESH_TRY(kvm_cache_usable(v->cache));
    if (!v->ready)
        return KVMESH_ERR_EMPTY;
    *scales = v->scale[which];
    *per_head = v->cache->nscale[which];
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_view_slot_position(const kvmesh_view_t *v, int64_t row, int64_t slot,
                          int64_t *pos)
{
    if (!v || !pos || row < 0 || row >= v->cache->B || slot < 0 ||
        slot >= v->kv.len)
        return KVMESH_ERR_ARG;
    KVMESH_TRY(kvm_cache_usable(v->cache));
    *pos = kvm_slot_position(v, row, v->kv.lo + slot);
    return KVMESH_SUCCESS;
}

const int32_t *
kvmesh_view_indexs(const kvmesh_view_t *v)
{
    return v ? v->indexs : NULL;
}

const int32_t *
kvmesh_view_starts(const kvmesh_view_t *v)
{
    return v ? v->starts : NULL;
}

kvmesh_mask_detail_t
kvmesh_view_detail(const kvmesh_view_t *v)
{
    kvmesh_mask_detail_t none = { KVMESH_MASK_FULL, 0, 0 };
    return v ? v->detail : none;
}
