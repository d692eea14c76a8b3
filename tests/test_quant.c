/* Quantized storage: the int8 and nf4 quantizers against the reference's
 * own, on random and adversarial vectors; their error bounds; the first
 * level on an nf4 tie; NaN and infinities; the memory they take; and
 * their first use from several threads at once. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kvmesh.h"
#include "quant.h"
#include "copy.h"
#include "reference.h"
#include "suites.h"

#define DMAX 200

static uint64_t rs = 99;

/* uniform in [-1, 1) from the generator state *g */
static float
rnd_from(uint64_t *g)
{
    *g = *g * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float) ((double) (*g >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float
rnd(void)
{
    return rnd_from(&rs);
}

/* nf4 code i of a packed vector: (c0 << 4) | c1 */
static int
nibble(const uint8_t *codes, int64_t i)
{
    return i % 2 ? codes[i / 2] & 15 : codes[i / 2] >> 4;
}

/* vector kinds: random, zeros, one huge value, denormals, mixed scales */
static void
fill(float *x, int64_t D, int kind)
{
    int64_t i;

    for (i = 0; i < D; i++) {
        switch (kind) {
        case 0: x[i] = rnd(); break;
        case 1: x[i] = 0.0f; break;
        case 2: x[i] = i == D / 2 ? 3.0e30f : rnd() * 1e-3f; break;
        case 3: x[i] = rnd() * FLT_MIN * 0.5f; break;        /* subnormal */
        default: x[i] = rnd() * ldexpf(1.0f, (int) (i % 40) - 20); break;
        }
    }
}

/* every int8 encoder path (fastest, SSE2, scalar, AVX2) against the reference */
static void
int8_path(int path)
{
    static const int64_t dims[] = { 1, 5, 8, 16, 31, 32, 64, 128, 130, 200 };
    float x[DMAX], deq[DMAX], s = 0.0f, rsc = 0.0f;
    int8_t q[DMAX];
    int code[DMAX];
    long bad_code = 0, bad_bound = 0;
    size_t di;
    int kind, rep;
    int64_t i;

    kvm_q8_path = path;
    for (di = 0; di < sizeof dims / sizeof *dims; di++)
        for (kind = 0; kind < 5; kind++)
            for (rep = 0; rep < 50; rep++) {
                int64_t D = dims[di];
                fill(x, D, kind);
                if (rep == 7 && D > 3)          /* non-finite in the vector */
                    x[1] = NAN, x[D - 2] = -INFINITY;
                if (rep == 9)   /* scale 1, quotients exactly k + 1/2: ties */
                    for (i = 0; i < D; i++)
                        x[i] = i == 0 ? 127.0f : (float) (i % 254 - 127) + 0.5f;
                kvm_q8_encode(x, D, q, &s);
                ref_q8(x, D, code, &rsc);
                bad_code += memcmp(&s, &rsc, sizeof s) != 0;
                kvm_q8_decode(q, s, D, deq);
                for (i = 0; i < D; i++) {
                    bad_code += q[i] != code[i];
                    /* round-trip error <= scale / 2, for finite elements */
                    bad_bound += isfinite(x[i]) && fabsf(x[i] - deq[i]) > s / 2;
                }
            }
    kvm_q8_path = 0;
    CU_ASSERT_EQUAL(bad_code, 0);
    CU_ASSERT_EQUAL(bad_bound, 0);
}

static void
test_int8(void)
{
    float x[DMAX], s = 0.0f;
    int8_t q[DMAX];
    int path;

    for (path = 0; path <= 3; path++)
        int8_path(path);
    /* all zeros: scale FLT_MIN, codes 0 */
    fill(x, 8, 1);
    kvm_q8_encode(x, 8, q, &s);
    CU_ASSERT(s == FLT_MIN && q[0] == 0 && q[7] == 0);
    /* NaN becomes 0, +-inf saturate to +-127 (+-amax of the finite ones) */
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 2.0f;
    kvm_q8_encode(x, 8, q, &s);
    CU_ASSERT(q[0] == 0 && q[1] == 127 && q[2] == -127 && q[3] == 127);
    CU_ASSERT_DOUBLE_EQUAL(s, 2.0 / 127.0, 1e-7);
}

/* Encodes H heads of D elements (D <= 130, H * D <= 24 * 130) of type st
 * through kvm_q8_encode_runs, as one run or split in three (the middle one
 * streamed or not, the others the opposite), and counts the scales and
 * codes that differ from the reference's for x, the inputs' exact values. */
static int
heads_mismatches(const void *in, kvmesh_dtype_t st, const float *x, int64_t H,
                 int64_t D, int stream)
{
    static _Alignas(32) int8_t q[24 * 130];
    static float s[24];
    const size_t es = kvmesh_dtype_size(st);
    const int64_t cut[4] = { 0, H / 3, 2 * H / 3, H };
    kvm_q8_run_t run[3];
    float tmp[130], rsc;
    int code[130], bad = 0, nrun = 0, r, split;
    int64_t h, i;

    for (split = 0; split < 2; split++) {
        memset(q, 0x55, sizeof q);
        nrun = 0;
        for (r = 0; r < 3; r++)
            if (!split || cut[r + 1] > cut[r])
                run[nrun++] = (kvm_q8_run_t) {
                    (const char *) in + (size_t) (split ? cut[r] * D : 0) * es,
                    q + (split ? cut[r] * D : 0), s + (split ? cut[r] : 0),
                    split ? cut[r + 1] - cut[r] : H, D, stream ^ (r != 1) };
        kvm_q8_encode_runs(run, split ? nrun : 1, st, tmp);
        kvm_stream_fence();
        for (h = 0; h < H; h++) {
            ref_q8(x + h * D, D, code, &rsc);
            bad += memcmp(&s[h], &rsc, sizeof rsc) != 0;
            for (i = 0; i < D; i++)
                bad += q[h * D + i] != code[i];
        }
    }
    return bad;
}

/* all heads of a token at once, from f32, bf16 and f16 inputs, equal the
 * reference head by head at every vector level */
static void
test_int8_heads(void)
{
    static const int64_t dims[] = { 32, 64, 96, 128, 130 }, heads[] = { 1, 3, 8 };
    float x[8 * 130];
    uint16_t xh[8 * 130];
    int bad = 0, path, st, rep;
    size_t di, hi;
    int64_t i;

    for (path = 0; path <= 3; path++)
        for (di = 0; di < sizeof dims / sizeof *dims; di++)
            for (hi = 0; hi < sizeof heads / sizeof *heads; hi++)
                for (st = KVMESH_F32; st <= KVMESH_BF16; st++)
                    for (rep = 0; rep < 12; rep++) {
                        int64_t D = dims[di], H = heads[hi];
                        const void *in = x;
                        kvm_q8_path = path;
                        fill(x, D * H, rep % 5);
                        if (rep == 6)
                            x[H * D / 2] = NAN;
                        if (rep == 7)
                            x[0] = -INFINITY;
                        if (st != KVMESH_F32) {
                            /* the exact values of the 16-bit input */
                            for (i = 0; i < D * H; i++) {
                                xh[i] = st == KVMESH_BF16 ? kvmesh_f32_to_bf16(x[i])
                                                          : kvmesh_f32_to_f16(x[i]);
                                x[i] = st == KVMESH_BF16 ? kvmesh_bf16_to_f32(xh[i])
                                                         : kvmesh_f16_to_f32(xh[i]);
                            }
                            in = xh;
                        }
                        bad += heads_mismatches(in, (kvmesh_dtype_t) st, x, H, D,
                                                rep & 1);
                    }
    kvm_q8_path = 0;
    CU_ASSERT_EQUAL(bad, 0);
}

/* runs of different lengths in one call (K and V heads of several rows):
 * 2 heads of 128, 3 of 64, and in some calls 1 of 96 or 130 (which no
 * vector path takes, so the whole call falls back), a NaN in some */
static void
test_int8_runs(void)
{
    static const int64_t H[3] = { 2, 3, 1 }, D[3] = { 128, 64, 96 };
    static _Alignas(32) int8_t q[3][256];
    float x[3][256], s[3][3], tmp[130], rsc;
    uint16_t xh[3][256];
    int code[130], bad = 0, path, k, rep, r, n;
    int64_t h, i;

    for (path = 0; path <= 3; path++)
        for (k = 0; k < 2; k++)
            for (rep = 0; rep < 8; rep++) {
                const kvmesh_dtype_t st = k ? KVMESH_BF16 : KVMESH_F32;
                kvm_q8_run_t run[3];
                const int64_t d2 = rep & 2 ? 130 : D[2];
                n = rep & 4 ? 3 : 2;
                kvm_q8_path = path;
                for (r = 0; r < n; r++) {
                    const int64_t d = r == 2 ? d2 : D[r];
                    fill(x[r], H[r] * d, (rep + r) % 5);
                    if (rep == 3 && r == 1)
                        x[r][70] = NAN;
                    for (i = 0; st == KVMESH_BF16 && i < H[r] * d; i++) {
                        xh[r][i] = kvmesh_f32_to_bf16(x[r][i]);
                        x[r][i] = kvmesh_bf16_to_f32(xh[r][i]);
                    }
                    run[r] = (kvm_q8_run_t) { st == KVMESH_BF16 ? (const void *) xh[r]
                                                                : (const void *) x[r],
                                              q[r], s[r], H[r], d, r != 1 };
                }
                kvm_q8_encode_runs(run, n, st, tmp);
                kvm_stream_fence();
                for (r = 0; r < n; r++)
                    for (h = 0; h < H[r]; h++) {
                        const int64_t d = run[r].D;
                        ref_q8(x[r] + h * d, d, code, &rsc);
                        bad += memcmp(&s[r][h], &rsc, sizeof rsc) != 0;
                        for (i = 0; i < d; i++)
                            bad += q[r][h * d + i] != code[i];
                    }
            }
    kvm_q8_path = 0;
    CU_ASSERT_EQUAL(bad, 0);
}

/* more heads in one call than the vector path holds scales for (64): one
 * run of 70 heads, which goes in pieces, then runs of 40 and 30, which go
 * in two groups; a NaN in the last run in some calls, found after the
 * first groups are stored, sends the whole call to the fallback */
static void
test_int8_many_heads(void)
{
    enum { D = 32, NR = 3 };
    static const int64_t H[NR] = { 70, 40, 30 };
    static _Alignas(32) int8_t q[140 * D];
    static float x[140 * D], s[140];
    static uint16_t xh[140 * D];
    float tmp[D], rsc;
    int code[D], bad = 0, path, k, rep, r;
    int64_t h, i, first;

    for (path = 0; path <= 3; path++)
        for (k = 0; k < 2; k++)
            for (rep = 0; rep < 4; rep++) {
                const kvmesh_dtype_t st = k ? KVMESH_BF16 : KVMESH_F32;
                const size_t es = kvmesh_dtype_size(st);
                kvm_q8_run_t run[NR];
                kvm_q8_path = path;
                fill(x, 140 * D, rep + k);
                if (rep == 2)
                    x[139 * D + 5] = NAN;
                for (i = 0; st == KVMESH_BF16 && i < 140 * D; i++) {
                    xh[i] = kvmesh_f32_to_bf16(x[i]);
                    x[i] = kvmesh_bf16_to_f32(xh[i]);
                }
                memset(q, 0x55, sizeof q);
                memset(s, 0, sizeof s);
                for (r = 0, first = 0; r < NR; first += H[r++])
                    run[r] = (kvm_q8_run_t) {
                        (const char *) (st == KVMESH_BF16 ? (const void *) xh
                                                          : (const void *) x) +
                            (size_t) (first * D) * es,
                        q + first * D, s + first, H[r], D, (rep & 1) ^ (r == 1) };
                kvm_q8_encode_runs(run, NR, st, tmp);
                kvm_stream_fence();
                for (h = 0; h < 140; h++) {
                    ref_q8(x + h * D, D, code, &rsc);
                    bad += memcmp(&s[h], &rsc, sizeof rsc) != 0;
                    for (i = 0; i < D; i++)
                        bad += q[h * D + i] != code[i];
                }
            }
    kvm_q8_path = 0;
    CU_ASSERT_EQUAL(bad, 0);
}

/* bf16 heads, the decode input: for amax with each of the 128 bf16
 * significands at eight binades, every bf16 value of either sign from
 * amax / 2^10 up to amax (smaller ones code 0), 127 to a head after amax;
 * the fast paths' shortcut must agree with the division everywhere */
static void
test_int8_bf16_sweep(void)
{
    enum { D = 128, H = 24 };
    /* around 2^-96 and 2^-90: below the first the shortcut would be wrong,
     * below the second bf16 heads keep the near-half test and divide */
    static const int binade[] = { -117, -96, -91, -90, -30, 0, 20, 126 };
    static uint16_t in[H * D];
    static float x[H * D];
    int bad = 0, path, m, b, sign, e, f, k, n, heads;

    for (b = 0; b < (int) (sizeof binade / sizeof *binade); b++)
        for (m = 0; m < 128; m++) {
            const int ea = 127 + binade[b];         /* amax's biased exponent */
            const uint16_t amax = (uint16_t) (ea << 7 | m);
            n = 0;
            for (sign = 0; sign < 2; sign++)
                for (e = ea - 9; e <= ea; e++)
                    for (f = 0; f < 128 && (e < ea || f <= m); f++) {
                        if (n % D == 0)
                            in[n++] = amax;
                        in[n++] = (uint16_t) (sign << 15 | e << 7 | f);
                    }
            heads = (n + D - 1) / D;
            while (n % D)
                in[n++] = 0;
            for (k = 0; k < n; k++)
                x[k] = kvmesh_bf16_to_f32(in[k]);
            for (path = 0; path <= 3; path++) {
                kvm_q8_path = path;
                bad += heads_mismatches(in, KVMESH_BF16, x, heads, D, b & 1);
            }
            kvm_q8_path = 0;
        }
    CU_ASSERT_EQUAL(bad, 0);
}

/* every finite bf16 amax > 0 with +-amax / 2 (the one bf16 value whose
 * 127 x / amax is a half-integer, unless s is a power of two) and its
 * neighbours in a head of 32, 24 heads a call, the rest random */
static void
test_int8_bf16_halves(void)
{
    enum { D = 32, H = 24 };
    static uint16_t in[H * D];
    static float x[H * D];
    uint32_t a = 1;
    int bad = 0, path, h, i;

    while (a < 0x7f80) {
        for (h = 0; h < H; h++, a = a < 0x7f7f ? a + 1 : 1) {
            const float amax = kvmesh_bf16_to_f32((uint16_t) a);
            const uint16_t half = kvmesh_f32_to_bf16(amax * 0.5f);
            uint16_t *p = in + h * D;
            p[0] = (uint16_t) a, p[1] = half, p[2] = half | 0x8000u;
            p[3] = (uint16_t) (half + 1), p[4] = (uint16_t) ((half - 1) | 0x8000u);
            p[5] = (uint16_t) (a | 0x8000u);
            for (i = 6; i < D; i++)
                p[i] = kvmesh_f32_to_bf16(rnd() * amax);
        }
        for (i = 0; i < H * D; i++)
            x[i] = kvmesh_bf16_to_f32(in[i]);
        for (path = 0; path <= 3; path++) {
            kvm_q8_path = path;
            bad += heads_mismatches(in, KVMESH_BF16, x, H, D, a & 1);
        }
        kvm_q8_path = 0;
        if (a < H)
            break;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* inputs whose quotient x / s and product x * (1 / s) round to different
 * integers: the fast paths must notice and divide */
static void
test_int8_near_ties(void)
{
    float x[128], s, rsc, inv;
    int8_t q[128];
    int code[128], found = 0, bad = 0, trial, k, u, path, n;

    for (trial = 0; trial < 400 && found < 20; trial++) {
        float amax = 1.0f + fabsf(rnd()) * 100.0f;
        s = amax / 127.0f + FLT_MIN;
        inv = 1.0f / s;
        n = 0;
        x[n++] = amax;
        for (k = -126; k < 126 && n < 128; k++) {
            float t = ((float) k + 0.5f) * s;
            for (u = -3; u <= 3 && n < 128; u++) {
                float v = t;
                int m;
                for (m = 0; m < (u < 0 ? -u : u); m++)
                    v = nextafterf(v, u < 0 ? -INFINITY : INFINITY);
                if (fabsf(v) <= amax && nearbyintf(v / s) != nearbyintf(v * inv))
                    x[n++] = v;
            }
        }
        if (n == 1)
            continue;
        found += n - 1;
        for (k = n; k < 128; k++)       /* zeros leave the scale alone */
            x[k] = 0.0f;
        ref_q8(x, 128, code, &rsc);
        for (path = 0; path <= 3; path++) {
            float tmp[128];
            kvm_q8_run_t run;
            kvm_q8_path = path;
            kvm_q8_encode(x, n, q, &s);
            for (k = 0; k < n; k++)
                bad += q[k] != code[k];
            /* the runs path, one 128-element head */
            run = (kvm_q8_run_t) { x, q, &s, 1, 128, 0 };
            kvm_q8_encode_runs(&run, 1, KVMESH_F32, tmp);
            for (k = 0; k < 128; k++)
                bad += q[k] != code[k];
        }
        kvm_q8_path = 0;
    }
    CU_ASSERT(found > 0);
    CU_ASSERT_EQUAL(bad, 0);
}

static void
nf4_path(int path)
{
    static const int64_t dims[] = { 1, 5, 8, 63, 64, 65, 130, 200 };
    float x[DMAX], deq[DMAX], am[4], ram[4];
    uint8_t codes[DMAX];
    int code[DMAX];
    long bad_code = 0, bad_near = 0, bad_bound = 0;
    float maxgap = 0.0f;
    size_t di;
    int kind, rep, k;
    int64_t i;

    kvm_q8_path = path;
    for (k = 0; k < 15; k++)
        maxgap = fmaxf(maxgap, kvm_nf4_levels[k + 1] - kvm_nf4_levels[k]);
    for (di = 0; di < sizeof dims / sizeof *dims; di++)
        for (kind = 0; kind < 5; kind++)
            for (rep = 0; rep < 50; rep++) {
                int64_t D = dims[di];
                fill(x, D, kind);
                kvm_nf4_encode(x, D, codes, am);
                ref_nf4(x, D, code, ram);
                bad_code += memcmp(am, ram, (size_t) ((D + 63) / 64) * sizeof *am) != 0;
                kvm_nf4_decode(codes, am, 0, D, deq);
                for (i = 0; i < D; i++) {
                    int c = nibble(codes, i);
                    float a = am[i / 64], n = a > 0 ? x[i] / a : 0.0f;
                    bad_code += c != code[i];
                    /* the nearest level, and the error it implies */
                    for (k = 0; k < 16; k++)
                        bad_near += fabsf(n - kvm_nf4_levels[k]) <
                                    fabsf(n - kvm_nf4_levels[c]);
                    bad_bound += fabsf(x[i] - deq[i]) > 0.5f * maxgap * a * 1.000001f;
                }
                if (D % 2)   /* the unused low nibble of an odd vector is 0 */
                    bad_code += (codes[D / 2] & 15) != 0;
            }
    kvm_q8_path = 0;
    CU_ASSERT_EQUAL(bad_code, 0);
    CU_ASSERT_EQUAL(bad_near, 0);
    CU_ASSERT_EQUAL(bad_bound, 0);
}

static void
test_nf4(void)
{
    float x[4], am[1];
    uint8_t codes[2];
    int path;

    for (path = 0; path <= 3; path++)
        nf4_path(path);
    /* NaN -> level 0.0 (code 7); +-inf -> +-1 (codes 0 and 15) */
    x[0] = 1.0f, x[1] = NAN, x[2] = INFINITY, x[3] = -INFINITY;
    kvm_nf4_encode(x, 4, codes, am);
    CU_ASSERT(am[0] == 1.0f);
    CU_ASSERT(codes[0] == (15 << 4 | 7) && codes[1] == (15 << 4 | 0));
}

/* an exact tie between two levels goes to the first */
static void
test_nf4_ties(void)
{
    float x[64], am;
    uint8_t codes[32];
    int k, step, ties = 0, bad = 0, path, i;

    for (k = 0; k < 15; k++) {
        float mid = (float) (((double) kvm_nf4_levels[k] + kvm_nf4_levels[k + 1]) / 2);
        for (step = -3; step <= 3; step++) {
            float n = mid;
            int s;
            for (s = 0; s < (step < 0 ? -step : step); s++)
                n = nextafterf(n, step < 0 ? -2.0f : 2.0f);
            if (fabsf(n - kvm_nf4_levels[k]) != fabsf(n - kvm_nf4_levels[k + 1]))
                continue;
            ties++;
            /* absmax 1: x / absmax is n exactly; a whole block of ties, so
             * the vector paths meet them too */
            x[0] = 1.0f;
            for (i = 1; i < 64; i++)
                x[i] = n;
            for (path = 0; path <= 3; path++) {
                kvm_q8_path = path;
                kvm_nf4_encode(x, 64, codes, &am);
                for (i = 1; i < 64; i++)
                    bad += nibble(codes, i) != k;
            }
            kvm_q8_path = 0;
        }
    }
    CU_ASSERT(ties > 0);
    CU_ASSERT_EQUAL(bad, 0);
}

/* n on each float midpoint between two levels, and its neighbours: there
 * the float distances can prefer the upper level although n is not above
 * the midpoint, and every path must agree with the reference */
static void
test_nf4_midpoints(void)
{
    float x[64], am;
    uint8_t codes[32];
    int code[64], k, i, path, bad = 0;

    for (k = 0; k < 15; k++) {
        float mid = (float) (((double) kvm_nf4_levels[k] + kvm_nf4_levels[k + 1]) / 2);
        float up = mid, down = mid;
        x[0] = 1.0f;                    /* absmax 1: x / absmax is x */
        x[1] = mid;
        for (i = 2; i < 64; i++)
            x[i] = i % 2 ? (down = nextafterf(down, -2.0f)) : (up = nextafterf(up, 2.0f));
        ref_nf4(x, 64, code, &am);
        for (path = 0; path <= 3; path++) {
            kvm_q8_path = path;
            kvm_nf4_encode(x, 64, codes, &am);
            for (i = 0; i < 64; i++)
                bad += nibble(codes, i) != code[i];
        }
    }
    kvm_q8_path = 0;
    CU_ASSERT_EQUAL(bad, 0);
}

/* bytes of one cache of each storage, D = 128 and D = 130 */
static size_t
cache_bytes(kvmesh_quant_t q, int64_t D)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    onerank_t o;
    size_t bytes;

    kvmesh_meta_params_init(&mp);
    mp.batch_size = 2, mp.sequence_length = 32, mp.num_hidden_layers = 3;
    mp.num_heads = 4, mp.head_dim = D;
    kvmesh_cache_params_init(&cp);
    cp.quant = q;
    (void) onerank_open(&o, &mp, &cp);
    bytes = kvmesh_cache_local_bytes(o.cache);
    onerank_close(&o);
    return bytes;
}

typedef struct {
    uint64_t seed;              /* each thread its own generator */
    long bad;
} worker_t;

/* 200 random vectors of 128, through nf4 and int8, against the reference */
static void *
quant_worker(void *arg)
{
    worker_t *w = arg;
    float x[128], s, rsc, am[2], ram[2];
    int8_t q[128];
    uint8_t nib[64];
    int code[128], rep, i;

    for (rep = 0; rep < 200; rep++) {
        for (i = 0; i < 128; i++)
            x[i] = rnd_from(&w->seed);
        kvm_nf4_encode(x, 128, nib, am);
        ref_nf4(x, 128, code, ram);
        w->bad += memcmp(am, ram, sizeof am) != 0;
        for (i = 0; i < 128; i++)
            w->bad += nibble(nib, i) != code[i];
        kvm_q8_encode(x, 128, q, &s);
        ref_q8(x, 128, code, &rsc);
        w->bad += memcmp(&s, &rsc, sizeof s) != 0;
        for (i = 0; i < 128; i++)
            w->bad += q[i] != code[i];
    }
    return NULL;
}

/* The quantizers build their tables and pick their vector path on first
 * use: 4 threads that all start there get the reference's codes.  (Run
 * first in the suite; -fsanitize=thread checks the first use itself.) */
static void
test_threads(void)
{
    pthread_t th[4];
    worker_t w[4];
    bool started[4];
    int k;

    for (k = 0; k < 4; k++) {
        w[k] = (worker_t) { 1000003u * (uint64_t) (k + 1), 0 };
        started[k] = pthread_create(&th[k], NULL, quant_worker, &w[k]) == 0;
    }
    /* every started thread is joined before w goes out of scope */
    for (k = 0; k < 4; k++) {
        CU_ASSERT(started[k]);
        if (started[k])
            pthread_join(th[k], NULL);
        CU_ASSERT_EQUAL(w[k].bad, 0);
    }
}

static void
test_memory(void)
{
    const size_t vecs = 3 * 2 * 2 * 32 * 4;   /* layers, K+V, B, S, heads */

    CU_ASSERT_EQUAL(cache_bytes(KVMESH_QUANT_NONE, 128), vecs * 128 * 2);
    /* int8: (D + 4) / (2 D) of bf16 exactly */
    CU_ASSERT_EQUAL(cache_bytes(KVMESH_QUANT_INT8, 128), vecs * (128 + 4));
    /* nf4: D / 2 bytes of codes and 4 bytes per 64: 72 / 256 of bf16 */
    CU_ASSERT_EQUAL(cache_bytes(KVMESH_QUANT_NF4, 128), vecs * (64 + 8));
    CU_ASSERT_EQUAL(cache_bytes(KVMESH_QUANT_NF4, 130), vecs * (65 + 12));
}

/* a quantized one-rank cache: append, then read back through every output
 * type; the bf16 and f16 reads are the f32 read rounded */
static void
test_read_types(void)
{
    kvmesh_view_t *v = NULL;
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    onerank_t o;
    float in[3 * 2 * 70], f[3 * 2 * 70];
    uint16_t h[3 * 2 * 70];
    int q, i, bad = 0;

    kvmesh_meta_params_init(&mp);
    mp.batch_size = 1, mp.sequence_length = 8, mp.num_hidden_layers = 1;
    mp.num_heads = 2, mp.head_dim = 70;               /* nf4: two blocks */
    for (i = 0; i < 3 * 2 * 70; i++)
        in[i] = rnd() * 4.0f;
    for (q = KVMESH_QUANT_INT8; q <= KVMESH_QUANT_NF4; q++) {
        kvmesh_cache_params_init(&cp);
        cp.quant = (kvmesh_quant_t) q;
        CU_ASSERT_EQUAL_FATAL(onerank_open(&o, &mp, &cp), KVMESH_SUCCESS);
        CU_ASSERT_EQUAL(kvmesh_cache_view(o.cache, 0, &v), KVMESH_SUCCESS);
        CU_ASSERT_EQUAL(kvmesh_view_concatenate(v, KVMESH_MODE_PREFILL, 3, KVMESH_F32,
                                                in, in, NULL), KVMESH_SUCCESS);
        CU_ASSERT_EQUAL(kvmesh_view_read(v, KVMESH_VALUE, 0, 0, 3, KVMESH_F32, f, sizeof f),
                        KVMESH_SUCCESS);
        for (i = 0; i < 3 * 2 * 70; i++)   /* within the quantization error */
            bad += fabsf(f[i] - in[i]) > (q == KVMESH_QUANT_INT8 ? 4.0f / 127 : 0.6f);
        CU_ASSERT_EQUAL(kvmesh_view_read(v, KVMESH_VALUE, 0, 1, 3, KVMESH_BF16, h, sizeof h),
                        KVMESH_SUCCESS);
        for (i = 0; i < 2 * 2 * 70; i++)
            bad += h[i] != kvmesh_f32_to_bf16(f[2 * 70 + i]);
        CU_ASSERT_EQUAL(kvmesh_view_read(v, KVMESH_VALUE, 0, 0, 3, KVMESH_F16, h, sizeof h),
                        KVMESH_SUCCESS);
        for (i = 0; i < 3 * 2 * 70; i++)
            bad += h[i] != kvmesh_f32_to_f16(f[i]);
        onerank_close(&o);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* the one switch picks a path no better than asked; the tests above ran
 * each path this machine has, and say which is its best */
static void
test_paths(void)
{
    const char *best = kvm_quant_path();
    const char *names[4] = { "avx512", "avx2", "sse2", "scalar" };
    int i, rank = -1, got;

    for (i = 0; i < 4; i++)
        if (!strcmp(best, names[i]))
            rank = i;
    CU_ASSERT(rank >= 0);
    kvm_q8_path = 2;
    CU_ASSERT_STRING_EQUAL(kvm_quant_path(), "scalar");
    kvm_q8_path = 1;
    got = !strcmp(kvm_quant_path(), "sse2") || !strcmp(kvm_quant_path(), "scalar");
    CU_ASSERT(got);
    kvm_q8_path = 3;
    CU_ASSERT(strcmp(kvm_quant_path(), "avx512") != 0);
    CU_ASSERT(rank != 0 || !strcmp(kvm_quant_path(), "avx2"));
    kvm_q8_path = 0;
    CU_ASSERT_STRING_EQUAL(kvm_quant_path(), best);
    printf("\n    kernel path of this machine: %s ", best);
}

/* The public round trip reads back what the reference's codes stand for,
 * in place too; NONE copies; bad arguments are refused. */
static void
test_roundtrip(void)
{
    float x[130], y[130], z[130], sc[3];
    int code[130], i, bad = 0;

    for (i = 0; i < 130; i++)
        x[i] = (float) sin(0.37 * i) * (float) (1 + i % 7);
    CU_ASSERT_EQUAL(kvmesh_quant_roundtrip(KVMESH_QUANT_INT8, 130, x, y), KVMESH_SUCCESS);
    ref_q8(x, 130, code, &sc[0]);
    for (i = 0; i < 130; i++)
        bad += y[i] != ref_dequant(REF_Q8, code[i], sc[0]);
    CU_ASSERT_EQUAL(kvmesh_quant_roundtrip(KVMESH_QUANT_NF4, 130, x, y), KVMESH_SUCCESS);
    ref_nf4(x, 130, code, sc);
    for (i = 0; i < 130; i++)
        bad += y[i] != ref_dequant(REF_NF4, code[i], sc[i / 64]);
    memcpy(z, x, sizeof z);
    CU_ASSERT_EQUAL(kvmesh_quant_roundtrip(KVMESH_QUANT_NF4, 130, z, z), KVMESH_SUCCESS);
    bad += memcmp(z, y, sizeof z) != 0;
    CU_ASSERT_EQUAL(kvmesh_quant_roundtrip(KVMESH_QUANT_NONE, 130, x, y), KVMESH_SUCCESS);
    bad += memcmp(x, y, sizeof y) != 0;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(kvmesh_quant_roundtrip(KVMESH_QUANT_INT8, 0, x, y), KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_quant_roundtrip((kvmesh_quant_t) 7, 4, x, y), KVMESH_ERR_ARG);
}

int
add_quant_suite(void)
{
    CU_pSuite s = CU_add_suite("quantized storage", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "first use from 4 threads at once", test_threads) ||
           !CU_add_test(s, "kvmesh_quant_roundtrip against the reference", test_roundtrip) ||
           !CU_add_test(s, "kernel paths", test_paths) ||
           !CU_add_test(s, "int8 against the reference, error <= scale/2", test_int8) ||
           !CU_add_test(s, "int8 quotients near a tie", test_int8_near_ties) ||
           !CU_add_test(s, "int8 bf16 heads, every value near amax", test_int8_bf16_sweep) ||
           !CU_add_test(s, "int8 bf16 heads, every amax and its half", test_int8_bf16_halves) ||
           !CU_add_test(s, "int8 of a token's heads at once", test_int8_heads) ||
           !CU_add_test(s, "int8 runs of different lengths in one call", test_int8_runs) ||
           !CU_add_test(s, "int8 of more heads than one pass holds", test_int8_many_heads) ||
           !CU_add_test(s, "nf4 against the reference, nearest level", test_nf4) ||
           !CU_add_test(s, "nf4 ties go to the first level", test_nf4_ties) ||
           !CU_add_test(s, "nf4 on the midpoints between levels", test_nf4_midpoints) ||
           !CU_add_test(s, "memory per storage type", test_memory) ||
           !CU_add_test(s, "dequantizing reads in every type", test_read_types);
}
