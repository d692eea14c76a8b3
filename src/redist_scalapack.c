/* The ScaLAPACK engine: the redistribution engine's moves made with
 * ScaLAPACK's p?gemr2d, and the accessor that hands a row of a layer to a
 * ScaLAPACK user in place (kvmesh_cache_scalapack).
 *
 * One row of one array (a layer's K or V storage, or their scales) is a
 * matrix of storage slots (columns) by the slot's bytes of every head
 * (rows, in 4-byte words: kvm_layout_matrix), block-distributed over the
 * ranks that hold the row; replicas of the blocks form further grids.
 * Every parent rank walks the same rows, layers and position runs and
 * calls Cpigemr2d for each run, from one source replica's grid into each
 * destination replica's.  When a block's column is no whole number of
 * words (a head dim of 5 in bf16), the engine widens every byte to a word
 * in a buffer and narrows the destination's back: slower, still exact.
 * It is the independent oracle of the multi-rank tests and a baseline of
 * the benchmark, not the fast path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blacs.h"
#include "layout.h"
#include "mesh.h"
#include "redist.h"
#include "status.h"
#include "view.h"

typedef kvm_side_t side_t;

/* Heads and units per head of array a of tensor t. */
static void
array_shape(const side_t *s, int t, int a, int64_t *H, int64_t *U)
{
    *H = s->h.lo.H[t];
    *U = s->h.quant || a ? 1 : s->h.lo.D[t];
}

/* The matrix of row `row` of array (l, t, a) at mesh rank r; false when the
 * rank holds no block of the row. */
static bool
rank_matrix(const side_t *s, int r, int64_t l, int t, int a, int64_t row, int64_t elem,
            kvm_matrix_t *m, kvm_box_t *box)
{
    int64_t H, U;
    size_t unit;

    kvm_side_box(s, r, l, t, a, box, &unit);
    if (row < box->d[0].lo || row >= box->d[0].lo + box->d[0].len)
        return false;
    array_shape(s, t, a, &H, &U);
    return kvm_layout_matrix(box, H, U, s->len[l], unit, elem, m);
}

/* Can every block of array (l, t, a) of side s be read in elements of
 * elem bytes? */
static bool
side_fits(const side_t *s, int64_t l, int t, int a, int64_t elem)
{
    kvm_matrix_t m;
    kvm_box_t box;
    int64_t H, U;
    size_t unit;
    int r;

    array_shape(s, t, a, &H, &U);
    for (r = 0; r < s->h.lo.nranks; r++) {
        kvm_side_box(s, r, l, t, a, &box, &unit);
        if (!kvm_layout_matrix(&box, H, U, s->len[l], unit, elem, &m) ||
            m.m > INT32_MAX || m.n > INT32_MAX || m.row_bytes / (size_t) elem > INT32_MAX)
            return false;
    }
    return true;
}

/* My block of one row of an array in one grid of a side. */
typedef struct {
    int context;                   /* -1: I hold no block in this grid */
    int desc[9];
    kvm_matrix_t m;
    char *local;                   /* my block of the row */
} rowmat_t;

/* Scratch of the size of the larger side's mesh: a grid's rank map and the
 * replica count of each of its blocks. */
typedef struct {
    int *map, *count;
} scratch_t;

/* Grid k of row `row` of array (l, t, a) of side s: replica k of every
 * block of the row.  A member of the side makes it (collectively with the
 * other members) when new; *mine gets its context (-1 outside the grid),
 * its descriptor and my block.  *nrep: replicas of each block. */
static kvmesh_status_t
row_grid(const side_t *s, int64_t l, int t, int a, int64_t row, int64_t elem, int64_t k,
         scratch_t *sc, rowmat_t *mine, int64_t *nrep)
{
    kvm_matrix_t m, first = { 0 };
    kvm_box_t box;
    int64_t cell, ncell = 0;
    int r;

    mine->context = -1;
    mine->local = NULL;
    for (r = 0; r < s->h.lo.nranks && !ncell; r++)
        if (rank_matrix(s, r, l, t, a, row, elem, &first, &box))
            ncell = first.nprow * first.npcol;
    memset(sc->count, 0, (size_t) ncell * sizeof *sc->count);
    for (r = 0; r < s->h.lo.nranks; r++) {
        if (!rank_matrix(s, r, l, t, a, row, elem, &m, &box))
            continue;
        cell = m.prow + m.pcol * m.nprow;
        if (sc->count[cell]++ != k)
            continue;
        sc->map[cell] = r;
        if (r == s->me) {
            mine->m = m;
            mine->local = s->base[4 * l + 2 * t + a] +
                          (size_t) (row - box.d[0].lo) * m.row_bytes;
        }
    }
    *nrep = sc->count[0];
    memcpy(mine->desc, (int[9]) { 1, -1, (int) first.m, (int) first.n, (int) first.mb,
                                  (int) first.nb, 0, 0, (int) first.mb },
           sizeof mine->desc);
    if (s->me >= 0)
        KVMESH_TRY(kvm_grids_get(s->grids, (int) first.nprow, (int) first.npcol, sc->map,
                                 &mine->context));
    if (mine->context < 0)
        mine->local = NULL;
    mine->desc[1] = mine->context;
    return KVMESH_SUCCESS;
}

/* The element size each array moves in: words when every block on both
 * sides is whole words and my storage is word-aligned on every rank, else
 * bytes widened to words; 0 when a block's columns are not contiguous. */
static int64_t
array_elem(const side_t *src, const side_t *dst, int64_t l, int t, int a, bool aligned)
{
    if (aligned && side_fits(src, l, t, a, 4) && side_fits(dst, l, t, a, 4))
        return 4;
    return side_fits(src, l, t, a, 1) && side_fits(dst, l, t, a, 1) ? 1 : 0;
}

static bool
bases_aligned(const side_t *s)
{
    int64_t i;

    for (i = 0; s->me >= 0 && i < 4 * s->h.nl; i++)
        if ((uintptr_t) s->base[i] % 4)
            return false;
    return true;
}

/* The filled positions [*p0, L) of source row r of layer l that move. */
static int64_t
row_fill(const side_t *src, const side_t *dst, int64_t l, int64_t r, int64_t *p0)
{
    const int64_t L = src->state[2 * l * src->h.lo.B + r];
    int64_t keep = L < src->len[l] ? L : src->len[l];

    keep = keep < dst->len[l] ? keep : dst->len[l];
    *p0 = src->detail[l].kind == KVMESH_MASK_SLIDING ? L - keep : 0;
    return L;
}

static void
widen(int *to, const char *from, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        to[i] = (unsigned char) from[i];
}

static void
narrow(char *to, const int *from, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        to[i] = (char) (unsigned char) from[i];
}

static kvmesh_status_t
worse(kvmesh_status_t a, kvmesh_status_t b)
{
    return a > b ? a : b;
}

/* One row of one array, from source replica grids into every destination
 * replica grid (walk = false: only make the grids and size the buffers;
 * then a failure goes on to make the same calls as the other ranks). */
static kvmesh_status_t
move_row(side_t *src, side_t *dst, int64_t slot, int64_t r, int64_t l, int t, int a,
         int64_t elem, int context, scratch_t *sc, int *wide[2], size_t *wide_bytes,
         bool walk)
{
    const kvmesh_span_t all_s = { 0, src->len[l] }, all_d = { 0, dst->len[l] };
    int64_t p0, L = row_fill(src, dst, l, r, &p0), kd, nd = 1, ns = 1;
    kvmesh_status_t st = KVMESH_SUCCESS;
    rowmat_t sm, dm;
    kvm_run_t dr[2], sr[2];
    int i, j, cd, cs;

    if (p0 >= L)
        return KVMESH_SUCCESS;
    st = row_grid(src, l, t, a, r, elem, 0, sc, &sm, &ns);
    for (kd = 0; kd < nd; kd++) {
        st = worse(st, row_grid(dst, l, t, a, r + slot, elem, kd, sc, &dm, &nd));
        st = worse(st, row_grid(src, l, t, a, r, elem, (r + kd) % ns, sc, &sm, &ns));
        if (!walk) {
            if (elem == 1 && sm.local && sm.m.row_bytes > *wide_bytes)
                *wide_bytes = sm.m.row_bytes;
            if (elem == 1 && dm.local && dm.m.row_bytes > *wide_bytes)
                *wide_bytes = dm.m.row_bytes;
            continue;
        }
        if (elem == 1 && sm.local)
            widen(wide[0], sm.local, sm.m.row_bytes);
        if (elem == 1 && dm.local)
            widen(wide[1], dm.local, dm.m.row_bytes);
        cd = kvm_side_runs(dst, l, L, p0, L, all_d, dr);
        for (i = 0; i < cd; i++) {
            cs = kvm_side_runs(src, l, L, dr[i].p0, dr[i].p1, all_s, sr);
            for (j = 0; j < cs; j++)
                Cpigemr2d(sm.desc[2], (int) (sr[j].p1 - sr[j].p0),
                          elem == 1 ? wide[0] : (int *) (void *) sm.local, 1,
                          (int) sr[j].slot + 1, sm.desc,
                          elem == 1 ? wide[1] : (int *) (void *) dm.local, 1,
                          (int) (dr[i].slot + sr[j].p0 - dr[i].p0) + 1, dm.desc, context);
        }
        if (elem == 1 && dm.local)
            narrow(dm.local, wide[1], dm.m.row_bytes);
    }
    return st;
}

kvmesh_status_t
kvm_scalapack_move(side_t *src, side_t *dst, int64_t slot, MPI_Comm comm)
{
    const int64_t nl = src->h.nl, na = src->h.quant ? 2 : 1;
    int64_t *elem = NULL, l, r;
    int np, i, aligned, sys = -1, context = -1, *umap = NULL, *wide[2] = { NULL, NULL };
    size_t wide_bytes = 0;
    scratch_t sc;
    kvmesh_status_t st = KVMESH_SUCCESS;
    int t, a, pass, rc;

    MPI_Comm_size(comm, &np);
    i = np > src->h.lo.nranks ? np : src->h.lo.nranks;
    i = i > dst->h.lo.nranks ? i : dst->h.lo.nranks;
    sc.map = malloc((size_t) i * sizeof *sc.map);
    sc.count = malloc((size_t) i * sizeof *sc.count);
    elem = malloc((size_t) (4 * nl) * sizeof *elem);
    umap = sc.map;
    aligned = bases_aligned(src) && bases_aligned(dst);
    rc = MPI_Allreduce(MPI_IN_PLACE, &aligned, 1, MPI_INT, MPI_LAND, comm);
    st = !sc.map || !sc.count || !elem ? KVMESH_ERR_NOMEM : KVMESH_MPI(rc);
    KVMESH_GOTO(st, kvm_agree(comm, st));
    /* every rank decides alike from the shared descriptions */
    for (l = 0; l < nl; l++)
        for (t = 0; t < 2; t++)
            for (a = 0; a < na; a++)
                if (!(elem[4 * l + 2 * t + a] = array_elem(src, dst, l, t, a, aligned)))
                    st = KVMESH_ERR_LAYOUT;
    if (st != KVMESH_SUCCESS)
        goto fail;
    /* the grid over all of comm that each p?gemr2d runs in */
    for (i = 0; i < np; i++)
        umap[i] = i;
    sys = Csys2blacs_handle(comm);
    context = sys;
    Cblacs_gridmap(&context, umap, 1, 1, np);
    /* pass 0 makes the grids and sizes the buffers, pass 1 moves */
    for (pass = 0; pass < 2; pass++) {
        for (r = 0; r < src->h.lo.B; r++)
            for (l = 0; l < nl; l++)
                for (t = 0; t < 2; t++)
                    for (a = 0; a < na; a++)
                        st = worse(st, move_row(src, dst, slot, r, l, t, a,
                                                elem[4 * l + 2 * t + a], context, &sc, wide,
                                                &wide_bytes, pass == 1));
        if (pass == 0 && st == KVMESH_SUCCESS && wide_bytes) {
            wide[0] = malloc(wide_bytes * sizeof(int));
            wide[1] = malloc(wide_bytes * sizeof(int));
            if (!wide[0] || !wide[1])
                st = KVMESH_ERR_NOMEM;
        }
        st = kvm_agree(comm, st);
        if (st != KVMESH_SUCCESS)
            break;
    }
fail:
    if (context >= 0)
        Cblacs_gridexit(context);
    if (sys >= 0)
        Cfree_blacs_system_handle(sys);
    free(wide[0]);
    free(wide[1]);
    free(sc.map);
    free(sc.count);
    free(elem);
    return st;
}

kvmesh_status_t
kvmesh_cache_scalapack(kvmesh_cache_t *c, int64_t layer, kvmesh_kv_t which, int64_t row,
                       kvmesh_scalapack_t *out)
{
    int64_t v[3] = { layer, which, row }, k, nrep;
    const int t = which == KVMESH_VALUE;
    kvmesh_status_t st = KVMESH_SUCCESS;
    scratch_t sc = { NULL, NULL };
    rowmat_t m[2], g;
    side_t s;
    int a, na;

    if (!c)
        return KVMESH_ERR_ARG;
    if (!out || layer < 0 || layer >= c->meta.num_hidden_layers ||
        (which != KVMESH_KEY && which != KVMESH_VALUE) || row < 0 || row >= c->B)
        st = KVMESH_ERR_ARG;
    else if (!c->views[layer].ready)
        st = KVMESH_ERR_EMPTY;
    else
        st = kvm_cache_usable(c);
    KVMESH_TRY(kvm_agree_same(c->comm, st, v, 3));
    st = kvm_side_of_cache(&s, c);
    sc.map = malloc((size_t) c->mesh->nranks * sizeof *sc.map);
    sc.count = malloc((size_t) c->mesh->nranks * sizeof *sc.count);
    if (st == KVMESH_SUCCESS && (!sc.map || !sc.count))
        st = KVMESH_ERR_NOMEM;
    KVMESH_GOTO(st, kvm_agree(c->comm, st));
    na = c->quant ? 2 : 1;
    for (a = 0; a < na; a++)
        if (!side_fits(&s, layer, t, a, 4) || (uintptr_t) s.base[4 * layer + 2 * t + a] % 4)
            st = KVMESH_ERR_LAYOUT;
    KVMESH_GOTO(st, kvm_agree(c->comm, st));
    /* every replica's grid, made by every rank; mine is the one I am in */
    memset(m, 0, sizeof m);
    m[1].context = -1;
    for (a = 0; a < na; a++)
        for (k = 0, nrep = 1; k < nrep; k++) {
            KVMESH_GOTO(st, row_grid(&s, layer, t, a, row, 4, k, &sc, &g, &nrep));
            if (k == 0 || g.context >= 0)
                m[a] = g;
        }
    out->context = m[0].context;
    memcpy(out->desc, m[0].desc, sizeof out->desc);
    out->local = m[0].local;
    memcpy(out->scale_desc, m[1].desc, sizeof out->scale_desc);
    out->scale_desc[1] = m[1].context;
    out->scale_local = (float *) (void *) m[1].local;
fail:
    kvm_side_free(&s);
    free(sc.map);
    free(sc.count);
    return st;
}
