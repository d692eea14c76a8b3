/* Serial reference: see reference.h. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

static void
type_params(int dt, int *prec, int *emin, double *maxv)
{
    switch (dt) {
    case REF_F16:
        *prec = 11, *emin = -14, *maxv = 65504.0;
        break;
    case REF_BF16:
        *prec = 8, *emin = -126, *maxv = ldexp(255.0, 120);   /* (2-2^-7) 2^127 */
        break;
    default:
        *prec = 24, *emin = -126, *maxv = ldexp(16777215.0, 104);
        break;
    }
}

double
ref_round(double x, int dt)
{
    int prec, emin, e;
    double maxv, ulp, q;

    if (isnan(x) || isinf(x) || x == 0.0)
        return x;
    type_params(dt, &prec, &emin, &maxv);
    (void) frexp(x, &e);              /* |x| in [2^(e-1), 2^e) */
    if (e - 1 < emin)
        e = emin + 1;                 /* subnormal: fixed quantum */
    ulp = ldexp(1.0, e - 1 - (prec - 1));
    q = nearbyint(x / ulp) * ulp;     /* default rounding mode: ties to even */
    if (fabs(q) > maxv)
        return copysign(INFINITY, x);
    return q;
}

int
ref_size(int dt)
{
    return dt == REF_F32 ? 4 : 2;
}

uint32_t
ref_encode(double v, int dt)
{
    int prec, emin, e, mbits, ebits, bias;
    double maxv, m;
    uint32_t sign, exp_field, man, exp_ones;

    type_params(dt, &prec, &emin, &maxv);
    mbits = prec - 1;
    ebits = dt == REF_F16 ? 5 : 8;
    exp_ones = (1u << ebits) - 1u;
    bias = 1 - emin;
    sign = signbit(v) ? 1u : 0u;
    v = fabs(v);
    if (isnan(v)) {                   /* the quiet NaN */
        exp_field = exp_ones;
        man = 1u << (mbits - 1);
    } else if (isinf(v)) {
        exp_field = exp_ones;
        man = 0;
    } else if (v == 0.0) {
        exp_field = 0, man = 0;
    } else {
        m = frexp(v, &e);             /* v = m 2^e, m in [0.5, 1) */
        if (e - 1 < emin) {           /* subnormal */
            exp_field = 0;
            man = (uint32_t) ldexp(v, mbits - emin);
        } else {
            exp_field = (uint32_t) (e - 1 + bias);
            man = (uint32_t) (ldexp(m, prec) - ldexp(1.0, mbits));
        }
    }
    return (sign << (ebits + mbits)) | (exp_field << mbits) | man;
}

double
ref_decode(uint32_t bits, int dt)
{
    int prec, emin, mbits, ebits, bias;
    double maxv, v;
    uint32_t exp_field, man, sign;

    type_params(dt, &prec, &emin, &maxv);
    mbits = prec - 1;
    ebits = dt == REF_F16 ? 5 : 8;
    bias = 1 - emin;
    man = bits & ((1u << mbits) - 1u);
    exp_field = (bits >> mbits) & ((1u << ebits) - 1u);
    sign = (bits >> (mbits + ebits)) & 1u;
    if (exp_field == (1u << ebits) - 1u)
        v = man ? NAN : INFINITY;
    else if (exp_field == 0)
        v = ldexp((double) man, emin - mbits);
    else
        v = ldexp((double) (man | (1u << mbits)), (int) exp_field - bias - mbits);
    return sign ? -v : v;
}

double
ref_synth(int t, int64_t l, int64_t b, int64_t p, int64_t h, int64_t d)
{
    return sin(0.001 * (double) (t * 7919 + l * 1009 + b * 101 + p * 7 + h * 3 + d));
}

bool
ref_allows(int kind, int64_t window, int64_t chunk, int64_t start, int64_t q,
           int64_t k)
{
    bool ok = start <= k && k <= q;
    if (kind == REF_SLIDING)
        ok = ok && k > q - window;
    if (kind == REF_CHUNK)
        ok = ok && k / chunk == q / chunk;
    return ok;
}

const double ref_nf4_levels[16] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
    0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0
};

/* largest |x| over the finite elements, in float */
static float
ref_amax(const float *x, int64_t n)
{
    float m = 0.0f;
    int64_t i;

    for (i = 0; i < n; i++)
        if (!isnan(x[i]) && !isinf(x[i]))
            m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* round half to even, by hand */
static float
ref_rne(float r)
{
    float f = floorf(r), frac = r - f;

    if (frac > 0.5f || (frac == 0.5f && fmodf(f, 2.0f) != 0.0f))
        f += 1.0f;
    return f;
}

void
ref_q8(const float *x, int64_t D, int *code, float *scale)
{
    float s = ref_amax(x, D) / 127.0f;
    int64_t i;

    s = s + FLT_MIN;
    for (i = 0; i < D; i++)
        code[i] = isnan(x[i]) ? 0 : isinf(x[i]) ? (x[i] < 0 ? -127 : 127)
                                                : (int) ref_rne(x[i] / s);
    *scale = s;
}

void
ref_nf4(const float *x, int64_t D, int *code, float *absmax)
{
    int64_t b, i;
    int k;

    for (b = 0; b < (D + 63) / 64; b++) {
        int64_t n = D - 64 * b < 64 ? D - 64 * b : 64;
        float a = ref_amax(x + 64 * b, n);
        absmax[b] = a;
        for (i = 64 * b; i < 64 * b + n; i++) {
            float v = a == 0.0f ? 0.0f : x[i] / a, best = INFINITY;
            if (isnan(v))
                v = 0.0f;
            v = fminf(1.0f, fmaxf(-1.0f, v));
            for (k = 0; k < 16; k++) {
                float dist = fabsf(v - (float) ref_nf4_levels[k]);
                if (dist < best)
                    best = dist, code[i] = k;
            }
        }
    }
}

float
ref_dequant(int quant, int code, float scale)
{
    return quant == REF_Q8 ? (float) code * scale
                           : (float) ref_nf4_levels[code] * scale;
}

ref_cache_t *
ref_create(int64_t L, int64_t B, int64_t S, const int64_t H[2],
           const int64_t D[2], int dtype, int quant, const int *kind,
           const int64_t *window, const int64_t *chunk, int64_t A, int64_t kblocks)
{
    ref_cache_t *r;
    int64_t i, l;

    if (L <= 0 || B <= 0 || S <= 0)
        return NULL;
    r = calloc(1, sizeof *r);
    r->L = L, r->B = B, r->S = S, r->A = A, r->dtype = dtype, r->quant = quant;
    for (i = 0; i < 2; i++)
        r->nscale[i] = quant == REF_Q8 ? 1 : quant == REF_NF4 ? (D[i] + 63) / 64 : 0;
    r->H[0] = H[0], r->H[1] = H[1], r->D[0] = D[0], r->D[1] = D[1];
    r->kind = calloc((size_t) L, sizeof *r->kind);
    r->window = calloc((size_t) L, sizeof *r->window);
    r->chunk = calloc((size_t) L, sizeof *r->chunk);
    r->len = calloc((size_t) L, sizeof *r->len);
    for (l = 0; l < L; l++) {
        r->kind[l] = kind ? kind[l] : REF_FULL;
        r->window[l] = window ? window[l] : 0;
        r->chunk[l] = chunk ? chunk[l] : 0;
        /* DESIGN §4: a SLIDING layer keeps W + A - 1 slots, at most S,
         * rounded up to whole kv-length blocks (and then at most S) */
        r->len[l] = S;
        if (r->kind[l] == REF_SLIDING && r->window[l] + A - 1 < S) {
            int64_t len = r->window[l] + A - 1;
            while (len % kblocks)
                len++;
            r->len[l] = len < S ? len : S;
        }
    }
    r->kv = calloc((size_t) (2 * L), sizeof *r->kv);
    r->code = calloc((size_t) (2 * L), sizeof *r->code);
    r->scale = calloc((size_t) (2 * L), sizeof *r->scale);
    for (i = 0; i < 2 * L; i++) {
        size_t vecs = (size_t) (B * r->len[i / 2] * H[i % 2]);
        r->kv[i] = calloc(vecs * (size_t) D[i % 2], sizeof(double));
        r->code[i] = calloc(vecs * (size_t) D[i % 2], sizeof(int));
        r->scale[i] = calloc(vecs * (size_t) (r->nscale[i % 2] + 1), sizeof(float));
    }
    r->indexs = calloc((size_t) (L * B), sizeof(int32_t));
    r->starts = calloc((size_t) (L * B), sizeof(int32_t));
    return r;
}

void
ref_free(ref_cache_t *r)
{
    int64_t i;

    if (!r)
        return;
    for (i = 0; i < 2 * r->L; i++) {
        free(r->kv[i]);
        free(r->code[i]);
        free(r->scale[i]);
    }
    free(r->kv);
    free(r->code);
    free(r->scale);
    free(r->indexs);
    free(r->starts);
    free(r->kind);
    free(r->window);
    free(r->chunk);
    free(r->len);
    free(r);
}

double *
ref_at(ref_cache_t *r, int64_t l, int t, int64_t b, int64_t s, int64_t h,
       int64_t d)
{
    return &r->kv[2 * l + t][((b * r->len[l] + s) * r->H[t] + h) * r->D[t] + d];
}

int64_t
ref_slot_position(const ref_cache_t *r, int64_t l, int64_t b, int64_t slot)
{
    int64_t L = r->indexs[l * r->B + b], p;

    if (r->kind[l] != REF_SLIDING)
        return slot < L ? slot : -1;
    /* the newest position written so far that maps to this slot */
    for (p = L - 1; p >= 0 && p >= L - r->len[l]; p--)
        if (p % r->len[l] == slot)
            return p;
    return -1;
}

bool
ref_slot_visible(const ref_cache_t *r, int64_t l, int64_t b, int64_t q,
                 int64_t slot)
{
    int64_t k = ref_slot_position(r, l, b, slot);

    return k >= 0 && ref_allows(r->kind[l], r->window[l], r->chunk[l],
                                r->starts[l * r->B + b], q, k);
}

bool
ref_visible(const ref_cache_t *r, int64_t l, int64_t b, int64_t q, int64_t k)
{
    return k < r->indexs[l * r->B + b] &&
           ref_allows(r->kind[l], r->window[l], r->chunk[l], r->starts[l * r->B + b],
                      q, k);
}

int
ref_concat(ref_cache_t *r, int64_t l, int64_t n, const double *const in[2])
{
    int32_t *idx = r->indexs + l * r->B;
    int64_t b, j, h, d;
    int t;

    if (n > r->A)
        return REF_TOO_LONG;
    for (b = 0; b < r->B; b++)
        if (idx[b] + n > r->S)
            return REF_CAPACITY;
    for (t = 0; t < 2; t++)
        for (b = 0; b < r->B; b++)
            for (j = 0; j < n; j++) {
                int64_t p = idx[b] + j;
                int64_t slot = r->kind[l] == REF_SLIDING ? p % r->len[l] : p;
                for (h = 0; h < r->H[t]; h++) {
                    const double *x = &in[t][((b * n + j) * r->H[t] + h) * r->D[t]];
                    int64_t vec = (b * r->len[l] + slot) * r->H[t] + h;
                    int *code = &r->code[2 * l + t][vec * r->D[t]];
                    float *sc = &r->scale[2 * l + t][vec * r->nscale[t]];
                    float xf[1024];
                    if (r->quant == REF_QNONE) {
                        for (d = 0; d < r->D[t]; d++)
                            *ref_at(r, l, t, b, slot, h, d) = ref_round(x[d], r->dtype);
                        continue;
                    }
                    for (d = 0; d < r->D[t]; d++)
                        xf[d] = (float) x[d];
                    if (r->quant == REF_Q8)
                        ref_q8(xf, r->D[t], code, sc);
                    else
                        ref_nf4(xf, r->D[t], code, sc);
                    for (d = 0; d < r->D[t]; d++)
                        *ref_at(r, l, t, b, slot, h, d) = ref_dequant(
                            r->quant, code[d], sc[r->quant == REF_Q8 ? 0 : d / 64]);
                }
            }
    for (b = 0; b < r->B; b++)
        idx[b] += (int32_t) n;
    return REF_OK;
}
