/* Copies for the write path of the cache. */
#ifndef KVMESH_COPY_H
#define KVMESH_COPY_H

#include <stddef.h>

/** Copies \p bytes to cache memory with non-temporal stores where the
 *  target allows it: a decode step writes lines nobody has touched since
 *  init, and streaming them out skips reading each line first.  Call
 *  kvm_stream_fence() before the data is handed to another thread or rank. */
void kvm_stream_copy(void *dst, const void *src, size_t bytes);
/** Orders the streaming stores before later stores. */
void kvm_stream_fence(void);

#endif
