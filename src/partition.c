/* The partition manager: maps logical axes (batch, lengths, heads, head
 * dims) to tuples of mesh axes per mode, with eformer's defaults, decode
 * overrides and the divisibility correction (DESIGN §2). */
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "mesh.h"

static void
rule_set(kvmesh_rule_t *r, int naxes, const kvmesh_axis_t *axes)
{
    r->set = true;
    r->naxes = naxes;
    if (naxes)
        memcpy(r->axes, axes, (size_t) naxes * sizeof *axes);
}

kvmesh_status_t
kvmesh_partition_create(const kvmesh_mesh_t *mesh, kvmesh_partition_t **out)
{
    static const kvmesh_axis_t batch[2] = { KVMESH_AXIS_FSDP, KVMESH_AXIS_DP };
    static const kvmesh_axis_t sp = KVMESH_AXIS_SP, tp = KVMESH_AXIS_TP;
    kvmesh_partition_t *p;
    kvmesh_rule_t *std;

    if (!mesh || !out)
        return KVMESH_ERR_ARG;
    p = calloc(1, sizeof *p);
    if (!p)
        return KVMESH_ERR_NOMEM;
    p->mesh = mesh;
    std = p->rules[KVMESH_RULES_STANDARD];
    rule_set(&std[KVMESH_BATCH], 2, batch);
    rule_set(&std[KVMESH_QUERY_LENGTH], 1, &sp);
    rule_set(&std[KVMESH_KV_LENGTH], 1, &sp);
    rule_set(&std[KVMESH_HEAD], 1, &tp);
    rule_set(&std[KVMESH_KV_HEAD], 1, &tp);
    rule_set(&std[KVMESH_HEAD_DIM], 0, NULL);
    rule_set(&std[KVMESH_KV_HEAD_DIM], 0, NULL);
    *out = p;
    return KVMESH_SUCCESS;
}

void
kvmesh_partition_free(kvmesh_partition_t **part)
{
    if (part) {
        free(*part);
        *part = NULL;
    }
}

kvmesh_status_t
kvmesh_partition_set_rule(kvmesh_partition_t *part, kvmesh_rules_t table,
                          kvmesh_logical_t logical, const kvmesh_axis_t *axes,
                          int naxes)
{
    unsigned used = 0;
    int i;

    if (!part || (table != KVMESH_RULES_STANDARD && table != KVMESH_RULES_DECODE)
        || logical >= KVMESH_NLOGICAL || naxes < 0 || naxes > KVMESH_NAXES
        || (naxes && !axes))
        return KVMESH_ERR_ARG;
    for (i = 0; i < naxes; i++) {
        if (axes[i] >= KVMESH_NAXES || (used & (1u << axes[i])))
            return KVMESH_ERR_ARG;
        used |= 1u << axes[i];
    }
    rule_set(&part->rules[table][logical], naxes, axes);
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_partition_unset_decode_rule(kvmesh_partition_t *part,
                                   kvmesh_logical_t logical)
{
    if (!part || logical >= KVMESH_NLOGICAL)
        return KVMESH_ERR_ARG;
    part->rules[KVMESH_RULES_DECODE][logical].set = false;
    return KVMESH_SUCCESS;
}

const kvmesh_rule_t *
kvm_rules_pick(const kvmesh_rule_t rules[2][KVMESH_NLOGICAL], kvmesh_mode_t mode,
               kvmesh_logical_t logical)
{
    const kvmesh_rule_t *dec = &rules[KVMESH_RULES_DECODE][logical];

    if (mode != KVMESH_MODE_PREFILL && dec->set)
        return dec;
    return &rules[KVMESH_RULES_STANDARD][logical];
}

kvmesh_status_t
kvmesh_partition_resolve(const kvmesh_partition_t *part, kvmesh_mode_t mode,
                         kvmesh_logical_t logical, int64_t size,
                         const int coords[KVMESH_NAXES], kvmesh_dim_t *dim)
{
    kvm_layout_t lo;
    int a;

    if (!part || !dim || mode >= KVMESH_NMODES || logical >= KVMESH_NLOGICAL
        || size <= 0)
        return KVMESH_ERR_ARG;
    for (a = 0; coords && a < KVMESH_NAXES; a++)
        if (coords[a] < 0 || coords[a] >= part->mesh->size[a])
            return KVMESH_ERR_ARG;
    kvm_layout_of(&lo, part, 1, 1, NULL, NULL);
    kvm_layout_dim(&lo, mode, logical, size, coords ? coords : part->mesh->coord, dim);
    return KVMESH_SUCCESS;
}

kvmesh_status_t
kvmesh_partition_owners(const kvmesh_partition_t *part, kvmesh_mode_t mode,
                        int ndims, const kvmesh_logical_t *logical,
                        const int64_t *shape, const int64_t *index,
                        int *ranks, int max_ranks, int *nranks)
{
    kvm_layout_t lo;
    int r, d, count = 0;

    if (!part || ndims <= 0 || !logical || !shape || !index || !ranks || !nranks)
        return KVMESH_ERR_ARG;
    kvm_layout_of(&lo, part, 1, 1, NULL, NULL);
    for (d = 0; d < ndims; d++)
        if (shape[d] <= 0 || index[d] < 0 || index[d] >= shape[d])
            return KVMESH_ERR_ARG;
    for (r = 0; r < part->mesh->nranks; r++) {
        int coords[KVMESH_NAXES];
        bool owns = true;

        kvm_layout_coords(&lo, r, coords);
        for (d = 0; d < ndims && owns; d++) {
            kvmesh_dim_t dim;
            if (logical[d] >= KVMESH_NLOGICAL || mode >= KVMESH_NMODES)
                return KVMESH_ERR_ARG;
            kvm_layout_dim(&lo, mode, logical[d], shape[d], coords, &dim);
            owns = index[d] >= dim.offset && index[d] < dim.offset + dim.local_size;
        }
        if (owns && count == max_ranks)
            return KVMESH_ERR_ARG;
        if (owns)
            ranks[count++] = r;
    }
    *nranks = count;
    return KVMESH_SUCCESS;
}
