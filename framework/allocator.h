// Memory for tensors, one allocator per device. The CPU allocator hands out 64-byte aligned
// blocks; the CUDA one caches freed blocks for reuse (framework/cuda/caching_allocator.h), so
// the training loop allocates from the cache and never from the driver after its first step.
#pragma once

#include <cstddef>
#include <cstdint>

#include "framework/device.h"

namespace ft {

struct AllocatorStats {
  size_t allocated_bytes = 0;       // in live tensors now
  size_t peak_allocated_bytes = 0;  // the most at any time since the last reset
  size_t reserved_bytes = 0;        // held from the system, live or cached
  int64_t allocations = 0;          // calls to allocate()
  int64_t system_allocations = 0;   // of which went to the system (malloc, cudaMalloc)
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
};

// The allocator of a device; throws ft::Error for a CUDA device in a build without CUDA or an
// index past the devices present.
Allocator& allocator_for(Device device);

}  // namespace ft
