/* The redistribution engine: see redist.h.
 *
 * Every rank of the parent learns both sides' plain description (layout,
 * the layers' kinds and storage lengths, the replicated per-row state)
 * from one member of each side, so that every rank enumerates the same
 * transfers without further messages.  A transfer is made of pieces: one
 * source row's positions [p0, p1) that lie in consecutive storage slots on
 * both sides, for a range of heads and of dim units (elements, or whole
 * head vectors of a quantized cache).  Each destination block takes each
 * piece from one source replica: the one on the same parent rank when
 * there is one (a local copy, no MPI), else one picked by the
 * destination's rank, so that replicas share the load.  Data moves from
 * storage to storage through MPI derived datatypes: no staging buffer. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "mesh.h"
#include "redist.h"
#include "status.h"
#include "view.h"

typedef kvm_side_head_t side_head_t;
typedef kvm_side_t side_t;

static size_t
blob_bytes(const side_head_t *h)
{
    return (size_t) h->nl * (sizeof(kvmesh_mask_detail_t) + sizeof(int64_t) +
                             2 * (size_t) h->lo.B * sizeof(int32_t));
}

static void
blob_point(side_t *s)
{
    s->detail = (kvmesh_mask_detail_t *) s->blob;
    s->len = (int64_t *) (s->detail + s->h.nl);
    s->state = (int32_t *) (s->len + s->h.nl);
}

void
kvm_side_free(kvm_side_t *s)
{
    free(s->blob);
    free(s->parent);
    free(s->base);
}

/* What a member of a side knows of it: everything, as plain data. */
kvmesh_status_t
kvm_side_member(side_t *s, int me, const side_head_t *h)
{
    s->me = me;
    s->h = *h;
    s->blob = malloc(blob_bytes(h));
    s->base = malloc((size_t) h->nl * 4 * sizeof *s->base);
    if (!s->blob || !s->base)
        return KVMESH_ERR_NOMEM;
    blob_point(s);
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvm_side_of_cache(side_t *s, const kvmesh_cache_t *c)
{
    side_head_t h;
    int64_t l;
    int t;

    memset(s, 0, sizeof *s);
    s->me = -1;
    if (!c)
        return KVMESH_SUCCESS;
    memset(&h, 0, sizeof h);
    h.lo = c->layout;
    h.nl = c->meta.num_hidden_layers;
    h.dtype = c->dtype, h.quant = c->quant, h.esize = (int64_t) c->esize;
    for (t = 0; t < 2; t++)
        h.hbytes[t] = c->hbytes[t], h.nscale[t] = c->nscale[t];
    KVMESH_TRY(kvm_side_member(s, c->mesh->rank, &h));
    for (l = 0; l < h.nl; l++) {
        s->detail[l] = c->views[l].detail;
        s->len[l] = c->views[l].len;
        for (t = 0; t < 2; t++) {
            s->base[4 * l + 2 * t] = (char *) c->views[l].data[t];
            s->base[4 * l + 2 * t + 1] = (char *) c->views[l].scale[t];
        }
    }
    memcpy(s->state, c->state, (size_t) (h.nl * 2 * h.lo.B) * sizeof(int32_t));
    s->hash = kvm_cache_state(c);
    s->grids = (kvm_grids_t *) &c->grids;     /* a cache of grids, not state */
    s->status = c->failed ? KVMESH_ERR_DIVERGED : KVMESH_SUCCESS;
    for (l = 0; l < h.nl && s->status == KVMESH_SUCCESS; l++)
        if (!c->views[l].ready)
            s->status = KVMESH_ERR_EMPTY;
    return KVMESH_SUCCESS;
}

/* Room for what a side's root tells the others of its description. */
static kvmesh_status_t
side_alloc(side_t *s)
{
    if (!s->blob)
        s->blob = malloc(blob_bytes(&s->h));
    s->parent = malloc((size_t) s->h.lo.nranks * sizeof *s->parent);
    if (!s->blob || !s->parent)
        return KVMESH_ERR_NOMEM;
    blob_point(s);
    return KVMESH_SUCCESS;
}

/* The rest of a side's description, from its mesh rank 0 (at parent rank
 * root) to every rank of comm. */
static int
blob_share(side_t *s, int root, MPI_Comm comm)
{
    return MPI_Bcast(s->blob, (int) blob_bytes(&s->h), MPI_BYTE, root, comm);
}

/* ---- geometry of the arrays ------------------------------------------ */

void
kvm_side_box(const side_t *s, int r, int64_t l, int t, int a, kvm_box_t *box, size_t *unit)
{
    int coords[KVMESH_NAXES];

    kvm_layout_coords(&s->h.lo, r, coords);
    (void) kvm_layout_cache_box(&s->h.lo, coords, t, s->len[l], box);
    if (s->h.quant || a) {
        box->d[3] = (kvmesh_span_t) { 0, 1 };   /* whole head vectors */
        *unit = a ? (size_t) s->h.nscale[t] * sizeof(float) : (size_t) s->h.hbytes[t];
    } else {
        *unit = (size_t) s->h.esize;
    }
}

static char *
array_base(const side_t *s, int64_t l, int t, int a)
{
    return s->base[4 * l + 2 * t + a];
}

/* By position, by position mod the ring, or, in a canonical array (a
 * pure), the last positions of a window from slot 0. */
int
kvm_side_runs(const side_t *s, int64_t l, int64_t L, int64_t p0, int64_t p1, kvmesh_span_t kv,
          kvm_run_t run[2])
{
    const bool ring = s->detail[l].kind == KVMESH_MASK_SLIDING;

    if (ring && s->h.canon) {
        const int64_t base = L - (L < s->len[l] ? L : s->len[l]);
        int count = kvm_layout_runs(s->len[l], false, p0 - base, p1 - base, kv, run), i;
        for (i = 0; i < count; i++)
            run[i].p0 += base, run[i].p1 += base;
        return count;
    }
    return kvm_layout_runs(s->len[l], ring, p0, p1, kv, run);
}

static bool
box_equal(const kvm_box_t *a, const kvm_box_t *b)
{
    int i;

    for (i = 0; i < 4; i++)
        if (a->d[i].lo != b->d[i].lo || a->d[i].len != b->d[i].len)
            return false;
    return true;
}

/* The source rank that sends destination rank d what source rank s's
 * block holds: among the ranks with the same block (replicas), the one on
 * d's parent rank, else one picked by d. */
static int
holder(const side_t *src, const side_t *dst, int s, int d, int64_t l, int t)
{
    kvm_box_t bs, b;
    size_t unit;
    int r, count = 0, pick;

    kvm_side_box(src, s, l, t, 0, &bs, &unit);
    for (r = 0; r < src->h.lo.nranks; r++) {
        kvm_side_box(src, r, l, t, 0, &b, &unit);
        if (!box_equal(&b, &bs))
            continue;
        if (src->parent[r] == dst->parent[d])
            return r;
        count++;
    }
    pick = d % count;
    for (r = 0; r < src->h.lo.nranks; r++) {
        kvm_side_box(src, r, l, t, 0, &b, &unit);
        if (box_equal(&b, &bs) && pick-- == 0)
            return r;
    }
    return s;
}

/* ---- block lists: what one side of a pair reads or writes, in order --- */

typedef struct {
    MPI_Aint *addr;
    int *len;
    int64_t n, cap, bytes;
    bool nomem;
} blist_t;

static void
blist_add(blist_t *bl, char *p, size_t len)
{
    MPI_Aint a;

    MPI_Get_address(p, &a);
    if (bl->n && bl->addr[bl->n - 1] + bl->len[bl->n - 1] == a &&
        (size_t) bl->len[bl->n - 1] + len <= (size_t) INT32_MAX) {
        bl->len[bl->n - 1] += (int) len;
    } else {
        if (bl->n == bl->cap) {
            int64_t cap = bl->cap ? 2 * bl->cap : 64;
            MPI_Aint *na = realloc(bl->addr, (size_t) cap * sizeof *na);
            int *nl = na ? realloc(bl->len, (size_t) cap * sizeof *nl) : NULL;
            if (na)
                bl->addr = na;
            if (!na || !nl) {
                bl->nomem = true;
                return;
            }
            bl->len = nl;
            bl->cap = cap;
        }
        bl->addr[bl->n] = a;
        bl->len[bl->n++] = (int) len;
    }
    bl->bytes += (int64_t) len;
}

/* One piece: source row `row`, positions [p0, p1) starting in global slot
 * `slot` of this side's storage (of row `row` + the side's row offset),
 * heads [h0, h1), units [e0, e1). */
typedef struct {
    int64_t row, n, slot[2], h0, h1, e0, e1;
} piece_t;

static void
blist_piece(blist_t *bl, char *base, const kvm_box_t *box, size_t unit,
            int64_t row, int64_t slot, const piece_t *pc)
{
    const int64_t r = row - box->d[0].lo, s = slot - box->d[1].lo;
    const int64_t K = box->d[1].len, H = box->d[2].len, U = box->d[3].len;
    int64_t i, h;

    for (i = 0; i < pc->n; i++)
        for (h = pc->h0; h < pc->h1; h++)
            blist_add(bl, base + (size_t) ((((r * K + s + i) * H + h - box->d[2].lo) * U +
                                            pc->e0 - box->d[3].lo)) * unit,
                      (size_t) (pc->e1 - pc->e0) * unit);
}

/* ---- the pieces of a pair -------------------------------------------- */

/* Rounds: a pair's pieces, in the order both ends enumerate them, go into
 * consecutive rounds of at most `cap` head rows each (a piece's head rows,
 * slots x heads, bound the block-list entries it adds at either end);
 * both ends cut the stream at the same pieces. */
typedef struct {
    int64_t round, rows;           /* the round being filled, its rows */
} cut_t;

typedef struct {
    const side_t *src, *dst;
    int64_t slot;                  /* destination row of source row 0 */
    blist_t *send, *recv;          /* my lists of this pair (NULL: not mine) */
    cut_t *cut;                    /* the pair's rounds so far */
    int64_t cap, want;             /* rows a round; the round to list */
} pair_t;

/* Every piece source rank s holds of destination rank d's block of array
 * (l, t, a), added to the pair's lists in one order on both sides. */
static void
pair_pieces(pair_t *p, int s, int d, int64_t l, int t, int a)
{
    const side_t *src = p->src, *dst = p->dst;
    const bool ring = src->detail[l].kind == KVMESH_MASK_SLIDING;
    const int64_t Ls = src->len[l], Ld = dst->len[l];
    kvm_box_t bs, bd;
    size_t unit;
    int64_t r, r0, r1;
    piece_t pc;

    kvm_side_box(src, s, l, t, a, &bs, &unit);
    kvm_side_box(dst, d, l, t, a, &bd, &unit);
    r0 = bs.d[0].lo > bd.d[0].lo - p->slot ? bs.d[0].lo : bd.d[0].lo - p->slot;
    r1 = bs.d[0].lo + bs.d[0].len;
    if (r1 > bd.d[0].lo + bd.d[0].len - p->slot)
        r1 = bd.d[0].lo + bd.d[0].len - p->slot;
    if (r1 > src->h.lo.B)
        r1 = src->h.lo.B;
    pc.h0 = bs.d[2].lo > bd.d[2].lo ? bs.d[2].lo : bd.d[2].lo;
    pc.h1 = bs.d[2].lo + bs.d[2].len < bd.d[2].lo + bd.d[2].len
          ? bs.d[2].lo + bs.d[2].len : bd.d[2].lo + bd.d[2].len;
    pc.e0 = bs.d[3].lo > bd.d[3].lo ? bs.d[3].lo : bd.d[3].lo;
    pc.e1 = bs.d[3].lo + bs.d[3].len < bd.d[3].lo + bd.d[3].len
          ? bs.d[3].lo + bs.d[3].len : bd.d[3].lo + bd.d[3].len;
    if (pc.h0 >= pc.h1 || pc.e0 >= pc.e1)
        return;
    for (r = r0 < 0 ? 0 : r0; r < r1; r++) {
        /* the filled positions: all of them, or what both rings hold */
        const int64_t L = src->state[(2 * l) * src->h.lo.B + r];
        int64_t keep = L < Ls ? L : Ls, p0;
        kvm_run_t dr[2], sr[2];
        int i, j, nd, ns;

        keep = keep < Ld ? keep : Ld;
        p0 = ring ? L - keep : 0;
        nd = kvm_side_runs(dst, l, L, p0, L, bd.d[1], dr);
        for (i = 0; i < nd; i++) {
            ns = kvm_side_runs(src, l, L, dr[i].p0, dr[i].p1, bs.d[1], sr);
            for (j = 0; j < ns; j++) {
                const int64_t rows = (sr[j].p1 - sr[j].p0) * (pc.h1 - pc.h0);
                if (p->cut->rows && p->cut->rows + rows > p->cap)
                    p->cut->round++, p->cut->rows = 0;
                p->cut->rows += rows;
                if (p->cut->round != p->want)
                    continue;
                pc.row = r;
                pc.n = sr[j].p1 - sr[j].p0;
                pc.slot[0] = sr[j].slot;
                pc.slot[1] = dr[i].slot + sr[j].p0 - dr[i].p0;
                if (p->send)
                    blist_piece(p->send, array_base(src, l, t, a), &bs, unit, r,
                                pc.slot[0], &pc);
                if (p->recv)
                    blist_piece(p->recv, array_base(dst, l, t, a), &bd, unit,
                                r + p->slot, pc.slot[1], &pc);
            }
        }
    }
}

/* ---- plans ------------------------------------------------------------ */

/* A plan: the (source rank, destination rank, layer, tensor) transfers
 * this rank takes part in, in the order both ends enumerate them.  It
 * depends on the two layouts, the ranks' places in the parent and this
 * rank's roles, not on the rows' fill levels, so it is computed once per
 * such pair of layouts and kept in a small process-wide cache. */
typedef struct {
    uint64_t key;
    int32_t *task;                 /* [n][s, d, l, t] */
    int64_t n;
} plan_t;

#define KVM_PLANS 16
static plan_t plans[KVM_PLANS];
static int64_t plans_next;
static pthread_mutex_t plans_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t
plan_key(const side_t *src, const side_t *dst, int me)
{
    const side_t *sd[2] = { src, dst };
    uint64_t h = kvm_hash(0, &me, sizeof me);
    int i;

    for (i = 0; i < 2; i++) {
        const side_t *s = sd[i];
        h = kvm_hash(h, &s->h, sizeof s->h);
        h = kvm_hash(h, &s->me, sizeof s->me);
        h = kvm_hash(h, s->detail, (size_t) s->h.nl * sizeof *s->detail);
        h = kvm_hash(h, s->len, (size_t) s->h.nl * sizeof *s->len);
        h = kvm_hash(h, s->parent, (size_t) s->h.lo.nranks * sizeof *s->parent);
    }
    return h;
}

/* This rank's tasks for the two sides, from the cache or computed; a copy
 * the caller frees (NULL: out of memory). */
static int32_t *
plan_get(const side_t *src, const side_t *dst, int me, int64_t *n)
{
    const uint64_t key = plan_key(src, dst, me);
    int32_t *task = NULL, *copy;
    int64_t i, cap = 0, l;
    int s, d, t;

    pthread_mutex_lock(&plans_lock);
    for (i = 0; i < KVM_PLANS; i++)
        if (plans[i].task && plans[i].key == key) {
            copy = malloc((size_t) (4 * plans[i].n + 1) * sizeof *copy);
            if (copy)
                memcpy(copy, plans[i].task, (size_t) (4 * plans[i].n) * sizeof *copy);
            *n = plans[i].n;
            pthread_mutex_unlock(&plans_lock);
            return copy;
        }
    pthread_mutex_unlock(&plans_lock);
    *n = 0;
    for (d = 0; d < dst->h.lo.nranks; d++)
        for (s = 0; s < src->h.lo.nranks; s++) {
            if (s != src->me && d != dst->me)
                continue;
            for (l = 0; l < src->h.nl; l++)
                for (t = 0; t < 2; t++) {
                    if (holder(src, dst, s, d, l, t) != s)
                        continue;
                    if (*n == cap) {
                        int32_t *more = realloc(task, (size_t) (4 * (cap = 2 * cap + 16)) *
                                                          sizeof *more);
                        if (!more) {
                            free(task);
                            return NULL;
                        }
                        task = more;
                    }
                    task[4 * *n] = s, task[4 * *n + 1] = d;
                    task[4 * *n + 2] = (int32_t) l, task[4 * *n + 3] = t;
                    (*n)++;
                }
        }
    if (!task && !(task = malloc(sizeof *task)))
        return NULL;
    copy = malloc((size_t) (4 * *n + 1) * sizeof *copy);
    if (copy) {
        memcpy(copy, task, (size_t) (4 * *n) * sizeof *copy);
        pthread_mutex_lock(&plans_lock);
        i = plans_next++ % KVM_PLANS;         /* the oldest goes */
        free(plans[i].task);
        plans[i] = (plan_t) { key, copy, *n };
        pthread_mutex_unlock(&plans_lock);
    }
    return task;
}

/* A local copy: the bytes of list a, in order, into those of list b. */
static void
blist_copy(const blist_t *to, const blist_t *from)
{
    int64_t i = 0, j = 0, oi = 0, oj = 0;

    while (i < to->n && j < from->n) {
        int64_t m = to->len[i] - oi < from->len[j] - oj ? to->len[i] - oi
                                                         : from->len[j] - oj;
        memcpy((char *) (to->addr[i] + oi), (const char *) (from->addr[j] + oj), (size_t) m);
        oi += m, oj += m;
        if (oi == to->len[i])
            i++, oi = 0;
        if (oj == from->len[j])
            j++, oj = 0;
    }
}

/* Posts one pair's message, a receive or a send, storage to storage
 * through a datatype over the pair's list (nothing when it is empty). */
static int
post(const blist_t *bl, int peer, bool recv, MPI_Comm comm, MPI_Datatype *types,
     int *ntypes, MPI_Request *req, int *nreq)
{
    MPI_Datatype *t = &types[*ntypes];
    int rc;

    if (!bl->bytes)
        return MPI_SUCCESS;
    rc = MPI_Type_create_hindexed((int) bl->n, bl->len, bl->addr, MPI_BYTE, t);
    if (rc != MPI_SUCCESS)
        return rc;
    (*ntypes)++;
    rc = MPI_Type_commit(t);
    if (rc != MPI_SUCCESS)
        return rc;
    return recv ? MPI_Irecv(MPI_BOTTOM, 1, *t, peer, 0, comm, &req[(*nreq)++])
                : MPI_Isend(MPI_BOTTOM, 1, *t, peer, 0, comm, &req[(*nreq)++]);
}

/* ---- insert ----------------------------------------------------------- */

/* Can src's rows go into dst's rows [slot, slot + B_src)?  Every rank
 * decides alike from the shared descriptions. */
static kvmesh_status_t
compatible(const side_t *src, const side_t *dst, int64_t slot)
{
    const kvm_layout_t *a = &src->h.lo, *b = &dst->h.lo;
    int64_t l, r;

    if (slot < 0 || slot > b->B - a->B)
        return KVMESH_ERR_ARG;
    if (src->h.nl != dst->h.nl || a->H[0] != b->H[0] || a->H[1] != b->H[1] ||
        a->D[0] != b->D[0] || a->D[1] != b->D[1] || src->h.dtype != dst->h.dtype ||
        src->h.quant != dst->h.quant)
        return KVMESH_ERR_ARG;
    for (l = 0; l < src->h.nl; l++)
        if (src->detail[l].kind != dst->detail[l].kind ||
            (src->detail[l].kind == KVMESH_MASK_SLIDING &&
             src->detail[l].window != dst->detail[l].window) ||
            (src->detail[l].kind == KVMESH_MASK_CHUNK &&
             src->detail[l].chunk != dst->detail[l].chunk))
            return KVMESH_ERR_ARG;
    if (a->S > b->S)
        return KVMESH_ERR_CAPACITY;
    for (l = 0; l < src->h.nl; l++)
        for (r = 0; r < a->B; r++)
            if (src->state[2 * l * a->B + r] > b->S)
                return KVMESH_ERR_CAPACITY;
    return KVMESH_SUCCESS;
}

/* What each rank tells the others first: its mesh rank on each side, the
 * slot, each side's state hash, its verdict so far, the engine it wants
 * (DEFAULT: none; those who want one must want the same), each side's
 * description hash, its staging cap (0: none; the smallest one holds). */
#define NINFO 10

/* ... with each side's header, from its members. */
typedef struct {
    int64_t info[NINFO];
    side_head_t head[2];
} record_t;

/* Hash of what a member knows of its side's description (0 outside). */
static uint64_t
side_desc(const side_t *s)
{
    uint64_t h;

    if (s->me < 0)
        return 0;
    h = kvm_hash(0, &s->h, sizeof s->h);
    return kvm_hash(h, s->blob, (size_t) s->h.nl * (sizeof *s->detail + sizeof *s->len));
}

/* The members of one side from the gathered mesh ranks (column col of
 * info): each mesh rank on exactly one parent rank. */
static kvmesh_status_t
members(const record_t *rec, int np, int col, int nranks, int *parent)
{
    int p, r, seen = 0;

    for (r = 0; r < nranks; r++)
        parent[r] = -1;
    for (p = 0; p < np; p++) {
        int64_t m = rec[p].info[col];
        if (m < 0)
            continue;
        if (m >= nranks || parent[m] >= 0)
            return KVMESH_ERR_ARG;
        parent[m] = p;
        seen++;
    }
    return seen == nranks ? KVMESH_SUCCESS : KVMESH_ERR_ARG;
}

kvmesh_status_t
kvm_redist_move(side_t *src, side_t *dst, int64_t slot, MPI_Comm comm,
                const kvmesh_cache_t *opts, kvmesh_status_t local)
{
    kvmesh_engine_t engine = opts ? opts->engine : KVMESH_ENGINE_DEFAULT;
    int64_t staging = opts ? opts->staging : 0;
    int64_t *info, i, first[2] = { -1, -1 };
    int np = 0, me = 0, p, s, d, rc, root[2] = { -1, -1 };
    kvmesh_status_t st = KVMESH_SUCCESS;
    MPI_Request *req = NULL;
    MPI_Datatype *types = NULL;
    blist_t *lists = NULL;
    record_t mine, *rec = NULL;
    side_t *sd[2] = { src, dst };
    int nreq = 0, ntypes = 0;
    int32_t *task = NULL;
    int64_t ntask = 0, cap, round, rounds = 1, agreed[2];
    int np2 = 0;
    cut_t *cuts = NULL;
    bool all_same = true;

    MPI_Comm_size(comm, &np);
    MPI_Comm_rank(comm, &me);
    /* who is who, the slot, each side's replicated state and, from its
     * members, its description: one allgather */
    memset(&mine, 0, sizeof mine);
    info = mine.info;
    info[0] = src->me, info[1] = dst->me, info[2] = slot;
    info[3] = (int64_t) src->hash, info[4] = (int64_t) dst->hash;
    info[5] = local > src->status ? local : src->status;
    info[5] = info[5] > dst->status ? info[5] : dst->status;
    info[6] = engine;              /* DEFAULT: no opinion */
    info[7] = (int64_t) side_desc(src), info[8] = (int64_t) side_desc(dst);
    info[9] = staging;             /* 0: no opinion */
    for (i = 0; i < 2; i++)
        if (sd[i]->me >= 0)
            mine.head[i] = sd[i]->h;
    rec = malloc((size_t) np * sizeof *rec);
    KVMESH_GOTO(st, kvm_agree(comm, rec ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM));
    rc = MPI_Allgather(&mine, (int) sizeof mine, MPI_BYTE, rec, (int) sizeof mine, MPI_BYTE,
                       comm);
    st = KVMESH_MPI(rc);
    /* from here on every rank reaches each verdict from the same data */
    for (p = 0; st == KVMESH_SUCCESS && p < np; p++) {
        const int64_t *q = rec[p].info;
        if (q[5] > (int64_t) st)
            st = (kvmesh_status_t) q[5];
        all_same = all_same && q[2] == slot;
        if (q[6] != KVMESH_ENGINE_DEFAULT) {
            all_same = all_same && (engine == KVMESH_ENGINE_DEFAULT || q[6] == engine);
            engine = (kvmesh_engine_t) q[6];
        }
        if (q[9] > 0)
            staging = staging > 0 && staging < q[9] ? staging : q[9];
        /* a side's members hold the same state (else it diverged) and
         * passed the same cache (else they passed different arguments) */
        for (i = 0; i < 2; i++) {
            if (q[i] < 0)
                continue;
            if (q[i] == 0)
                root[i] = p;
            if (first[i] < 0)
                first[i] = p;
            if (q[3 + i] != rec[first[i]].info[3 + i])
                st = KVMESH_ERR_DIVERGED;
            all_same = all_same && q[7 + i] == rec[first[i]].info[7 + i];
        }
    }
    if (st == KVMESH_SUCCESS && !all_same)
        st = KVMESH_ERR_MISMATCH;
    if (staging <= 0)
        staging = KVM_STAGING;
    if (st == KVMESH_SUCCESS && (root[0] < 0 || root[1] < 0))
        st = KVMESH_ERR_ARG;
    for (i = 0; st == KVMESH_SUCCESS && i < 2; i++) {
        sd[i]->h = rec[root[i]].head[i];
        st = side_alloc(sd[i]);
    }
    KVMESH_GOTO(st, kvm_agree(comm, st));
    /* the rest of both descriptions, from their mesh rank 0 */
    rc = blob_share(src, root[0], comm);
    if (rc == MPI_SUCCESS)
        rc = blob_share(dst, root[1], comm);
    st = KVMESH_MPI(rc);
    if (st == KVMESH_SUCCESS)
        st = members(rec, np, 0, src->h.lo.nranks, src->parent);
    if (st == KVMESH_SUCCESS)
        st = members(rec, np, 1, dst->h.lo.nranks, dst->parent);
    if (st == KVMESH_SUCCESS)
        st = compatible(src, dst, slot);
    if (engine == KVMESH_ENGINE_SCALAPACK) {
        KVMESH_GOTO(st, kvm_agree(comm, st));
        st = kvm_scalapack_move(src, dst, slot, comm);
        goto fail;
    }
    /* (a verdict so far is agreed with the first round's) */

    /* the lists of every pair this rank sends or receives in */
    np2 = src->h.lo.nranks + dst->h.lo.nranks;
    lists = calloc((size_t) (2 * np2), sizeof *lists);
    cuts = malloc((size_t) np2 * sizeof *cuts);
    req = malloc((size_t) np2 * sizeof *req);
    types = malloc((size_t) np2 * sizeof *types);
    if (st == KVMESH_SUCCESS && (!lists || !cuts || !req || !types))
        st = KVMESH_ERR_NOMEM;
    if (st == KVMESH_SUCCESS && !(task = plan_get(src, dst, me, &ntask)))
        st = KVMESH_ERR_NOMEM;
    /* a round's lists and datatypes stay within the staging cap: 64 bytes
     * an entry is what the lists and MPI's copy of them take at most */
    cap = staging / 64 / np2 > 1 ? staging / 64 / np2 : 1;
    for (round = 0; round < rounds; round++) {
        for (p = 0; cuts && p < np2; p++)
            cuts[p] = (cut_t) { 0, 0 };
        for (p = 0; lists && p < 2 * np2; p++)
            lists[p].n = lists[p].bytes = 0;
        for (i = 0; st == KVMESH_SUCCESS && i < ntask; i++) {
            const int32_t *k = &task[4 * i];
            pair_t pr = { src, dst, slot, NULL, NULL, NULL, cap, round };
            int a;
            s = k[0], d = k[1];
            if (s == src->me)
                pr.send = &lists[2 * d];                  /* what I send d */
            if (d == dst->me)
                pr.recv = &lists[2 * dst->h.lo.nranks + 2 * s + 1];   /* what I get from s */
            pr.cut = s == src->me ? &cuts[d] : &cuts[dst->h.lo.nranks + s];
            for (a = 0; a < (src->h.quant ? 2 : 1); a++)
                pair_pieces(&pr, s, d, k[2], k[3], a);
            if ((pr.send && pr.send->nomem) || (pr.recv && pr.recv->nomem))
                st = KVMESH_ERR_NOMEM;
        }
        /* every rank learns the verdict and, the first time, how many
         * rounds the busiest pair needs */
        agreed[0] = st, agreed[1] = 1;
        for (p = 0; round == 0 && cuts && p < np2; p++)
            agreed[1] = cuts[p].round + 1 > agreed[1] ? cuts[p].round + 1 : agreed[1];
        rc = MPI_Allreduce(MPI_IN_PLACE, agreed, 2, MPI_INT64_T, MPI_MAX, comm);
        st = rc == MPI_SUCCESS ? (kvmesh_status_t) agreed[0] : KVMESH_MPI(rc);
        if (round == 0)
            rounds = agreed[1];
        if (st != KVMESH_SUCCESS)
            goto fail;
        /* receives first, then sends, then the local copy, then wait */
        for (s = 0; rc == MPI_SUCCESS && dst->me >= 0 && s < src->h.lo.nranks; s++)
            if (src->parent[s] != me)
                rc = post(&lists[2 * dst->h.lo.nranks + 2 * s + 1], src->parent[s], true,
                          comm, types, &ntypes, req, &nreq);
        for (d = 0; rc == MPI_SUCCESS && src->me >= 0 && d < dst->h.lo.nranks; d++)
            if (dst->parent[d] != me)
                rc = post(&lists[2 * d], dst->parent[d], false, comm, types, &ntypes, req,
                          &nreq);
        if (rc == MPI_SUCCESS && src->me >= 0 && dst->me >= 0)
            blist_copy(&lists[2 * dst->h.lo.nranks + 2 * src->me + 1], &lists[2 * dst->me]);
        if (nreq) {
            int wrc = MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
            rc = rc == MPI_SUCCESS ? wrc : rc;
        }
        for (p = 0; p < ntypes; p++)
            MPI_Type_free(&types[p]);
        ntypes = nreq = 0;
        st = kvm_agree(comm, KVMESH_MPI(rc));
        if (st != KVMESH_SUCCESS)
            break;
    }
fail:
    for (p = 0; p < ntypes; p++)
        MPI_Type_free(&types[p]);
    for (p = 0; lists && p < 2 * np2; p++) {
        free(lists[p].addr);
        free(lists[p].len);
    }
    free(lists);
    free(cuts);
    free(req);
    free(types);
    free(rec);
    free(task);
    return st;
}

void
kvm_redist_rows(const side_t *src, int32_t *state, int64_t B, int64_t slot)
{
    int64_t l;
    int k;

    for (l = 0; l < src->h.nl; l++)
        for (k = 0; k < 2; k++)
            memcpy(state + (2 * l + k) * B + slot, src->state + (2 * l + k) * src->h.lo.B,
                   (size_t) src->h.lo.B * sizeof(int32_t));
}

/* The private duplicate of a parent communicator, kept on it as an
 * attribute: duplicating costs ~0.1 ms a call at 4 ranks, more than a
 * small insert's whole transfer.  The attribute is not copied with the
 * parent and goes (freeing the duplicate) when the parent is freed. */
static int dup_key = MPI_KEYVAL_INVALID;
static pthread_once_t dup_once = PTHREAD_ONCE_INIT;

static int
dup_delete(MPI_Comm parent, int key, void *value, void *extra)
{
    MPI_Comm *comm = value;

    (void) parent, (void) key, (void) extra;
    MPI_Comm_free(comm);
    free(comm);
    return MPI_SUCCESS;
}

static void
dup_key_create(void)
{
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, dup_delete, &dup_key, NULL);
}

kvmesh_status_t
kvm_redist_comm(MPI_Comm parent, MPI_Comm *comm)
{
    MPI_Comm *kept = NULL;
    int flag = 0, rc;

    if (parent == MPI_COMM_NULL)
        return KVMESH_ERR_ARG;
    pthread_once(&dup_once, dup_key_create);
    if (dup_key == MPI_KEYVAL_INVALID)
        return KVMESH_ERR_MPI;
    rc = MPI_Comm_get_attr(parent, dup_key, &kept, &flag);
    if (rc == MPI_SUCCESS && flag) {
        *comm = *kept;
        return KVMESH_SUCCESS;
    }
    kept = malloc(sizeof *kept);
    KVMESH_TRY(kvm_agree(parent, kept ? KVMESH_MPI(rc) : KVMESH_ERR_NOMEM));
    rc = MPI_Comm_dup(parent, kept);
    if (rc == MPI_SUCCESS) {
        MPI_Comm_set_errhandler(*kept, MPI_ERRORS_RETURN);
        rc = MPI_Comm_set_attr(parent, dup_key, kept);
        if (rc != MPI_SUCCESS)
            MPI_Comm_free(kept);
    }
    if (rc != MPI_SUCCESS)
        free(kept);
    else
        *comm = *kept;
    return KVMESH_MPI(rc);
}

kvmesh_status_t
kvm_redist_insert(kvmesh_cache_t *dstc, const kvmesh_cache_t *srcc, int64_t slot,
                  MPI_Comm parent)
{
    side_t src, dst;
    MPI_Comm comm;
    kvmesh_status_t st, local;

    KVMESH_TRY(kvm_redist_comm(parent, &comm));
    local = kvm_side_of_cache(&src, srcc);
    st = kvm_side_of_cache(&dst, dstc);
    local = local > st ? local : st;
    if (srcc && srcc == dstc)
        local = KVMESH_ERR_ARG;
    st = kvm_redist_move(&src, &dst, slot, comm, dstc, local);
    if (st == KVMESH_SUCCESS && dstc)
        kvm_redist_rows(&src, dstc->state, dstc->B, slot);
    kvm_side_free(&src);
    kvm_side_free(&dst);
    return st;
}

/* ---- reshard ---------------------------------------------------------- */

/* What a new cache needs to be the old one on another layout: the old
 * cache's metadata and options, sent from its mesh rank 0. */
typedef struct {
    kvmesh_meta_params_t meta;
    int64_t dtype, quant, checked, max_append, nl, engine, staging;
} reshard_head_t;

kvmesh_status_t
kvm_redist_reshard(const kvmesh_cache_t *old, const kvmesh_partition_t *part,
                   MPI_Comm parent, kvmesh_cache_t **out)
{
    reshard_head_t h;
    kvmesh_mask_detail_t *det = NULL;
    kvmesh_cache_params_t cp;
    kvmesh_meta_t *meta = NULL;
    kvmesh_cache_t *c = NULL;
    MPI_Comm comm = MPI_COMM_NULL;
    int64_t mine = old ? old->mesh->rank : -1, *ranks = NULL, l;
    kvmesh_status_t st = KVMESH_SUCCESS;
    int np, p, root = -1, rc;

    KVMESH_TRY(kvm_redist_comm(parent, &comm));
    MPI_Comm_size(comm, &np);
    ranks = malloc((size_t) np * sizeof *ranks);
    st = !ranks ? KVMESH_ERR_NOMEM : part && !out ? KVMESH_ERR_ARG
       : old && old->failed ? KVMESH_ERR_DIVERGED : KVMESH_SUCCESS;
    KVMESH_GOTO(st, kvm_agree(comm, st));
    rc = MPI_Allgather(&mine, 1, MPI_INT64_T, ranks, 1, MPI_INT64_T, comm);
    KVMESH_GOTO(st, kvm_agree(comm, KVMESH_MPI(rc)));
    for (p = 0; p < np; p++)
        if (ranks[p] == 0)
            root = p;
    KVMESH_GOTO(st, root < 0 ? KVMESH_ERR_ARG : KVMESH_SUCCESS);
    memset(&h, 0, sizeof h);
    if (mine == 0) {
        h.meta = old->meta;
        h.dtype = old->dtype, h.quant = old->quant, h.checked = old->checked;
        h.max_append = old->A, h.nl = old->meta.num_hidden_layers;
        h.engine = old->engine, h.staging = old->staging;
    }
    rc = MPI_Bcast(&h, (int) sizeof h, MPI_BYTE, root, comm);
    KVMESH_GOTO(st, kvm_agree(comm, KVMESH_MPI(rc)));
    det = malloc((size_t) h.nl * sizeof *det);
    KVMESH_GOTO(st, kvm_agree(comm, det ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM));
    for (l = 0; mine == 0 && l < h.nl; l++)
        det[l] = old->views[l].detail;
    rc = MPI_Bcast(det, (int) (h.nl * (int64_t) sizeof *det), MPI_BYTE, root, comm);
    KVMESH_GOTO(st, kvm_agree(comm, KVMESH_MPI(rc)));
    /* the new cache, collectively on the new mesh; then all agree */
    if (part) {
        kvmesh_cache_params_init(&cp);
        cp.dtype = (kvmesh_dtype_t) h.dtype, cp.quant = (kvmesh_quant_t) h.quant;
        cp.checked = h.checked, cp.max_append = h.max_append, cp.details = det;
        cp.engine = (kvmesh_engine_t) h.engine, cp.staging_bytes = h.staging;
        st = kvmesh_meta_create(&h.meta, &meta);
        if (st == KVMESH_SUCCESS)
            st = kvmesh_cache_init(meta, part, &cp, &c);
        kvmesh_meta_free(&meta);
    }
    KVMESH_GOTO(st, kvm_agree(comm, st));
    KVMESH_GOTO(st, kvm_redist_insert(c, old, 0, comm));
    if (out)
        *out = c;
    c = NULL;
fail:
    (void) kvmesh_cache_free(&c);
    free(det);
    free(ranks);
    return st;
}
