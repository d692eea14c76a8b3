/* Element types f32 / f16 / bf16 and their round-to-nearest-even
 * conversions.  Bit manipulation only: no dependence on the compiler's
 * half-precision support or on the floating-point environment. */
#include <string.h>

#include "dtype.h"

static inline uint32_t
f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float
bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

size_t
kvmesh_dtype_size(kvmesh_dtype_t dtype)
{
    return kvm_dtype_size(dtype);
}

static inline uint16_t
to_bf16(float x)
{
    uint32_t u = f32_bits(x);

    if ((u & 0x7fffffffu) > 0x7f800000u)       /* NaN: keep sign, make quiet */
        return (uint16_t) ((u >> 16) | 0x0040u);
    /* adding 0x7fff (+1 when the kept part is odd) rounds half to even; a
     * carry out of the mantissa correctly bumps the exponent, up to inf */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t) (u >> 16);
}

static inline float
from_bf16(uint16_t h)
{
    return bits_f32((uint32_t) h << 16);
}

/* m >> shift rounded half to even; 1 <= shift <= 31 */
static inline uint32_t
rne_shift(uint32_t m, unsigned shift)
{
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);

    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return q;
}

static inline uint16_t
to_f16(float x)
{
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t) ((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    uint32_t e = a >> 23, m = a & 0x7fffffu;

    if (a >= 0x7f800000u)                       /* inf, NaN (quiet) */
        return (uint16_t) (sign | 0x7c00u |
                           (a > 0x7f800000u ? 0x200u | (m >> 13) : 0u));
    if (a >= 0x477ff000u)                       /* >= 65520 rounds to inf */
        return (uint16_t) (sign | 0x7c00u);
    if (a < 0x38800000u) {                      /* below 2^-14: subnormal */
        uint32_t shift;
        if (e == 0)                             /* f32 zero or subnormal */
            return sign;
        shift = 126u - e;                       /* value = (m|2^23) 2^-24 2^-shift */
        if (shift > 24u)
            return sign;
        return (uint16_t) (sign | rne_shift(m | 0x800000u, shift));
    }
    /* normal: rebias the exponent, round 23 mantissa bits to 10; a carry
     * moves into the exponent as it should */
    return (uint16_t) (sign + rne_shift(((e - 112u) << 23) | m, 13));
}

static inline float
from_f16(uint16_t h)
{
    uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;

    if (e == 0x1fu)
        return bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    if (e == 0) {
        if (m == 0)
            return bits_f32(sign);
        e = 113u;                               /* normalise the subnormal */
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        m &= 0x3ffu;
        return bits_f32(sign | (e << 23) | (m << 13));
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* The exported conversions wrap the inline ones: a call from inside the
 * library to an exported function goes through the PLT and cannot be
 * inlined, which made bulk conversion several times slower. */
uint16_t kvmesh_f32_to_bf16(float x) { return to_bf16(x); }
float kvmesh_bf16_to_f32(uint16_t h) { return from_bf16(h); }
uint16_t kvmesh_f32_to_f16(float x) { return to_f16(x); }
float kvmesh_f16_to_f32(uint16_t h) { return from_f16(h); }

kvmesh_status_t
kvmesh_convert(void *dst, kvmesh_dtype_t dt, const void *src,
               kvmesh_dtype_t st, size_t count)
{
    if (kvm_dtype_size(dt) == 0 || kvm_dtype_size(st) == 0 ||
        (count && (!dst || !src)))
        return KVMESH_ERR_ARG;
    kvm_convert(dst, dt, src, st, count);
    return KVMESH_SUCCESS;
}

void
kvm_convert(void *dst, kvmesh_dtype_t dt, const void *src, kvmesh_dtype_t st,
            size_t count)
{
    size_t i;

    if (dt == st) {
        memcpy(dst, src, count * kvm_dtype_size(dt));
        return;
    }
    if (st == KVMESH_F32) {
        const float *s = src;
        uint16_t *d = dst;
        if (dt == KVMESH_BF16)
            for (i = 0; i < count; i++) d[i] = to_bf16(s[i]);
        else
            for (i = 0; i < count; i++) d[i] = to_f16(s[i]);
        return;
    }
    if (dt == KVMESH_F32) {
        const uint16_t *s = src;
        float *d = dst;
        if (st == KVMESH_BF16)
            for (i = 0; i < count; i++) d[i] = from_bf16(s[i]);
        else
            for (i = 0; i < count; i++) d[i] = from_f16(s[i]);
        return;
    }
    {   /* f16 <-> bf16 through f32: exact widening, one rounding */
        const uint16_t *s = src;
        uint16_t *d = dst;
        if (dt == KVMESH_BF16)
            for (i = 0; i < count; i++)
                d[i] = to_bf16(from_f16(s[i]));
        else
            for (i = 0; i < count; i++)
                d[i] = to_f16(from_bf16(s[i]));
    }
}
