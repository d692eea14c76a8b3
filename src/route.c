/* Routing plans: for each mode, which rank holds which new tokens and which
 * rank must store them.  Input blocks are split along [BATCH, QUERY_LENGTH,
 * KV_HEAD, KV_HEAD_DIM] in the caller's mode, the cache along [BATCH,
 * KV_LENGTH, KV_HEAD, KV_HEAD_DIM] in PREFILL mode.  Tokens only travel
 * within a "query group": the ranks that differ only in their query-length
 * coordinates.  Each rank's cache rows, heads and dims must lie inside the
 * input block of every rank of its group; otherwise the layout is refused.
 * Everything here derives from mesh geometry, so every rank reaches the
 * same plan without a message. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "mesh.h"

static bool
span_covers(kvmesh_span_t outer, kvmesh_span_t inner)
{
    return outer.lo <= inner.lo && inner.lo + inner.len <= outer.lo + outer.len;
}

/* d[2..5]: head K, dim K, head V, dim V of a block at coords in mode m */
static void
head_dims(const kvmesh_cache_t *c, kvmesh_mode_t m, const int *coords,
          kvmesh_dim_t d[6])
{
    int t;

    for (t = 0; t < 2; t++) {
        kvm_resolve(&c->part, m, KVMESH_KV_HEAD, c->H[t], coords, &d[2 + 2 * t]);
        kvm_resolve(&c->part, m, KVMESH_KV_HEAD_DIM, c->D[t], coords, &d[3 + 2 * t]);
    }
}

/* dims of the cache block at coords: batch, kv, head K, dim K, head V, dim V */
static void
cache_dims(const kvmesh_cache_t *c, const int *coords, kvmesh_dim_t d[6])
{
    kvm_resolve(&c->part, KVMESH_MODE_PREFILL, KVMESH_BATCH, c->B, coords, &d[0]);
    kvm_resolve(&c->part, KVMESH_MODE_PREFILL, KVMESH_KV_LENGTH, c->S, coords, &d[1]);
    head_dims(c, KVMESH_MODE_PREFILL, coords, d);
}

/* dims of an input block at coords: as cache_dims() with d[1] the query
 * length split in qprod blocks (qprod 1: replicated) */
static void
input_dims(const kvmesh_cache_t *c, kvmesh_mode_t m, int64_t qprod,
           const int *coords, kvmesh_dim_t d[6])
{
    kvm_resolve(&c->part, m, KVMESH_BATCH, c->B, coords, &d[0]);
    if (qprod > 1) {
        kvm_resolve(&c->part, m, KVMESH_QUERY_LENGTH, qprod, coords, &d[1]);
    } else {
        memset(&d[1], 0, sizeof d[1]);
        d[1].size = d[1].nblocks = d[1].local_size = 1;
    }
    head_dims(c, m, coords, d);
}

/* a 4-d tensor [batch, length, head, dim] may not use a mesh axis twice */
static bool
dims_valid(const kvmesh_mesh_t *mesh, const kvmesh_dim_t d[6])
{
    static const int use[2][4] = { { 0, 1, 2, 3 }, { 0, 1, 4, 5 } };
    int t, i, j;

    for (t = 0; t < 2; t++)
        for (i = 0; i < 4; i++)
            for (j = i + 1; j < 4; j++)
                if (kvm_dims_overlap(mesh, &d[use[t][i]], &d[use[t][j]]))
                    return false;
    return true;
}

/* coords of the holder of query block k in the group of \p coords */
static void
group_member(const kvmesh_mesh_t *mesh, const kvmesh_dim_t *q, int64_t k,
             const int *coords, int *out)
{
    int i;

    memcpy(out, coords, KVMESH_NAXES * sizeof *out);
    for (i = q->naxes - 1; i >= 0; i--) {
        int a = q->axes[i];
        out[a] = (int) (k % mesh->size[a]);
        k /= mesh->size[a];
    }
}

static kvmesh_status_t
plan_build(kvmesh_cache_t *c, kvmesh_mode_t m, int64_t qprod, kvmesh_plan_t *pl)
{
    const kvmesh_mesh_t *mesh = c->mesh;
    kvmesh_dim_t in[6], cd[6];
    int r, t;
    int64_t k;

    pl->qprod = qprod;
    pl->peer = malloc((size_t) qprod * sizeof *pl->peer);
    pl->peer_rows = malloc((size_t) qprod * sizeof *pl->peer_rows);
    pl->peer_kblock = malloc((size_t) qprod * sizeof *pl->peer_kblock);
    if (!pl->peer || !pl->peer_rows || !pl->peer_kblock)
        return KVMESH_ERR_NOMEM;

    input_dims(c, m, qprod, mesh->coord, in);
    pl->qblock = in[1].block;
    pl->in_rows = kvm_span_of(&in[0]);
    for (t = 0; t < 2; t++) {
        pl->in_head[t] = kvm_span_of(&in[2 + 2 * t]);
        pl->in_dim[t] = kvm_span_of(&in[3 + 2 * t]);
    }
    for (k = 0; k < qprod; k++) {
        int pc[KVMESH_NAXES];
        group_member(mesh, &in[1], k, mesh->coord, pc);
        pl->peer[k] = kvmesh_mesh_rank_of(mesh, pc);
        cache_dims(c, pc, cd);
        pl->peer_rows[k] = kvm_span_of(&cd[0]);
        kvm_resolve(&c->part, KVMESH_MODE_PREFILL, KVMESH_KV_LENGTH, c->kprod, pc, &cd[1]);
        pl->peer_kblock[k] = cd[1].block;
    }

    /* the verdict looks at every rank, so that all ranks share it */
    pl->verdict = KVMESH_SUCCESS;
    for (r = 0; r < mesh->nranks && pl->verdict == KVMESH_SUCCESS; r++) {
        int rc[KVMESH_NAXES];
        kvmesh_dim_t rin[6];

        kvm_mesh_coords_of(mesh, r, rc);
        cache_dims(c, rc, cd);
        input_dims(c, m, qprod, rc, rin);
        if (!dims_valid(mesh, rin))
            pl->verdict = KVMESH_ERR_LAYOUT;
        for (k = 0; k < qprod && pl->verdict == KVMESH_SUCCESS; k++) {
            int sc[KVMESH_NAXES];
            kvmesh_dim_t sin[6];
            int i;

            group_member(mesh, &rin[1], k, rc, sc);
            input_dims(c, m, qprod, sc, sin);
            for (i = 0; i < 6; i++)
                if (i != 1 && !span_covers(kvm_span_of(&sin[i]), kvm_span_of(&cd[i])))
                    pl->verdict = KVMESH_ERR_LAYOUT;
        }
    }
    return KVMESH_SUCCESS;
}

/* product of the mesh sizes of the query-length rule of mode m */
static int64_t
query_blocks(const kvmesh_cache_t *c, kvmesh_mode_t m)
{
    const kvmesh_rule_t *r = kvm_partition_rule(&c->part, m,
                                                   KVMESH_QUERY_LENGTH);
    int64_t prod = 1;
    int i;

    for (i = 0; i < r->naxes; i++)
        prod *= c->mesh->size[r->axes[i]];
    return prod;
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

            st = plan_build(c, (kvmesh_mode_t) m, v ? query_blocks(c, m) : 1, pl);
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
             * kv slots of one layer (runs_into() in view.c) */
            for (t = 0; t < 2; t++) {
                size_t b = (size_t) longest_run(c, pl->qprod) *
                           (size_t) pl->in_head[t].len *
                           (size_t) pl->in_dim[t].len * sizeof(float);
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
