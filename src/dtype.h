/* Internal element-type helpers. */
#ifndef KVMESH_DTYPE_H
#define KVMESH_DTYPE_H

#include "kvmesh.h"

/** kvmesh_dtype_size() for the hot paths: inline, where the exported
 *  function would be a call through the PLT. */
static inline size_t
kvm_dtype_size(kvmesh_dtype_t dtype)
{
    switch (dtype) {
    case KVMESH_F32: return 4;
    case KVMESH_F16:
    case KVMESH_BF16: return 2;
    }
    return 0;
}

/** kvmesh_convert() without argument checks, for the hot paths. */
void kvm_convert(void *dst, kvmesh_dtype_t dt, const void *src,
                 kvmesh_dtype_t st, size_t count);

#endif
