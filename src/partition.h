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

/** The rule of \p rules that \p mode uses for \p logical (before the
 *  divisibility fix): a generation mode's decode rule when one is set. */
const kvmesh_rule_t *kvm_rules_pick(const kvmesh_rule_t rules[2][KVMESH_NLOGICAL],
                                    kvmesh_mode_t mode, kvmesh_logical_t logical);

#endif
