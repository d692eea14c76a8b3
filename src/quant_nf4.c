/* nf4 storage (DESIGN §6): blocks of 64, the absmax of each, two 4-bit
 * codes a byte, each the nearest of QLoRA's 16 levels (the first on a tie),
 * decoded by exact table lookup.  The scalar rule is here; the kernel
 * table's nf4_codes (AVX2) codes most lanes, and hands back the ones near a
 * midpoint between levels. */
#include <math.h>
#include <pthread.h>

#include "quant_kernels.h"

const float kvm_nf4_levels[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
    0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f
};

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

/* midpoints between neighbouring levels, rounded to float: the one below
 * and above each code (+-inf at the ends), for the vector kernels */
static float nf4_mid_lo[16], nf4_mid_hi[16];

static void
nf4_init(void)
{
    int k;

    nf4_grid_init();
    for (k = 0; k < 16; k++) {
        nf4_mid_lo[k] = k == 0 ? -INFINITY
            : (float) (((double) kvm_nf4_levels[k - 1] + kvm_nf4_levels[k]) / 2);
        nf4_mid_hi[k] = k == 15 ? INFINITY
            : (float) (((double) kvm_nf4_levels[k] + kvm_nf4_levels[k + 1]) / 2);
    }
}

void
kvm_nf4_encode(const float *x, int64_t D, uint8_t *codes, float *absmax)
{
    float n[KVM_NF4_BLOCK];
    unsigned char code[KVM_NF4_BLOCK + 1];
    const kvm_quant_kernels_t *k = kvm_quant_kernels();
    int64_t b, i, done;
    int special;

    (void) pthread_once(&nf4_once, nf4_init);
    for (b = 0; b * KVM_NF4_BLOCK < D; b++) {
        int64_t lo = b * KVM_NF4_BLOCK;
        int64_t hi = lo + KVM_NF4_BLOCK < D ? lo + KVM_NF4_BLOCK : D;
        float a = k->amax(x + lo, hi - lo, &special);

        absmax[b] = a;
        /* the divisions in a loop of their own, which vectorizes */
        if (a > 0.0f)
            for (i = lo; i < hi; i++)
                n[i - lo] = x[i] / a;
        else
            for (i = lo; i < hi; i++)
                n[i - lo] = 0.0f;
        done = 0;
        if (k->nf4_codes && !special) { /* finite: |n| <= 1, no NaN */
            done = (hi - lo) & ~(int64_t) 7;
            if (k->nf4_codes(n, done, code, nf4_mid_lo, nf4_mid_hi))
                for (i = 0; i < done; i++)
                    if (code[i] == KVM_NF4_RECHECK)
                        code[i] = (unsigned char) nf4_code(n[i]);
        }
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
