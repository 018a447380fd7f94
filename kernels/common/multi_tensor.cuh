// Many tensors in one kernel launch, for the optimizer step and the gradient norm: a model has
// a hundred-odd parameters, most of them small, and a launch per parameter would cost more
// than the work. A batch of up to kMultiTensorMax tensors travels to the kernel by value, as a
// kernel argument (no device table to upload, so nothing waits on a host-to-device copy);
// each tensor is cut into chunks of a fixed number of elements, one block per chunk, and a
// block finds its tensor by a binary search of the batch's first-block table.
//
// The mapping from blocks to elements depends only on the tensors' sizes, never on the GPU, so
// per-block partial sums come out the same on every run and every device (deterministic).
#pragma once

#include <cstdint>
#include <vector>

#include "framework/error.h"

namespace ft::kernels {

// Kernel arguments are limited to 4 KiB: 32 records of up to ~100 bytes fit with room to spare.
constexpr int kMultiTensorMax = 32;

template <class Record>
struct MultiTensorBatch {
  int count = 0;
  // Tensor i owns the blocks first_block[i] .. first_block[i + 1] - 1 of the launch.
  int64_t first_block[kMultiTensorMax + 1] = {};
  Record records[kMultiTensorMax];
};

// Which tensor of the batch a block works on, and the block's chunk index within it.
struct BlockTarget {
  int slot;
  int64_t chunk;
};

template <class Record>
__device__ __forceinline__ BlockTarget block_target(const MultiTensorBatch<Record>& batch) {
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

// Splits records (each with a `numel` field) into batches and calls
// launch(batch, blocks_in_batch, blocks_before_batch) for each; empty tensors are skipped.
template <class Record, class Launch>
void for_each_multi_tensor_batch(const std::vector<Record>& records, int64_t chunk_elements, Launch&& launch) {
  MultiTensorBatch<Record> batch;
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
    if (++batch.count == kMultiTensorMax) flush();
  }
  flush();
}

}  // namespace ft::kernels
