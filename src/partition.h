/* Internal view of the partition manager. */
#ifndef KVMESH_PARTITION_H
#define KVMESH_PARTITION_H

#include "kvmesh.h"

typedef struct {
    bool set;                       /* decode table: rule present */
    int naxes;
    kvmesh_axis_t axes[KVMESH_NAXES];
} kvmesh_rule_t;

struct kvmesh_partition {
    const kvmesh_mesh_t *mesh;
    kvmesh_rule_t rules[2][KVMESH_NLOGICAL]; /* [kvmesh_rules_t][logical] */
};

/** The rule \p mode uses for \p logical (before the divisibility fix). */
const kvmesh_rule_t *kvm_partition_rule(const kvmesh_partition_t *part,
                                           kvmesh_mode_t mode,
                                           kvmesh_logical_t logical);

/** kvmesh_partition_resolve() without argument checks; NULL coords: this
 *  rank. */
void kvm_resolve(const kvmesh_partition_t *part, kvmesh_mode_t mode,
                 kvmesh_logical_t logical, int64_t size, const int *coords,
                 kvmesh_dim_t *dim);

/** True when two resolved dims share a mesh axis (an invalid layout). */
bool kvm_dims_overlap(const kvmesh_mesh_t *mesh, const kvmesh_dim_t *a,
                         const kvmesh_dim_t *b);

#endif
