/* int8 and nf4 storage of head vectors: quantize on write, dequantize on
 * read, one vector at a time so an append touches only what it writes.
 * This file holds the API, the int8 scalar reference and the choice of
 * kernels; nf4 is in quant_nf4.c, the kernels of each instruction set in
 * quant_sse2.c, quant_avx2.c and quant_avx512.c, behind one table
 * (quant_kernels.h) chosen once for the CPU.
 *
 * Every path is bit-exact with DESIGN §6 as the scalar code states it.  The
 * largest finite magnitude (the scale's source) is a max reduction, which
 * compilers do not vectorize without fast-math, so it has SSE2, AVX2 and
 * AVX-512 versions (the last two as integer maxima of the bit patterns);
 * the int8 encoder multiplies by the reciprocal of the scale and divides
 * exactly only where the two could round apart (f32 input), or, for bf16
 * input, by a reciprocal moved so that they cannot, scale and reciprocal
 * taken from a table (kvm_q8_bf16_scale, AVX-512 and AVX2).  NaN and
 * infinities take a separate pass that runs only when a vector holds one. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "quant_kernels.h"

int kvm_q8_path;

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

kvmesh_status_t
kvmesh_quant_roundtrip(kvmesh_quant_t q, int64_t D, const float *in, float *out)
{
    const int64_t cb = (kvm_quant_code_bytes(q, D) + 3) / 4 * 4, ns = kvm_quant_scales(q, D);
    char *codes;
    float *scales;

    if (!in || !out || D <= 0 || (q != KVMESH_QUANT_NONE && q != KVMESH_QUANT_INT8 &&
                                  q != KVMESH_QUANT_NF4))
        return KVMESH_ERR_ARG;
    if (q == KVMESH_QUANT_NONE) {
        memmove(out, in, (size_t) D * sizeof *out);
        return KVMESH_SUCCESS;
    }
    codes = malloc((size_t) cb + (size_t) ns * sizeof *scales);
    if (!codes)
        return KVMESH_ERR_NOMEM;
    scales = (float *) (void *) (codes + cb);
    if (q == KVMESH_QUANT_INT8) {
        kvm_q8_encode(in, D, (int8_t *) codes, scales);
        kvm_q8_decode((const int8_t *) codes, scales[0], D, out);
    } else {
        kvm_nf4_encode(in, D, (uint8_t *) codes, scales);
        kvm_nf4_decode((const uint8_t *) codes, scales, 0, D, out);
    }
    free(codes);
    return KVMESH_SUCCESS;
}

/* ---- the scalar reference and the choice of kernels ----------------- */

float
kvm_amax_scalar(const float *x, int64_t n, int *special)
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

static const kvm_quant_kernels_t scalar = { "scalar", kvm_amax_scalar, NULL, NULL, NULL };

/* 3: AVX-512 (F, BW, DQ, VL, VBMI), 2: AVX2 and FMA, 1: SSE2, 0: scalar */
static int
cpu_level(void)
{
    int level = 0;

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
    return level;
}

const kvm_quant_kernels_t *
kvm_quant_kernels(void)
{
    static const int cap[4] = { 3, 1, 0, 2 };     /* by kvm_q8_path, quant.h */
    /* threads that find it unset all compute the same value */
    static _Atomic int detected = -1;
    int level = atomic_load_explicit(&detected, memory_order_relaxed);

    if (level < 0) {
        level = cpu_level();
        atomic_store_explicit(&detected, level, memory_order_relaxed);
    }
    if (kvm_q8_path > 0 && kvm_q8_path < 4 && cap[kvm_q8_path] < level)
        level = cap[kvm_q8_path];
    switch (level) {
#if defined(KVM_X86)
    case 3: return &kvm_quant_avx512;
    case 2: return &kvm_quant_avx2;
#endif
#if defined(__SSE2__)
    case 1: return &kvm_quant_sse2;
#endif
    default: return &scalar;
    }
}

const char *
kvm_quant_path(void)
{
    return kvm_quant_kernels()->name;
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
uint32_t kvm_q8_tab_s[128], kvm_q8_tab_c[128];
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
        kvm_q8_tab_s[m] = sb;
        kvm_q8_tab_c[m] = cb;
    }
}

void
kvm_q8_tab_ready(void)
{
    (void) pthread_once(&q8_tab_once, q8_tab_init);
}
#endif

void
kvm_q8_encode(const float *x, int64_t D, int8_t *q, float *scale)
{
    const kvm_quant_kernels_t *k = kvm_quant_kernels();
    int special;
    float s = k->amax(x, D, &special) / 127.0f + FLT_MIN;
    int64_t i = k->q8_codes ? k->q8_codes(x, D, s, q) : 0;

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

void
kvm_q8_encode_runs(const kvm_q8_run_t *run, int n, kvmesh_dtype_t st, float *tmp)
{
    const size_t es = kvm_dtype_size(st);
    int64_t h;
    const kvm_quant_kernels_t *k = kvm_quant_kernels();
    int r, vec = k->q8_runs && (st == KVMESH_BF16 || st == KVMESH_F32);

    for (r = 0; vec && r < n; r++)
        vec = run[r].D % 32 == 0;
    if (vec) {
#if defined(KVM_X86)
        kvm_q8_tab_ready();
#endif
        if (k->q8_runs(run, n, st))
            return;
    }
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
