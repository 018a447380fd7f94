// GPU memory for tensors: a caching allocator per device. cudaMalloc and cudaFree are slow and
// synchronise the device, so freed blocks stay cached and the next request of a similar size
// reuses one; after the first training step nothing reaches the driver.
//
// Reusing a block the moment it is freed is safe only because all of flashtrain's work on a
// device runs on that device's one stream (framework/cuda/context.h): the next user's kernels
// are queued behind the last user's. Work on another stream would need events first.
#pragma once

#include "framework/allocator.h"

namespace ft::cuda {

// Sizes are rounded up: to 512 bytes below 1 MiB, to 2 MiB from 1 MiB up. A request takes the
// smallest cached block that fits and is at most twice its rounded size (so a small tensor
// never pins a big block); else cudaMalloc, and if that fails, the cache is emptied and
// cudaMalloc tried once more before an ft::Error reports the sizes and the device's free
// memory. Stats count rounded block sizes: allocated (live blocks) <= reserved (live + cached).
// Throws like check_device for an index past the devices present.
Allocator& caching_allocator(int device);

// Returns every cached (free) block of the device to the driver, after waiting for the device.
void empty_cache(int device);

// Tests of kernels turn this on: every block handed out is first filled with 0xFF bytes (NaN in
// every float format, -1 in integers), queued on the device's stream, so an output element a
// kernel forgets to write shows up instead of passing with a stale value.
void set_poison_allocations(bool on);

// The size a request of `bytes` is rounded up to.
size_t rounded_block_size(size_t bytes);

}  // namespace ft::cuda
