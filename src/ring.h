/* Sliding-window layers keep the last W positions of each row in a ring:
 * position p lives in slot p mod W, so an append costs O(n), never O(W).
 * These helpers translate between slots and positions for a row that has
 * seen L tokens. */
#ifndef KVMESH_RING_H
#define KVMESH_RING_H

#include <stdint.h>

/** Absolute position held by ring slot \p slot (0 <= slot < W) after L
 *  tokens, or -1 when the slot holds none yet. */
static inline int64_t
kvm_ring_position(int64_t W, int64_t L, int64_t slot)
{
    if (L < W)
        return slot < L ? slot : -1;
    /* the one position in [L - W, L) congruent to slot mod W */
    return L - W + ((slot - (L - W) % W) % W + W) % W;
}

/** Slot holding canonical (oldest-first) index i of a window of W after L
 *  tokens, or -1 where the canonical array is zero-filled (L < W, i >= L). */
static inline int64_t
kvm_ring_canonical_slot(int64_t W, int64_t L, int64_t i)
{
    if (L < W)
        return i < L ? i : -1;
    return (L - W + i) % W;
}

#endif
