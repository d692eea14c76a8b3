/* Kernels with AVX2 and FMA: the largest finite magnitude of f32 and bf16
 * heads as an integer maximum of their bit patterns, int8 codes by one FMA
 * (exact division near a half-integer), bf16 codes from the scale table,
 * whole heads at a time, and nf4 codes by counting midpoints.  The AVX-512
 * table uses the one-vector kernels from here.  See quant_kernels.h. */
#include <float.h>

#include "dtype.h"
#include "quant_kernels.h"

#if defined(KVM_X86)
/* the vector versions take whole groups of 4 vectors and leave the rest to
 * amax_scalar; four independent chains hide the max latency */
/* 8 elements of x from index i as f32: f32 loaded, bf16 widened */
__attribute__((target("avx2")))
static inline __m256
load8(const void *x, kvmesh_dtype_t st, int64_t i)
{
    if (st == KVMESH_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(
            _mm_loadu_si128((const __m128i *) ((const uint16_t *) x + i))), 16));
    return _mm256_loadu_ps((const float *) x + i);
}

/* The largest finite |x|, x f32 or bf16 (bf16: D a multiple of 32, no
 * tail), as an integer max of the bit patterns with the sign cleared: for
 * floats of one sign the integer order of the patterns is their order,
 * and a pattern at or above +inf's is an inf or a NaN.  Then *special is
 * set and the finite maximum comes from the scalar pass (f32; bf16 callers
 * take another path and get 0). */
__attribute__((target("avx2")))
static float
amax_avx2(const void *x, kvmesh_dtype_t st, int64_t D, int *special)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i m0 = zero, m1 = zero;
    __m128i m;
    int64_t i, n = D & ~(int64_t) 31;
    uint32_t bits;
    float a, t;

    if (st == KVMESH_BF16) {
        const __m256i absmask = _mm256_set1_epi16(0x7fff);
        const __m256i *v = (const __m256i *) x;
        for (i = 0; i < n / 16; i += 2) {
            m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256(v + i), absmask));
            m1 = _mm256_max_epu16(m1, _mm256_and_si256(_mm256_loadu_si256(v + i + 1),
                                                       absmask));
        }
        m0 = _mm256_max_epu16(m0, m1);
        bits = kvm_amax8_bf16(_mm_max_epu16(_mm256_castsi256_si128(m0),
                                        _mm256_extracti128_si256(m0, 1)));
    } else {
        const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
        const __m256i *v = (const __m256i *) x;
        for (i = 0; i < n / 8; i += 2) {
            m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256(v + i), absmask));
            m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256(v + i + 1),
                                                       absmask));
        }
        m0 = _mm256_max_epu32(m0, m1);
        m = _mm_max_epu32(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
        bits = (uint32_t) _mm_cvtsi128_si32(m);
    }
    *special = bits >= 0x7f800000u;
    if (st == KVMESH_BF16)
        return *special ? 0.0f : (memcpy(&a, &bits, sizeof a), a);
    if (*special)
        return kvm_amax_scalar(x, D, special);
    memcpy(&a, &bits, sizeof a);
    t = kvm_amax_scalar((const float *) x + n, D - n, special);
    return a > t ? a : t;
}
/* Codes of x[0 .. D & ~31), as q8_codes_avx512() makes them: y = x * (1 / s)
 * + 1536.5 in one FMA, whose bits from 13 up less 1536.5's are floor(x / s
 * + 0.5) unless its 13 fraction bits are all zero (within 6.2e-5 of a
 * half-integer, or x not finite); then those 32 take the exact division
 * and the clamp that non-finite x need.  Returns the count coded. */
__attribute__((target("avx2,fma")))
static int64_t
q8_codes_avx2(const void *x, kvmesh_dtype_t st, int64_t D, float s, int8_t *q, int nt)
{
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256 sv = _mm256_set1_ps(s), inv = _mm256_set1_ps(1.0f / s);
    const __m256 magic = _mm256_set1_ps(1536.5f);
    const __m256i frac = _mm256_set1_epi32(0x1fff), base = _mm256_set1_epi32(0x44c00000);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i, n = D & ~(int64_t) 31;

#define Q8_Y(k) _mm256_castps_si256(_mm256_fmadd_ps(load8(x, st, i + 8 * (k)), inv, magic))
#define Q8_NEAR(y) _mm256_cmpeq_epi32(_mm256_and_si256(y, frac), zero)
#define Q8_FLOOR(y) _mm256_srai_epi32(_mm256_sub_epi32(y, base), 13)
#define Q8_EXACT(k) _mm256_cvtps_epi32(_mm256_round_ps(_mm256_max_ps(_mm256_min_ps( \
            _mm256_div_ps(load8(x, st, i + 8 * (k)), sv), hi), lo), \
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
    for (i = 0; i < n; i += 32) {
        __m256i y0 = Q8_Y(0), y1 = Q8_Y(1), y2 = Q8_Y(2), y3 = Q8_Y(3), codes;
        __m256i near = _mm256_or_si256(_mm256_or_si256(Q8_NEAR(y0), Q8_NEAR(y1)),
                                       _mm256_or_si256(Q8_NEAR(y2), Q8_NEAR(y3)));
        if (!_mm256_testz_si256(near, near)) {
            y0 = Q8_EXACT(0), y1 = Q8_EXACT(1), y2 = Q8_EXACT(2), y3 = Q8_EXACT(3);
        } else {
            y0 = Q8_FLOOR(y0), y1 = Q8_FLOOR(y1), y2 = Q8_FLOOR(y2), y3 = Q8_FLOOR(y3);
        }
        /* packs work within 128-bit halves; the permute restores order */
        codes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(
            _mm256_packs_epi32(y0, y1), _mm256_packs_epi32(y2, y3)), order);
        if (nt)
            _mm256_stream_si256((__m256i *) (q + i), codes);
        else
            _mm256_storeu_si256((__m256i *) (q + i), codes);
    }
#undef Q8_Y
#undef Q8_NEAR
#undef Q8_FLOOR
#undef Q8_EXACT
    return n;
}

/* q8_codes32_bf16() with AVX2: x * c rounded by one conversion, c from
 * q8_bf16_scale(); bf16 x, D a multiple of 32 */
__attribute__((target("avx2,fma")))
static void
q8_codes_bf16_direct_avx2(const uint16_t *x, int64_t D, float c, int8_t *q, int nt)
{
    const __m256 cv = _mm256_set1_ps(c);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i;

#define Q8_D(k) _mm256_cvtps_epi32(_mm256_mul_ps(load8(x, KVMESH_BF16, i + 8 * (k)), cv))
    for (i = 0; i < D; i += 32) {
        const __m256i codes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(
            _mm256_packs_epi32(Q8_D(0), Q8_D(1)), _mm256_packs_epi32(Q8_D(2), Q8_D(3))),
            order);
        if (nt)
            _mm256_stream_si256((__m256i *) (q + i), codes);
        else
            _mm256_storeu_si256((__m256i *) (q + i), codes);
    }
#undef Q8_D
}
/* All heads at once (D a multiple of 32): every head's reduction before
 * any encoding, so their latencies overlap instead of adding up.  Returns
 * 0, having written nothing final, when an element is not finite. */
static int
q8_heads_avx2(const void *x, kvmesh_dtype_t st, int64_t H, int64_t D, int8_t *q,
              float *scale, int nt)
{
    const size_t es = kvm_dtype_size(st);
    int64_t h;
    int bad = 0, special;

    for (h = 0; h < H; h++) {           /* the largest magnitudes, for now */
        scale[h] = amax_avx2((const char *) x + (size_t) (h * D) * es, st, D, &special);
        bad |= special;
    }
    if (bad)
        return 0;
    for (h = 0; h < H; h++) {
        const void *xh = (const char *) x + (size_t) (h * D) * es;
        uint32_t bits, sb, cb;
        float c;
        memcpy(&bits, &scale[h], sizeof bits);
        if (st == KVMESH_BF16 && kvm_q8_bf16_scale(bits, &sb, &cb)) {
            memcpy(&scale[h], &sb, sizeof sb);
            memcpy(&c, &cb, sizeof c);
            q8_codes_bf16_direct_avx2(xh, D, c, q + h * D, nt);
        } else {
            scale[h] = scale[h] / 127.0f + FLT_MIN;
            (void) q8_codes_avx2(xh, st, D, scale[h], q + h * D, nt);
        }
    }
    return 1;
}
/* kvm_quant_kernels_t.q8_runs: q8_heads_avx2() on each run */
static int
q8_runs_avx2(const kvm_q8_run_t *run, int n, kvmesh_dtype_t st)
{
    int r;

    for (r = 0; r < n; r++)
        if (!q8_heads_avx2(run[r].x, st, run[r].H, run[r].D, run[r].q, run[r].scale,
                           run[r].stream && ((uintptr_t) run[r].q & 31) == 0))
            return 0;
    return 1;
}

float
kvm_amax_avx2(const float *x, int64_t n, int *special)
{
    return amax_avx2(x, KVMESH_F32, n, special);
}

int64_t
kvm_q8_codes_avx2(const float *x, int64_t D, float s, int8_t *q)
{
    return q8_codes_avx2(x, KVMESH_F32, D, s, q, 0);
}

__attribute__((target("avx2")))
static inline __m256
lookup16(const float *tab, __m256i c)
{
    __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab), c);
    __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab + 8), c);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
}

/* Codes of n[0 .. len) (finite, |n| <= 1), len a multiple of 8: the number
 * of midpoints below n is the nearest level, exactly as the distance rule
 * decides it, unless n lies within 1e-6 of a midpoint (the float midpoint
 * is within 3e-8 of the true one, and float distances err by < 2e-7);
 * then its 8 lanes are left to the exact scalar rule (KVM_NF4_RECHECK).
 * mid_lo, mid_hi: the midpoint below and above each code, rounded to
 * float (+-inf at the ends). */
__attribute__((target("avx2")))
int
kvm_nf4_codes_avx2(const float *n, int64_t len, unsigned char *code,
                   const float nf4_mid_lo[16], const float nf4_mid_hi[16])
{
    int recheck = 0;
    const __m256 eps = _mm256_set1_ps(1e-6f);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    int64_t i;
    int k;

    for (i = 0; i < len; i += 8) {
        __m256 v = _mm256_loadu_ps(n + i);
        __m256i c = _mm256_setzero_si256();
        int32_t lanes[8];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 15
#endif
        for (k = 0; k < 15; k++)        /* compare is all ones: subtract -1 */
            c = _mm256_sub_epi32(c, _mm256_castps_si256(
                _mm256_cmp_ps(v, _mm256_set1_ps(nf4_mid_hi[k]), _CMP_GT_OQ)));
        _mm256_storeu_si256((__m256i *) lanes, c);
        for (k = 0; k < 8; k++)
            code[i + k] = (unsigned char) lanes[k];
        if (_mm256_movemask_ps(_mm256_or_ps(
                _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(v, lookup16(nf4_mid_lo, c)),
                                            absmask), eps, _CMP_LT_OQ),
                _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(v, lookup16(nf4_mid_hi, c)),
                                            absmask), eps, _CMP_LT_OQ))))
            memset(code + i, KVM_NF4_RECHECK, 8), recheck = 1;
    }
    return recheck;
}
const kvm_quant_kernels_t kvm_quant_avx2 = {
    "avx2", kvm_amax_avx2, kvm_q8_codes_avx2, q8_runs_avx2, kvm_nf4_codes_avx2
};
#endif
