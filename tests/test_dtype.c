/* Status strings and element types: exhaustive over every bf16 and f16
 * bit pattern, and rounding of random and adversarial f32 values, against
 * the reference's own rounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvmesh.h"
#include "reference.h"
#include "status.h"
#include "suites.h"

static float
bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void
test_strerror(void)
{
    kvmesh_status_t s;
    const char *t;

    for (s = KVMESH_SUCCESS; s <= KVMESH_ERR_NOMEM; s++) {
        t = kvmesh_strerror(s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT(strlen(t) > 0);
        CU_ASSERT_STRING_NOT_EQUAL(t, "unknown status");
    }
    CU_ASSERT_STRING_EQUAL(kvmesh_strerror((kvmesh_status_t) 777), "unknown status");
    t = kvmesh_strerror((kvmesh_status_t) (KVMESH_ERR_MPI + MPI_ERR_COMM));
    CU_ASSERT(strstr(t, "MPI error") != NULL);
    CU_ASSERT(strlen(t) > strlen("MPI error 5: "));
    CU_ASSERT_STRING_NOT_EQUAL(kvmesh_strerror(KVMESH_ERR_CAPACITY),
                               kvmesh_strerror(KVMESH_ERR_MISMATCH));
}

/* the agreement helper on one rank: extreme values agree with themselves,
 * a local error wins, too many values are an argument error */
static void
test_agree(void)
{
    int64_t v[3] = { INT64_MIN, INT64_MAX, -1 };

    CU_ASSERT_EQUAL(kvm_agree_same(MPI_COMM_SELF, KVMESH_SUCCESS, v, 3), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvm_agree_same(MPI_COMM_SELF, KVMESH_ERR_META, v, 3), KVMESH_ERR_META);
    CU_ASSERT_EQUAL(kvm_agree_same(MPI_COMM_SELF, KVMESH_SUCCESS, v, KVMESH_AGREE_MAX + 1),
                    KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvm_agree(MPI_COMM_SELF, KVMESH_ERR_CAPACITY), KVMESH_ERR_CAPACITY);
    CU_ASSERT_NOT_EQUAL(kvm_hash(0, "a", 1), kvm_hash(0, "b", 1));
}

/* every 16-bit pattern: decode as the reference does; encode(decode(x))
 * gives x back except that NaNs come back as (quiet) NaNs */
static void
exhaustive(int dt)
{
    uint32_t u;
    long bad_decode = 0, bad_round_trip = 0, bad_nan = 0;

    for (u = 0; u < 65536; u++) {
        float f = dt == REF_BF16 ? kvmesh_bf16_to_f32((uint16_t) u)
                                 : kvmesh_f16_to_f32((uint16_t) u);
        double want = ref_decode(u, dt);
        uint16_t back = dt == REF_BF16 ? kvmesh_f32_to_bf16(f) : kvmesh_f32_to_f16(f);

        if (isnan(want)) {
            bad_nan += !isnan(f) || !isnan(dt == REF_BF16 ? kvmesh_bf16_to_f32(back)
                                                          : kvmesh_f16_to_f32(back));
            continue;
        }
        bad_decode += (double) f != want || !signbit(f) != !signbit(want);
        bad_round_trip += back != u;
    }
    CU_ASSERT_EQUAL(bad_decode, 0);
    CU_ASSERT_EQUAL(bad_round_trip, 0);
    CU_ASSERT_EQUAL(bad_nan, 0);
}

static void test_bf16_exhaustive(void) { exhaustive(REF_BF16); }
static void test_f16_exhaustive(void) { exhaustive(REF_F16); }

/* f32 -> 16-bit rounding against ref_round on random bit patterns, on the
 * halfway points between neighbouring 16-bit values, and on edge values */
static void
rounding(int dt)
{
    uint64_t s = 12345;
    long i, bad = 0;
    uint32_t u;

    for (i = 0; i < 2000000; i++) {
        float f;
        double want, got;
        uint16_t h;

        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        u = (uint32_t) (s >> 32);
        if (i % 4 == 1)        /* exact halfway between two 16-bit values */
            u = dt == REF_BF16 ? (u & 0xffff0000u) | 0x8000u
                               : (u & 0xffffe000u) | 0x1000u;
        if (i % 4 == 2)        /* small magnitudes: f16 subnormals, underflow */
            u = (u & 0x80000000u) | (0x30000000u + (u & 0x0fffffffu));
        f = bits_to_f32(u);
        if (isnan(f))
            continue;
        want = ref_round((double) f, dt);
        h = dt == REF_BF16 ? kvmesh_f32_to_bf16(f) : kvmesh_f32_to_f16(f);
        got = ref_decode(h, dt);
        bad += got != want || !signbit(got) != !signbit(want);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_bf16_rounding(void) { rounding(REF_BF16); }
static void test_f16_rounding(void) { rounding(REF_F16); }

static void
test_specials(void)
{
    /* named edge values */
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(65519.0f), 0x7bff);
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(65520.0f), 0x7c00);
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(-INFINITY), 0xfc00);
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);   /* tie to 0 */
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(ldexpf(3.0f, -26)), 0x0001);
    CU_ASSERT_EQUAL(kvmesh_f32_to_f16(-0.0f), 0x8000);
    CU_ASSERT_EQUAL(kvmesh_f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(kvmesh_f32_to_bf16(bits_to_f32(0x3f808000u)), 0x3f80); /* tie even */
    CU_ASSERT_EQUAL(kvmesh_f32_to_bf16(bits_to_f32(0x3f818000u)), 0x3f82); /* tie up */
    CU_ASSERT_EQUAL(kvmesh_f32_to_bf16(bits_to_f32(0x7f7fffffu)), 0x7f80); /* to inf */
    CU_ASSERT_EQUAL(kvmesh_f32_to_bf16(INFINITY), 0x7f80);
    CU_ASSERT(isnan(kvmesh_bf16_to_f32(kvmesh_f32_to_bf16(NAN))));
    CU_ASSERT(isnan(kvmesh_f16_to_f32(kvmesh_f32_to_f16(NAN))));
    /* a signalling NaN whose payload sits in the low bits stays a NaN */
    CU_ASSERT(isnan(kvmesh_bf16_to_f32(kvmesh_f32_to_bf16(bits_to_f32(0x7f800001u)))));
    CU_ASSERT(isnan(kvmesh_f16_to_f32(kvmesh_f32_to_f16(bits_to_f32(0x7f800001u)))));
    CU_ASSERT_EQUAL(kvmesh_dtype_size(KVMESH_F32), 4);
    CU_ASSERT_EQUAL(kvmesh_dtype_size(KVMESH_BF16), 2);
    CU_ASSERT_EQUAL(kvmesh_dtype_size((kvmesh_dtype_t) 9), 0);
}

static void
test_bulk(void)
{
    enum { N = 4099 };
    float *src = malloc(N * sizeof *src), *back = malloc(N * sizeof *back);
    uint16_t *h = malloc(N * sizeof *h), *h2 = malloc(N * sizeof *h2);
    int i, dt, bad = 0;

    for (i = 0; i < N; i++)
        src[i] = (float) sin(i * 0.37) * (float) (1 << (i % 20));
    for (dt = KVMESH_F16; dt <= KVMESH_BF16; dt++) {
        CU_ASSERT_EQUAL(kvmesh_convert(h, (kvmesh_dtype_t) dt, src, KVMESH_F32, N),
                        KVMESH_SUCCESS);
        for (i = 0; i < N; i++)
            bad += h[i] != (dt == KVMESH_BF16 ? kvmesh_f32_to_bf16(src[i])
                                              : kvmesh_f32_to_f16(src[i]));
        CU_ASSERT_EQUAL(kvmesh_convert(back, KVMESH_F32, h, (kvmesh_dtype_t) dt, N),
                        KVMESH_SUCCESS);
        for (i = 0; i < N; i++)
            bad += back[i] != (dt == KVMESH_BF16 ? kvmesh_bf16_to_f32(h[i])
                                                 : kvmesh_f16_to_f32(h[i]));
    }
    /* bf16 -> f16 rounds once, like going through the exact f32 value */
    CU_ASSERT_EQUAL(kvmesh_convert(h, KVMESH_BF16, src, KVMESH_F32, N), KVMESH_SUCCESS);
    CU_ASSERT_EQUAL(kvmesh_convert(h2, KVMESH_F16, h, KVMESH_BF16, N), KVMESH_SUCCESS);
    for (i = 0; i < N; i++)
        bad += ref_decode(h2[i], REF_F16) !=
               ref_round(ref_decode(h[i], REF_BF16), REF_F16);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(kvmesh_convert(h, (kvmesh_dtype_t) 7, src, KVMESH_F32, 1),
                    KVMESH_ERR_ARG);
    CU_ASSERT_EQUAL(kvmesh_convert(NULL, KVMESH_F16, src, KVMESH_F32, 1), KVMESH_ERR_ARG);
    free(src), free(back), free(h), free(h2);
}

int
add_dtype_suite(void)
{
    CU_pSuite s = CU_add_suite("status and dtype", NULL, NULL);
    if (!s)
        return 1;
    return !CU_add_test(s, "strerror", test_strerror) ||
           !CU_add_test(s, "agreement helper", test_agree) ||
           !CU_add_test(s, "bf16 exhaustive", test_bf16_exhaustive) ||
           !CU_add_test(s, "f16 exhaustive", test_f16_exhaustive) ||
           !CU_add_test(s, "bf16 rounding of f32", test_bf16_rounding) ||
           !CU_add_test(s, "f16 rounding of f32", test_f16_rounding) ||
           !CU_add_test(s, "special values", test_specials) ||
           !CU_add_test(s, "bulk convert", test_bulk);
}
