/* Multi-rank test scaffolding: see harness.h. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

int h_rank, h_size;
static long h_checks, h_failures;

void
h_init(int *argc, char ***argv)
{
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &h_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &h_size);
}

void
h_check(int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    h_checks++;
    if (ok)
        return;
    if (++h_failures <= 10) {
        fprintf(stderr, "[rank %d] %s:%d: ", h_rank, file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

void
h_expect_all(kvmesh_status_t st, kvmesh_status_t want, const char *what)
{
    int v[2] = { (int) st, -(int) st };

    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    H_CHECK(v[0] == -v[1], "%s: ranks returned different statuses", what);
    H_CHECK(st == want, "%s: got \"%s\", want \"%s\"", what,
            kvmesh_strerror(st), kvmesh_strerror(want));
}

int
h_finish(const char *name)
{
    long v[2] = { h_checks, h_failures };

    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (h_rank == 0)
        printf("%s ranks=%d: %ld checks, %ld failures\n", name, h_size, v[0], v[1]);
    MPI_Finalize();
    return v[1] ? 1 : 0;
}

int
h_meshes(int nranks, char specs[][64], int max)
{
    static const char *names[5] = { "dp", "fsdp", "ep", "tp", "sp" };
    int sizes[5], count = 0, i;
    long code, total = 1;

    for (i = 0; i < 5; i++)
        total *= nranks;
    /* every 5-tuple of divisors whose product is nranks */
    for (code = 0; code < total && count < max; code++) {
        long c = code, prod = 1;
        for (i = 0; i < 5; i++) {
            sizes[i] = (int) (c % nranks) + 1;
            c /= nranks;
            prod *= sizes[i];
        }
        if (prod != nranks)
            continue;
        specs[count][0] = '\0';
        for (i = 0; i < 5; i++) {
            char part[16];
            snprintf(part, sizeof part, "%s%s=%d", i ? "," : "", names[i], sizes[i]);
            strcat(specs[count], part);
        }
        count++;
    }
    return count;
}

uint64_t
h_rand(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
