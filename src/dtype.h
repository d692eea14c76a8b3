/* Internal element-type helpers. */
#ifndef KVMESH_DTYPE_H
#define KVMESH_DTYPE_H

#include "kvmesh.h"

/** kvmesh_convert() without argument checks, for the hot paths. */
void kvm_convert(void *dst, kvmesh_dtype_t dt, const void *src,
                 kvmesh_dtype_t st, size_t count);

#endif
