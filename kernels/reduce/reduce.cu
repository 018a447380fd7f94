// Sums on the GPU, deterministic: the whole-tensor sum and sum_to_shape are one kernel that
// sums a contiguous input over its "reduced" dimensions into its "kept" ones, in fp32.
//
// The one decision that matters is how the additions are ordered. Float addition is not
// associative, so atomics (whose order is whatever the scheduler made it) would give different
// bits from run to run. Here every partial sum has a fixed owner: a block sums a chunk of the
// reduced range for some outputs, each thread accumulating its elements in increasing order,
// then the block's threads combine in a fixed tree in shared memory; when the range was cut
// into several chunks, a second pass (the same kernel, over a [chunks, outputs] array of fp32
// partials) adds them up the same way. The split depends only on the shapes (SumPlan), never
// on the GPU, so the same inputs give the same bits on every run and every device.
//
// Two block shapes, picked by which dimension is contiguous, keep the reads coalesced. When a
// kept dimension is innermost (a bias gradient: [B*T, C] -> [C]) a warp takes 32 neighbouring
// outputs and reads 32 neighbouring elements of a row; when a reduced one is (a whole-tensor
// sum, or [N, C] -> [N, 1]) a block of 256 threads takes one output and reads along the row.
#include <algorithm>
#include <climits>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/reduce/reduce_cuda.h"

namespace ft::kernels {
namespace {

// Threads of every block: 8 warps. A power of two: the shared-memory tree halves it.
constexpr int kSumThreads = 256;
// Outputs a block takes when reading across rows: one warp's worth, so a warp's 32 loads are
// neighbours; the block's other warps take further rows of the same 32 outputs.
constexpr int kColumnTile = 32;
// Blocks the first pass aims at: two or more waves on current GPUs (132 SMs x 8 resident
// blocks of 256 threads on an H100). A constant, not the device's SM count, so that the split,
// and with it the bits of the result, are the same on every GPU.
constexpr int64_t kTargetBlocks = 2048;
// Elements each thread should sum before cutting the range further is worth a partial.
constexpr int64_t kMinPerThread = 8;
// grid.y limit.
constexpr int64_t kMaxChunks = 65535;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The offset of element `index` (< dims.numel) of the dimensions. What is left of the index
// after the inner dimensions is the outermost one's, without a division (none for one dimension).
__device__ __forceinline__ int64_t offset_of(int64_t index, const SumDims& dims) {
  if (dims.ndim == 0) return 0;
  int64_t offset = 0;
  for (int d = dims.ndim - 1; d > 0; --d) {
    offset += (index % dims.shape[d]) * dims.strides[d];
    index /= dims.shape[d];
  }
  return offset + index * dims.strides[0];
}

// Block (x: outputs, y: chunk) with threads (x: output in the tile, y: row lane). out[chunk *
// kept.numel + o] = the sum of x over reduced indices [chunk * chunk_length, + chunk_length)
// for kept index o: thread lanes stride by blockDim.y over the chunk, then a fixed tree.
template <class In, class Out>
__global__ void sum_kernel(Out* out, const In* x, SumDims kept, SumDims reduced, int64_t chunk_length) {
  __shared__ float partial[kSumThreads];
  const int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t begin = chunk * chunk_length;
  const int64_t end = begin + chunk_length < reduced.numel ? begin + chunk_length : reduced.numel;
  float acc = 0.0f;
  if (o < kept.numel) {
    const In* base = x + offset_of(o, kept);
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y) acc += to_float(base[offset_of(r, reduced)]);
  }
  const int slot = threadIdx.y * blockDim.x + threadIdx.x;
  partial[slot] = acc;
  for (int half = blockDim.y / 2; half > 0; half >>= 1) {
    __syncthreads();
    if (threadIdx.y < half) partial[slot] += partial[slot + half * blockDim.x];
  }
  if (threadIdx.y == 0 && o < kept.numel) out[chunk * kept.numel + o] = from_float<Out>(partial[threadIdx.x]);
}

template <class In, class Out>
void launch_sum(Out* out, const In* x, const SumDims& kept, const SumDims& reduced, bool along_rows, int64_t chunks,
                int64_t chunk_length, cudaStream_t stream) {
  const dim3 block = along_rows ? dim3(1, kSumThreads) : dim3(kColumnTile, kSumThreads / kColumnTile);
  const int64_t blocks = ceil_div(kept.numel, block.x);
  FT_CHECK(blocks <= INT_MAX, "sum_cuda: ", kept.numel, " outputs need more blocks than a grid holds");
  sum_kernel<<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(chunks)), block, 0, stream>>>(
      out, x, kept, reduced, chunk_length);
  FT_CUDA_CHECK_LAUNCH();
}

struct Dim {
  int64_t size, stride;
};

SumDims to_sum_dims(const std::vector<Dim>& innermost_first) {
  FT_CHECK(innermost_first.size() <= static_cast<size_t>(kMaxSumDims), "sum_to_shape: ", innermost_first.size(),
           " alternating kept and summed dimensions; at most ", kMaxSumDims, " are supported");
  SumDims dims;
  dims.ndim = static_cast<int>(innermost_first.size());
  for (int d = 0; d < dims.ndim; ++d) {
    const Dim& dim = innermost_first[dims.ndim - 1 - d];
    dims.shape[d] = dim.size;
    dims.strides[d] = dim.stride;
    dims.numel *= dim.size;
  }
  return dims;
}

// Cuts the reduced range so that the first pass has about kTargetBlocks blocks, as long as
// each thread still sums kMinPerThread elements.
void choose_chunks(SumPlan& plan) {
  const int64_t blocks = plan.along_rows ? plan.kept.numel : ceil_div(plan.kept.numel, kColumnTile);
  const int64_t lanes = plan.along_rows ? kSumThreads : kSumThreads / kColumnTile;
  const int64_t wanted = ceil_div(kTargetBlocks, std::max<int64_t>(blocks, 1));
  const int64_t worth = plan.reduced.numel / (lanes * kMinPerThread);
  const int64_t chunks = std::max<int64_t>(1, std::min({wanted, worth, kMaxChunks}));
  plan.chunk_length = ceil_div(plan.reduced.numel, chunks);
  plan.chunks = plan.chunk_length > 0 ? ceil_div(plan.reduced.numel, plan.chunk_length) : 1;
}

}  // namespace

SumPlan plan_sum(int64_t n) { return plan_sum_to_shape({n}, {1}); }

SumPlan plan_sum_to_shape(const std::vector<int64_t>& x_shape, const std::vector<int64_t>& out_shape) {
  FT_CHECK(x_shape.size() == out_shape.size(), "sum_to_shape: ", out_shape.size(), " output dimensions for ",
           x_shape.size(), " input dimensions (pad the output shape with leading 1s)");
  std::vector<Dim> kept, reduced;  // innermost first; neighbours in memory merged
  int64_t stride = 1;
  for (int64_t d = static_cast<int64_t>(x_shape.size()) - 1; d >= 0; --d) {
    const int64_t size = x_shape[d];
    FT_CHECK(out_shape[d] == size || out_shape[d] == 1, "sum_to_shape: output size ", out_shape[d], " in dimension ", d,
             " is neither 1 nor the input's ", size);
    if (size != 1) {
      std::vector<Dim>& dims = out_shape[d] == 1 ? reduced : kept;
      if (!dims.empty() && dims.back().stride * dims.back().size == stride)
        dims.back().size *= size;
      else
        dims.push_back({size, stride});
    }
    stride *= size;
  }
  SumPlan plan;
  plan.kept = to_sum_dims(kept);
  plan.reduced = to_sum_dims(reduced);
  plan.along_rows = !reduced.empty() && reduced.front().stride == 1;
  choose_chunks(plan);
  return plan;
}

template <class T>
void sum_cuda(T* out, const T* x, const SumPlan& plan, float* workspace, cudaStream_t stream) {
  if (plan.kept.numel == 0) return;
  auto* out_d = device_ptr(out);
  const auto* x_d = device_ptr(x);
  if (plan.chunks == 1) {
    launch_sum(out_d, x_d, plan.kept, plan.reduced, plan.along_rows, 1, plan.chunk_length, stream);
    return;
  }
  FT_CHECK(workspace, "sum_cuda: ", plan.chunks, " chunks need a workspace of ", plan.workspace_floats(), " floats");
  launch_sum(workspace, x_d, plan.kept, plan.reduced, plan.along_rows, plan.chunks, plan.chunk_length, stream);
  // Pass two: the partials [chunks, outputs] summed over chunks, in one chunk.
  const int64_t outputs = plan.kept.numel;
  SumDims kept, chunks;
  kept.ndim = chunks.ndim = 1;
  kept.shape[0] = kept.numel = outputs;
  kept.strides[0] = 1;
  chunks.shape[0] = chunks.numel = plan.chunks;
  chunks.strides[0] = outputs;
  launch_sum(out_d, static_cast<const float*>(workspace), kept, chunks, outputs == 1, 1, plan.chunks, stream);
}

template void sum_cuda<float>(float*, const float*, const SumPlan&, float*, cudaStream_t);
template void sum_cuda<ft::bfloat16>(ft::bfloat16*, const ft::bfloat16*, const SumPlan&, float*, cudaStream_t);
template void sum_cuda<ft::half>(ft::half*, const ft::half*, const SumPlan&, float*, cudaStream_t);

}  // namespace ft::kernels
