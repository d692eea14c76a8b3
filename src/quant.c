/* int8 and nf4 storage of head vectors: quantize on write, dequantize on
 * read, one vector at a time so an append touches only what it writes.
 * The loops are branch-free where they can be, so the compiler vectorizes
 * them; NaN and infinities take a separate pass that runs only when the
 * vector holds one. */
#include <float.h>
#include <math.h>
#include "quant.h"

#if defined(__x86_64__) || defined(__i386__)
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

/* r rounded half to even, for |r| < 2^22, in the default rounding mode:
 * adding 1.5 * 2^23 leaves no fraction bits */
static inline float
rne(float r)
{
    const float magic = 12582912.0f;
    return (r + magic) - magic;
}

/* largest magnitude of the finite elements; *special set when one is not */
static float
finite_amax(const float *x, int64_t n, int *special)
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

#if defined(KVM_X86) && defined(__GNUC__)
/* AVX2 int8 encoder, chosen at run time: as the SSE2 one, eight lanes and
 * the hardware's round-to-nearest-even, 32 elements an iteration. */
__attribute__((target("avx2")))
static int64_t
q8_encode_avx2(const float *x, int64_t D, int8_t *q, float *scale, int *special)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 fmax = _mm256_set1_ps(FLT_MAX);
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256 near_half = _mm256_set1_ps(0.5f - 1e-4f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256 m[4], ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1)), sv, inv;
    float lanes[8], a = 0.0f, s;
    int64_t i, n = D & ~(int64_t) 31;
    int k, bad = 0;

    if (n == 0)
        return 0;
    for (k = 0; k < 4; k++)
        m[k] = _mm256_setzero_ps();
    for (i = 0; i < n; i += 32)
        for (k = 0; k < 4; k++) {
            __m256 v = _mm256_and_ps(_mm256_loadu_ps(x + i + 8 * k), absmask);
            __m256 finite = _mm256_cmp_ps(v, fmax, _CMP_LE_OQ);
            ok = _mm256_and_ps(ok, finite);
            m[k] = _mm256_max_ps(m[k], _mm256_and_ps(v, finite));
        }
    _mm256_storeu_ps(lanes, _mm256_max_ps(_mm256_max_ps(m[0], m[1]),
                                          _mm256_max_ps(m[2], m[3])));
    bad = _mm256_movemask_ps(ok) != 0xff;
    for (k = 0; k < 8; k++)
        a = a > lanes[k] ? a : lanes[k];
    {
        int tail_bad;
        float t = finite_amax(x + n, D - n, &tail_bad);
        a = a > t ? a : t;
        bad |= tail_bad;
    }
    s = a / 127.0f + FLT_MIN;
    sv = _mm256_set1_ps(s);
    inv = _mm256_set1_ps(1.0f / s);
    for (i = 0; i < n; i += 32) {
#define Q8_LOAD(k) _mm256_max_ps(_mm256_min_ps(_mm256_mul_ps( \
            _mm256_loadu_ps(x + i + 8 * (k)), inv), hi), lo)
#define Q8_EXACT(k) _mm256_round_ps(_mm256_max_ps(_mm256_min_ps(_mm256_div_ps( \
            _mm256_loadu_ps(x + i + 8 * (k)), sv), hi), lo), RNE)
#define Q8_FAR(v, r) _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(v, r), absmask), \
            near_half, _CMP_GT_OQ)
        const int RNE = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        __m256 v0 = Q8_LOAD(0), v1 = Q8_LOAD(1), v2 = Q8_LOAD(2), v3 = Q8_LOAD(3);
        __m256 r0 = _mm256_round_ps(v0, RNE), r1 = _mm256_round_ps(v1, RNE);
        __m256 r2 = _mm256_round_ps(v2, RNE), r3 = _mm256_round_ps(v3, RNE);
        __m256 near = _mm256_or_ps(_mm256_or_ps(Q8_FAR(v0, r0), Q8_FAR(v1, r1)),
                                   _mm256_or_ps(Q8_FAR(v2, r2), Q8_FAR(v3, r3)));
        if (_mm256_movemask_ps(near)) {     /* rare: divide these exactly */
            r0 = Q8_EXACT(0), r1 = Q8_EXACT(1), r2 = Q8_EXACT(2), r3 = Q8_EXACT(3);
        }
        /* packs work within 128-bit halves; the permute restores order */
        _mm256_storeu_si256((__m256i *) (q + i), _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(
                _mm256_packs_epi32(_mm256_cvtps_epi32(r0), _mm256_cvtps_epi32(r1)),
                _mm256_packs_epi32(_mm256_cvtps_epi32(r2), _mm256_cvtps_epi32(r3))),
            order));
#undef Q8_LOAD
#undef Q8_EXACT
#undef Q8_FAR
    }
    *scale = s;
    *special = bad;
    return n;
}
#endif

#if defined(__SSE2__)
/* SSE2 int8 encoder: the same IEEE operations as the scalar one below
 * (max of masked magnitudes, division, clamp, round by the magic number),
 * four lanes at a time; the compiler does not vectorize float max/min
 * reductions on its own without fast-math. Returns elements done. */
static int64_t
q8_encode_sse2(const float *x, int64_t D, int8_t *q, float *scale, int *special)
{
    const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    const __m128 fmax = _mm_set1_ps(FLT_MAX), magic = _mm_set1_ps(12582912.0f);
    const __m128 hi = _mm_set1_ps(127.0f), lo = _mm_set1_ps(-127.0f);
    const __m128 near_half = _mm_set1_ps(0.5f - 1e-4f);
    __m128 amax = _mm_setzero_ps(), sv, inv;
    float lanes[4], a, s;
    int64_t i, n = D & ~(int64_t) 15;
    int bad = 0;

    if (n == 0)
        return 0;
    /* four independent chains, so the max latency overlaps */
    {
        __m128 m[4] = { amax, amax, amax, amax };
        __m128 ok = _mm_castsi128_ps(_mm_set1_epi32(-1));
        int k;
        for (i = 0; i < n; i += 16)
            for (k = 0; k < 4; k++) {
                __m128 v = _mm_and_ps(_mm_loadu_ps(x + i + 4 * k), absmask);
                __m128 finite = _mm_cmple_ps(v, fmax);  /* false: NaN, inf */
                ok = _mm_and_ps(ok, finite);
                m[k] = _mm_max_ps(m[k], _mm_and_ps(v, finite));
            }
        amax = _mm_max_ps(_mm_max_ps(m[0], m[1]), _mm_max_ps(m[2], m[3]));
        bad = _mm_movemask_ps(ok) != 0xf;
    }
    _mm_storeu_ps(lanes, amax);
    a = lanes[0] > lanes[1] ? lanes[0] : lanes[1];
    a = a > lanes[2] ? a : lanes[2];
    a = a > lanes[3] ? a : lanes[3];
    {
        int tail_bad;
        float t = finite_amax(x + n, D - n, &tail_bad);
        a = a > t ? a : t;
        bad |= tail_bad;
    }
    s = a / 127.0f + FLT_MIN;
    sv = _mm_set1_ps(s);
    /* x * (1 / s) is within 2.3e-5 of the rounded x / s when |x / s| <=
     * 127.01, so the two round alike unless that lies within 2.3e-5 of a
     * half-integer: such lanes (rare) are divided exactly */
    inv = _mm_set1_ps(1.0f / s);
    for (i = 0; i < n; i += 16) {
        __m128i r[4];
        int k;
        for (k = 0; k < 4; k++) {
            __m128 xv = _mm_loadu_ps(x + i + 4 * k);
            __m128 v = _mm_max_ps(_mm_min_ps(_mm_mul_ps(xv, inv), hi), lo);
            __m128 rv = _mm_sub_ps(_mm_add_ps(v, magic), magic);
            __m128 off = _mm_and_ps(_mm_sub_ps(v, rv), absmask);
            if (_mm_movemask_ps(_mm_cmpgt_ps(off, near_half))) {
                v = _mm_max_ps(_mm_min_ps(_mm_div_ps(xv, sv), hi), lo);
                rv = _mm_sub_ps(_mm_add_ps(v, magic), magic);
            }
            r[k] = _mm_cvttps_epi32(rv);
        }
        _mm_storeu_si128((__m128i *) (q + i),
                         _mm_packs_epi16(_mm_packs_epi32(r[0], r[1]),
                                         _mm_packs_epi32(r[2], r[3])));
    }
    *scale = s;
    *special = bad;
    return n;
}
#endif

void
kvm_q8_encode(const float *x, int64_t D, int8_t *q, float *scale)
{
    int special = 0;
    float s;
    int64_t i = 0;

#if defined(KVM_X86) && defined(__GNUC__)
    static int avx2 = -1;
    if (avx2 < 0)
        avx2 = __builtin_cpu_supports("avx2");
    if (avx2 && kvm_q8_path == 0)
        i = q8_encode_avx2(x, D, q, scale, &special);
#endif
#if defined(__SSE2__)
    if (i == 0 && kvm_q8_path <= 1)
        i = q8_encode_sse2(x, D, q, scale, &special);
#endif
    if (i == 0) {
        *scale = finite_amax(x, D, &special) / 127.0f + FLT_MIN;
    }
    s = *scale;
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
}

void
kvm_q8_decode(const int8_t *q, float scale, int64_t D, float *out)
{
    int64_t i;

    for (i = 0; i < D; i++)
        out[i] = (float) q[i] * scale;
}

/* nf4: a 512-cell grid over [-1, 1] tells the lowest level that can be
 * nearest to any n in the cell; the exact float distances to it and its two
 * upper neighbours then decide, lowest index first, as a scan of all 16
 * levels with a strict comparison would */
#define NF4_GRID 512
static unsigned char nf4_grid[NF4_GRID + 1];
static int nf4_grid_ready;

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
     * three candidates cover the cell (its levels are > 1/512 apart) */
    for (g = 0; g <= NF4_GRID; g++) {
        unsigned c = nf4_scan(-1.0f + 2.0f * (float) g / NF4_GRID);
        nf4_grid[g] = (unsigned char) (c ? c - 1 : 0);
    }
    nf4_grid_ready = 1;
}

static inline unsigned
nf4_code(float n)
{
    unsigned c, best;
    float best_d, d;

    if (!(n == n))
        return 7;                           /* NaN: the level 0.0 */
    n = n > 1.0f ? 1.0f : n < -1.0f ? -1.0f : n;
    c = nf4_grid[(int) ((n + 1.0f) * (NF4_GRID / 2))];
    best = c;
    best_d = fabsf(n - kvm_nf4_levels[c]);
    if (c + 1 < 16 && (d = fabsf(n - kvm_nf4_levels[c + 1])) < best_d)
        best = c + 1, best_d = d;
    if (c + 2 < 16 && (d = fabsf(n - kvm_nf4_levels[c + 2])) < best_d)
        best = c + 2;
    return best;
}

void
kvm_nf4_encode(const float *x, int64_t D, uint8_t *codes, float *absmax)
{
    int64_t b, i;
    int special;

    if (!nf4_grid_ready)
        nf4_grid_init();
    for (i = 0; i < (D + 1) / 2; i++)
        codes[i] = 0;
    for (b = 0; b * KVM_NF4_BLOCK < D; b++) {
        int64_t lo = b * KVM_NF4_BLOCK;
        int64_t hi = lo + KVM_NF4_BLOCK < D ? lo + KVM_NF4_BLOCK : D;
        float a = finite_amax(x + lo, hi - lo, &special);

        absmax[b] = a;
        for (i = lo; i < hi; i++) {
            unsigned c = nf4_code(a > 0.0f ? x[i] / a : 0.0f);
            codes[i / 2] |= (uint8_t) (i % 2 ? c : c << 4);
        }
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
