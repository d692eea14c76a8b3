/* The instruction-set kernels of int8 and nf4 storage, one table per
 * instruction set (src/quant_sse2.c, quant_avx2.c, quant_avx512.c), and the
 * table chosen once for the CPU (src/quant.c).  Every kernel is bit-exact
 * with the scalar reference in src/quant.c and src/quant_nf4.c. */
#ifndef KVMESH_QUANT_KERNELS_H
#define KVMESH_QUANT_KERNELS_H

#include "quant.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define KVM_X86 1
#endif

/* shared between the library's files, never exported: local addressing */
#if defined(__GNUC__)
#define KVM_HIDDEN __attribute__((visibility("hidden")))
#else
#define KVM_HIDDEN
#endif

typedef struct {
    const char *name;
    /** The largest finite |x| of f32 x[0 .. n); *special when x holds an
     *  inf or a NaN. */
    float (*amax)(const float *x, int64_t n, int *special);
    /** int8 codes of a prefix of f32 x[0 .. D) with scale s; returns how
     *  many it coded (NULL: none). */
    int64_t (*q8_codes)(const float *x, int64_t D, float s, int8_t *q);
    /** kvm_q8_encode_runs() on runs of bf16 or f32 heads whose D are
     *  multiples of 32; returns 0 when one holds an inf or a NaN (the
     *  caller redoes every run; NULL: none). */
    int (*q8_runs)(const kvm_q8_run_t *run, int n, kvmesh_dtype_t st);
    /** nf4 codes of finite n[0 .. len), |n| <= 1, len a multiple of 8,
     *  from the midpoints between levels; a lane near a midpoint is left
     *  as KVM_NF4_RECHECK for the exact rule, and then it returns 1 (NULL:
     *  none). */
    int (*nf4_codes)(const float *n, int64_t len, unsigned char *code,
                     const float mid_lo[16], const float mid_hi[16]);
} kvm_quant_kernels_t;

#define KVM_NF4_RECHECK 0xff

/** The kernels of the best instruction set the CPU has, capped by
 *  kvm_q8_path (quant.h); chosen once. */
const kvm_quant_kernels_t *kvm_quant_kernels(void);

/** The scalar reference's amax (quant.c), the tail of the vector ones. */
KVM_HIDDEN float kvm_amax_scalar(const float *x, int64_t n, int *special);

#if defined(__SSE2__)
KVM_HIDDEN extern const kvm_quant_kernels_t kvm_quant_sse2;
#endif
#if defined(KVM_X86)
KVM_HIDDEN extern const kvm_quant_kernels_t kvm_quant_avx2, kvm_quant_avx512;
/* the AVX2 one-vector kernels, which the AVX-512 table shares */
KVM_HIDDEN float kvm_amax_avx2(const float *x, int64_t n, int *special);
KVM_HIDDEN int64_t kvm_q8_codes_avx2(const float *x, int64_t D, float s, int8_t *q);
KVM_HIDDEN int kvm_nf4_codes_avx2(const float *n, int64_t len, unsigned char *code,
                                   const float mid_lo[16], const float mid_hi[16]);

#include <immintrin.h>
#include <string.h>

/* A bf16 head's scale s = amax / 127 + FLT_MIN, and the reciprocal its
 * codes are taken with (q8_codes32_bf16 in quant_avx512.c): 1 / s, moved 4
 * units in the last place toward the side (amax / 2) / s rounds to, unless
 * s is a power of two.  From amax >= 2^-94 on, both follow from amax's 7
 * significand bits alone: for amax = 2^E a with a in [1, 2), s = 2^E s(a)
 * and 1 / s = 2^-E (1 / s(a)) exactly (s is normal and FLT_MIN is under a
 * quarter of its last place), and (amax / 2) / s is (a / 2) / s(a).  So the
 * divisions are done once, for the 128 values of a (kvm_q8_tab_ready()),
 * and a head's bit patterns are the table's with E added to or taken from
 * the exponent field (checked against the divisions for every bf16 amax;
 * below 2^-94 they differ). */
KVM_HIDDEN extern uint32_t kvm_q8_tab_s[128], kvm_q8_tab_c[128];
/** Fills the tables on first use (pthread_once). */
KVM_HIDDEN void kvm_q8_tab_ready(void);

/* Bit patterns of the scale and moved reciprocal of a bf16 head whose
 * amax has the (f32) bit pattern bits, finite; returns 0 when amax <
 * 2^-90, and such heads keep the near-half test.  The tables are ready. */
static inline int
kvm_q8_bf16_scale(uint32_t bits, uint32_t *s, uint32_t *c)
{
    const uint32_t e = bits >> 23, k = bits >> 16 & 127;

    if (e < 127 - 90)
        return 0;
    /* modulo 2^32: e - 127 may be negative */
    *s = kvm_q8_tab_s[k] + ((e - 127) << 23);
    *c = kvm_q8_tab_c[k] - ((e - 127) << 23);
    return 1;
}

/* The largest of 8 bf16 magnitudes (sign bits clear) as an f32 bit
 * pattern: the largest of 8 is the complement of the least complement */
__attribute__((target("sse4.1")))
static inline uint32_t
kvm_amax8_bf16(__m128i m)
{
    m = _mm_minpos_epu16(_mm_xor_si128(m, _mm_set1_epi32(-1)));
    return (uint32_t) (uint16_t) ~_mm_cvtsi128_si32(m) << 16;
}
#endif

#endif
