// Many tensors in one kernel launch, for the optimizer step and the gradient norm: a model has
// a hundred-odd parameters, most of them small, and a launch per parameter would cost more
// than the work. A batch of up to kCapacity tensors travels to the kernel by value, as a kernel
// argument (no device table to upload, so nothing waits on a host-to-device copy);
// each tensor is cut into chunks of a fixed number of elements, one block per chunk, and a
// block finds its tensor by a binary search of the batch's first-block table.
//
// The mapping from blocks to elements depends only on the tensors' sizes, never on the GPU, so
// per-block partial sums come out the same on every run and every device (deterministic).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "framework/error.h"

namespace ft::kernels {

// A kernel's arguments together are limited to 4 KiB before CUDA 12.1 (32 KiB after, but the
// older limit keeps every toolkit and sm_80 working); a batch leaves 64 bytes of that to the
// launch's other arguments (an output pointer, a factor).
constexpr size_t kMaxBatchBytes = 4096 - 64;
// The default capacity: 32 of AdamW's 64-byte records take 2.3 KB, well within the limit.
constexpr int kMultiTensorMax = 32;

template <class Record, int kCapacity = kMultiTensorMax>
struct MultiTensorBatch {
  int count = 0;
  // Tensor i owns the blocks first_block[i] .. first_block[i + 1] - 1 of the launch.
  int64_t first_block[kCapacity + 1] = {};
  Record records[kCapacity];
};

// The most records of this type a batch can hold within the kernel-argument limit: small
// records (a pointer and a size) then go many to a launch, so a model's gradients take one.
template <class Record>
constexpr int max_multi_tensor_capacity() {
  constexpr size_t header = sizeof(MultiTensorBatch<Record, 1>) - sizeof(Record) - sizeof(int64_t);
  return static_cast<int>((kMaxBatchBytes - header) / (sizeof(Record) + sizeof(int64_t)));
}

// Which tensor of the batch a block works on, and the block's chunk index within it.
struct BlockTarget {
  int slot;
  int64_t chunk;
};

template <class Record, int kCapacity>
__device__ __forceinline__ BlockTarget block_target(const MultiTensorBatch<Record, kCapacity>& batch) {
  const int64_t block = blockIdx.x;
  int lo = 0, hi = batch.count - 1;  // the last slot whose first block is <= block
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (batch.first_block[mid] <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  return {lo, block - batch.first_block[lo]};
}

inline int64_t chunks_of(int64_t numel, int64_t chunk_elements) {
  return (numel + chunk_elements - 1) / chunk_elements;
}

// Total blocks (= chunks) over all records: the length of a per-block partials buffer.
template <class Record>
int64_t multi_tensor_blocks(const std::vector<Record>& records, int64_t chunk_elements) {
  int64_t blocks = 0;
  for (const Record& r : records) blocks += chunks_of(r.numel, chunk_elements);
  return blocks;
}

// Splits records (each with a `numel` field) into batches of up to kCapacity and calls
// launch(batch, blocks_in_batch, blocks_before_batch) for each; empty tensors are skipped.
template <int kCapacity = kMultiTensorMax, class Record, class Launch>
void for_each_multi_tensor_batch(const std::vector<Record>& records, int64_t chunk_elements, Launch&& launch) {
  using Batch = MultiTensorBatch<Record, kCapacity>;
  static_assert(sizeof(Batch) <= kMaxBatchBytes, "a multi-tensor batch must fit in a kernel argument");
  Batch batch;
  int64_t blocks_before = 0;
  auto flush = [&] {
    if (batch.count == 0) return;
    const int64_t blocks = batch.first_block[batch.count];
    FT_CHECK(blocks <= INT32_MAX, "multi-tensor launch: ", blocks, " blocks exceed the grid limit");
    launch(batch, blocks, blocks_before);
    blocks_before += blocks;
    batch.count = 0;
  };
  for (const Record& r : records) {
    if (r.numel == 0) continue;
    batch.records[batch.count] = r;
    batch.first_block[batch.count + 1] = batch.first_block[batch.count] + chunks_of(r.numel, chunk_elements);
    if (++batch.count == kCapacity) flush();
  }
  flush();
}

}  // namespace ft::kernels
