/* Block geometry of any layout on any mesh: see layout.h. */
#include <string.h>

#include "layout.h"
#include "mesh.h"

void
kvm_layout_init(kvm_layout_t *lo, const int size[KVMESH_NAXES],
                const kvmesh_rule_t rules[2][KVMESH_NLOGICAL], int64_t B, int64_t S,
                const int64_t H[2], const int64_t D[2])
{
    int a, t;

    memset(lo, 0, sizeof *lo);
    lo->nranks = 1;
    for (a = 0; a < KVMESH_NAXES; a++) {
        lo->size[a] = size[a];
        lo->nranks *= size[a];
    }
    /* field by field: the copy's bytes (padding, unused axes) are zeros,
     * so layouts hash and compare alike on every rank */
    for (t = 0; t < 2; t++)
        for (a = 0; a < KVMESH_NLOGICAL; a++) {
            const kvmesh_rule_t *r = &rules[t][a];
            int i;
            lo->rules[t][a].set = r->set;
            lo->rules[t][a].naxes = r->naxes;
            for (i = 0; i < r->naxes && i < KVMESH_NAXES; i++)
                lo->rules[t][a].axes[i] = r->axes[i];
        }
    lo->B = B, lo->S = S;
    for (t = 0; t < 2; t++)
        lo->H[t] = H ? H[t] : 1, lo->D[t] = D ? D[t] : 1;
}

void
kvm_layout_of(kvm_layout_t *lo, const kvmesh_partition_t *part, int64_t B,
              int64_t S, const int64_t H[2], const int64_t D[2])
{
    kvm_layout_init(lo, part->mesh->size, part->rules, B, S, H, D);
}

void
kvm_layout_coords(const kvm_layout_t *lo, int rank, int coords[KVMESH_NAXES])
{
    int a;

    for (a = KVMESH_NAXES - 1; a >= 0; a--) {
        coords[a] = rank % lo->size[a];
        rank /= lo->size[a];
    }
}

int
kvm_rank_of(const int size[KVMESH_NAXES], const int coords[KVMESH_NAXES])
{
    int a, r = 0;

    for (a = 0; a < KVMESH_NAXES; a++) {
        if (coords[a] < 0 || coords[a] >= size[a])
            return -1;
        r = r * size[a] + coords[a];
    }
    return r;
}

int
kvm_layout_rank(const kvm_layout_t *lo, const int coords[KVMESH_NAXES])
{
    return kvm_rank_of(lo->size, coords);
}

void
kvm_layout_dim(const kvm_layout_t *lo, kvmesh_mode_t mode, kvmesh_logical_t logical,
               int64_t size, const int *coords, kvmesh_dim_t *dim)
{
    const kvmesh_rule_t *r = kvm_rules_pick(lo->rules, mode, logical);
    int64_t prod = 1, block = 0;
    int i;

    for (i = 0; i < r->naxes; i++) {
        int a = r->axes[i];
        prod *= lo->size[a];
        block = block * lo->size[a] + coords[a];
    }
    memset(dim, 0, sizeof *dim);
    dim->size = size;
    if (size % prod == 0) {       /* else the whole tuple is dropped */
        dim->naxes = r->naxes;
        memcpy(dim->axes, r->axes, sizeof r->axes);
        dim->nblocks = prod;
        dim->block = block;
    } else {
        dim->nblocks = 1;
        dim->block = 0;
    }
    dim->local_size = size / dim->nblocks;
    dim->offset = dim->block * dim->local_size;
}

int64_t
kvm_layout_nblocks(const kvm_layout_t *lo, kvmesh_mode_t mode, kvmesh_logical_t logical)
{
    const kvmesh_rule_t *r = kvm_rules_pick(lo->rules, mode, logical);
    int64_t prod = 1;
    int i;

    for (i = 0; i < r->naxes; i++)
        prod *= lo->size[r->axes[i]];
    return prod;
}

int64_t
kvm_layout_kblock(const kvm_layout_t *lo, const int *coords)
{
    kvmesh_dim_t d;

    kvm_layout_dim(lo, KVMESH_MODE_PREFILL, KVMESH_KV_LENGTH,
                   kvm_layout_nblocks(lo, KVMESH_MODE_PREFILL, KVMESH_KV_LENGTH),
                   coords, &d);
    return d.block;
}

kvmesh_span_t
kvm_layout_kv_span(const kvm_layout_t *lo, int64_t len, int64_t kblock)
{
    int64_t kprod = kvm_layout_nblocks(lo, KVMESH_MODE_PREFILL, KVMESH_KV_LENGTH);
    kvmesh_span_t s = { 0, len };

    if (len % kprod == 0) {
        s.len = len / kprod;
        s.lo = kblock * s.len;
    }
    return s;
}

int64_t
kvm_layout_storage(const kvm_layout_t *lo, const kvmesh_mask_detail_t *d, int64_t A)
{
    int64_t kprod = kvm_layout_nblocks(lo, KVMESH_MODE_PREFILL, KVMESH_KV_LENGTH), want;

    if (d->kind != KVMESH_MASK_SLIDING || d->window >= lo->S - A + 1)
        return lo->S;
    want = (d->window + A - 1 + kprod - 1) / kprod * kprod;
    return want < lo->S ? want : lo->S;
}

bool
kvm_layout_overlap(const kvm_layout_t *lo, const kvmesh_dim_t *a, const kvmesh_dim_t *b)
{
    int i, j;

    /* an axis of size 1 splits nothing, so sharing it is harmless */
    for (i = 0; i < a->naxes; i++)
        for (j = 0; j < b->naxes; j++)
            if (a->axes[i] == b->axes[j] && lo->size[a->axes[i]] > 1)
                return true;
    return false;
}

/* the box of four resolved dims; false when two share a mesh axis */
static bool
box_of(const kvm_layout_t *lo, const kvmesh_dim_t d[4], kvm_box_t *box)
{
    int i, j;

    for (i = 0; i < 4; i++) {
        box->d[i].lo = d[i].offset;
        box->d[i].len = d[i].local_size;
        for (j = i + 1; j < 4; j++)
            if (kvm_layout_overlap(lo, &d[i], &d[j]))
                return false;
    }
    return true;
}

bool
kvm_layout_cache_box(const kvm_layout_t *lo, const int *coords, int t, int64_t len,
                     kvm_box_t *box)
{
    const kvmesh_mode_t m = KVMESH_MODE_PREFILL;
    kvmesh_dim_t d[4];

    kvm_layout_dim(lo, m, KVMESH_BATCH, lo->B, coords, &d[0]);
    kvm_layout_dim(lo, m, KVMESH_KV_LENGTH, len, coords, &d[1]);
    kvm_layout_dim(lo, m, KVMESH_KV_HEAD, lo->H[t], coords, &d[2]);
    kvm_layout_dim(lo, m, KVMESH_KV_HEAD_DIM, lo->D[t], coords, &d[3]);
    return box_of(lo, d, box);
}

bool
kvm_layout_input_box(const kvm_layout_t *lo, kvmesh_mode_t mode, const int *coords,
                     int t, int64_t n, int64_t qblocks, kvm_box_t *box, kvmesh_dim_t *qdim)
{
    kvmesh_dim_t d[4];
    bool ok;

    kvm_layout_dim(lo, mode, KVMESH_BATCH, lo->B, coords, &d[0]);
    if (qblocks > 1) {
        kvm_layout_dim(lo, mode, KVMESH_QUERY_LENGTH, qblocks, coords, &d[1]);
    } else {
        memset(&d[1], 0, sizeof d[1]);
        d[1].size = d[1].nblocks = d[1].local_size = 1;
    }
    kvm_layout_dim(lo, mode, KVMESH_KV_HEAD, lo->H[t], coords, &d[2]);
    kvm_layout_dim(lo, mode, KVMESH_KV_HEAD_DIM, lo->D[t], coords, &d[3]);
    ok = box_of(lo, d, box);
    /* the query length: n / blocks tokens from block * that on */
    box->d[1].len = n / d[1].nblocks;
    box->d[1].lo = d[1].block * box->d[1].len;
    if (qdim)
        *qdim = d[1];
    return ok;
}

void
kvm_layout_member(const kvm_layout_t *lo, const kvmesh_dim_t *dim, int64_t k,
                  const int *coords, int out[KVMESH_NAXES])
{
    int i;

    memcpy(out, coords, KVMESH_NAXES * sizeof *out);
    for (i = dim->naxes - 1; i >= 0; i--) {
        int a = dim->axes[i];
        out[a] = (int) (k % lo->size[a]);
        k /= lo->size[a];
    }
}

bool
kvm_box_intersect(const kvm_box_t *a, const kvm_box_t *b, kvm_box_t *out)
{
    int i;

    for (i = 0; i < 4; i++) {
        int64_t lo = a->d[i].lo > b->d[i].lo ? a->d[i].lo : b->d[i].lo;
        int64_t ha = a->d[i].lo + a->d[i].len, hb = b->d[i].lo + b->d[i].len;
        int64_t hi = ha < hb ? ha : hb;
        if (hi <= lo)
            return false;
        out->d[i].lo = lo;
        out->d[i].len = hi - lo;
    }
    return true;
}

bool
kvm_box_covers(const kvm_box_t *outer, const kvm_box_t *inner, int skip)
{
    int i;

    for (i = 0; i < 4; i++)
        if (i != skip && (inner->d[i].lo < outer->d[i].lo ||
                          inner->d[i].lo + inner->d[i].len >
                          outer->d[i].lo + outer->d[i].len))
            return false;
    return true;
}

int
kvm_layout_runs(int64_t len, bool ring, int64_t p0, int64_t p1, kvmesh_span_t kv,
                kvm_run_t run[2])
{
    const int64_t kend = kv.lo + kv.len;
    int count = 0;

    if (!ring) {
        if (p0 < kv.lo)
            p0 = kv.lo;
        if (p1 > kend)
            p1 = kend;
        if (p0 < p1)
            run[count++] = (kvm_run_t) { p0, p1, p0 };
        return count;
    }
    while (p0 < p1) {
        int64_t s = p0 % len;                           /* slot of p0 */
        int64_t m = p1 - p0 < len - s ? p1 - p0 : len - s;
        int64_t a = s > kv.lo ? s : kv.lo;
        int64_t b = s + m < kend ? s + m : kend;
        if (a < b && count < 2)
            run[count++] = (kvm_run_t) { p0 + a - s, p0 + b - s, a };
        p0 += m;
    }
    return count;
}

bool
kvm_layout_matrix(const kvm_box_t *box, int64_t H, int64_t U, int64_t len, size_t unit,
                  int64_t elem, kvm_matrix_t *m)
{
    const int64_t Hl = box->d[2].len, Ul = box->d[3].len, Kl = box->d[1].len;
    const int64_t col = Hl * Ul * (int64_t) unit;

    if ((Ul != U && Hl != 1) || col % elem)
        return false;
    m->mb = col / elem;
    m->m = H * U * (int64_t) unit / elem;
    m->nprow = (H / Hl) * (U / Ul);
    m->prow = box->d[2].lo / Hl * (U / Ul) + box->d[3].lo / Ul;
    m->nb = Kl;
    m->n = len;
    m->npcol = len / Kl;
    m->pcol = box->d[1].lo / Kl;
    m->row_bytes = (size_t) (Kl * col);
    return true;
}
