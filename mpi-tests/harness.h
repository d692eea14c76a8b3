/* Shared scaffolding of the multi-rank tests: failure counting reduced to
 * rank 0 (after MPICH's test suite), and mesh enumeration. */
#ifndef KVMESH_HARNESS_H
#define KVMESH_HARNESS_H

#include <stdio.h>

#include "kvmesh.h"

extern int h_rank, h_size;

void h_init(int *argc, char ***argv);
/** Records one check; prints the first failures of this rank. */
#define H_CHECK(cond, ...) h_check((cond) != 0, __FILE__, __LINE__, __VA_ARGS__)
/** Checks that a call succeeded. */
#define H_OK(call) do { kvmesh_status_t h_ok_ = (call); \
        H_CHECK(h_ok_ == KVMESH_SUCCESS, "%s: %s", #call, kvmesh_strerror(h_ok_)); \
    } while (0)
void h_check(int ok, const char *file, int line, const char *fmt, ...);
/** Checks that \p st is \p want on every rank. */
void h_expect_all(kvmesh_status_t st, kvmesh_status_t want, const char *what);
/** Reduces the failure counts, prints the summary on rank 0, finalizes;
 *  returns the exit status. */
int h_finish(const char *name);

/** Mesh specs whose sizes multiply to \p nranks: every placement over the
 *  five axes.  Returns how many were written (at most \p max). */
int h_meshes(int nranks, char specs[][64], int max);

/** Deterministic random numbers, the same on every rank for one seed. */
uint64_t h_rand(uint64_t *state);

#endif
