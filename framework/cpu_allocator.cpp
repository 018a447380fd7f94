// The CPU allocator: aligned blocks straight from the C library, with counters.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>

#include "framework/allocator.h"
#include "framework/error.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/caching_allocator.h"
#endif

namespace ft {
namespace {

constexpr size_t kAlignment = 64;  // a cache line, and enough for any vector load

class CpuAllocator : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
    if (!p) throw Error(str("cpu allocator: out of memory allocating ", bytes, " bytes"));
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.allocated_bytes += bytes;
    stats_.reserved_bytes += bytes;
    stats_.allocations++;
    stats_.system_allocations++;
    if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    std::free(ptr);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.allocated_bytes -= bytes;
    stats_.reserved_bytes -= bytes;
  }
  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }

 private:
  mutable std::mutex mutex_;
  AllocatorStats stats_;
};

}  // namespace

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) {
    static CpuAllocator cpu;
    return cpu;
  }
#ifdef FLASHTRAIN_HAS_CUDA
  return cuda::caching_allocator(device.index);
#else
  throw Error(str("no allocator for ", device.str(), ": flashtrain was built without CUDA"));
#endif
}

}  // namespace ft
