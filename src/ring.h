/* Sliding-window layers keep their positions in a ring of R slots:
 * position p lives in slot p mod R, so an append costs O(n), never O(R).
 * R >= W + A - 1 (window, largest append; src/cache.c), so the ring holds
 * more than the window.  These helpers translate between slots and
 * positions for a row that has seen L tokens. */
#ifndef KVMESH_RING_H
#define KVMESH_RING_H

#include <stdint.h>

/** Absolute position held by ring slot \p slot (0 <= slot < R) after L
 *  tokens, or -1 when the slot holds none yet. */
static inline int64_t
kvm_ring_position(int64_t R, int64_t L, int64_t slot)
{
    if (L < R)
        return slot < L ? slot : -1;
    /* the one position in [L - R, L) congruent to slot mod R */
    return L - R + ((slot - (L - R) % R) % R + R) % R;
}

/** Slot holding index i (0 <= i < W) of the canonical export of a window
 *  of W, EasyDeL's order: the last min(W, L) positions, oldest first,
 *  then zeros.  -1 where the export is zero (L < W, i >= L). */
static inline int64_t
kvm_ring_canonical_slot(int64_t R, int64_t W, int64_t L, int64_t i)
{
    if (L < W)
        return i < L ? i % R : -1;
    return (L - W + i) % R;
}

#endif
