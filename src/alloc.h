/* Large zeroed buffers that are cheap to touch for the first time. */
#ifndef KVMESH_ALLOC_H
#define KVMESH_ALLOC_H

#include <stddef.h>

/** Zeroed, 2 MiB-aligned, huge-page-advised memory of at least \p bytes,
 *  already faulted in; NULL on failure. */
void *kvm_region_alloc(size_t bytes);
/** Releases a region of \p bytes from kvm_region_alloc(); accepts NULL. */
void kvm_region_free(void *p, size_t bytes);

#endif
