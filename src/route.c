/* Routing plans: for each mode, which rank holds which new tokens and which
 * rank must store them.  Input blocks are split along [BATCH, QUERY_LENGTH,
 * KV_HEAD, KV_HEAD_DIM] in the caller's mode, the cache along [BATCH,
 * KV_LENGTH, KV_HEAD, KV_HEAD_DIM] in PREFILL mode (src/layout.c gives both).
 * Tokens only travel within a "query group": the ranks that differ only in
 * their query-length coordinates.  Each rank's cache rows, heads and dims
 * must lie inside the input block of every rank of its group; otherwise
 * the layout is refused.  Everything here derives from the layout, so every
 * rank reaches the same plan without a message. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "mesh.h"
#include "view.h"

/* Can every rank's group deliver its cache block in mode m with qprod
 * query blocks?  Looks at every rank, so that all ranks share the verdict. */
static kvmesh_status_t
verdict_of(const kvmesh_cache_t *c, kvmesh_mode_t m, int64_t qprod)
{
    const kvm_layout_t *lo = &c->layout;
    int r, t;
    int64_t k;

    for (r = 0; r < lo->nranks; r++) {
        int rc[KVMESH_NAXES];
        kvmesh_dim_t q;
        kvm_box_t in, cb;

        kvm_layout_coords(lo, r, rc);
        for (t = 0; t < 2; t++) {
            if (!kvm_layout_input_box(lo, m, rc, t, qprod, qprod, &in, &q))
                return KVMESH_ERR_LAYOUT;
            (void) kvm_layout_cache_box(lo, rc, t, c->S, &cb);
            for (k = 0; k < qprod; k++) {
                int sc[KVMESH_NAXES];
                kvm_layout_member(lo, &q, k, rc, sc);
                (void) kvm_layout_input_box(lo, m, sc, t, qprod, qprod, &in, NULL);
                if (!kvm_box_covers(&in, &cb, 1))
                    return KVMESH_ERR_LAYOUT;
            }
        }
    }
    return KVMESH_SUCCESS;
}

static kvmesh_status_t
plan_build(kvmesh_cache_t *c, kvmesh_mode_t m, int64_t qprod, kvmesh_plan_t *pl)
{
    const kvm_layout_t *lo = &c->layout;
    const int *me = c->mesh->coord;
    kvmesh_dim_t q;
    int t;
    int64_t k;

    pl->qprod = qprod;
    pl->peer = malloc((size_t) qprod * sizeof *pl->peer);
    pl->peer_rows = malloc((size_t) qprod * sizeof *pl->peer_rows);
    pl->peer_kblock = malloc((size_t) qprod * sizeof *pl->peer_kblock);
    if (!pl->peer || !pl->peer_rows || !pl->peer_kblock)
        return KVMESH_ERR_NOMEM;
    for (t = 0; t < 2; t++)
        (void) kvm_layout_input_box(lo, m, me, t, qprod, qprod, &pl->in[t], &q);
    pl->qblock = q.block;
    for (k = 0; k < qprod; k++) {
        int pc[KVMESH_NAXES];
        kvm_box_t cb;
        kvm_layout_member(lo, &q, k, me, pc);
        pl->peer[k] = kvm_layout_rank(lo, pc);
        (void) kvm_layout_cache_box(lo, pc, 0, c->S, &cb);
        pl->peer_rows[k] = cb.d[0];
        pl->peer_kblock[k] = kvm_layout_kblock(lo, pc);
    }
    pl->verdict = verdict_of(c, m, qprod);
    return KVMESH_SUCCESS;
}

/* Most tokens one routed message carries: a run lies inside one query
 * block (at most A / qprod tokens of an append) and inside one rank's
 * slots of one layer, whose storage may be split or whole. */
static int64_t
longest_run(const kvmesh_cache_t *c, int64_t qprod)
{
    int64_t l, most = 0, q = c->A / qprod;

    for (l = 0; l < c->meta.num_hidden_layers; l++) {
        int64_t k = c->views[l].kv.len < q ? c->views[l].kv.len : q;
        if (k > most)
            most = k;
    }
    return most;
}

kvmesh_status_t
kvm_plans_build(kvmesh_cache_t *c)
{
    int64_t nreqs = 0;
    size_t scratch = 0;
    int m, v, t;

    for (m = 0; m < KVMESH_NMODES; m++) {
        for (v = 0; v < 2; v++) {
            kvmesh_plan_t *pl = &c->plan[m][v];
            int64_t k, sends = 0;
            kvmesh_status_t st;

            st = plan_build(c, (kvmesh_mode_t) m,
                            v ? kvm_layout_nblocks(&c->layout, (kvmesh_mode_t) m,
                                                   KVMESH_QUERY_LENGTH) : 1, pl);
            if (st != KVMESH_SUCCESS)
                return st;
            if (pl->verdict != KVMESH_SUCCESS || pl->qprod == 1)
                continue;
            /* per peer and row at most two runs (a ring wraps once), each
             * a K and a V message, each way */
            for (k = 0; k < pl->qprod; k++)
                if (k != pl->qblock)
                    sends += pl->peer_rows[k].len;
            if (4 * (sends + (pl->qprod - 1) * c->rows.len) > nreqs)
                nreqs = 4 * (sends + (pl->qprod - 1) * c->rows.len);
            /* a staged message: one run of a row's query block into the
             * kv slots of one layer (route() in view.c) */
            for (t = 0; t < 2; t++) {
                size_t b = (size_t) longest_run(c, pl->qprod) *
                           (size_t) pl->in[t].d[2].len *
                           (size_t) pl->in[t].d[3].len * sizeof(float);
                if (b > (size_t) INT32_MAX)
                    pl->verdict = KVMESH_ERR_OVERFLOW;
                else if (b > scratch)
                    scratch = b;
            }
        }
    }
    if (nreqs) {
        c->reqs = malloc((size_t) nreqs * sizeof *c->reqs);
        if (!c->reqs)
            return KVMESH_ERR_NOMEM;
    }
    c->nreqs = nreqs;
    if (scratch) {
        c->scratch = malloc(scratch);
        if (!c->scratch)
            return KVMESH_ERR_NOMEM;
    }
    c->scratch_bytes = scratch;
    return KVMESH_SUCCESS;
}

void
kvm_plans_free(kvmesh_cache_t *c)
{
    int m, v;

    for (m = 0; m < KVMESH_NMODES; m++)
        for (v = 0; v < 2; v++) {
            free(c->plan[m][v].peer);
            free(c->plan[m][v].peer_rows);
            free(c->plan[m][v].peer_kblock);
        }
    free(c->reqs);
    free(c->scratch);
}

const kvmesh_plan_t *
kvm_plan_of(const kvmesh_cache_t *c, kvmesh_mode_t mode, int64_t n)
{
    int64_t qprod = c->plan[mode][1].qprod;

    return &c->plan[mode][qprod > 1 && n >= qprod && n % qprod == 0];
}
