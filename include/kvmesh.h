/**
 * \file kvmesh.h
 * The one public header of kvmesh: a key/value cache of a transformer model,
 * sharded over the ranks of an MPI job (semantics of EasyDeL's
 * TransformerCache).
 *
 * Threads: calls on one cache (or mesh) must not run concurrently, except
 * reads (kvmesh_view_read, kvmesh_view_local, masks) between collectives.
 * Different caches may be used from different threads (their collectives
 * then need MPI_THREAD_MULTIPLE); a cache's init is a call on its mesh.
 *
 * Conventions.  Every fallible function returns a ::kvmesh_status_t and hands
 * its results back through its last pointer arguments.  A function documented
 * as "Collective on X" must be called by every rank of X and returns the same
 * status on every rank; on failure it leaves every rank's objects as they
 * were.  "Local" functions involve no other rank.  Handles are opaque;
 * `kvmesh_X_free(&h)` accepts NULL and sets `*h` to NULL.
 *
 * Rows, slots and positions.  A `row` argument is always a global batch
 * row (0 <= row < B).  A `slot` is a local storage slot of this rank's
 * block (0 <= slot < kvmesh_view_local()'s shape[1]); a `pos` is an
 * absolute token position of a row.  Output buffers come with their size
 * (bytes, or elements where named so): a buffer too small is an error,
 * never an overflow.
 *
 * Checked and unchecked mode.  Calls that exchange messages anyway (mesh
 * and cache create, free, insert_starts / insert_index) always agree on
 * one status.  The per-token call, kvmesh_view_concatenate(), cannot
 * afford that message: in unchecked mode (the default) it decides every
 * error that depends on replicated state alone (capacity, max_append,
 * layout) identically on every rank without a message, and trusts that
 * every rank passes the same mode, n, dtype and layer.  An error found
 * only locally (a NULL input on one rank, an MPI failure) is returned on
 * that rank alone; from then on that rank refuses every call on the cache
 * with KVMESH_ERR_DIVERGED (the other ranks may have gone on, or wait in a
 * routed append for its tokens), and the next call on the cache that
 * exchanges messages fails with KVMESH_ERR_DIVERGED on every rank, as does
 * any such call that finds the ranks' indexs or starts different.  Free
 * the cache then.  Checked mode (params.checked or KVMESH_CHECK=1) agrees
 * on every call's arguments with one allreduce, so that every error is
 * returned on every rank and nothing diverges.
 */
#ifndef KVMESH_H
#define KVMESH_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KVMESH_NODISCARD __attribute__((warn_unused_result))
#else
#define KVMESH_NODISCARD
#endif

#define KVMESH_VERSION_MAJOR 0
#define KVMESH_VERSION_MINOR 2
#define KVMESH_VERSION_PATCH 0

/** The version of the library the program runs with (the KVMESH_VERSION_*
 *  macros give the one it was compiled against).  Any pointer may be NULL.
 *  Local. */
void kvmesh_version(int *major, int *minor, int *patch);

/* ------------------------------------------------------------------------ */
/** \name Status codes */

/** Status of a call.  Larger values are worse: a collective call agrees on
 *  the largest status any rank saw.  Values from ::KVMESH_ERR_MPI up carry
 *  the MPI error code (status - KVMESH_ERR_MPI). */
typedef enum {
    KVMESH_SUCCESS = 0,
    KVMESH_ERR_ARG,         /**< invalid argument (NULL, out of range) */
    KVMESH_ERR_MESH_SPEC,   /**< malformed mesh specification */
    KVMESH_ERR_MESH_SIZE,   /**< mesh does not match the communicator size */
    KVMESH_ERR_META,        /**< invalid cache metadata */
    KVMESH_ERR_LAYOUT,      /**< partition layout not usable for this call */
    KVMESH_ERR_UNSUPPORTED, /**< feature not available in this build */
    KVMESH_ERR_CAPACITY,    /**< append would exceed the cache length */
    KVMESH_ERR_TOO_LONG,    /**< append of more tokens than max_append */
    KVMESH_ERR_EMPTY,       /**< a layer of an empty cache not initialised yet */
    KVMESH_ERR_OVERFLOW,    /**< a size does not fit in size_t / int64_t */
    KVMESH_ERR_MISMATCH,    /**< ranks passed different arguments */
    KVMESH_ERR_DIVERGED,    /**< this cache's replicated state differs
                                 between ranks (unchecked mode) */
    KVMESH_ERR_NOMEM,       /**< memory allocation failed */
    KVMESH_ERR_MPI = 1000   /**< MPI failed; status - KVMESH_ERR_MPI is its code */
} kvmesh_status_t;

/** Text for a status; never NULL.  For MPI failures the text includes
 *  MPI's own error string.  Local. */
const char *kvmesh_strerror(kvmesh_status_t status);

/* ------------------------------------------------------------------------ */
/** \name Element types */

typedef enum {
    KVMESH_F32 = 0, /**< IEEE binary32 */
    KVMESH_F16,     /**< IEEE binary16 */
    KVMESH_BF16     /**< bfloat16 */
} kvmesh_dtype_t;

/** Size in bytes of one element (0 for an unknown type).  Local. */
size_t kvmesh_dtype_size(kvmesh_dtype_t dtype);

/** Round-to-nearest-even conversions; NaN stays NaN (quiet), infinities
 *  stay infinite.  Local. */
uint16_t kvmesh_f32_to_bf16(float x);
float kvmesh_bf16_to_f32(uint16_t h);
uint16_t kvmesh_f32_to_f16(float x);
float kvmesh_f16_to_f32(uint16_t h);

/** Converts \p count elements from \p src (type \p src_type) into \p dst
 *  (type \p dst_type).  Buffers must not overlap.  Local.
 *  \param [out] dst        destination buffer
 *  \param [in]  dst_type   destination element type
 *  \param [in]  src        source buffer
 *  \param [in]  src_type   source element type
 *  \param [in]  count      number of elements */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_convert(void *dst, kvmesh_dtype_t dst_type, const void *src,
               kvmesh_dtype_t src_type, size_t count);

/* ------------------------------------------------------------------------ */
/** \name Mesh: an MPI Cartesian communicator with named axes */

typedef enum {
    KVMESH_AXIS_DP = 0,
    KVMESH_AXIS_FSDP,
    KVMESH_AXIS_EP,
    KVMESH_AXIS_TP,
    KVMESH_AXIS_SP,
    KVMESH_NAXES
} kvmesh_axis_t;

typedef struct kvmesh_mesh kvmesh_mesh_t;

/** Parses a mesh specification such as "dp=1,fsdp=-1,ep=1,tp=1,sp=1" for a
 *  communicator of \p nranks ranks.  Axes left out have size 1; at most one
 *  size may be -1 and is inferred; an empty string or NULL means "fsdp=-1".
 *  Local.
 *  \param [in]  spec    the specification
 *  \param [in]  nranks  communicator size the product must equal
 *  \param [out] sizes   KVMESH_NAXES axis sizes, in kvmesh_axis_t order */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_mesh_parse(const char *spec, int nranks, int sizes[KVMESH_NAXES]);

/** Creates a mesh over \p comm.  A spec that is bad on any rank, or differs
 *  between ranks, fails on every rank.  Collective on \p comm.
 *  \param [in]  comm  parent communicator (duplicated, not kept)
 *  \param [in]  spec  mesh specification, see kvmesh_mesh_parse()
 *  \param [out] mesh  the new mesh */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_mesh_create(MPI_Comm comm, const char *spec, kvmesh_mesh_t **mesh);

/** Frees a mesh; accepts NULL and sets \p *mesh to NULL.  Collective on the
 *  mesh communicator. */
void kvmesh_mesh_free(kvmesh_mesh_t **mesh);

/** Size of one mesh axis.  Local. */
int kvmesh_mesh_size(const kvmesh_mesh_t *mesh, kvmesh_axis_t axis);
/** This rank's coordinate on one mesh axis.  Local. */
int kvmesh_mesh_coord(const kvmesh_mesh_t *mesh, kvmesh_axis_t axis);
/** The mesh's Cartesian communicator (owned by the mesh).  Local. */
MPI_Comm kvmesh_mesh_comm(const kvmesh_mesh_t *mesh);
/** The sub-communicator of the ranks that differ only along \p axis
 *  (owned by the mesh).  Local. */
MPI_Comm kvmesh_mesh_axis_comm(const kvmesh_mesh_t *mesh, kvmesh_axis_t axis);
/** Rank in the mesh communicator of the given coordinates (-1 if out of
 *  range).  Local. */
int kvmesh_mesh_rank_of(const kvmesh_mesh_t *mesh, const int coords[KVMESH_NAXES]);

/* ------------------------------------------------------------------------ */
/** \name Partition manager (after eformer's PartitionAxis) */

typedef enum {
    KVMESH_BATCH = 0,
    KVMESH_QUERY_LENGTH,
    KVMESH_KV_LENGTH,
    KVMESH_HEAD,
    KVMESH_KV_HEAD,
    KVMESH_HEAD_DIM,
    KVMESH_KV_HEAD_DIM,
    KVMESH_NLOGICAL
} kvmesh_logical_t;

typedef enum {
    KVMESH_MODE_PREFILL = 0,
    KVMESH_MODE_DECODE,
    KVMESH_MODE_INSERT,
    KVMESH_NMODES
} kvmesh_mode_t;

/** Which rule table a rule goes into: the standard one, or the one that the
 *  generation modes (DECODE, INSERT) use when a rule is set there. */
typedef enum { KVMESH_RULES_STANDARD = 0, KVMESH_RULES_DECODE } kvmesh_rules_t;

typedef struct kvmesh_partition kvmesh_partition_t;

/** How one dimension of a global array is split over the mesh, for one rank. */
typedef struct {
    int64_t size;       /**< global size of the dimension */
    int naxes;          /**< mesh axes it is split over (0: replicated) */
    kvmesh_axis_t axes[KVMESH_NAXES]; /**< those axes, major first */
    int64_t nblocks;    /**< product of their sizes */
    int64_t block;      /**< this rank's block index */
    int64_t local_size; /**< size / nblocks */
    int64_t offset;     /**< block * local_size */
} kvmesh_dim_t;

/** Creates a partition manager with eformer's default rules: BATCH ->
 *  (fsdp, dp), QUERY_LENGTH and KV_LENGTH -> sp, HEAD and KV_HEAD -> tp,
 *  head dims unsharded; no decode rules.  The mesh must outlive it.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_partition_create(const kvmesh_mesh_t *mesh, kvmesh_partition_t **part);

/** Frees a partition manager; accepts NULL.  Local. */
void kvmesh_partition_free(kvmesh_partition_t **part);

/** Sets the rule of one logical axis: the tuple of mesh axes it is split
 *  over, major first (\p naxes = 0: replicated).  Axes must be distinct.
 *  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_partition_set_rule(kvmesh_partition_t *part, kvmesh_rules_t table,
                          kvmesh_logical_t logical, const kvmesh_axis_t *axes,
                          int naxes);

/** Removes the decode rule of one logical axis, so that generation modes use
 *  the standard rule again.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_partition_unset_decode_rule(kvmesh_partition_t *part,
                                   kvmesh_logical_t logical);

/** Resolves the split of a dimension of \p size along \p logical in \p mode
 *  for the mesh coordinates \p coords (NULL: this rank).  A size that is not
 *  divisible by the product of the rule's axis sizes is left unsharded.
 *  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_partition_resolve(const kvmesh_partition_t *part, kvmesh_mode_t mode,
                         kvmesh_logical_t logical, int64_t size,
                         const int coords[KVMESH_NAXES], kvmesh_dim_t *dim);

/** Lists the ranks (of the mesh communicator) that hold element \p index of
 *  an array of \p ndims dimensions with the \p logical axes and \p shape,
 *  in \p mode, of partition \p part: \p ranks gets them in ascending order
 *  and \p nranks how many.  KVMESH_ERR_ARG when more than \p max_ranks hold
 *  it (the mesh size is always enough).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_partition_owners(const kvmesh_partition_t *part, kvmesh_mode_t mode,
                        int ndims, const kvmesh_logical_t *logical,
                        const int64_t *shape, const int64_t *index,
                        int *ranks, int max_ranks, int *nranks);

/* ------------------------------------------------------------------------ */
/** \name Cache metadata (TransformerCacheMetaData.create) */

/** Caller-filled metadata; 0 means "not given" for the optional sizes. */
typedef struct {
    int64_t batch_size;        /**< > 0 */
    int64_t sequence_length;   /**< > 0 */
    int64_t num_hidden_layers; /**< > 0 */
    int64_t pad_token_id;
    int64_t num_heads;         /**< or both key_heads and value_heads */
    int64_t head_dim;          /**< or both key_dim and value_dim */
    int64_t key_heads, value_heads;
    int64_t key_dim, value_dim;
    int64_t sliding_window;    /**< 0: none; else > 0: every layer is SLIDING
                                    with this window unless the cache's
                                    per-layer details say otherwise */
    bool update_causal_mask;
    bool create_attention_bias;
} kvmesh_meta_params_t;

typedef struct kvmesh_meta kvmesh_meta_t;

/** Sets \p p to "nothing given" (all zero, update_causal_mask true).  Local. */
void kvmesh_meta_params_init(kvmesh_meta_params_t *p);

/** Validates \p p and creates metadata with key/value heads and dims
 *  resolved (falling back to num_heads / head_dim).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_meta_create(const kvmesh_meta_params_t *p, kvmesh_meta_t **meta);

/** The resolved metadata.  Local. */
void kvmesh_meta_get(const kvmesh_meta_t *meta, kvmesh_meta_params_t *p);

/** Frees metadata; accepts NULL.  Local. */
void kvmesh_meta_free(kvmesh_meta_t **meta);

/* ------------------------------------------------------------------------ */
/** \name Mask details and mask info */

typedef enum {
    KVMESH_MASK_FULL = 0,
    KVMESH_MASK_SLIDING,
    KVMESH_MASK_CHUNK
} kvmesh_mask_kind_t;

/** Attention kind of one layer. */
typedef struct {
    kvmesh_mask_kind_t kind;
    int64_t window; /**< SLIDING: window size W > 0 */
    int64_t chunk;  /**< CHUNK: chunk size C > 0 */
} kvmesh_mask_detail_t;

/** The visibility rule: may query position \p q see kv position \p k in a
 *  row whose left padding ends at \p start?  start <= k <= q, and for
 *  SLIDING k > q - W, for CHUNK k / C == q / C.  Local. */
bool kvmesh_mask_detail_allows(const kvmesh_mask_detail_t *detail,
                               int64_t start, int64_t q, int64_t k);

/** Mask info of the last concatenate of one layer (owned by the layer,
 *  valid until its next concatenate). */
typedef struct kvmesh_mask kvmesh_mask_t;

/** Number of new (query) tokens n; the queries of global row b are the
 *  positions [indexs[b] - n, indexs[b]).  Local. */
int64_t kvmesh_mask_queries(const kvmesh_mask_t *mask);

/** May query \p i (0 <= i < n) of global row \p row see the key at
 *  absolute position \p pos?  Exactly the rule of
 *  kvmesh_mask_detail_allows() for keys written so far: the cache still
 *  holds every key it allows.  Out-of-range arguments give false.  Local. */
bool kvmesh_mask_allows(const kvmesh_mask_t *mask, int64_t row, int64_t i,
                        int64_t pos);

/** Runtime metadata (EasyDeL's TransformerMetadata) that overrides a view's
 *  own per-row state in the mask functions: the queries of row b are
 *  [indexs[b] - n, indexs[b]) and its keys start at starts[b]; NULL
 *  arrays keep the view's; postpadded rows are padded after their tokens,
 *  so no key is hidden as left padding.  Keys are only ever those stored. */
typedef struct {
    bool postpadded;
    const int32_t *starts;   /**< [B] or NULL */
    const int32_t *indexs;   /**< [B] or NULL */
} kvmesh_runtime_t;

/** Sets \p rt to "nothing overridden".  Local. */
void kvmesh_runtime_init(kvmesh_runtime_t *rt);

/** kvmesh_mask_allows() with \p rt's rows (NULL: the view's).  Local. */
bool kvmesh_mask_allows_at(const kvmesh_mask_t *mask, const kvmesh_runtime_t *rt,
                           int64_t row, int64_t i, int64_t pos);

/** kvmesh_mask_materialize() with \p rt's rows (NULL: the view's).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_mask_materialize_at(const kvmesh_mask_t *mask, const kvmesh_runtime_t *rt,
                           uint8_t *out, size_t out_bytes);

/** Writes the boolean mask of this rank's local block, shape
 *  [B_local, n, S_local] (B_local, S_local: kvmesh_view_local()'s shape),
 *  in local storage-slot order (for a SLIDING layer the ring's slots),
 *  1 = visible.  KVMESH_ERR_ARG when \p out_bytes is smaller.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_mask_materialize(const kvmesh_mask_t *mask, uint8_t *out, size_t out_bytes);

/* ------------------------------------------------------------------------ */
/** \name The cache and its layers */

typedef struct kvmesh_cache kvmesh_cache_t;
typedef struct kvmesh_view kvmesh_view_t;

/** Which tensor of a layer. */
typedef enum { KVMESH_KEY = 0, KVMESH_VALUE = 1 } kvmesh_kv_t;

/** Storage of the cache's K/V (DESIGN §6).  Quantized storage keeps, per
 *  head vector of D elements: INT8, D int8 codes and one f32 scale
 *  (amax / 127 + FLT_MIN); NF4, ceil(D / 2) bytes of 4-bit codes and one
 *  f32 absmax per block of 64.  Only written tokens are quantized.  NaN
 *  elements are stored as 0; +-inf saturate to +-(the largest finite
 *  magnitude of the vector or block).  Quantized caches need the head dim
 *  unsplit (KVMESH_ERR_LAYOUT otherwise). */
typedef enum {
    KVMESH_QUANT_NONE = 0, /**< elements in the cache dtype */
    KVMESH_QUANT_INT8,
    KVMESH_QUANT_NF4
} kvmesh_quant_t;

/** The values a head vector of \p D f32 elements reads back as from a
 *  cache quantized with \p quant (NONE: unchanged), exactly: what a
 *  reference model needs to round its keys and values as kvmesh stores
 *  them.  \p in and \p out may be the same.  KVMESH_ERR_NOMEM,
 *  KVMESH_ERR_ARG.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_quant_roundtrip(kvmesh_quant_t quant, int64_t D, const float *in, float *out);

/** Options of kvmesh_cache_init().
 *
 *  FULL and CHUNK layers store S positions per row.  A SLIDING layer of
 *  window W stores R = min(S, W + A - 1) slots as a ring (position p in slot
 *  p mod R), A being the cache's largest append (\p max_append): after any
 *  append of n <= A tokens, every key that any of its n queries may see
 *  (k > q - W) is still held, so the mask of a chunked prefill is exact for
 *  every query, not only the last.  R is rounded up to a multiple of the
 *  kv-length blocks (at most S), so that rings split over sp like positions;
 *  a length that does not divide stays whole on every rank.  The extra
 *  slots are storage, not semantics: gathers export the last min(W, L)
 *  positions.  (EasyDeL keeps W slots, so the earlier queries of a chunk
 *  lose keys they should see.) */
/** How insert, gather, scatter and reshard move data. */
typedef enum {
    KVMESH_ENGINE_DEFAULT = 0,  /**< KVMESH_ENGINE=p2p|scalapack from the
                                     environment, else P2P */
    KVMESH_ENGINE_P2P,          /**< point to point, storage to storage */
    KVMESH_ENGINE_SCALAPACK     /**< ScaLAPACK's p?gemr2d on the rows'
                                     descriptors (kvmesh_cache_scalapack()):
                                     an independent oracle, slower */
} kvmesh_engine_t;

typedef struct {
    kvmesh_dtype_t dtype;                /**< storage type (default bf16) */
    kvmesh_quant_t quant;                /**< quantized storage (default none) */
    const kvmesh_mask_detail_t *details; /**< one per layer; NULL: all SLIDING
                                              when the metadata has a
                                              sliding_window, else all FULL */
    int64_t max_append; /**< largest n of one kvmesh_view_concatenate() (A);
                             0: min(512, S), like llama.cpp's micro-batch;
                             values above S mean S */
    const int32_t *starts;               /**< batch_size entries; NULL: 0 */
    bool checked; /**< agree on per-token arguments with a message; also on
                       when KVMESH_CHECK=1 is in the environment */
    kvmesh_engine_t engine; /**< engine of the cache's insert, gather and
                                 reshard (and of a scatter's) */
    int64_t staging_bytes;  /**< memory per rank a redistribution (insert,
                                 gather, scatter, reshard) may use to describe
                                 and stage its transfers; a move that needs
                                 more runs in rounds (0: 64 MiB; the smallest
                                 of the caches' taking part holds) */
} kvmesh_cache_params_t;

/** Sets defaults: bf16, all layers FULL, starts 0, unchecked.  Local. */
void kvmesh_cache_params_init(kvmesh_cache_params_t *p);

/** Creates the cache: every layer's local key [B, S_l, Hk, Dk] and value
 *  [B, S_l, Hv, Dv] shards (S_l: the layer's storage length), partitioned as [BATCH, KV_LENGTH, KV_HEAD,
 *  KV_HEAD_DIM] in PREFILL mode, zeroed; indexs 0, starts as given.  Every
 *  rank must pass the same metadata and options.  Collective on the
 *  partition's mesh communicator.  \p meta and \p part are copied; the
 *  mesh must outlive the cache.  S and B must fit in int32 (indexs). */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_init(const kvmesh_meta_t *meta, const kvmesh_partition_t *part,
                  const kvmesh_cache_params_t *params, kvmesh_cache_t **cache);

/** An empty cache (EasyDeL's TransformerCache.init_empty): as
 *  kvmesh_cache_init(), but no layer has storage until
 *  kvmesh_cache_init_layer() gives it some, so a pipeline stage that owns
 *  some layers allocates only those.  A call that needs an uninitialised
 *  layer's storage (concatenate, view_local / read / scales, insert,
 *  gather, reshard) fails with KVMESH_ERR_EMPTY; kvmesh_cache_local_bytes
 *  counts initialised layers.  Collective on the partition's mesh
 *  communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_init_empty(const kvmesh_meta_t *meta, const kvmesh_partition_t *part,
                        const kvmesh_cache_params_t *params, kvmesh_cache_t **cache);

/** Gives layer \p layer of an empty cache its storage (zeroed).
 *  KVMESH_ERR_ARG for a layer out of range or initialised already.
 *  Collective on the mesh communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_init_layer(kvmesh_cache_t *cache, int64_t layer);

/** Has layer \p layer storage (always, unless the cache was made empty)?
 *  Local. */
bool kvmesh_cache_layer_ready(const kvmesh_cache_t *cache, int64_t layer);

/** Frees the cache; accepts NULL.  Returns KVMESH_ERR_DIVERGED on every
 *  rank when the ranks' replicated state had diverged (it frees anyway).
 *  Collective on the mesh communicator. */
kvmesh_status_t kvmesh_cache_free(kvmesh_cache_t **cache);

/** Number of layers.  Local. */
int64_t kvmesh_cache_layers(const kvmesh_cache_t *cache);

/** One line describing the cache, like EasyDeL's repr: layers, global and
 *  this rank's key shapes, storage, mesh, layer kinds, fill levels (for
 *  example "TransformerCache(layers=2, key=[2, 64, 4, 16], ..., filled=0..40
 *  of 64, max_append=16)").  KVMESH_ERR_OVERFLOW when it does not fit in
 *  \p size bytes (it is cut, and ends in a NUL).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_describe(const kvmesh_cache_t *cache, char *buf, size_t size);

/** The largest append A (kvmesh_cache_params_t.max_append, resolved).
 *  Local. */
int64_t kvmesh_cache_max_append(const kvmesh_cache_t *cache);

/** The cache's engine (resolved: P2P or SCALAPACK) and a new one for its
 *  later calls; every rank taking part in a call must use the same engine
 *  (KVMESH_ERR_MISMATCH otherwise).  An insert runs on the destination's
 *  engine.  Local. */
kvmesh_engine_t kvmesh_cache_engine(const kvmesh_cache_t *cache);
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_set_engine(kvmesh_cache_t *cache, kvmesh_engine_t engine);

/** Storage element type and quantization.  Local. */
kvmesh_dtype_t kvmesh_cache_dtype(const kvmesh_cache_t *cache);
kvmesh_quant_t kvmesh_cache_quant(const kvmesh_cache_t *cache);

/** Bytes of one stored head vector of this rank's key or value block: its
 *  local head dim in the cache dtype, or the codes of a whole head vector
 *  for INT8 (D bytes) and NF4 (ceil(D / 2) bytes; scales apart, see
 *  kvmesh_view_scales()).  Local. */
size_t kvmesh_cache_head_bytes(const kvmesh_cache_t *cache, kvmesh_kv_t which);

/** The resolved metadata the cache was made with.  Local. */
void kvmesh_cache_meta(const kvmesh_cache_t *cache, kvmesh_meta_params_t *p);

/** The mesh the cache lives on.  Local. */
const kvmesh_mesh_t *kvmesh_cache_mesh(const kvmesh_cache_t *cache);

/** Bytes of K/V storage this rank holds.  Local. */
size_t kvmesh_cache_local_bytes(const kvmesh_cache_t *cache);

/** The view of layer \p layer (owned by the cache).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_view(kvmesh_cache_t *cache, int64_t layer, kvmesh_view_t **view);

/** Sets starts[slot .. slot + count) of every layer.  Every rank must pass
 *  the same values.  Collective on the mesh communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_insert_starts(kvmesh_cache_t *cache, int64_t slot, int64_t count,
                           const int32_t *values);

/** Sets indexs[slot .. slot + count) of every layer (0 <= value <= S).
 *  Collective on the mesh communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_insert_index(kvmesh_cache_t *cache, int64_t slot, int64_t count,
                          const int32_t *values);

/** Copies rows [0, B_src) of \p src -- every layer's K, V (and scales),
 *  indexs and starts -- into rows [slot, slot + B_src) of \p dst
 *  (EasyDeL's TransformerCache.insert; a prefill group's request cache into
 *  a free slot of the decode group's cache).  The two caches may live on
 *  different meshes whose ranks are any subsets of \p parent (disjoint,
 *  overlapping or the same); a rank outside one of them passes NULL for
 *  it.  Only filled positions move: [0, L) of a FULL or CHUNK row, the last
 *  min(L, ring) of a SLIDING row (rings of different lengths work, as they
 *  are addressed by position).  Each destination byte comes from one source
 *  replica, by a local copy when the same parent rank holds it, else
 *  storage to storage through MPI datatypes (no data is staged; the
 *  transfer descriptions stay within the staging cap, in rounds beyond
 *  it).  Runs on the destination's engine (kvmesh_cache_engine()).
 *  Errors, on every rank of \p parent, nothing changed: KVMESH_ERR_ARG for
 *  a slot out of range (slot + B_src > B_dst), different layer counts,
 *  heads, head dims, layer kinds, windows, chunks, dtypes or quantization
 *  (int8 into bf16 is an error, not a conversion), or src == dst;
 *  KVMESH_ERR_CAPACITY when S_src > S_dst; KVMESH_ERR_MISMATCH when ranks
 *  pass different slots or engines, or ranks of one group different
 *  caches; KVMESH_ERR_DIVERGED when a side's replicated state differs
 *  between its ranks; KVMESH_ERR_LAYOUT on the ScaLAPACK engine when a
 *  layout splits head dims while its blocks hold several heads.  Old positions of a destination row
 *  past its new length are left as they were, never visible.  Collective
 *  on \p parent. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_insert(kvmesh_cache_t *dst, const kvmesh_cache_t *src, int64_t slot,
                    MPI_Comm parent);

/** The same cache on another layout or rank count: a new cache in \p *out,
 *  on \p part's mesh, with \p cache's metadata, options and contents (every
 *  row's filled positions, indexs and starts; a ring keeps what both
 *  lengths hold).  Ranks of the old cache's mesh pass it, the others NULL;
 *  ranks of the new mesh pass \p part (its mesh must be on exactly those
 *  ranks), the others NULL (and get no cache).  The old cache stays as it
 *  was; free it when done.  Collective on \p parent, which holds both
 *  meshes' ranks. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_reshard(const kvmesh_cache_t *cache, const kvmesh_partition_t *part,
                     MPI_Comm parent, kvmesh_cache_t **out);

/** A pure: a whole cache on one rank in EasyDeL's to_pure shape.  Per
 *  layer, key and value [B, S_l, H, D] row-major (S_l = S; for a SLIDING
 *  layer min(W, S), each row holding its last min(W, L) positions oldest
 *  first and zeros after them), in the cache's dtype or, for a quantized
 *  cache, its codes (D int8, or ceil(D / 2) bytes of nf4 per head vector)
 *  with their f32 scales [B, S_l, H, per_head]; indexs and starts [B];
 *  the metadata and the layers' details. */
typedef struct kvmesh_pure kvmesh_pure_t;

/** Gathers the whole cache to mesh rank \p root (EasyDeL's to_pure): a new
 *  pure in \p *pure on the root, NULL elsewhere.  Only filled positions
 *  move, on the cache's engine.  KVMESH_ERR_ARG for a root out of range;
 *  KVMESH_ERR_EMPTY when a layer has no storage.  Collective on the mesh
 *  communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_gather(const kvmesh_cache_t *cache, int root, kvmesh_pure_t **pure);

/** kvmesh_cache_gather() into an existing pure of this cache's shape and
 *  storage (from an earlier gather), which the root passes and the other
 *  ranks pass as NULL: repeated gathers allocate no arrays (only the
 *  transfer's descriptions, within the staging cap, freed on return).
 *  Collective on the mesh communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_gather_into(const kvmesh_cache_t *cache, int root, kvmesh_pure_t *pure);

/** The inverse of a gather (EasyDeL's from_pure): a new cache in \p *cache
 *  on \p part's mesh with the contents of \p pure, which mesh rank \p root
 *  holds (the other ranks pass NULL).  \p params gives the options
 *  (max_append, checked, engine, staging_bytes; NULL: defaults); the
 *  storage type, quantization and layer details are the pure's.  Collective on the partition's mesh
 *  communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_scatter(const kvmesh_pure_t *pure, int root, const kvmesh_partition_t *part,
                     const kvmesh_cache_params_t *params, kvmesh_cache_t **cache);

/** One layer's arrays for kvmesh_pure_wrap(), laid out as a pure's. */
typedef struct {
    void *key, *value;                 /**< [B, S_l, H, D], or codes */
    float *key_scales, *value_scales;  /**< quantized: [B, S_l, H, per_head] */
    int32_t *indexs, *starts;          /**< [B] */
} kvmesh_pure_layer_t;

/** A pure around the caller's own arrays (numpy arrays handed over from
 *  Python, say), not copied: they must outlive the pure, and a gather into
 *  it writes them.  \p meta as for kvmesh_meta_create(); \p details one per
 *  layer (NULL: all SLIDING with meta's sliding_window, or all FULL); S_l
 *  is S, or min(W, S) for a SLIDING layer, whose rows hold their last
 *  positions oldest first.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_pure_wrap(const kvmesh_meta_params_t *meta, const kvmesh_mask_detail_t *details,
                 kvmesh_dtype_t dtype, kvmesh_quant_t quant, const kvmesh_pure_layer_t *layers,
                 kvmesh_pure_t **pure);

/** A new pure with \p in's contents dequantized (or converted) to
 *  \p dtype, unquantized.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_pure_dequantize(const kvmesh_pure_t *in, kvmesh_dtype_t dtype, kvmesh_pure_t **out);

/** Frees a pure (not the caller's arrays of a wrapped one); accepts NULL.
 *  Local. */
void kvmesh_pure_free(kvmesh_pure_t **pure);

/** A pure's layers, metadata, element type, quantization and layer
 *  details.  Local. */
int64_t kvmesh_pure_layers(const kvmesh_pure_t *pure);
void kvmesh_pure_meta(const kvmesh_pure_t *pure, kvmesh_meta_params_t *meta);
kvmesh_dtype_t kvmesh_pure_dtype(const kvmesh_pure_t *pure);
kvmesh_quant_t kvmesh_pure_quant(const kvmesh_pure_t *pure);
KVMESH_NODISCARD kvmesh_status_t
kvmesh_pure_detail(const kvmesh_pure_t *pure, int64_t layer, kvmesh_mask_detail_t *detail);

/** Layer \p layer's key or value array (owned by the pure) and its shape
 *  [B, S_l, H, D] (elements; codes for a quantized pure).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_pure_array(const kvmesh_pure_t *pure, int64_t layer, kvmesh_kv_t which, void **data,
                  int64_t shape[4]);

/** Its scales [B, S_l, H, per_head] (NULL, 0 unquantized).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_pure_scales(const kvmesh_pure_t *pure, int64_t layer, kvmesh_kv_t which,
                   float **scales, int64_t *per_head);

/** Its indexs and starts [B] (owned by the pure).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_pure_rows(const kvmesh_pure_t *pure, int64_t layer, int32_t **indexs,
                 int32_t **starts);

/** Empties rows [slot, slot + count) of every layer: indexs and starts
 *  become 0.  The stored K/V are not zeroed (an empty row shows no
 *  position); the next append or insert overwrites them.  Every rank must
 *  pass the same rows.  Collective on the mesh communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_evict(kvmesh_cache_t *cache, int64_t slot, int64_t count);

/** One batch row of one layer's key or value storage as a ScaLAPACK
 *  matrix, for operating on the cache in place.  The storage of a row is
 *  row-major [slots][heads][dim]; ScaLAPACK reads it column-major, so the
 *  matrix is (H x D elements) x S_l slots: column j is storage slot j (for
 *  a SLIDING layer, ring slot j: see kvmesh_view_slot_position()), its
 *  rows the slot's bytes of every head, in 4-byte words (INTEGER for
 *  pigemr2d, or REAL bit patterns): two bf16 / f16 elements, one f32, or
 *  four int8 codes a word.  The row's holders form a 2-d block
 *  distribution (one block a process: MB = local head words, NB = local
 *  slots, RSRC = CSRC = 0, LLD = MB) over a BLACS grid of (head blocks x
 *  dim blocks) rows and kv-length blocks columns; replicas of the blocks
 *  (ranks that differ only along axes the row is not split over) form
 *  further grids, each rank being in one. */
typedef struct {
    int context;     /**< BLACS context of my grid; -1: I hold no block */
    int desc[9];     /**< descriptor of the data (context -1 outside) */
    void *local;     /**< my block of the row (NULL outside) */
    int scale_desc[9]; /**< quantized: the f32 scales, H x per_head words
                            a slot (context -1 when unquantized) */
    float *scale_local; /**< my block of the scales */
} kvmesh_scalapack_t;

/** Row \p row of layer \p layer's key or value storage as a ScaLAPACK
 *  matrix.  The BLACS grids are made on first use and kept until the cache
 *  is freed.  KVMESH_ERR_LAYOUT when a block's head bytes are no whole
 *  number of words (an odd head dim in bf16, say) or its columns are not
 *  contiguous (head dims split while a block holds several heads).  Every
 *  rank passes the same arguments.  Collective on the mesh communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_scalapack(kvmesh_cache_t *cache, int64_t layer, kvmesh_kv_t which,
                       int64_t row, kvmesh_scalapack_t *out);

/** Geometry of a rank-local 4-d block of a global [B, L, H, D] array. */
typedef struct {
    int64_t shape[4];  /**< local extents */
    int64_t offset[4]; /**< global index of the first local element */
    int64_t global[4]; /**< global extents */
} kvmesh_block_t;

/** Geometry of the input block of \p n new tokens that this rank passes to
 *  kvmesh_view_concatenate() in \p mode: the rank's block of [B, n, H, D]
 *  under [BATCH, QUERY_LENGTH, KV_HEAD, KV_HEAD_DIM].  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_cache_input_block(const kvmesh_cache_t *cache, kvmesh_mode_t mode,
                         int64_t n, kvmesh_kv_t which, kvmesh_block_t *block);

/** Appends \p n new tokens to every row of one layer (DESIGN §4): row b
 *  gets positions [indexs[b], indexs[b] + n); a SLIDING layer's ring keeps
 *  every key its queries may see.  \p key and \p value are this
 *  rank's input blocks (see kvmesh_cache_input_block()) of type \p dtype,
 *  converted to the cache type.  Tokens move between ranks only when the
 *  input's query-length blocks do not line up with the cache's kv-length
 *  blocks.  Fails, changing nothing, with KVMESH_ERR_TOO_LONG when
 *  n > max_append (chunk a longer prefill into appends of at most
 *  kvmesh_cache_max_append() tokens), and with KVMESH_ERR_CAPACITY when a
 *  row would pass the cache length.  \p mask (when not NULL) gets the mask
 *  info of this append, owned by the view.  \p mode is the input's
 *  partition mode.  Collective on the mesh communicator. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_view_concatenate(kvmesh_view_t *view, kvmesh_mode_t mode, int64_t n,
                        kvmesh_dtype_t dtype, const void *key,
                        const void *value, const kvmesh_mask_t **mask);

/** This rank's local key or value block: its storage (row-major, the cache
 *  type; for quantized caches the codes, see kvmesh_view_scales()) and
 *  geometry; dimension 1 counts storage slots (for a SLIDING
 *  layer, ring slots; see kvmesh_view_slot_position()).  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_view_local(const kvmesh_view_t *view, kvmesh_kv_t which,
                  const void **data, kvmesh_block_t *block);

/** Absolute position held by local storage slot \p slot of global row
 *  \p row (-1: none yet).  Local slot s is global slot offset[1] + s of
 *  kvmesh_view_local()'s block.  FULL and CHUNK global slots hold their own
 *  position; a SLIDING global slot g holds the newest position
 *  p < indexs[row] with p mod R == g (R: the ring's length, global[1]).
 *  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_view_slot_position(const kvmesh_view_t *view, int64_t row, int64_t slot,
                          int64_t *pos);

/** Reads local slots [slot0, slot1) of global row \p row (one of this
 *  rank's rows) of the key or value block, all local heads, converted (or
 *  dequantized) to \p dtype, into \p out, laid out [slot][head][dim]:
 *  (slot1 - slot0) x local heads x local dims elements, which must fit in
 *  \p out_bytes.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_view_read(const kvmesh_view_t *view, kvmesh_kv_t which, int64_t row,
                 int64_t slot0, int64_t slot1, kvmesh_dtype_t dtype, void *out,
                 size_t out_bytes);

/** The communicator to merge this layer's partial attention results over
 *  (flash-decoding style: each rank attends over its local slots): the
 *  ranks that hold the other kv-length blocks of this rank's rows and
 *  heads, a rank's rank in it being its kv-length block index.  A layer
 *  whose storage stays whole (its length does not divide over the
 *  kv-length blocks) is held entirely by every rank, and this is then
 *  MPI_COMM_SELF, so that a merge never counts a replica twice.  Owned by
 *  the cache.  Local. */
MPI_Comm kvmesh_view_kv_comm(const kvmesh_view_t *view);

/** True when this layer's storage is not split over the kv-length blocks
 *  (see kvmesh_view_kv_comm()).  Local. */
bool kvmesh_view_whole(const kvmesh_view_t *view);

/** Scales of a quantized local block, laid out [row][slot][head][per_head]
 *  next to the codes of kvmesh_view_local(); \p per_head is 1 for INT8 and
 *  ceil(D / 64) for NF4, 0 (and NULL scales) without quantization.  Local. */
KVMESH_NODISCARD kvmesh_status_t
kvmesh_view_scales(const kvmesh_view_t *view, kvmesh_kv_t which,
                   const float **scales, int64_t *per_head);

/** The replicated indexs (tokens written) and starts of all B rows.  Local. */
const int32_t *kvmesh_view_indexs(const kvmesh_view_t *view);
const int32_t *kvmesh_view_starts(const kvmesh_view_t *view);

/** Mask detail of the layer.  Local. */
kvmesh_mask_detail_t kvmesh_view_detail(const kvmesh_view_t *view);

#ifdef __cplusplus
}
#endif
#endif /* KVMESH_H */
