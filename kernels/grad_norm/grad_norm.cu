// The global gradient norm's sum of squares and the clipping scale on the GPU, over all of a
// model's gradients in a few multi-tensor launches (kernels/common/multi_tensor.cuh).
//
// The norm must not change from run to run, or two identical runs would clip differently and
// drift apart; float atomics would do exactly that. So each block squares and adds one fixed
// chunk of one gradient into its own fp32 partial (a chunk is 4096 values: fp32 keeps the sum
// to ~1e-7), and one block then adds all partials in order, in double, as sum_squares_cpu
// does. The result stays on the device; the caller copies it out (its one wait for the GPU).
#include <type_traits>
#include <utility>

#include "framework/cuda/check.h"
#include "framework/dtype.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/common/multi_tensor.cuh"
#include "kernels/grad_norm/grad_norm_cuda.h"

namespace ft::kernels {
namespace {

constexpr int kNormThreads = 256;
// 16 values a thread: a block's partial stands for 4096 values, so GPT-2 small's 124M
// gradients leave ~30k partials, which one block adds in microseconds.
constexpr int64_t kNormChunk = kNormThreads * 16;
// The final sum: one block, each thread adding partials t, t + 1024, ... before a tree.
constexpr int kPartialSumThreads = 1024;
// Scaling touches each value once: 8 a thread amortises the block's tensor lookup.
constexpr int kScaleThreads = 256;
constexpr int64_t kScaleChunk = kScaleThreads * 8;

template <class T>
__global__ void sum_squares_partials_kernel(const __grid_constant__ MultiTensorBatch<DeviceSpan<const T>> batch,
                                            float* partials) {
  __shared__ float scratch[32];
  const BlockTarget target = block_target(batch);
  const DeviceSpan<const T>& t = batch.records[target.slot];
  const int64_t begin = target.chunk * kNormChunk;
  const int64_t end = begin + kNormChunk < t.numel ? begin + kNormChunk : t.numel;
  float sum = 0.0f;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float v = to_float(t.data[i]);
    sum += v * v;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void sum_partials_kernel(double* total, const float* partials, int64_t count) {
  __shared__ double sums[kPartialSumThreads];
  const int t = threadIdx.x;
  double sum = 0.0;
  for (int64_t i = t; i < count; i += kPartialSumThreads) sum += partials[i];
  sums[t] = sum;
  __syncthreads();
  for (int stride = kPartialSumThreads / 2; stride > 0; stride /= 2) {
    if (t < stride) sums[t] += sums[t + stride];
    __syncthreads();
  }
  if (t == 0) *total = sums[0];
}

template <class T>
__global__ void scale_kernel(const __grid_constant__ MultiTensorBatch<DeviceSpan<T>> batch, float factor) {
  const BlockTarget target = block_target(batch);
  const DeviceSpan<T>& t = batch.records[target.slot];
  const int64_t begin = target.chunk * kScaleChunk;
  const int64_t end = begin + kScaleChunk < t.numel ? begin + kScaleChunk : t.numel;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    t.data[i] = from_float<T>(to_float(t.data[i]) * factor);
}

// The spans with CUDA's element type (const kept).
template <class T>
auto device_spans(const std::vector<DeviceSpan<T>>& spans) {
  using Element = std::remove_pointer_t<decltype(device_ptr(std::declval<T*>()))>;
  std::vector<DeviceSpan<Element>> out;
  out.reserve(spans.size());
  for (const DeviceSpan<T>& s : spans) out.push_back({device_ptr(s.data), s.numel});
  return out;
}

}  // namespace

int64_t sum_squares_partial_count(const std::vector<int64_t>& numels) {
  int64_t count = 0;
  for (int64_t n : numels) count += chunks_of(n, kNormChunk);
  return count;
}

template <class T>
void sum_squares_partials_cuda(float* partials, const std::vector<DeviceSpan<const T>>& tensors, cudaStream_t stream) {
  using D = DeviceSpan<const cuda_t<T>>;
  for_each_multi_tensor_batch(device_spans(tensors), kNormChunk,
                              [&](const MultiTensorBatch<D>& batch, int64_t blocks, int64_t blocks_before) {
                                sum_squares_partials_kernel<<<static_cast<int>(blocks), kNormThreads, 0, stream>>>(
                                    batch, partials + blocks_before);
                                FT_CUDA_CHECK_LAUNCH();
                              });
}

void sum_partials_cuda(double* total, const float* partials, int64_t count, cudaStream_t stream) {
  sum_partials_kernel<<<1, kPartialSumThreads, 0, stream>>>(total, partials, count);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T>
void scale_tensors_cuda(const std::vector<DeviceSpan<T>>& tensors, float factor, cudaStream_t stream) {
  using D = DeviceSpan<cuda_t<T>>;
  for_each_multi_tensor_batch(device_spans(tensors), kScaleChunk,
                              [&](const MultiTensorBatch<D>& batch, int64_t blocks, int64_t) {
                                scale_kernel<<<static_cast<int>(blocks), kScaleThreads, 0, stream>>>(batch, factor);
                                FT_CUDA_CHECK_LAUNCH();
                              });
}

#define FT_INSTANTIATE(T)                                                                                    \
  template void sum_squares_partials_cuda<T>(float*, const std::vector<DeviceSpan<const T>>&, cudaStream_t); \
  template void scale_tensors_cuda<T>(const std::vector<DeviceSpan<T>>&, float, cudaStream_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(ft::bfloat16)
FT_INSTANTIATE(ft::half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
