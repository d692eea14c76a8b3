/* int8 and nf4 storage of head vectors: quantize on write, dequantize on
 * read, one vector at a time so an append touches only what it writes.
 *
 * Every path is bit-exact with DESIGN §6 as the scalar code states it.  The
 * largest finite magnitude (the scale's source) is a max reduction, which
 * compilers do not vectorize without fast-math, so it has SSE2, AVX2 and
 * AVX-512 versions (the last two as integer maxima of the bit patterns);
 * the int8 encoder multiplies by the reciprocal of the scale and divides
 * exactly only where the two could round apart (f32 input), or, for bf16
 * input, by a reciprocal moved so that they cannot, scale and reciprocal
 * taken from a table (q8_bf16_scale, AVX-512 and AVX2).  The path is chosen
 * at run time (simd_level).  NaN and infinities take a separate pass that
 * runs only when a vector holds one. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "dtype.h"
#include "quant.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define KVM_X86 1
#endif

int kvm_q8_path;

const float kvm_nf4_levels[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
    0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f
};

int64_t
kvm_quant_code_bytes(kvmesh_quant_t q, int64_t D)
{
    return q == KVMESH_QUANT_INT8 ? D : q == KVMESH_QUANT_NF4 ? (D + 1) / 2 : 0;
}

int64_t
kvm_quant_scales(kvmesh_quant_t q, int64_t D)
{
    return q == KVMESH_QUANT_INT8 ? 1
         : q == KVMESH_QUANT_NF4 ? (D + KVM_NF4_BLOCK - 1) / KVM_NF4_BLOCK : 0;
}

/* ---- the largest finite magnitude ------------------------------------ */

static float
amax_scalar(const float *x, int64_t n, int *special)
{
    float amax = 0.0f;
    int bad = 0;
    int64_t i;

    for (i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        int finite = a <= FLT_MAX;          /* false for NaN and inf */
        bad |= !finite;
        a = finite ? a : 0.0f;
        amax = amax > a ? amax : a;
    }
    *special = bad;
    return amax;
}

/* the vector versions take whole groups of 4 vectors and leave the rest to
 * amax_scalar; four independent chains hide the max latency */
#if defined(KVM_X86)
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

/* The largest of 8 bf16 magnitudes (sign bits clear) as an f32 bit
 * pattern: the largest of 8 is the complement of the least complement */
__attribute__((target("sse4.1")))
static inline uint32_t
amax8_bf16(__m128i m)
{
    m = _mm_minpos_epu16(_mm_xor_si128(m, _mm_set1_epi32(-1)));
    return (uint32_t) (uint16_t) ~_mm_cvtsi128_si32(m) << 16;
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
        bits = amax8_bf16(_mm_max_epu16(_mm256_castsi256_si128(m0),
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
        return amax_scalar(x, D, special);
    memcpy(&a, &bits, sizeof a);
    t = amax_scalar((const float *) x + n, D - n, special);
    return a > t ? a : t;
}
#endif

#if defined(__SSE2__)
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
    a = amax_scalar(x + n, D - n, &tail_bad);
    for (k = 0; k < 4; k++)
        a = a > lanes[k] ? a : lanes[k];
    *special = tail_bad || _mm_movemask_ps(ok) != 0xf;
    return a;
}
#endif

/* 3: AVX-512 (F, BW, DQ, VL, VBMI), 2: AVX2 and FMA, 1: SSE2, 0: scalar; kvm_q8_path
 * caps it for tests (see quant.h) */
static int
simd_level(void)
{
    static const int cap[4] = { 3, 1, 0, 2 };
    /* threads that find it unset all compute the same value */
    static _Atomic int detected = -1;
    int level = atomic_load_explicit(&detected, memory_order_relaxed);

    if (level < 0) {
        level = 0;
#if defined(__SSE2__)
        level = 1;
#endif
#if defined(KVM_X86)
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            level = 2;
        if (level == 2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi"))
            level = 3;
#endif
        atomic_store_explicit(&detected, level, memory_order_relaxed);
    }
    return kvm_q8_path >= 0 && kvm_q8_path < 4 && cap[kvm_q8_path] < level
           ? cap[kvm_q8_path] : level;
}

static float
finite_amax(const float *x, int64_t n, int level, int *special)
{
#if defined(KVM_X86)
    if (level >= 2)
        return amax_avx2(x, KVMESH_F32, n, special);
#endif
#if defined(__SSE2__)
    if (level >= 1)
        return amax_sse2(x, n, special);
#endif
    (void) level;
    return amax_scalar(x, n, special);
}

/* ---- int8 ----------------------------------------------------------- */

/* r rounded half to even, for |r| < 2^22, in the default rounding mode:
 * adding 1.5 * 2^23 leaves no fraction bits */
static inline float
rne(float r)
{
    const float magic = 12582912.0f;
    return (r + magic) - magic;
}

#if defined(KVM_X86)
/* A bf16 head's scale s = amax / 127 + FLT_MIN, and the reciprocal its
 * codes are taken with (q8_codes32_bf16): 1 / s, moved 4 units in the last
 * place toward the side (amax / 2) / s rounds to, unless s is a power of
 * two.  From amax >= 2^-94 on, both follow from amax's 7 significand bits
 * alone: for amax = 2^E a with a in [1, 2), s = 2^E s(a) and 1 / s =
 * 2^-E (1 / s(a)) exactly (s is normal and FLT_MIN is under a quarter of
 * its last place), and (amax / 2) / s is (a / 2) / s(a).  So the divisions
 * are done once, for the 128 values of a, and a head's bit patterns are the
 * table's with E added to or taken from the exponent field (checked against
 * the divisions for every bf16 amax; below 2^-94 they differ). */
static uint32_t q8_tab_s[128], q8_tab_c[128];
static pthread_once_t q8_tab_once = PTHREAD_ONCE_INIT;    /* q8_tab_init() */

static void
q8_tab_init(void)
{
    uint32_t m, ab, sb, cb;
    float a, s, c;

    for (m = 0; m < 128; m++) {
        ab = 0x3f800000u | m << 16;
        memcpy(&a, &ab, sizeof a);
        s = a / 127.0f + FLT_MIN;
        c = 1.0f / s;
        memcpy(&sb, &s, sizeof sb);
        memcpy(&cb, &c, sizeof cb);
        if (sb & 0x7fffffu)
            cb = (a * 0.5f) / s >= 63.5f ? cb + 4 : cb - 4;
        q8_tab_s[m] = sb;
        q8_tab_c[m] = cb;
    }
}

/* Bit patterns of the scale and moved reciprocal of a bf16 head whose
 * amax has the (f32) bit pattern bits, finite; returns 0 when amax <
 * 2^-90, and such heads keep the near-half test.  q8_tab_init() has run. */
static inline int
q8_bf16_scale(uint32_t bits, uint32_t *s, uint32_t *c)
{
    const uint32_t e = bits >> 23, k = bits >> 16 & 127;

    if (e < 127 - 90)
        return 0;
    /* modulo 2^32: e - 127 may be negative */
    *s = q8_tab_s[k] + ((e - 127) << 23);
    *c = q8_tab_c[k] - ((e - 127) << 23);
    return 1;
}
#endif

/* x * (1 / s) is within 2.3e-5 of the rounded x / s when |x / s| <= 127.01,
 * so the two round alike unless that lies within 2.3e-5 of a half-integer;
 * a lane whose product is within 1e-4 of one is divided exactly */
#define NEAR_HALF (0.5f - 1e-4f)

#if defined(KVM_X86)
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
#endif

#if defined(__SSE2__)
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
#endif

void
kvm_q8_encode(const float *x, int64_t D, int8_t *q, float *scale)
{
    int special, level = simd_level();
    float s = finite_amax(x, D, level, &special) / 127.0f + FLT_MIN;
    int64_t i = 0;

#if defined(KVM_X86)
    if (level >= 2)
        i = q8_codes_avx2(x, KVMESH_F32, D, s, q, 0);
#endif
#if defined(__SSE2__)
    if (level == 1)
        i = q8_codes_sse2(x, D, s, q);
#endif
    /* |x / s| < 127.01 for finite x, well inside rne's range */
    for (; i < D; i++) {
        float r = x[i] / s;
        r = r <= 127.0f ? r : 127.0f;       /* only non-finite x reach these */
        r = r >= -127.0f ? r : -127.0f;
        q[i] = (int8_t) (int) rne(r);
    }
    for (i = 0; special && i < D; i++)
        if (isnan(x[i]))
            q[i] = 0;
    *scale = s;
}

#if defined(KVM_X86)
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
        if (st == KVMESH_BF16 && q8_bf16_scale(bits, &sb, &cb)) {
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
#endif

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

/* amax8_bf16() of 32 */
KVM_AVX512 static inline uint32_t
amax_reduce_bf16(__m512i m)
{
    const __m256i y = _mm256_max_epu16(_mm512_castsi512_si256(m),
                                       _mm512_extracti64x4_epi64(m, 1));

    return amax8_bf16(_mm_max_epu16(_mm256_castsi256_si128(y),
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
    if (q8_bf16_scale(bits, scale, &cb)) {
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
    if (q8_bf16_scale(bits, scale, &cb)) {
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
#endif

void
kvm_q8_encode_runs(const kvm_q8_run_t *run, int n, kvmesh_dtype_t st, float *tmp)
{
    const size_t es = kvm_dtype_size(st);
    int64_t h;
    int r, vec = 1;

#if defined(KVM_X86)
    const int level = simd_level();

    (void) pthread_once(&q8_tab_once, q8_tab_init);
    for (r = 0; r < n; r++)
        vec = vec && run[r].D % 32 == 0;
    vec = vec && level >= 2 && (st == KVMESH_BF16 || st == KVMESH_F32);
    if (vec && level == 3 && q8_runs_avx512(run, n, st))
        return;
    if (vec && level == 2) {
        for (r = 0; r < n && q8_heads_avx2(run[r].x, st, run[r].H, run[r].D, run[r].q,
                                           run[r].scale, run[r].stream &&
                                           ((uintptr_t) run[r].q & 31) == 0); r++)
            ;
        if (r == n)
            return;
    }
#endif
    for (r = 0; r < n; r++)
        for (h = 0; h < run[r].H; h++) {
            const char *xh = (const char *) run[r].x + (size_t) (h * run[r].D) * es;
            int8_t *q = run[r].q + h * run[r].D;
            if (st == KVMESH_F32) {
                kvm_q8_encode((const float *) xh, run[r].D, q, run[r].scale + h);
            } else {
                kvm_convert(tmp, KVMESH_F32, xh, st, (size_t) run[r].D);
                kvm_q8_encode(tmp, run[r].D, q, run[r].scale + h);
            }
        }
}

void
kvm_q8_decode(const int8_t *q, float scale, int64_t D, float *out)
{
    int64_t i;

    for (i = 0; i < D; i++)
        out[i] = (float) q[i] * scale;
}

/* ---- nf4 ------------------------------------------------------------ */

/* A 512-cell grid over [-1, 1] gives the lowest level that can be nearest
 * to any n in the cell; the exact float distances to it and its two upper
 * neighbours then decide, lowest index first on a tie, as a scan of all 16
 * levels with a strict comparison would. */
#define NF4_GRID 512
static unsigned char nf4_grid[NF4_GRID + 1];
static pthread_once_t nf4_once = PTHREAD_ONCE_INIT;      /* nf4_init() */

/* the levels, then +inf twice so that c + 2 is always a valid index */
static const float nf4_padded[18] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
    0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f, INFINITY, INFINITY
};

static unsigned
nf4_scan(float n)
{
    unsigned best = 0, i;
    float best_d = fabsf(n - kvm_nf4_levels[0]);

    for (i = 1; i < 16; i++) {
        float d = fabsf(n - kvm_nf4_levels[i]);
        if (d < best_d) {           /* strict: the first level wins a tie */
            best_d = d;
            best = i;
        }
    }
    return best;
}

static void
nf4_grid_init(void)
{
    int g;

    /* the nearest level at a cell's lower edge, less one: from there on up,
     * three candidates cover the cell (levels are > 1/256 apart) */
    for (g = 0; g <= NF4_GRID; g++) {
        unsigned c = nf4_scan(-1.0f + 2.0f * (float) g / NF4_GRID);
        nf4_grid[g] = (unsigned char) (c ? c - 1 : 0);
    }
}

static inline unsigned
nf4_code(float n)
{
    unsigned c, pick;
    float d0, d1, d2, best;

    if (!(n == n))
        return 7;                           /* NaN: the level 0.0 */
    n = n > 1.0f ? 1.0f : n < -1.0f ? -1.0f : n;
    c = nf4_grid[(int) ((n + 1.0f) * (NF4_GRID / 2))];
    /* branch-free: which neighbour wins is random for random data */
    d0 = fabsf(n - nf4_padded[c]);
    d1 = fabsf(n - nf4_padded[c + 1]);
    d2 = fabsf(n - nf4_padded[c + 2]);
    pick = d1 < d0;
    best = pick ? d1 : d0;
    pick = d2 < best ? 2 : pick;
    return c + pick;
}

#if defined(KVM_X86)
/* midpoints between neighbouring levels, rounded to float; a 16-entry
 * table of the midpoint below and above each code (+-inf at the ends) */
static float nf4_mid_lo[16], nf4_mid_hi[16];

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
 * such lanes take the exact scalar rule. */
__attribute__((target("avx2")))
static void
nf4_codes_avx2(const float *n, int64_t len, unsigned char *code)
{
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
            for (k = 0; k < 8; k++)
                code[i + k] = (unsigned char) nf4_code(n[i + k]);
    }
}
#endif

static void
nf4_init(void)
{
    int k;

    nf4_grid_init();
#if defined(KVM_X86)
    for (k = 0; k < 16; k++) {
        nf4_mid_lo[k] = k == 0 ? -INFINITY
            : (float) (((double) kvm_nf4_levels[k - 1] + kvm_nf4_levels[k]) / 2);
        nf4_mid_hi[k] = k == 15 ? INFINITY
            : (float) (((double) kvm_nf4_levels[k] + kvm_nf4_levels[k + 1]) / 2);
    }
#endif
    (void) k;
}

void
kvm_nf4_encode(const float *x, int64_t D, uint8_t *codes, float *absmax)
{
    float n[KVM_NF4_BLOCK];
    unsigned char code[KVM_NF4_BLOCK + 1];
    int64_t b, i, done;
    int special, level = simd_level();

    (void) pthread_once(&nf4_once, nf4_init);
    for (b = 0; b * KVM_NF4_BLOCK < D; b++) {
        int64_t lo = b * KVM_NF4_BLOCK;
        int64_t hi = lo + KVM_NF4_BLOCK < D ? lo + KVM_NF4_BLOCK : D;
        float a = finite_amax(x + lo, hi - lo, level, &special);

        absmax[b] = a;
        /* the divisions in a loop of their own, which vectorizes */
        if (a > 0.0f)
            for (i = lo; i < hi; i++)
                n[i - lo] = x[i] / a;
        else
            for (i = lo; i < hi; i++)
                n[i - lo] = 0.0f;
        done = 0;
#if defined(KVM_X86)
        if (level >= 2 && !special) {   /* finite: |n| <= 1, no NaN */
            done = (hi - lo) & ~(int64_t) 7;
            nf4_codes_avx2(n, done, code);
        }
#endif
        for (i = done; i < hi - lo; i++)
            code[i] = (unsigned char) nf4_code(n[i]);
        code[hi - lo] = 0;              /* an odd vector's last low nibble */
        /* blocks start at even elements: pack by pairs */
        for (i = 0; i < (hi - lo + 1) / 2; i++)
            codes[lo / 2 + i] = (uint8_t) (code[2 * i] << 4 | code[2 * i + 1]);
    }
}

void
kvm_nf4_decode(const uint8_t *codes, const float *absmax, int64_t i0, int64_t i1,
               float *out)
{
    int64_t i;

    for (i = i0; i < i1; i++) {
        unsigned c = i % 2 ? codes[i / 2] & 0xfu : codes[i / 2] >> 4;
        out[i - i0] = kvm_nf4_levels[c] * absmax[i / KVM_NF4_BLOCK];
    }
}
