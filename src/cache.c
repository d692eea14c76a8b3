/* The whole cache: collective init and free, its memory, and the
 * replicated per-row state (insert_starts / insert_index).  Its blocks'
 * geometry comes from src/layout.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cache.h"
#include "mesh.h"
#include "quant.h"
#include "redist.h"
#include "status.h"
#include "view.h"

void
kvmesh_cache_params_init(kvmesh_cache_params_t *p)
{
    if (p) {
        memset(p, 0, sizeof *p);
        p->dtype = KVMESH_BF16;
    }
}

kvmesh_engine_t
kvm_engine(kvmesh_engine_t e)
{
    const char *env = getenv("KVMESH_ENGINE");

    if (e != KVMESH_ENGINE_DEFAULT)
        return e;
    return env && !strcmp(env, "scalapack") ? KVMESH_ENGINE_SCALAPACK : KVMESH_ENGINE_P2P;
}

kvmesh_engine_t
kvmesh_cache_engine(const kvmesh_cache_t *c)
{
    return c ? c->engine : KVMESH_ENGINE_DEFAULT;
}

kvmesh_status_t
kvmesh_cache_set_engine(kvmesh_cache_t *c, kvmesh_engine_t e)
{
    if (!c || (unsigned) e > KVMESH_ENGINE_SCALAPACK)
        return KVMESH_ERR_ARG;
    c->engine = kvm_engine(e);
    return KVMESH_SUCCESS;
}

static size_t
align64(size_t n)
{
    return (n + 63) / 64 * 64;
}

/* The offset from \p off on where array \p k of the region starts: at
 * k * 7 lines past a 4 KiB boundary.  Arrays whose sizes are powers of two
 * would otherwise all start in the same cache sets, and the lines a decode
 * step writes in every layer (the same row and slot in each) would evict
 * one another from the 8-way L1 and L2 before they are used. */
static size_t
stagger(size_t off, int64_t k)
{
    size_t want = (size_t) (k * 7 % 64) * 64;

    return off + ((want - off % 4096) & 4095);
}

/* Local checks of init's arguments; the caller agrees on the result. */
static kvmesh_status_t
check_args(const kvmesh_meta_params_t *mp, const kvmesh_cache_params_t *p)
{
    int64_t l, b;

    if (kvmesh_dtype_size(p->dtype) == 0 || p->max_append < 0 ||
        (unsigned) p->engine > KVMESH_ENGINE_SCALAPACK || p->staging_bytes < 0 ||
        (p->quant != KVMESH_QUANT_NONE && p->quant != KVMESH_QUANT_INT8 &&
         p->quant != KVMESH_QUANT_NF4))
        return KVMESH_ERR_ARG;
    if (mp->sequence_length > INT32_MAX || mp->batch_size > INT32_MAX)
        return KVMESH_ERR_OVERFLOW;   /* indexs and starts are int32, as in EasyDeL */
    for (l = 0; p->details && l < mp->num_hidden_layers; l++) {
        const kvmesh_mask_detail_t *d = &p->details[l];
        if ((d->kind == KVMESH_MASK_SLIDING && d->window <= 0) ||
            (d->kind == KVMESH_MASK_CHUNK && d->chunk <= 0) ||
            (d->kind != KVMESH_MASK_FULL && d->kind != KVMESH_MASK_SLIDING &&
             d->kind != KVMESH_MASK_CHUNK))
            return KVMESH_ERR_ARG;
    }
    for (b = 0; p->starts && b < mp->batch_size; b++)
        if (p->starts[b] < 0 || p->starts[b] > mp->sequence_length)
            return KVMESH_ERR_ARG;
    return KVMESH_SUCCESS;
}

/* Hash of everything that must be equal on every rank at init, field by
 * field (struct padding is not data). */
static uint64_t
init_hash(const kvmesh_meta_params_t *mp, const kvmesh_cache_params_t *p,
          const kvmesh_partition_t *part)
{
    int64_t v[17] = {
        mp->batch_size, mp->sequence_length, mp->num_hidden_layers,
        mp->pad_token_id, mp->num_heads, mp->head_dim, mp->key_heads,
        mp->value_heads, mp->key_dim, mp->value_dim, mp->sliding_window,
        mp->update_causal_mask, mp->create_attention_bias, p->dtype,
        p->checked, p->quant, p->max_append
    };
    uint64_t h = kvm_hash(0, v, sizeof v);
    int64_t l;
    int t, a, i;

    for (l = 0; p->details && l < mp->num_hidden_layers; l++) {
        int64_t d[3] = { p->details[l].kind, p->details[l].window,
                         p->details[l].chunk };
        h = kvm_hash(h, d, sizeof d);
    }
    if (p->starts)
        h = kvm_hash(h, p->starts, (size_t) mp->batch_size * sizeof(int32_t));
    for (t = 0; t < 2; t++)
        for (a = 0; a < KVMESH_NLOGICAL; a++) {
            const kvmesh_rule_t *r = &part->rules[t][a];
            int64_t d[2 + KVMESH_NAXES] = { r->set, r->naxes };
            for (i = 0; i < r->naxes; i++)
                d[2 + i] = r->axes[i];
            h = kvm_hash(h, d, sizeof d);
        }
    return h;
}

/* Places layer v's K and V (and scales) from offset off of a region at
 * base (NULL: only measures); returns the offset past them. */
static size_t
layer_place(const kvmesh_cache_t *c, kvmesh_view_t *v, char *base, size_t off)
{
    int t;

    for (t = 0; t < 2; t++) {
        off = stagger(off, 4 * v->layer + 2 * t);
        if (base)
            v->data[t] = base + off;
        off += align64((size_t) v->kv.len * c->per_slot[t]);
        off = stagger(off, 4 * v->layer + 2 * t + 1);
        if (base)
            v->scale[t] = c->quant ? (float *) (base + off) : NULL;
        off += align64((size_t) v->kv.len * c->scale_slot[t]);
    }
    return off;
}

static size_t
layer_bytes(const kvmesh_cache_t *c, const kvmesh_view_t *v)
{
    return (size_t) v->kv.len * (c->per_slot[0] + c->scale_slot[0] + c->per_slot[1] +
                                 c->scale_slot[1]);
}

/* Geometry, plans and memory of a cache whose arguments all ranks agreed
 * on; an empty cache's layers get their memory from init_layer. */
static kvmesh_status_t
cache_build(kvmesh_cache_t *c, const kvmesh_cache_params_t *p, bool empty)
{
    const int *me = c->mesh->coord;
    size_t off = 0, *per_slot = c->per_slot, *scale_slot = c->scale_slot;
    int64_t l, L = c->meta.num_hidden_layers;
    int t;

    kvm_layout_of(&c->layout, &c->part, c->B, c->S, c->H, c->D);
    c->kblock = kvm_layout_kblock(&c->layout, me);
    c->views = calloc((size_t) L, sizeof *c->views);
    c->state = calloc((size_t) (L * 2 * c->B), sizeof *c->state);
    if (!c->views || !c->state)
        return KVMESH_ERR_NOMEM;
    for (l = 0; l < L; l++) {
        kvmesh_view_t *v = &c->views[l];
        v->cache = c;
        v->layer = l;
        v->detail = kvm_detail(KVMESH_MASK_FULL, 0, 0);
        if (p->details)
            v->detail = kvm_detail(p->details[l].kind, p->details[l].window,
                                   p->details[l].chunk);
        else if (c->meta.sliding_window > 0)
            v->detail = kvm_detail(KVMESH_MASK_SLIDING, c->meta.sliding_window, 0);
        v->ring = v->detail.kind == KVMESH_MASK_SLIDING;
        v->len = kvm_layout_storage(&c->layout, &v->detail, c->A);
        for (t = 0; t < 2; t++) {
            kvm_box_t box;
            if (!kvm_layout_cache_box(&c->layout, me, t, v->len, &box))
                return KVMESH_ERR_LAYOUT;
            c->rows = box.d[0], c->head[t] = box.d[2], c->dim[t] = box.d[3];
            v->kv = box.d[1];
        }
    }
    for (t = 0; t < 2; t++) {
        /* quantization works on whole head vectors */
        if (c->quant != KVMESH_QUANT_NONE && c->dim[t].len != c->D[t])
            return KVMESH_ERR_LAYOUT;
        c->hbytes[t] = c->quant ? kvm_quant_code_bytes(c->quant, c->D[t])
                                : c->dim[t].len * (int64_t) c->esize;
        c->nscale[t] = kvm_quant_scales(c->quant, c->D[t]);
        per_slot[t] = (size_t) (c->rows.len * c->head[t].len * c->hbytes[t]);
        scale_slot[t] = (size_t) (c->rows.len * c->head[t].len * c->nscale[t]) *
                        sizeof(float);
    }
    if (c->quant) {
        int64_t hb0 = c->head[0].len * c->hbytes[0], hb1 = c->head[1].len * c->hbytes[1];
        c->qtmp = malloc((size_t) (c->D[0] > c->D[1] ? c->D[0] : c->D[1]) *
                         sizeof(float));
        c->qcodes = malloc((size_t) (hb0 > hb1 ? hb0 : hb1));
        if (!c->qtmp || !c->qcodes)
            return KVMESH_ERR_NOMEM;
    }
    KVMESH_TRY(kvm_plans_build(c));
    for (l = 0; !empty && l < L; l++) {
        c->local_bytes += layer_bytes(c, &c->views[l]);
        off = layer_place(c, &c->views[l], NULL, off);
    }
    c->region_bytes = off;
    if (!empty && !(c->region = kvm_region_alloc(c->region_bytes)))
        return KVMESH_ERR_NOMEM;
    for (l = 0, off = 0; l < L; l++) {
        kvmesh_view_t *v = &c->views[l];
        v->ready = !empty;
        if (!empty)
            off = layer_place(c, v, (char *) c->region, off);
        v->indexs = c->state + (size_t) (2 * l) * (size_t) c->B;
        v->starts = v->indexs + c->B;
        if (p->starts)
            memcpy(v->starts, p->starts, (size_t) c->B * sizeof *v->starts);
        v->mask.view = v;
    }
    return KVMESH_SUCCESS;
}

static void
cache_destroy(kvmesh_cache_t *c)
{
    int64_t l;

    if (!c)
        return;
    if (c->kv_comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->kv_comm);
    kvm_plans_free(c);
    kvm_region_free(c->region, c->region_bytes);
    for (l = 0; c->views && l < c->meta.num_hidden_layers; l++)
        kvm_region_free(c->views[l].own, c->views[l].own_bytes);
    free(c->qtmp);
    free(c->qcodes);
    free(c->views);
    free(c->state);
    kvm_grids_free(&c->grids);
    if (c->comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->comm);
    free(c);
}

/* The communicator of the ranks that differ only in their kv-length
 * coordinates, ranked by kv-length block: colour = the other coordinates. */
static int
kv_comm_create(kvmesh_cache_t *c, MPI_Comm comm)
{
    const kvmesh_rule_t *r = kvm_rules_pick(c->layout.rules, KVMESH_MODE_PREFILL,
                                            KVMESH_KV_LENGTH);
    int a, i, color = 0, rc;

    for (a = 0; a < KVMESH_NAXES; a++) {
        bool kv = false;
        for (i = 0; i < r->naxes; i++)
            kv = kv || r->axes[i] == (kvmesh_axis_t) a;
        if (!kv)
            color = color * c->mesh->size[a] + c->mesh->coord[a];
    }
    rc = MPI_Comm_split(comm, color, (int) c->kblock, &c->kv_comm);
    if (rc == MPI_SUCCESS)
        MPI_Comm_set_errhandler(c->kv_comm, MPI_ERRORS_RETURN);
    return rc;
}

static kvmesh_status_t
cache_init(const kvmesh_meta_t *meta, const kvmesh_partition_t *part,
           const kvmesh_cache_params_t *params, bool empty, kvmesh_cache_t **out)
{
    kvmesh_cache_params_t defaults;
    kvmesh_meta_params_t mp;
    kvmesh_cache_t *c = NULL;
    kvmesh_status_t st = KVMESH_SUCCESS;
    MPI_Comm comm;
    int64_t h, hv[2] = { 0, 0 };
    int rc;
    const char *env;

    if (!part)
        return KVMESH_ERR_ARG;   /* no communicator to agree over */
    comm = part->mesh->cart;
    kvmesh_cache_params_init(&defaults);
    if (!params)
        params = &defaults;
    memset(&mp, 0, sizeof mp);
    if (!meta || !out)
        st = KVMESH_ERR_ARG;
    else
        kvmesh_meta_get(meta, &mp);
    if (st == KVMESH_SUCCESS)
        st = check_args(&mp, params);
    h = st == KVMESH_SUCCESS ? (int64_t) init_hash(&mp, params, part) : 0;
    KVMESH_TRY(kvm_agree_same(comm, st, &h, 1));

    c = calloc(1, sizeof *c);
    if (c) {
        c->comm = c->kv_comm = MPI_COMM_NULL;
        kvm_grids_init(&c->grids, MPI_COMM_NULL);
        c->meta = mp;
        c->part = *part;
        c->mesh = part->mesh;
        c->dtype = params->dtype;
        c->esize = kvmesh_dtype_size(params->dtype);
        c->quant = params->quant;
        env = getenv("KVMESH_CHECK");
        c->checked = params->checked || (env && !strcmp(env, "1"));
        c->engine = kvm_engine(params->engine);
        c->staging = params->staging_bytes;
        c->B = mp.batch_size;
        c->S = mp.sequence_length;
        c->A = params->max_append == 0 || params->max_append > c->S
             ? (params->max_append == 0 && c->S > 512 ? 512 : c->S)
             : params->max_append;
        c->H[0] = mp.key_heads, c->H[1] = mp.value_heads;
        c->D[0] = mp.key_dim, c->D[1] = mp.value_dim;
        st = cache_build(c, params, empty);
    } else {
        st = KVMESH_ERR_NOMEM;
    }
    /* the checked flag and the engine come from the environment too: make
     * them agree */
    if (c)
        hv[0] = c->checked, hv[1] = c->engine;
    KVMESH_GOTO(st, kvm_agree_same(comm, st, hv, 2));
    rc = MPI_Comm_dup(comm, &c->comm);
    if (rc == MPI_SUCCESS)
        MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    c->grids.comm = c->comm;
    if (rc == MPI_SUCCESS)
        rc = kv_comm_create(c, comm);
    KVMESH_GOTO(st, kvm_agree(comm, KVMESH_MPI(rc)));
    *out = c;
    return KVMESH_SUCCESS;
fail:
    cache_destroy(c);
    return st;
}

kvmesh_status_t
kvmesh_cache_init(const kvmesh_meta_t *meta, const kvmesh_partition_t *part,
                  const kvmesh_cache_params_t *params, kvmesh_cache_t **out)
{
    return cache_init(meta, part, params, false, out);
}

kvmesh_status_t
kvmesh_cache_init_empty(const kvmesh_meta_t *meta, const kvmesh_partition_t *part,
                        const kvmesh_cache_params_t *params, kvmesh_cache_t **out)
{
    return cache_init(meta, part, params, true, out);
}

kvmesh_status_t
kvmesh_cache_init_layer(kvmesh_cache_t *c, int64_t layer)
{
    kvmesh_status_t st = KVMESH_SUCCESS;
    kvmesh_view_t *v;
    int64_t val = layer;
    size_t bytes;
    void *mem;

    if (!c)
        return KVMESH_ERR_ARG;
    if (layer < 0 || layer >= c->meta.num_hidden_layers || c->views[layer].ready)
        st = KVMESH_ERR_ARG;
    if (st == KVMESH_SUCCESS)
        st = kvm_cache_usable(c);
    KVMESH_TRY(kvm_agree_state(c->comm, st, kvm_cache_state(c), &val, 1));
    v = &c->views[layer];
    bytes = layer_place(c, v, NULL, 0);
    mem = kvm_region_alloc(bytes);
    st = kvm_agree(c->comm, mem ? KVMESH_SUCCESS : KVMESH_ERR_NOMEM);
    if (st != KVMESH_SUCCESS) {
        kvm_region_free(mem, bytes);
        return st;
    }
    (void) layer_place(c, v, mem, 0);
    v->own = mem, v->own_bytes = bytes, v->ready = true;
    c->local_bytes += layer_bytes(c, v);
    return KVMESH_SUCCESS;
}

bool
kvmesh_cache_layer_ready(const kvmesh_cache_t *c, int64_t layer)
{
    return c && layer >= 0 && layer < c->meta.num_hidden_layers && c->views[layer].ready;
}

uint64_t
kvm_cache_state(const kvmesh_cache_t *c)
{
    return kvm_hash(0, c->state, (size_t) (c->meta.num_hidden_layers * 2 * c->B) *
                                 sizeof *c->state);
}

kvmesh_status_t
kvmesh_cache_free(kvmesh_cache_t **cache)
{
    kvmesh_status_t st = KVMESH_SUCCESS;
    kvmesh_cache_t *c;

    if (!cache || !*cache)
        return KVMESH_SUCCESS;
    c = *cache;
    /* the last chance to tell the caller that the ranks went apart */
    st = kvm_agree_state(c->comm, kvm_cache_usable(c), kvm_cache_state(c), NULL, 0);
    cache_destroy(c);
    *cache = NULL;
    return st;
}

kvmesh_status_t
kvmesh_cache_describe(const kvmesh_cache_t *c, char *buf, size_t size)
{
    static const char *const dt[3] = { "f32", "f16", "bf16" }, *const qn[3] = { "", "int8 ", "nf4 " };
    static const char *const kind[3] = { "full", "sliding", "chunk" };
    static const char *const ax[KVMESH_NAXES] = { "dp", "fsdp", "ep", "tp", "sp" };
    size_t n = 0;
    int64_t l, b, lo = INT32_MAX, hi = 0;
    int a;

#define PUT(...) do { int k_ = snprintf(buf + (n < size ? n : size), \
                                        n < size ? size - n : 0, __VA_ARGS__); \
        n += k_ > 0 ? (size_t) k_ : 0; } while (0)
    if (!c || !buf || !size)
        return KVMESH_ERR_ARG;
    for (l = 0; l < c->meta.num_hidden_layers; l++)
        for (b = 0; b < c->B; b++) {
            lo = c->views[l].indexs[b] < lo ? c->views[l].indexs[b] : lo;
            hi = c->views[l].indexs[b] > hi ? c->views[l].indexs[b] : hi;
        }
    PUT("TransformerCache(layers=%ld, key=[%ld, %ld, %ld, %ld], value=[%ld, %ld, %ld, %ld], "
        "local key=[%ld, %ld, %ld, %ld], storage=%s%s, mesh=",
        (long) c->meta.num_hidden_layers, (long) c->B, (long) c->S, (long) c->H[0],
        (long) c->D[0], (long) c->B, (long) c->S, (long) c->H[1], (long) c->D[1],
        (long) c->rows.len, (long) c->views[0].kv.len, (long) c->head[0].len,
        (long) c->dim[0].len, qn[c->quant], dt[c->dtype]);
    for (a = 0; a < KVMESH_NAXES; a++)
        PUT("%s%s=%d", a ? "," : "", ax[a], c->mesh->size[a]);
    PUT(", rank=%d, layers=", c->mesh->rank);
    for (l = 0; l < c->meta.num_hidden_layers; l++) {
        const kvmesh_mask_detail_t *d = &c->views[l].detail;
        PUT("%s%s", l ? "," : "", kind[d->kind]);
        if (d->kind != KVMESH_MASK_FULL)
            PUT("(%ld)", (long) (d->kind == KVMESH_MASK_SLIDING ? d->window : d->chunk));
    }
    PUT(", filled=%ld..%ld of %ld, max_append=%ld)", (long) lo, (long) hi, (long) c->S,
        (long) c->A);
#undef PUT
    return n < size ? KVMESH_SUCCESS : KVMESH_ERR_OVERFLOW;
}

void
kvmesh_version(int *major, int *minor, int *patch)
{
    if (major)
        *major = KVMESH_VERSION_MAJOR;
    if (minor)
        *minor = KVMESH_VERSION_MINOR;
    if (patch)
        *patch = KVMESH_VERSION_PATCH;
}

kvmesh_dtype_t
kvmesh_cache_dtype(const kvmesh_cache_t *cache)
{
    return cache ? cache->dtype : KVMESH_BF16;
}

kvmesh_quant_t
kvmesh_cache_quant(const kvmesh_cache_t *cache)
{
    return cache ? cache->quant : KVMESH_QUANT_NONE;
}

size_t
kvmesh_cache_head_bytes(const kvmesh_cache_t *cache, kvmesh_kv_t which)
{
    return cache && (which == KVMESH_KEY || which == KVMESH_VALUE)
               ? (size_t) cache->hbytes[which] : 0;
}

void
kvmesh_cache_meta(const kvmesh_cache_t *cache, kvmesh_meta_params_t *p)
{
    if (cache && p)
        *p = cache->meta;
}

const kvmesh_mesh_t *
kvmesh_cache_mesh(const kvmesh_cache_t *cache)
{
    return cache ? cache->mesh : NULL;
}

int64_t
kvmesh_cache_layers(const kvmesh_cache_t *cache)
{
    return cache ? cache->meta.num_hidden_layers : 0;
}

int64_t
kvmesh_cache_max_append(const kvmesh_cache_t *cache)
{
    return cache ? cache->A : 0;
}

size_t
kvmesh_cache_local_bytes(const kvmesh_cache_t *cache)
{
    return cache ? cache->local_bytes : 0;
}

kvmesh_status_t
kvmesh_cache_view(kvmesh_cache_t *cache, int64_t layer, kvmesh_view_t **view)
{
    if (!cache || !view || layer < 0 || layer >= cache->meta.num_hidden_layers)
        return KVMESH_ERR_ARG;
    *view = &cache->views[layer];
    return KVMESH_SUCCESS;
}

/* Sets rows [slot, slot + count) of indexs (which 0) or starts (which 1) in
 * every layer, after all ranks agreed on the arguments. */
static kvmesh_status_t
set_rows(kvmesh_cache_t *c, int which, int64_t slot, int64_t count,
         const int32_t *values)
{
    kvmesh_status_t st = KVMESH_SUCCESS;
    int64_t vals[3] = { slot, count, 0 }, b, l;

    if (!c)
        return KVMESH_ERR_ARG;
    if (slot < 0 || count < 0 || slot > c->B - count || (count && !values))
        st = KVMESH_ERR_ARG;
    for (b = 0; st == KVMESH_SUCCESS && b < count; b++)
        if (values[b] < 0 || values[b] > c->S)
            st = KVMESH_ERR_ARG;
    if (st == KVMESH_SUCCESS && count)
        vals[2] = (int64_t) kvm_hash(0, values, (size_t) count * sizeof *values);
    if (st == KVMESH_SUCCESS)
        st = kvm_cache_usable(c);
    KVMESH_TRY(kvm_agree_state(c->comm, st, kvm_cache_state(c), vals, 3));
    for (l = 0; l < c->meta.num_hidden_layers; l++) {
        int32_t *row = which ? c->views[l].starts : c->views[l].indexs;
        if (count)
            memcpy(row + slot, values, (size_t) count * sizeof *values);
    }
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_cache_evict(kvmesh_cache_t *c, int64_t slot, int64_t count)
{
    kvmesh_status_t st = KVMESH_SUCCESS;
    int64_t vals[2] = { slot, count }, l;

    if (!c)
        return KVMESH_ERR_ARG;
    if (slot < 0 || count < 0 || slot > c->B - count)
        st = KVMESH_ERR_ARG;
    if (st == KVMESH_SUCCESS)
        st = kvm_cache_usable(c);
    KVMESH_TRY(kvm_agree_state(c->comm, st, kvm_cache_state(c), vals, 2));
    for (l = 0; l < c->meta.num_hidden_layers && count; l++) {
        memset(c->views[l].indexs + slot, 0, (size_t) count * sizeof(int32_t));
        memset(c->views[l].starts + slot, 0, (size_t) count * sizeof(int32_t));
    }
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_cache_insert(kvmesh_cache_t *dst, const kvmesh_cache_t *src, int64_t slot,
                    MPI_Comm parent)
{
    return kvm_redist_insert(dst, src, slot, parent);
}

kvmesh_status_t
kvmesh_cache_reshard(const kvmesh_cache_t *cache, const kvmesh_partition_t *part,
                     MPI_Comm parent, kvmesh_cache_t **out)
{
    return kvm_redist_reshard(cache, part, parent, out);
}

kvmesh_status_t
kvmesh_cache_insert_starts(kvmesh_cache_t *cache, int64_t slot, int64_t count,
                           const int32_t *values)
{
    return set_rows(cache, 1, slot, count, values);
}

kvmesh_status_t
kvmesh_cache_insert_index(kvmesh_cache_t *cache, int64_t slot, int64_t count,
                          const int32_t *values)
{
    return set_rows(cache, 0, slot, count, values);
}

kvmesh_status_t
kvmesh_cache_input_block(const kvmesh_cache_t *c, kvmesh_mode_t mode,
                         int64_t n, kvmesh_kv_t which, kvmesh_block_t *blk)
{
    kvm_box_t box;
    int i;

    if (!c || !blk || mode >= KVMESH_NMODES || n <= 0 ||
        (which != KVMESH_KEY && which != KVMESH_VALUE))
        return KVMESH_ERR_ARG;
    (void) kvm_layout_input_box(&c->layout, mode, c->mesh->coord, which, n,
                                kvm_plan_of(c, mode, n)->qprod, &box, NULL);
    blk->global[0] = c->B;
    blk->global[1] = n;
    blk->global[2] = c->H[which];
    blk->global[3] = c->D[which];
    for (i = 0; i < 4; i++) {
        blk->offset[i] = box.d[i].lo;
        blk->shape[i] = box.d[i].len;
    }
    return KVMESH_SUCCESS;
}
