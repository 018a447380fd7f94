// The global gradient norm's sum of squares and the clipping scale on the GPU, over all of a
// model's gradients in one multi-tensor launch (kernels/common/multi_tensor.cuh): a batch of
// spans holds 167 tensors within the kernel-argument limit, and GPT-2 small has 148. Every
// launch boundary costs the GPU a drain and a ramp (microseconds each), and at 32 tensors a
// launch GPT-2 small took five.
//
// The norm must not change from run to run, or two identical runs would clip differently and
// drift apart; float atomics would do exactly that. So each block squares and adds one fixed
// chunk of one gradient into its own fp32 partial (a chunk is 8192 values; each thread adds 32
// of them, then a tree: fp32 keeps the sum to ~1e-7), and one block then adds all partials in a
// fixed order, in double, as sum_squares_cpu does. The result stays on the device; the caller
// copies it out (its one wait for the GPU).
//
// The sum of squares is pure memory traffic, so a thread issues all of its chunk's loads, 16
// bytes each, before it adds anything: 64 bytes (bf16, f16) or 128 bytes (fp32) in flight per
// thread, 16-32 KB per block, enough to keep HBM busy with a few blocks per SM. The chunk is
// the same number of elements for every dtype, so the partial count depends on sizes only.
#include <cstdint>
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
// A block's chunk: 256 threads x 32 values, so GPT-2 small's 124M gradients leave ~15k partials,
// which one block adds in a few microseconds, and a thread's loads are 4 (bf16, f16) or 8 (fp32)
// 16-byte packs.
constexpr int64_t kNormChunk = kNormThreads * 32;
// The final sum: one block, each thread adding partials t, t + 1024, ... before a tree. A thread
// loads 16 of them before it adds any, so GPT-2 small's ~15k partials cost one memory latency
// instead of one per partial.
constexpr int kPartialSumThreads = 1024;
constexpr int kPartialLoads = 16;
static_assert(kPartialSumThreads == 32 * 32, "the final sum's tree is a warp of warp sums");
// As many gradients a launch as fit in the kernel argument (all span types are the same size).
constexpr int kSpanCapacity = max_multi_tensor_capacity<DeviceSpan<const float>>();
static_assert(kSpanCapacity >= 148, "GPT-2 small's 148 gradients should take one launch");
template <class T>
using SpanBatch = MultiTensorBatch<DeviceSpan<T>, kSpanCapacity>;
// Scaling touches each value once: 8 a thread amortises the block's tensor lookup.
constexpr int kScaleThreads = 256;
constexpr int64_t kScaleChunk = kScaleThreads * 8;

template <class T>
__device__ __forceinline__ float squares(const T (&values)[kPackBytes / sizeof(T)]) {
  float sum = 0.0f;
#pragma unroll
  for (const T& value : values) {
    const float v = to_float(value);
    sum += v * v;
  }
  return sum;
}

// The thread's share of the sum of squares of a whole chunk at a 16-byte aligned address: every
// load is issued before the first add.
template <class T>
__device__ __forceinline__ float thread_sum_squares_of_chunk(const T* data) {
  using P = Pack<T, kPackBytes / sizeof(T)>;
  constexpr int kLoads = kNormChunk * sizeof(T) / (kNormThreads * kPackBytes);
  P loaded[kLoads];
#pragma unroll
  for (int j = 0; j < kLoads; ++j) loaded[j] = reinterpret_cast<const P*>(data)[j * kNormThreads + threadIdx.x];
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kLoads; ++j) sum += squares(loaded[j].v);
  return sum;
}

// The thread's share over data[0 .. count) for a tensor's last, shorter chunk, or any chunk of an
// unaligned tensor (`packed` false): packs where it can, single values for the rest.
template <class T>
__device__ __forceinline__ float thread_sum_squares(const T* data, int64_t count, bool packed) {
  constexpr int kVector = kPackBytes / sizeof(T);
  using P = Pack<T, kVector>;
  const int64_t packs = packed ? count / kVector : 0;
  float sum = 0.0f;
  for (int64_t q = threadIdx.x; q < packs; q += kNormThreads) sum += squares(reinterpret_cast<const P*>(data)[q].v);
  for (int64_t i = packs * kVector + threadIdx.x; i < count; i += kNormThreads) {
    const float v = to_float(data[i]);
    sum += v * v;
  }
  return sum;
}

template <class T>
__global__ void sum_squares_partials_kernel(const __grid_constant__ SpanBatch<const T> batch, float* partials) {
  __shared__ float scratch[32];
  const BlockTarget target = block_target(batch);
  const DeviceSpan<const T>& t = batch.records[target.slot];
  const int64_t begin = target.chunk * kNormChunk;
  const int64_t count = begin + kNormChunk < t.numel ? kNormChunk : t.numel - begin;
  // A chunk starts at a multiple of kNormChunk elements, so it is aligned when its tensor is.
  const bool packed = is_pack_aligned(t.data);
  const float mine = count == kNormChunk && packed ? thread_sum_squares_of_chunk(t.data + begin)
                                                   : thread_sum_squares(t.data + begin, count, packed);
  const float sum = block_sum(mine, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__device__ __forceinline__ double warp_sum_double(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Each thread adds its partials in order, then warps and the block add in a fixed tree: the same
// bits on every run.
__global__ void sum_partials_kernel(double* total, const float* partials, int64_t count) {
  __shared__ double warp_sums[kPartialSumThreads / 32];
  const int t = threadIdx.x;
  double sum = 0.0;
  for (int64_t base = 0; base < count; base += kPartialSumThreads * kPartialLoads) {
    float loaded[kPartialLoads];
#pragma unroll
    for (int j = 0; j < kPartialLoads; ++j) {
      const int64_t i = base + j * kPartialSumThreads + t;
      loaded[j] = i < count ? partials[i] : 0.0f;  // adding 0 leaves the sum as it was
    }
#pragma unroll
    for (int j = 0; j < kPartialLoads; ++j) sum += loaded[j];
  }
  sum = warp_sum_double(sum);
  if (t % 32 == 0) warp_sums[t / 32] = sum;
  __syncthreads();
  if (t < 32) {
    sum = warp_sum_double(warp_sums[t]);
    if (t == 0) *total = sum;
  }
}

template <class T>
__global__ void scale_kernel(const __grid_constant__ SpanBatch<T> batch, float factor) {
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
  for_each_multi_tensor_batch<kSpanCapacity>(
      device_spans(tensors), kNormChunk,
      [&](const SpanBatch<const cuda_t<T>>& batch, int64_t blocks, int64_t blocks_before) {
        sum_squares_partials_kernel<<<static_cast<int>(blocks), kNormThreads, 0, stream>>>(batch,
                                                                                           partials + blocks_before);
        FT_CUDA_CHECK_LAUNCH();
      });
}

void sum_partials_cuda(double* total, const float* partials, int64_t count, cudaStream_t stream) {
  sum_partials_kernel<<<1, kPartialSumThreads, 0, stream>>>(total, partials, count);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T>
void scale_tensors_cuda(const std::vector<DeviceSpan<T>>& tensors, float factor, cudaStream_t stream) {
  for_each_multi_tensor_batch<kSpanCapacity>(
      device_spans(tensors), kScaleChunk, [&](const SpanBatch<cuda_t<T>>& batch, int64_t blocks, int64_t) {
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
