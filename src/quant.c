/* int8 and nf4 storage of head vectors: quantize on write, dequantize on
 * read, one vector at a time so an append touches only what it writes. */
#include <float.h>
#include <math.h>

#include "quant.h"

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

static float
finite_amax(const float *x, int64_t n)
{
    float amax = 0.0f;
    int64_t i;

    for (i = 0; i < n; i++)
        if (isfinite(x[i]) && fabsf(x[i]) > amax)
            amax = fabsf(x[i]);
    return amax;
}

void
kvm_q8_encode(const float *x, int64_t D, int8_t *q, float *scale)
{
    float s = finite_amax(x, D) / 127.0f + FLT_MIN;
    int64_t i;

    for (i = 0; i < D; i++) {
        float r;
        if (isnan(x[i]))
            r = 0.0f;
        else if (isinf(x[i]))
            r = x[i] > 0 ? 127.0f : -127.0f;
        else
            r = nearbyintf(x[i] / s);   /* default rounding: half to even */
        q[i] = (int8_t) r;
    }
    *scale = s;
}

void
kvm_q8_decode(const int8_t *q, float scale, int64_t D, float *out)
{
    int64_t i;

    for (i = 0; i < D; i++)
        out[i] = (float) q[i] * scale;
}

static unsigned
nf4_code(float n)
{
    unsigned best = 0, i;
    float best_d;

    if (isnan(n))
        return 7;
    n = n > 1.0f ? 1.0f : n < -1.0f ? -1.0f : n;
    best_d = fabsf(n - kvm_nf4_levels[0]);
    for (i = 1; i < 16; i++) {
        float d = fabsf(n - kvm_nf4_levels[i]);
        if (d < best_d) {           /* strict: the first level wins a tie */
            best_d = d;
            best = i;
        }
    }
    return best;
}

void
kvm_nf4_encode(const float *x, int64_t D, uint8_t *codes, float *absmax)
{
    int64_t b, i;

    for (i = 0; i < (D + 1) / 2; i++)
        codes[i] = 0;
    for (b = 0; b * KVM_NF4_BLOCK < D; b++) {
        int64_t lo = b * KVM_NF4_BLOCK;
        int64_t hi = lo + KVM_NF4_BLOCK < D ? lo + KVM_NF4_BLOCK : D;
        float a = finite_amax(x + lo, hi - lo);

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
