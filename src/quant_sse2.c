/* int8 kernels with SSE2 (every x86-64 CPU): the largest finite magnitude
 * of f32 vectors and their codes.  See quant_kernels.h. */
#include <float.h>

#include "quant_kernels.h"

#if defined(__SSE2__)
#include <emmintrin.h>

static float
amax_sse2(const float *x, int64_t D, int *special)
{
    const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    const __m128 fmax = _mm_set1_ps(FLT_MAX);
    __m128 m0 = _mm_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    __m128 ok = _mm_castsi128_ps(_mm_set1_epi32(-1));
    int64_t i, n = D & ~(int64_t) 15;
    float lanes[4], a;
    int k, tail_bad;

#define AMAX_STEP(m, off) do { \
        __m128 v = _mm_and_ps(_mm_loadu_ps(x + i + (off)), absmask); \
        __m128 fin = _mm_cmple_ps(v, fmax); \
        ok = _mm_and_ps(ok, fin); \
        m = _mm_max_ps(m, _mm_and_ps(v, fin)); } while (0)
    for (i = 0; i < n; i += 16) {
        AMAX_STEP(m0, 0);
        AMAX_STEP(m1, 4);
        AMAX_STEP(m2, 8);
        AMAX_STEP(m3, 12);
    }
#undef AMAX_STEP
    _mm_storeu_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
    a = kvm_amax_scalar(x + n, D - n, &tail_bad);
    for (k = 0; k < 4; k++)
        a = a > lanes[k] ? a : lanes[k];
    *special = tail_bad || _mm_movemask_ps(ok) != 0xf;
    return a;
}
/* x * (1 / s) is within 2.3e-5 of the rounded x / s when |x / s| <= 127.01,
 * so the two round alike unless that lies within 2.3e-5 of a half-integer;
 * a lane whose product is within 1e-4 of one is divided exactly */
#define NEAR_HALF (0.5f - 1e-4f)

static int64_t
q8_codes_sse2(const float *x, int64_t D, float s, int8_t *q)
{
    const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    const __m128 magic = _mm_set1_ps(12582912.0f);
    const __m128 hi = _mm_set1_ps(127.0f), lo = _mm_set1_ps(-127.0f);
    const __m128 near_half = _mm_set1_ps(NEAR_HALF);
    const __m128 sv = _mm_set1_ps(s), inv = _mm_set1_ps(1.0f / s);
    int64_t i, n = D & ~(int64_t) 15;

#define Q8_ROUND(v) _mm_sub_ps(_mm_add_ps(v, magic), magic)
#define Q8_CLAMP(v) _mm_max_ps(_mm_min_ps(v, hi), lo)
    for (i = 0; i < n; i += 16) {
        __m128i r[4];
        int k;
        for (k = 0; k < 4; k++) {
            __m128 xv = _mm_loadu_ps(x + i + 4 * k);
            __m128 v = Q8_CLAMP(_mm_mul_ps(xv, inv)), rv = Q8_ROUND(v);
            if (_mm_movemask_ps(_mm_cmpgt_ps(_mm_and_ps(_mm_sub_ps(v, rv), absmask),
                                             near_half)))
                rv = Q8_ROUND(Q8_CLAMP(_mm_div_ps(xv, sv)));
            r[k] = _mm_cvttps_epi32(rv);
        }
        _mm_storeu_si128((__m128i *) (q + i),
                         _mm_packs_epi16(_mm_packs_epi32(r[0], r[1]),
                                         _mm_packs_epi32(r[2], r[3])));
    }
#undef Q8_ROUND
#undef Q8_CLAMP
    return n;
}
const kvm_quant_kernels_t kvm_quant_sse2 = { "sse2", amax_sse2, q8_codes_sse2, NULL, NULL };
#endif
