// The caching allocator: live blocks in a hash map (pointer -> size), free blocks in a multimap
// by size for best fit, one mutex per device. deallocate() never calls CUDA, so tensors that die
// during static destruction, after the driver has shut down, are harmless; the allocators are
// never destroyed, and cached blocks are left for the driver to reclaim at exit.
#include "framework/cuda/caching_allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#include "framework/error.h"

namespace ft::cuda {
namespace {

std::atomic<bool> poison_allocations{false};

constexpr size_t kSmallGranularity = 512;              // cudaMalloc aligns to 256 anyway
constexpr size_t kLargeThreshold = size_t{1} << 20;    // 1 MiB
constexpr size_t kLargeGranularity = size_t{2} << 20;  // 2 MiB, the driver's page size for large blocks

std::string format_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return buffer;
}

class CachingAllocator : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(size_t bytes) override {
    size_t size = rounded_block_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* block = take_cached(size);  // may be larger than asked: then size grows to it
    if (!block) block = allocate_from_driver(size, bytes);
    if (poison_allocations.load(std::memory_order_relaxed))
      FT_CUDA_CHECK(cudaMemsetAsync(block, 0xFF, size, context(device_).stream));
    live_.emplace(block, size);
    stats_.allocated_bytes += size;
    stats_.allocations++;
    if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
    return block;
  }

  void deallocate(void* ptr, size_t /*bytes*/) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) {
      // Called from Storage's destructor, where throwing would terminate anyway: say why first.
      std::fprintf(stderr, "flashtrain: cuda:%d caching allocator: freeing %p, which it did not allocate\n", device_,
                   ptr);
      std::abort();
    }
    stats_.allocated_bytes -= it->second;
    cached_.emplace(it->second, ptr);
    live_.erase(it);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached();
  }

 private:
  // Best fit: the smallest cached block of at least `size` bytes, if it is at most twice that;
  // `size` becomes the block's own size.
  void* take_cached(size_t& size) {
    auto it = cached_.lower_bound(size);
    if (it == cached_.end() || it->first > 2 * size) return nullptr;
    size = it->first;
    void* block = it->second;
    cached_.erase(it);
    return block;
  }

  void* allocate_from_driver(size_t size, size_t requested) {
    DeviceGuard guard(device_);
    void* block = nullptr;
    if (cudaMalloc(&block, size) != cudaSuccess) {
      cudaGetLastError();  // out of memory is not sticky: clear it so later checks do not see it
      release_cached();
      if (cudaMalloc(&block, size) != cudaSuccess) {
        cudaGetLastError();
        throw Error(out_of_memory_message(size, requested));
      }
    }
    stats_.reserved_bytes += size;
    stats_.system_allocations++;
    return block;
  }

  // Frees every cached block. Their last users may still be queued on the stream, so the device
  // is drained first.
  void release_cached() {
    if (cached_.empty()) return;
    DeviceGuard guard(device_);
    FT_CUDA_CHECK(cudaDeviceSynchronize());
    for (const auto& [size, block] : cached_) {
      FT_CUDA_CHECK(cudaFree(block));
      stats_.reserved_bytes -= size;
    }
    cached_.clear();
  }

  std::string out_of_memory_message(size_t size, size_t requested) const {
    size_t free = 0, total = 0;
    std::string device_memory = cudaMemGetInfo(&free, &total) == cudaSuccess
                                    ? str(format_bytes(free), " free of ", format_bytes(total))
                                    : std::string("free memory unknown");
    cudaGetLastError();
    return str("cuda:", device_, " out of memory: allocating ", format_bytes(size), " (", requested,
               " bytes requested) failed with ", format_bytes(stats_.allocated_bytes), " allocated and ",
               format_bytes(stats_.reserved_bytes), " reserved by flashtrain; the device has ", device_memory);
  }

  const int device_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;
  std::multimap<size_t, void*> cached_;
  AllocatorStats stats_;
};

CachingAllocator& allocator_of(int device) {
  check_device(device);
  // One per device, made on first use and never destroyed (see the top of this file).
  static auto* allocators = [] {
    auto* all = new std::vector<std::unique_ptr<CachingAllocator>>();
    for (int d = 0; d < device_count(); ++d) all->push_back(std::make_unique<CachingAllocator>(d));
    return all;
  }();
  return *(*allocators)[device];
}

}  // namespace

size_t rounded_block_size(size_t bytes) {
  const size_t granularity = bytes < kLargeThreshold ? kSmallGranularity : kLargeGranularity;
  return std::max<size_t>(1, (bytes + granularity - 1) / granularity) * granularity;
}

Allocator& caching_allocator(int device) { return allocator_of(device); }

void empty_cache(int device) { allocator_of(device).empty_cache(); }

void set_poison_allocations(bool on) { poison_allocations.store(on, std::memory_order_relaxed); }

}  // namespace ft::cuda
