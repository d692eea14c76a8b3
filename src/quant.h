/* Quantized storage of one head vector (EasyDeL's EasyQuantizer semantics,
 * DESIGN §6), computed in f32. */
#ifndef KVMESH_QUANT_H
#define KVMESH_QUANT_H

#include <stdint.h>

#include "kvmesh.h"

#define KVM_NF4_BLOCK 64

/** Bytes of codes for one head vector of D elements. */
int64_t kvm_quant_code_bytes(kvmesh_quant_t q, int64_t D);
/** f32 scales for one head vector of D elements. */
int64_t kvm_quant_scales(kvmesh_quant_t q, int64_t D);

/** The one switch that forces a kernel path, for tests that check every
 *  path: 0 the best the CPU has (AVX-512, AVX2, SSE2), 3 at most AVX2, 1 at
 *  most SSE2, 2 scalar. */
extern int kvm_q8_path;

/** Name of the kernel path in use: "avx512", "avx2", "sse2" or "scalar". */
const char *kvm_quant_path(void);

/** INT8: one scale = amax / 127 + FLT_MIN over the vector (amax of its
 *  finite elements); q = round-half-even(x / scale); NaN -> 0, +-inf ->
 *  +-127. */
void kvm_q8_encode(const float *x, int64_t D, int8_t *q, float *scale);
void kvm_q8_decode(const int8_t *q, float scale, int64_t D, float *out);

/** H consecutive head vectors of D elements of one type, for
 *  kvm_q8_encode_runs(): codes [H][D], scales [H] */
typedef struct {
    const void *x;
    int8_t *q;
    float *scale;
    int64_t H, D;
    int stream;        /* the codes may bypass the caches (non-temporal) */
} kvm_q8_run_t;

/** kvm_q8_encode() on every head vector of n runs of type \p st (bf16 and
 *  f32 are read directly); \p tmp holds D floats of the longest run.
 *  Bit-identical to one call of kvm_q8_encode() per vector.  bf16 heads
 *  take their scales from a table (no division, so each head is coded as
 *  soon as its amax is known); f32 heads find the scales of many heads
 *  before any code, so the divisions' latencies overlap.  AVX-512 stores
 *  the scales after the codes.
 *  Codes of a run with stream set may take non-temporal stores (when the
 *  vector path runs and q is 32-byte aligned): the caller calls
 *  kvm_stream_fence() before they are read by another thread or rank. */
void kvm_q8_encode_runs(const kvm_q8_run_t *run, int n, kvmesh_dtype_t st, float *tmp);

/** NF4: blocks of 64 (a shorter vector is one block), absmax per block of
 *  its finite elements, code = nearest of the 16 NF4 levels to x / absmax
 *  (0 when absmax is 0; the first level on a tie), two codes a byte as
 *  (c0 << 4) | c1; NaN -> level 0.0, +-inf -> +-1. */
void kvm_nf4_encode(const float *x, int64_t D, uint8_t *codes, float *absmax);
/** Decodes elements [i0, i1) of a vector into out[0 .. i1 - i0). */
void kvm_nf4_decode(const uint8_t *codes, const float *absmax, int64_t i0,
                    int64_t i1, float *out);

/** The 16 NF4 levels (QLoRA). */
extern const float kvm_nf4_levels[16];

#endif
