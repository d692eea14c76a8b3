/* int8 kernels with AVX-512 (F, BW, DQ, VL, VBMI): codes by one FMA and a
 * byte permute, bf16 heads of 128 coded from registers with scales from the
 * table, f32 heads' scales divided 16 at a time, scales stored after the
 * codes.  One-vector work (kvm_q8_encode, nf4) uses the AVX2 kernels.  See
 * quant_kernels.h. */
#include <float.h>

#include "dtype.h"
#include "quant_kernels.h"

#if defined(KVM_X86)
#define KVM_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")))
/* per-head code inlined into each of its callers' specialized copies */
#define KVM_ALWAYS_INLINE __attribute__((always_inline))
/* a macro: clang wants the rounding argument as a constant expression */
#define KVM_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* 16 elements of x from index i as f32 */
KVM_AVX512 static inline __m512
load16(const void *x, kvmesh_dtype_t st, int64_t i)
{
    if (st == KVMESH_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
            _mm256_loadu_si256((const __m256i *) ((const uint16_t *) x + i))), 16));
    return _mm512_loadu_ps((const float *) x + i);
}

/* kvm_amax8_bf16() of 32 */
KVM_AVX512 static inline uint32_t
amax_reduce_bf16(__m512i m)
{
    const __m256i y = _mm256_max_epu16(_mm512_castsi512_si256(m),
                                       _mm512_extracti64x4_epi64(m, 1));

    return kvm_amax8_bf16(_mm_max_epu16(_mm256_castsi256_si128(y),
                                    _mm256_extracti128_si256(y, 1)));
}

/* The largest |x| as a bit pattern: for floats of one sign the integer
 * order of the patterns is their order, and any pattern at or above
 * +inf's is inf or NaN.  bf16 is compared as 16-bit patterns, f32 as
 * 32-bit ones: one AND and one MAX per 32 or 16 elements.  D is a
 * positive multiple of 32; the first elements start the maxima. */
KVM_AVX512 static inline uint32_t
amax_bits_avx512(const void *x, kvmesh_dtype_t st, int64_t D)
{
    int64_t i;

    if (st == KVMESH_BF16) {
        const uint16_t *b = x;
        const __m512i absmask = _mm512_set1_epi16(0x7fff);
        __m512i m0 = _mm512_and_si512(_mm512_loadu_si512(b), absmask), m1 = m0;
        if (D > 32)
            m1 = _mm512_and_si512(_mm512_loadu_si512(b + 32), absmask);
        for (i = 64; i + 64 <= D; i += 64) {
            m0 = _mm512_max_epu16(m0, _mm512_and_si512(_mm512_loadu_si512(b + i), absmask));
            m1 = _mm512_max_epu16(m1, _mm512_and_si512(_mm512_loadu_si512(b + i + 32),
                                                       absmask));
        }
        if (i < D)
            m0 = _mm512_max_epu16(m0, _mm512_and_si512(_mm512_loadu_si512(b + i), absmask));
        return amax_reduce_bf16(_mm512_max_epu16(m0, m1));
    } else {
        const float *f = x;
        const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
        __m512i m0 = _mm512_and_si512(_mm512_loadu_si512(f), absmask);
        __m512i m1 = _mm512_and_si512(_mm512_loadu_si512(f + 16), absmask);
        for (i = 32; i < D; i += 32) {
            m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(f + i), absmask));
            m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(f + i + 16),
                                                       absmask));
        }
        return _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
    }
}

/* Where code j's byte is in (a, b), the two f32 vectors a bf16 vector of
 * 32 widens to by interleaving (4 elements of each 128-bit lane into a, 4
 * into b), once each element's code is in its low byte */
static const unsigned char q8_bf16_order[64] = {
    0, 4, 8, 12, 64, 68, 72, 76, 16, 20, 24, 28, 80, 84, 88, 92,
    32, 36, 40, 44, 96, 100, 104, 108, 48, 52, 56, 60, 112, 116, 120, 124
};

/* Codes of one finite head vector (D a multiple of 32), 32 elements at a
 * time.  y = x * (1 / s) + 1536.5 in one FMA lies in [1024, 2048), so its
 * low 13 bits are the fraction of x * (1 / s) + 0.5 to 2^-13 and the bits
 * above them, from bit 13, are floor(x * (1 / s) + 0.5) in two's
 * complement (1536.5's own bits there end in a zero byte): a shift and a
 * byte permute give the codes.  That floor is round-half-even(x / s)
 * unless x * (1 / s) is within 6.2e-5 of a half-integer, and then y's low
 * 13 bits are all zero; such 32 take the exact quotient x / s instead.
 * (x * (1 / s) is within 7.6e-6 of x / s for |x / s| <= 127.01.)  rcp is
 * 1 / s, as the caller divided it. */
KVM_AVX512 static inline void
q8_codes_avx512(const void *x, kvmesh_dtype_t st, int64_t D, float s, float rcp, int8_t *q,
                int nt)
{
    static const unsigned char f32_order[64] = {
        0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60,
        64, 68, 72, 76, 80, 84, 88, 92, 96, 100, 104, 108, 112, 116, 120, 124
    };
    const __m512 inv = _mm512_set1_ps(rcp), magic = _mm512_set1_ps(1536.5f);
    const __m512i frac = _mm512_set1_epi32(0x1fff), zero = _mm512_setzero_si512();
    const __m512i order = _mm512_loadu_si512(st == KVMESH_BF16 ? q8_bf16_order : f32_order);
    int64_t i;

    for (i = 0; i < D; i += 32) {
        __m512 a, b;
        __m512i ya, yb;
        __m256i codes;
        if (st == KVMESH_BF16) {
            __m512i w = _mm512_loadu_si512((const uint16_t *) x + i);
            a = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w));
            b = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w));
        } else {
            a = _mm512_loadu_ps((const float *) x + i);
            b = _mm512_loadu_ps((const float *) x + i + 16);
        }
        ya = _mm512_castps_si512(_mm512_fmadd_ps(a, inv, magic));
        yb = _mm512_castps_si512(_mm512_fmadd_ps(b, inv, magic));
        if (!_kortestz_mask16_u8(_mm512_testn_epi32_mask(ya, frac),
                                 _mm512_testn_epi32_mask(yb, frac))) {
            const __m512 sv = _mm512_set1_ps(s);
            codes = _mm256_set_m128i(
                _mm512_cvtsepi32_epi8(_mm512_cvt_roundps_epi32(
                    _mm512_div_ps(load16(x, st, i + 16), sv), KVM_RNE)),
                _mm512_cvtsepi32_epi8(_mm512_cvt_roundps_epi32(
                    _mm512_div_ps(load16(x, st, i), sv), KVM_RNE)));
        } else {
            codes = _mm512_castsi512_si256(_mm512_permutex2var_epi8(
                _mm512_srli_epi32(ya, 13), order, _mm512_srli_epi32(yb, 13)));
        }
        if (nt)
            _mm256_stream_si256((__m256i *) (q + i), codes);
        else
            _mm256_storeu_si256((__m256i *) (q + i), codes);
    }
}

/* Codes of 32 bf16 elements w with no near-half test: round-half-even of
 * the exact product x * c, c from q8_bf16_scale().  One FMA makes it:
 * x * c + 1.5 * 2^23 lies in [2^23, 2^24), where the floats are the
 * integers, so the FMA's one rounding takes x * c to an integer (half to
 * even: 1.5 * 2^23 is even), and the low byte of the result's bits is that
 * integer's byte.  For bf16 x and amax this is round-half-even(x / s)
 * exactly, when s is normal (amax >= 2^-96):
 * - 127 x / amax is a half-integer only at |x| = amax / 2 (127 is prime and
 *   does not divide an 8-bit significand but 254's), where it is 63.5, or
 *   when amax's significand is 254 and s a power of two;
 * - anywhere else it is at least 7.7e-6 of itself from a half-integer
 *   (8-bit significands), while x / s and x * c differ from it by less
 *   than 7e-7 of it, so both round alike;
 * - when s is a power of two, c is 1 / s exactly and x * c is x / s;
 * - otherwise c is moved up if (amax / 2) / s rounds to 64 and down if to
 *   63, which carries |x| = amax / 2 to the same side of 63.5.
 * Every (amax, x) pair of bf16 values with amax >= 2^-96 was checked this
 * way once (1.05e9 pairs, both signs), with the product exact and with it
 * rounded to f32; the unit tests check every amax's half and eight
 * binades in full. */
KVM_AVX512 static inline void
q8_codes32_bf16(__m512i w, __m512 c, __m512i order, int8_t *q, int nt)
{
    const __m512 magic = _mm512_set1_ps(0x1.8p23f);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i a = _mm512_castps_si512(
        _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w)), c, magic));
    const __m512i b = _mm512_castps_si512(
        _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w)), c, magic));
    const __m256i codes = _mm512_castsi512_si256(_mm512_permutex2var_epi8(a, order, b));

    if (nt)
        _mm256_stream_si256((__m256i *) q, codes);
    else
        _mm256_storeu_si256((__m256i *) q, codes);
}

/* A bf16 head with amax (bit pattern bits) below 2^-90: the scale by
 * division and the codes with the near-half test */
KVM_AVX512 static inline void
q8_head_small_bf16(const uint16_t *x, int64_t D, uint32_t bits, int8_t *q, uint32_t *scale,
                   int nt)
{
    float amax, s;

    memcpy(&amax, &bits, sizeof amax);
    s = amax / 127.0f + FLT_MIN;
    memcpy(scale, &s, sizeof s);
    q8_codes_avx512(x, KVMESH_BF16, D, s, 1.0f / s, q, nt);
}

/* One bf16 head of 128, the common size: loaded once, its amax, scale
 * (bit pattern to *scale) and codes from the registers.  Returns 0, with
 * nothing stored, at an inf or a NaN. */
KVM_AVX512 KVM_ALWAYS_INLINE static inline int
q8_head128_bf16(const uint16_t *x, int8_t *q, uint32_t *scale, int nt)
{
    const __m512i absmask = _mm512_set1_epi16(0x7fff);
    const __m512i w0 = _mm512_loadu_si512(x), w1 = _mm512_loadu_si512(x + 32);
    const __m512i w2 = _mm512_loadu_si512(x + 64), w3 = _mm512_loadu_si512(x + 96);
    const uint32_t bits = amax_reduce_bf16(_mm512_max_epu16(
        _mm512_max_epu16(_mm512_and_si512(w0, absmask), _mm512_and_si512(w1, absmask)),
        _mm512_max_epu16(_mm512_and_si512(w2, absmask), _mm512_and_si512(w3, absmask))));
    uint32_t cb;

    if (bits >= 0x7f800000u)
        return 0;
    if (kvm_q8_bf16_scale(bits, scale, &cb)) {
        const __m512 c = _mm512_castsi512_ps(_mm512_set1_epi32((int) cb));
        const __m512i order = _mm512_loadu_si512(q8_bf16_order);
        q8_codes32_bf16(w0, c, order, q, nt);
        q8_codes32_bf16(w1, c, order, q + 32, nt);
        q8_codes32_bf16(w2, c, order, q + 64, nt);
        q8_codes32_bf16(w3, c, order, q + 96, nt);
    } else {
        q8_head_small_bf16(x, 128, bits, q, scale, nt);
    }
    return 1;
}

/* q8_head128_bf16() for any D, a multiple of 32, reading the head twice */
KVM_AVX512 KVM_ALWAYS_INLINE static inline int
q8_head_bf16(const uint16_t *x, int64_t D, int8_t *q, uint32_t *scale, int nt)
{
    const uint32_t bits = amax_bits_avx512(x, KVMESH_BF16, D);
    uint32_t cb;
    int64_t i;

    if (bits >= 0x7f800000u)
        return 0;
    if (kvm_q8_bf16_scale(bits, scale, &cb)) {
        const __m512 c = _mm512_castsi512_ps(_mm512_set1_epi32((int) cb));
        const __m512i order = _mm512_loadu_si512(q8_bf16_order);
        for (i = 0; i < D; i += 32)
            q8_codes32_bf16(_mm512_loadu_si512(x + i), c, order, q + i, nt);
    } else {
        q8_head_small_bf16(x, D, bits, q, scale, nt);
    }
    return 1;
}

/* Codes and scales of n runs of heads, at most KVM_Q8_HELD in all, with
 * AVX-512; the scales are held and stored after every code.
 * A scale's line is often one the cache has not touched for a while, and
 * a plain store waits in the (in-order) store queue until its line
 * arrives: stored first, it would hold up every streamed code behind it;
 * stored last, the line the caller prefetched has had time to come.
 * bf16 heads go one at a time (q8_head_bf16: no division, so nothing to
 * wait for, and each head read once).  f32 heads take every amax first,
 * then their scales and reciprocals 16 at a time (the divisions' latencies
 * overlap), then the codes. */
#define KVM_Q8_HELD 64

KVM_AVX512 static int
q8_runs_held(const kvm_q8_run_t *run, int n, kvmesh_dtype_t st)
{
    uint32_t held[KVM_Q8_HELD];        /* f32: amax bits; then scale bits */
    uint32_t rcp[KVM_Q8_HELD];         /* f32: 1 / s */
    uint32_t bits, worst = 0;
    int64_t h;
    int r, m = 0, k;

    if (st == KVMESH_BF16) {
        for (r = 0; r < n; r++) {
            const uint16_t *x = run[r].x;
            const int64_t D = run[r].D;
            const int nt = run[r].stream && ((uintptr_t) run[r].q & 31) == 0;
            int8_t *q = run[r].q;
            /* a constant size and store kind in each call: four inlined
             * copies that test neither */
            for (h = 0; h < run[r].H; h++, m++)
                if (!(D == 128 ? nt ? q8_head128_bf16(x + h * D, q + h * D, held + m, 1)
                                    : q8_head128_bf16(x + h * D, q + h * D, held + m, 0)
                               : nt ? q8_head_bf16(x + h * D, D, q + h * D, held + m, 1)
                                    : q8_head_bf16(x + h * D, D, q + h * D, held + m, 0)))
                    return 0;
        }
    } else {
        for (r = 0; r < n; r++)
            for (h = 0; h < run[r].H; h++) {
                bits = amax_bits_avx512((const float *) run[r].x + h * run[r].D, st,
                                        run[r].D);
                worst = worst > bits ? worst : bits;
                held[m++] = bits;
            }
        if (worst >= 0x7f800000u)      /* an inf or a NaN */
            return 0;
        /* as the scalar code divides them one by one (IEEE division
         * rounds alike in both) */
        for (k = 0; k < m; k += 16) {
            const __mmask16 in = (__mmask16) (m - k >= 16 ? 0xffff : (1u << (m - k)) - 1);
            const __m512 amax = _mm512_castsi512_ps(_mm512_maskz_loadu_epi32(in, held + k));
            const __m512 s = _mm512_add_ps(_mm512_div_ps(amax, _mm512_set1_ps(127.0f)),
                                           _mm512_set1_ps(FLT_MIN));
            _mm512_storeu_si512(held + k, _mm512_castps_si512(s));
            _mm512_storeu_si512(rcp + k, _mm512_castps_si512(
                _mm512_div_ps(_mm512_set1_ps(1.0f), s)));
        }
        for (r = 0, m = 0; r < n; r++) {
            const int64_t D = run[r].D;
            const int nt = run[r].stream && ((uintptr_t) run[r].q & 31) == 0;
            for (h = 0; h < run[r].H; h++, m++) {
                const float *xh = (const float *) run[r].x + h * D;
                float sh, ch;
                memcpy(&sh, held + m, sizeof sh);
                memcpy(&ch, rcp + m, sizeof ch);
                nt ? q8_codes_avx512(xh, KVMESH_F32, D, sh, ch, run[r].q + h * D, 1)
                   : q8_codes_avx512(xh, KVMESH_F32, D, sh, ch, run[r].q + h * D, 0);
            }
        }
    }
    for (r = 0, m = 0; r < n; r++)
        for (h = 0; h < run[r].H; h++, m++)
            memcpy(run[r].scale + h, held + m, sizeof(float));
    return 1;
}

/* q8_runs_held() on groups of consecutive runs of at most KVM_Q8_HELD
 * heads, a longer run in pieces.  Returns 0 at an inf or a NaN, and the
 * caller redoes every run. */
KVM_AVX512 static int
q8_runs_avx512(const kvm_q8_run_t *run, int n, kvmesh_dtype_t st)
{
    const size_t es = kvm_dtype_size(st);
    int64_t heads, h;
    int r = 0, k;

    while (r < n) {
        for (k = r, heads = 0; k < n && heads + run[k].H <= KVM_Q8_HELD; k++)
            heads += run[k].H;
        if (k > r) {
            if (!q8_runs_held(run + r, k - r, st))
                return 0;
            r = k;
            continue;
        }
        for (h = 0; h < run[r].H; h += KVM_Q8_HELD) {
            kvm_q8_run_t piece = run[r];
            piece.x = (const char *) run[r].x + (size_t) (h * run[r].D) * es;
            piece.q += h * run[r].D;
            piece.scale += h;
            piece.H = run[r].H - h < KVM_Q8_HELD ? run[r].H - h : KVM_Q8_HELD;
            if (!q8_runs_held(&piece, 1, st))
                return 0;
        }
        r++;
    }
    return 1;
}
const kvm_quant_kernels_t kvm_quant_avx512 = {
    "avx512", kvm_amax_avx2, kvm_q8_codes_avx2, q8_runs_avx512, kvm_nf4_codes_avx2
};
#endif
