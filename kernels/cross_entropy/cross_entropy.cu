// Softmax cross-entropy on the GPU, forward and backward, beside its CPU reference
// cross_entropy_cpu.cpp (formulas in cross_entropy_cpu.h).
//
// Forward: one block per row; GPT-2's rows are 50257 logits. Each thread reads its share of
// the row once and keeps an online (max, sum of exp(x - max)) pair, rescaling the sum when a
// larger value arrives, so the row is read once rather than once for the max and again for
// the sum; the block then merges the pairs. lse = max + log(sum) is kept per row in fp32
// (the backward rebuilds the softmax from it, never storing [rows, vocab] probabilities).
//
// The subtle part is the mean: it divides by the number of rows not ignored, which the host
// does not know without waiting for the GPU. So a one-block kernel adds the per-row losses and
// counts the rows in a fixed order (deterministic) and leaves both on the device; the
// backward reads the count and the upstream gradient there, and writes each row's gradient
// (softmax - onehot) * g / count in one pass over the row.
//
// lm_head_cross_entropy (framework/ops/lm_head_cross_entropy.cpp) never holds all the logits:
// it takes them a chunk of rows at a time and wants each chunk's loss and gradient at once, so
// the fused kernel computes a row's loss and then overwrites that row, in place, with
// softmax - onehot. It leaves out the 1/count and the upstream gradient: p / count is below
// f16's smallest subnormal (6e-8) for a typical p = 2e-5 over 8192 rows, so both are applied in
// fp32 to the products (dh, dW) at the very end (scale_loss_gradient_cuda).
#include <climits>
#include <cmath>

#include "framework/cuda/check.h"
#include "framework/dtype.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/cross_entropy/cross_entropy_cuda.h"

namespace ft::kernels {
namespace {

// A row of 50257 is ~100 values a thread at 512 threads; four such blocks fill an SM (2048
// threads), so one block's reduction tail overlaps the others' loads.
constexpr int kRowThreads = 512;
// The mean over rows: one block, each thread adding rows t, t + 1024, ... before a tree.
constexpr int kMeanThreads = 1024;

// max and sum of exp(x - max) over part of a row. The empty part is (-inf, 0).
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.0f};  // both empty (or all -inf): exp(-inf - -inf) would be NaN
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

// Adds one value: one exp, rescaling the sum only when a new max arrives. A -inf logit (a
// masked vocabulary entry) adds nothing; a NaN reaches the sum and makes the loss NaN.
__device__ __forceinline__ void add_value(MaxSum& acc, float x) {
  if (x > acc.max) {
    acc.sum = acc.sum * expf(acc.max - x) + 1.0f;
    acc.max = x;
  } else {
    acc.sum += x == -INFINITY ? 0.0f : expf(x - acc.max);
  }
}

// The merge over the block, returned to every thread.
__device__ MaxSum block_merge(MaxSum v) {
  __shared__ MaxSum warps[32];
  __shared__ MaxSum total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset >>= 1)
    v = merge(v, {__shfl_xor_sync(0xffffffffu, v.max, offset), __shfl_xor_sync(0xffffffffu, v.sum, offset)});
  if (lane == 0) warps[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < blockDim.x / 32 ? warps[lane] : MaxSum{-INFINITY, 0.0f};
    for (int offset = 16; offset > 0; offset >>= 1)
      v = merge(v, {__shfl_xor_sync(0xffffffffu, v.max, offset), __shfl_xor_sync(0xffffffffu, v.sum, offset)});
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

// The log-sum-exp of one row, read once by the whole block, returned to every thread.
template <class T>
__device__ float row_log_sum_exp(const T* x, int64_t vocab) {
  MaxSum acc{-INFINITY, 0.0f};
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) add_value(acc, to_float(x[v]));
  acc = block_merge(acc);
  return acc.max + logf(acc.sum);
}

__device__ __forceinline__ bool in_vocab(int32_t target, int64_t vocab) { return target >= 0 && target < vocab; }

template <class T>
__global__ void cross_entropy_forward_kernel(float* lse, float* row_loss, const T* logits, const int32_t* targets,
                                             int64_t vocab, int32_t ignore_index) {
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  if (target == ignore_index) {  // the same for the whole block: no thread skips a barrier alone
    if (threadIdx.x == 0) lse[row] = row_loss[row] = 0.0f;
    return;
  }
  const T* x = logits + row * vocab;
  const float row_lse = row_log_sum_exp(x, vocab);
  if (threadIdx.x != 0) return;
  lse[row] = row_lse;
  row_loss[row] = in_vocab(target, vocab) ? row_lse - to_float(x[target]) : NAN;
}

// One block per row: the row's loss, then (with write_gradient) the row overwritten with
// softmax - onehot, 0 on an ignored row. A target outside the vocabulary makes the loss and the
// whole row NaN.
template <class T>
__global__ void cross_entropy_loss_and_grad_kernel(float* row_loss, T* logits, const int32_t* targets, int64_t vocab,
                                                   int32_t ignore_index, bool write_gradient) {
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  T* x = logits + row * vocab;
  if (target == ignore_index) {
    if (threadIdx.x == 0) row_loss[row] = 0.0f;
    if (write_gradient)
      for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) x[v] = from_float<T>(0.0f);
    return;
  }
  // Read by every thread before the barriers in row_log_sum_exp, hence before any thread
  // overwrites the row.
  const float target_logit = in_vocab(target, vocab) ? to_float(x[target]) : NAN;
  const float row_lse = in_vocab(target, vocab) ? row_log_sum_exp(x, vocab) : NAN;
  if (threadIdx.x == 0) row_loss[row] = row_lse - target_logit;
  if (!write_gradient) return;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const float p = expf(to_float(x[v]) - row_lse);
    x[v] = from_float<T>(v == target ? p - 1.0f : p);
  }
}

__global__ void cross_entropy_mean_kernel(float* loss, int32_t* count, const float* row_loss, const int32_t* targets,
                                          int64_t rows, int32_t ignore_index) {
  __shared__ float sums[kMeanThreads];
  __shared__ int32_t counts[kMeanThreads];
  const int t = threadIdx.x;
  float sum = 0.0f;
  int32_t n = 0;
  for (int64_t r = t; r < rows; r += kMeanThreads) {
    sum += row_loss[r];
    n += targets[r] != ignore_index;
  }
  sums[t] = sum;
  counts[t] = n;
  __syncthreads();
  for (int stride = kMeanThreads / 2; stride > 0; stride /= 2) {
    if (t < stride) {
      sums[t] += sums[t + stride];
      counts[t] += counts[t + stride];
    }
    __syncthreads();
  }
  if (t == 0) {
    *count = counts[0];
    *loss = counts[0] > 0 ? sums[0] / static_cast<float>(counts[0]) : 0.0f;
  }
}

template <class T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                                              const float* grad_loss, const int32_t* count, int64_t vocab,
                                              int32_t ignore_index) {
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  T* d = dlogits + row * vocab;
  if (target == ignore_index) {
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) d[v] = from_float<T>(0.0f);
    return;
  }
  const T* x = logits + row * vocab;
  const float scale = *grad_loss / static_cast<float>(*count);  // count >= 1: this row is counted
  const float row_lse = in_vocab(target, vocab) ? lse[row] : NAN;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const float p = expf(to_float(x[v]) - row_lse);
    d[v] = from_float<T>(scale * (v == target ? p - 1.0f : p));
  }
}

// out[i] = in[i] * g / count, or 0 when every row was ignored (count = 0).
template <class T>
__global__ void scale_loss_gradient_kernel(T* out, const float* in, const float* grad_loss, const int32_t* count,
                                           int64_t n) {
  const float scale = *count > 0 ? *grad_loss / static_cast<float>(*count) : 0.0f;
  for (int64_t i = global_index(); i < n; i += grid_stride()) out[i] = from_float<T>(scale * in[i]);
}

void check_rows(const char* what, int64_t rows) {
  FT_CHECK(rows <= INT_MAX, what, ": ", rows, " rows exceed the kernel's grid (one block per row, at most ", INT_MAX,
           ")");
}

}  // namespace

template <class T>
void cross_entropy_forward_cuda(float* loss, int32_t* count, float* lse, float* row_loss, const T* logits,
                                const int32_t* targets, int64_t rows, int64_t vocab, int32_t ignore_index,
                                cudaStream_t stream) {
  check_rows("cross_entropy forward", rows);
  if (rows > 0) {
    cross_entropy_forward_kernel<<<static_cast<int>(rows), kRowThreads, 0, stream>>>(lse, row_loss, device_ptr(logits),
                                                                                     targets, vocab, ignore_index);
    FT_CUDA_CHECK_LAUNCH();
  }
  cross_entropy_mean_cuda(loss, count, row_loss, targets, rows, ignore_index, stream);
}

void cross_entropy_mean_cuda(float* loss, int32_t* count, const float* row_loss, const int32_t* targets, int64_t rows,
                             int32_t ignore_index, cudaStream_t stream) {
  cross_entropy_mean_kernel<<<1, kMeanThreads, 0, stream>>>(loss, count, row_loss, targets, rows, ignore_index);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T>
void cross_entropy_loss_and_grad_cuda(float* row_loss, T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                                      int32_t ignore_index, bool write_gradient, cudaStream_t stream) {
  check_rows("cross_entropy loss and gradient", rows);
  if (rows == 0) return;
  cross_entropy_loss_and_grad_kernel<<<static_cast<int>(rows), kRowThreads, 0, stream>>>(
      row_loss, device_ptr(logits), targets, vocab, ignore_index, write_gradient);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T>
void scale_loss_gradient_cuda(T* out, const float* gradient, const float* grad_loss, const int32_t* count, int64_t n,
                              cudaStream_t stream) {
  scale_loss_gradient_kernel<<<blocks_for(n), kBlockThreads, 0, stream>>>(device_ptr(out), gradient, grad_loss, count,
                                                                          n);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T>
void cross_entropy_backward_cuda(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                                 const float* grad_loss, const int32_t* count, int64_t rows, int64_t vocab,
                                 int32_t ignore_index, cudaStream_t stream) {
  check_rows("cross_entropy backward", rows);
  if (rows == 0) return;
  cross_entropy_backward_kernel<<<static_cast<int>(rows), kRowThreads, 0, stream>>>(
      device_ptr(dlogits), device_ptr(logits), lse, targets, grad_loss, count, vocab, ignore_index);
  FT_CUDA_CHECK_LAUNCH();
}

#define FT_INSTANTIATE(T)                                                                                          \
  template void cross_entropy_forward_cuda<T>(float*, int32_t*, float*, float*, const T*, const int32_t*, int64_t, \
                                              int64_t, int32_t, cudaStream_t);                                     \
  template void cross_entropy_backward_cuda<T>(T*, const T*, const float*, const int32_t*, const float*,           \
                                               const int32_t*, int64_t, int64_t, int32_t, cudaStream_t);           \
  template void cross_entropy_loss_and_grad_cuda<T>(float*, T*, const int32_t*, int64_t, int64_t, int32_t, bool,   \
                                                    cudaStream_t);                                                 \
  template void scale_loss_gradient_cuda<T>(T*, const float*, const float*, const int32_t*, int64_t, cudaStream_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(ft::bfloat16)
FT_INSTANTIATE(ft::half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
