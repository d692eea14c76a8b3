/* Serial reference of kvmesh's semantics (DESIGN §4), written from the
 * design text alone with plain loops over global arrays.  It shares no code
 * with src/: its rounding, encodings and mask rule are its own. */
#ifndef KVREF_H
#define KVREF_H

#include <stdbool.h>
#include <stdint.h>

enum { REF_F32 = 0, REF_F16 = 1, REF_BF16 = 2 };   /* as kvmesh_dtype_t */
enum { REF_FULL = 0, REF_SLIDING = 1, REF_CHUNK = 2 };
enum { REF_QNONE = 0, REF_Q8 = 1, REF_NF4 = 2 };   /* as kvmesh_quant_t */

/** x rounded to the nearest value of type dt, ties to even (doubles hold
 *  every value of the three types exactly). */
double ref_round(double x, int dt);
/** Bit pattern of v, which must be a value of type dt. */
uint32_t ref_encode(double v, int dt);
/** Value of a bit pattern of type dt. */
double ref_decode(uint32_t bits, int dt);
/** Bytes per element. */
int ref_size(int dt);

/** The synthetic workload of DESIGN §8, before any rounding. */
double ref_synth(int t, int64_t l, int64_t b, int64_t p, int64_t h, int64_t d);

/** May query position q see kv position k? */
bool ref_allows(int kind, int64_t window, int64_t chunk, int64_t start,
                int64_t q, int64_t k);

/** INT8 of DESIGN §6 on one vector: codes and the scale. */
void ref_q8(const float *x, int64_t D, int *code, float *scale);
/** NF4 of DESIGN §6 on one vector: one code per element, absmax per 64. */
void ref_nf4(const float *x, int64_t D, int *code, float *absmax);
/** The value a code stands for. */
float ref_dequant(int quant, int code, float scale);
/** The NF4 levels, from DESIGN §6's text. */
extern const double ref_nf4_levels[16];

typedef struct {
    int64_t L, B, S, H[2], D[2];
    int64_t A;            /* largest append */
    int dtype;
    int quant;            /* REF_Q*: then kv holds dequantized values and
                             code / scale what is stored */
    int **code;           /* [L * 2] [B][len][H][D] */
    float **scale;        /* [L * 2] [B][len][H][nscale] */
    int64_t nscale[2];
    int *kind;            /* [L] REF_FULL / REF_SLIDING / REF_CHUNK */
    int64_t *window, *chunk, *len;   /* [L]; len: storage slots per row */
    double **kv;          /* [L * 2] global arrays [B][len][H][D], cache-rounded */
    int32_t *indexs;      /* [L][B] */
    int32_t *starts;      /* [L][B] */
} ref_cache_t;

/** kind, window, chunk: one per layer (kind NULL: all FULL).  A: the
 *  largest append; kblocks: the number of kv-length blocks a SLIDING
 *  layer's ring length is rounded up to. */
ref_cache_t *ref_create(int64_t L, int64_t B, int64_t S, const int64_t H[2],
                        const int64_t D[2], int dtype, int quant, const int *kind,
                        const int64_t *window, const int64_t *chunk, int64_t A,
                        int64_t kblocks);
void ref_free(ref_cache_t *r);

/** Element (b, slot, h, d) of tensor t (0 key, 1 value) of layer l. */
double *ref_at(ref_cache_t *r, int64_t l, int t, int64_t b, int64_t s,
               int64_t h, int64_t d);

/** Absolute position in storage slot \p slot of row b of layer l, or -1. */
int64_t ref_slot_position(const ref_cache_t *r, int64_t l, int64_t b, int64_t slot);

/** May query position q of row b of layer l see what storage slot \p slot
 *  holds? */
bool ref_slot_visible(const ref_cache_t *r, int64_t l, int64_t b, int64_t q,
                      int64_t slot);

/** The keys query position q of row b of layer l may attend to, by the
 *  rule alone (whatever is stored): k < indexs, and ref_allows(). */
bool ref_visible(const ref_cache_t *r, int64_t l, int64_t b, int64_t q, int64_t k);

enum { REF_OK = 0, REF_CAPACITY, REF_TOO_LONG };
/** Appends n tokens to every row of layer l.  in[t] is the global input
 *  [B][n][H][D] (exact values of the input type), written one token after
 *  the other, so a ring keeps whatever came last in each slot.  Returns
 *  REF_TOO_LONG when n > A, REF_CAPACITY when a row would exceed S (and
 *  changes nothing then), else REF_OK. */
int ref_concat(ref_cache_t *r, int64_t l, int64_t n, const double *const in[2]);

#endif
