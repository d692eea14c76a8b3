/* Serial reference: see reference.h. */
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

ref_cache_t *
ref_create(int64_t L, int64_t B, int64_t S, const int64_t H[2],
           const int64_t D[2], int dtype, const int *kind,
           const int64_t *window, const int64_t *chunk)
{
    ref_cache_t *r = calloc(1, sizeof *r);
    int64_t i, l;

    r->L = L, r->B = B, r->S = S, r->dtype = dtype;
    r->H[0] = H[0], r->H[1] = H[1], r->D[0] = D[0], r->D[1] = D[1];
    r->kind = calloc((size_t) L, sizeof *r->kind);
    r->window = calloc((size_t) L, sizeof *r->window);
    r->chunk = calloc((size_t) L, sizeof *r->chunk);
    r->len = calloc((size_t) L, sizeof *r->len);
    for (l = 0; l < L; l++) {
        r->kind[l] = kind ? kind[l] : REF_FULL;
        r->window[l] = window ? window[l] : 0;
        r->chunk[l] = chunk ? chunk[l] : 0;
        r->len[l] = r->kind[l] == REF_SLIDING && r->window[l] < S ? r->window[l] : S;
    }
    r->kv = calloc((size_t) (2 * L), sizeof *r->kv);
    for (i = 0; i < 2 * L; i++)
        r->kv[i] = calloc((size_t) (B * r->len[i / 2] * H[i % 2] * D[i % 2]),
                          sizeof(double));
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
    for (i = 0; i < 2 * r->L; i++)
        free(r->kv[i]);
    free(r->kv);
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
ref_concat(ref_cache_t *r, int64_t l, int64_t n, const double *const in[2])
{
    int32_t *idx = r->indexs + l * r->B;
    int64_t b, j, h, d;
    int t;

    for (b = 0; b < r->B; b++)
        if (idx[b] + n > r->S)
            return false;
    for (t = 0; t < 2; t++)
        for (b = 0; b < r->B; b++)
            for (j = 0; j < n; j++) {
                int64_t p = idx[b] + j;
                int64_t slot = r->kind[l] == REF_SLIDING ? p % r->len[l] : p;
                for (h = 0; h < r->H[t]; h++)
                    for (d = 0; d < r->D[t]; d++)
                        *ref_at(r, l, t, b, slot, h, d) = ref_round(
                            in[t][((b * n + j) * r->H[t] + h) * r->D[t] + d],
                            r->dtype);
            }
    for (b = 0; b < r->B; b++)
        idx[b] += (int32_t) n;
    return true;
}
