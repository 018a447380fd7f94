// Softmax cross-entropy on the GPU, forward and backward, beside its CPU reference
// cross_entropy_cpu.cpp (formulas in cross_entropy_cpu.h).
//
// Forward: one block per row; GPT-2's rows are 50257 logits. Each thread reads its share of
// the row once and keeps an online (max, sum of exp(x - max)) pair, rescaling the sum when a
// larger value arrives, so the row is read once rather than once for the max and again for
// the sum; the block then merges the pairs. lse = max + log(sum) is kept per row in fp32
// (the backward rebuilds the softmax from it, never storing [rows, vocab] probabilities).
//
// These kernels are meant to be memory-bound, so rows move 16 bytes a load (8 bf16), several
// loads issued before any is used, and the running max is updated once per 16-byte pack rather
// than once per value. A row of 50257 16-bit logits starts on any 2-byte boundary, so each row
// splits into a scalar head up to its first 16-byte boundary, whole packs, and a scalar tail.
//
// They are memory-bound only if a value costs a few instructions: an H200 SM receives about 9
// bf16 logits a cycle (4.2 TB/s over 132 SMs at ~1.75 GHz), which leaves ~14 issue slots (128
// lanes a cycle) and ~1.8 exp2s (16 a cycle) per logit. So e^x is taken as 2^(x * log2(e)) on
// the special-function unit's approximate exp2 (one MUFU.EX2, 2 ulp; what FlashAttention does):
// the accurate expf costs about ten instructions more, and with it the forward was compute-bound
// (80% of the SMs' issue, 43% of the bandwidth). The exponent is (x - max) * log2(e), a
// subtraction and a product rather than one fma x * log2(e) - max * log2(e): the fma would round
// max * log2(e) to a different error for every max, while the subtraction keeps the row's
// largest term exactly 2^0 = 1 (a row of one value gets lse = x and gradient 0 exactly, as on
// the CPU) and the rounding relative to x - max.
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
// softmax - onehot. That needs the row twice (the gradient needs the whole row's lse), so
// where two rows fit in an SM's shared memory (a 16-bit row of 50257 is 100 KB; an H100 or
// H200 SM has 228 KB) the block copies its row there with asynchronous copies (the whole row
// in flight at once) and HBM sees one read and one write; elsewhere (f32, smaller GPUs) the
// row is read twice, the second time partly from L2. It leaves out the 1/count and the
// upstream gradient: p / count is below f16's smallest subnormal (6e-8) for a typical p = 2e-5
// over 8192 rows, so both are applied in fp32 to the products (dh, dW) at the very end
// (scale_loss_gradient_cuda).
#include <cuda_pipeline.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "framework/cuda/check.h"
#include "framework/dtype.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/cross_entropy/cross_entropy_cuda.h"

namespace ft::kernels {
namespace {

// A row of 50257 bf16 is 6282 packs of 16 bytes, about 12 a thread at 512 threads: few enough
// that a block finishes its row quickly, enough that the two barriers of the row's reduction
// are short beside the loads, and 2-4 such blocks share an SM, one's tail overlapping the
// others' loads.
constexpr int kRowThreads = 512;
// At least two row blocks an SM (at most 64 registers a thread): with one, the SM's loads stop
// at each of its row's barriers.
constexpr int kMinRowBlocks = 2;
// Packs a thread loads before it uses any: 4 x 16 bytes, 32 KB in flight per block, so two or
// more blocks give an SM the 32-64 KB in flight that HBM's latency asks for.
constexpr int kUnroll = 4;
// The mean over rows: one block, each thread adding rows t, t + 1024, ... before a tree.
constexpr int kMeanThreads = 1024;
// Shared memory an SM keeps per resident block beyond its dynamic share: the 1 KB the
// runtime reserves (sm_80 and later) and block_merge's static arrays, rounded up.
constexpr int kSharedPerBlockOverhead = 2048;

template <class T>
constexpr int kVector = kPackBytes / static_cast<int>(sizeof(T));

constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special-function unit: ex2.approx.ftz, max relative error 2 ulp (the CUDA Math
// API's bound for exp2f, which libdevice implements with this instruction). Results below 2^-126
// flush to 0 (terms that small beside the row's largest, 1, do not change an fp32 sum); 2^-inf =
// 0, 2^0 = 1 exactly, NaN stays NaN.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// e^(x - max) for a part whose max is `max`.
__device__ __forceinline__ float exp_below(float x, float max) { return fast_exp2((x - max) * kLog2e); }

// The max that exponentials are taken from: -inf only while every value so far is -inf (a
// masked vocabulary, or nothing yet), whose terms are all 0; 0 then, so that -inf - -inf never
// makes them NaN.
__device__ __forceinline__ float exponent_origin(float max) { return max == -INFINITY ? 0.0f : max; }

// max and sum of exp(x - max) over part of a row. The empty part is (-inf, 0).
struct MaxSum {
  float max;
  float sum;
};

// Without branches: a part whose max is below m is rescaled by e^(max - m) <= 1 (0 for an empty
// part, 1 exactly for the part that holds m).
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max), origin = exponent_origin(m);
  return {m, a.sum * exp_below(a.max, origin) + b.sum * exp_below(b.max, origin)};
}

// t[0] + ... + t[N - 1] as a tree: log2(N) dependent adds rather than N. Overwrites t.
template <int N>
__device__ __forceinline__ float tree_sum(float (&t)[N]) {
  static_assert((N & (N - 1)) == 0, "the tree halves N");
#pragma unroll
  for (int width = N / 2; width > 0; width /= 2) {
#pragma unroll
    for (int k = 0; k < width; ++k) t[k] += t[k + width];
  }
  return t[0];
}

// Adds N values: the running sum is rescaled once a pack (by 1 when the pack raises no max),
// without a branch, and each value costs a max, a subtraction, a product, an exp2 and an add. A
// -inf logit (a masked vocabulary entry) adds 2^-inf = 0; a NaN (which fmaxf skips) reaches the
// sum and makes the loss NaN.
struct OnlineSoftmax {
  MaxSum acc{-INFINITY, 0.0f};

  template <int N>
  __device__ __forceinline__ void operator()(int64_t, const float (&x)[N]) {
    float m = acc.max;
#pragma unroll
    for (int k = 0; k < N; ++k) m = fmaxf(m, x[k]);
    const float origin = exponent_origin(m);
    float terms[N];
#pragma unroll
    for (int k = 0; k < N; ++k) terms[k] = exp_below(x[k], origin);
    acc.sum = fmaf(acc.sum, exp_below(acc.max, origin), tree_sum(terms));
    acc.max = m;
  }
};

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

// ---- a row in 16-byte packs -------------------------------------------------------------------

// A row of n elements as a head (elements before its first 16-byte boundary), whole packs of
// kVec from there, and the tail after them. kVec = 1: no head, every element a pack.
struct RowSplit {
  int64_t head, packs;
};

// How many T lie between x and the 16-byte boundary before it.
template <class T>
__device__ __forceinline__ int64_t elements_past_boundary(const T* x) {
  return static_cast<int64_t>(reinterpret_cast<uintptr_t>(x) % kPackBytes / sizeof(T));
}

template <int kVec, class T>
__device__ __forceinline__ RowSplit split_row(const T* x, int64_t n) {
  if (kVec == 1) return {0, n};
  const int64_t misaligned = elements_past_boundary(x);
  const int64_t head = misaligned == 0 ? 0 : (kVec - misaligned < n ? kVec - misaligned : n);
  return {head, (n - head) / kVec};
}

template <class T, int N>
__device__ __forceinline__ void to_floats(float (&out)[N], const Pack<T, N>& p) {
#pragma unroll
  for (int k = 0; k < N; ++k) out[k] = to_float(p.v[k]);
}

// Calls f(v, values) over this thread's share of the row x[0, n): values are x[v, v + N) in
// fp32, N = 1 in the head and tail, kVec for the packs, kUnroll packs loaded before any is used.
template <int kVec, class T, class F>
__device__ __forceinline__ void visit_row(const T* x, int64_t n, F& f) {
  using P = Pack<T, kVec>;
  const RowSplit s = split_row<kVec>(x, n);
  for (int64_t v = threadIdx.x; v < s.head; v += blockDim.x) f(v, {to_float(x[v])});
  const P* packs = reinterpret_cast<const P*>(x + s.head);
  for (int64_t first = threadIdx.x; first < s.packs; first += kUnroll * blockDim.x) {
    P loaded[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (first + u * blockDim.x < s.packs) loaded[u] = packs[first + u * blockDim.x];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = first + u * blockDim.x;
      if (p >= s.packs) break;
      float values[kVec];
      to_floats(values, loaded[u]);
      f(s.head + p * kVec, values);
    }
  }
  for (int64_t v = s.head + s.packs * kVec + threadIdx.x; v < n; v += blockDim.x) f(v, {to_float(x[v])});
}

// out[v, v + N) = f(v, in[v, v + N)) over this thread's share of [0, n), in fp32: f rewrites the
// N values in place, N = 1 in the head and tail, kVec for the packs. out and in are the same
// row, or rows with the same offset from a 16-byte boundary (they split alike).
template <int kVec, class T, class F>
__device__ __forceinline__ void transform_row(T* out, const T* in, int64_t n, const F& f) {
  using P = Pack<T, kVec>;
  const RowSplit s = split_row<kVec>(out, n);
  const auto one = [&](int64_t v) {
    float value[1] = {to_float(in[v])};
    f(v, value);
    out[v] = from_float<T>(value[0]);
  };
  for (int64_t v = threadIdx.x; v < s.head; v += blockDim.x) one(v);
  const P* in_packs = reinterpret_cast<const P*>(in + s.head);
  P* out_packs = reinterpret_cast<P*>(out + s.head);
  for (int64_t first = threadIdx.x; first < s.packs; first += kUnroll * blockDim.x) {
    P loaded[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (first + u * blockDim.x < s.packs) loaded[u] = in_packs[first + u * blockDim.x];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = first + u * blockDim.x;
      if (p >= s.packs) break;
      float values[kVec];
      to_floats(values, loaded[u]);
      f(s.head + p * kVec, values);
      P result;
#pragma unroll
      for (int k = 0; k < kVec; ++k) result.v[k] = from_float<T>(values[k]);
      out_packs[p] = result;
    }
  }
  for (int64_t v = s.head + s.packs * kVec + threadIdx.x; v < n; v += blockDim.x) one(v);
}

// out[0, n) = 0, 16 bytes a store.
template <int kVec, class T>
__device__ __forceinline__ void zero_row(T* out, int64_t n) {
  using P = Pack<T, kVec>;
  const RowSplit s = split_row<kVec>(out, n);
  for (int64_t v = threadIdx.x; v < s.head; v += blockDim.x) out[v] = from_float<T>(0.0f);
  P zeros;
#pragma unroll
  for (int k = 0; k < kVec; ++k) zeros.v[k] = from_float<T>(0.0f);
  P* packs = reinterpret_cast<P*>(out + s.head);
  for (int64_t p = threadIdx.x; p < s.packs; p += blockDim.x) packs[p] = zeros;
  for (int64_t v = s.head + s.packs * kVec + threadIdx.x; v < n; v += blockDim.x) out[v] = from_float<T>(0.0f);
}

// ---- rows ------------------------------------------------------------------------------------

// The log-sum-exp of one row, read once by the whole block, returned to every thread.
template <int kVec, class T>
__device__ float row_log_sum_exp(const T* x, int64_t vocab) {
  OnlineSoftmax online;
  visit_row<kVec>(x, vocab, online);
  const MaxSum total = block_merge(online.acc);
  return total.max + logf(total.sum);
}

__device__ __forceinline__ bool in_vocab(int32_t target, int64_t vocab) { return target >= 0 && target < vocab; }

// d/dx of a row's loss times scale: scale * (softmax - onehot), on N values from index `first`.
// The target lies in at most one pack, so it costs one test a pack rather than one a value.
struct SoftmaxGradient {
  float lse, scale;
  int64_t target;

  template <int N>
  __device__ __forceinline__ void operator()(int64_t first, float (&x)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] = scale * exp_below(x[k], lse);
    const int64_t at = target - first;
    if (at >= 0 && at < N) {
#pragma unroll
      for (int k = 0; k < N; ++k)
        if (k == at) x[k] -= scale;  // unrolled: x stays in registers, no indexing by a variable
    }
  }
};

template <int kVec, class T>
__global__ void __launch_bounds__(kRowThreads, kMinRowBlocks)
    cross_entropy_forward_kernel(float* lse, float* row_loss, const T* logits, const int32_t* targets, int64_t vocab,
                                 int32_t ignore_index) {
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  if (target == ignore_index) {  // the same for the whole block: no thread skips a barrier alone
    if (threadIdx.x == 0) lse[row] = row_loss[row] = 0.0f;
    return;
  }
  const T* x = logits + row * vocab;
  const float row_lse = row_log_sum_exp<kVec>(x, vocab);
  if (threadIdx.x != 0) return;
  lse[row] = row_lse;
  row_loss[row] = in_vocab(target, vocab) ? row_lse - to_float(x[target]) : NAN;
}

// One block per row of `stride` elements, the first `vocab` of them logits: the row's loss,
// then (with write_gradient) the row overwritten with softmax - onehot, read a second time from
// global memory; 0 on an ignored row. A target outside the vocabulary makes the loss and the
// whole row NaN.
template <class T>
__global__ void __launch_bounds__(kRowThreads, kMinRowBlocks)
    cross_entropy_loss_and_grad_kernel(float* row_loss, T* logits, int64_t stride, const int32_t* targets,
                                       int64_t vocab, int32_t ignore_index, bool write_gradient) {
  constexpr int kVec = kVector<T>;
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  T* x = logits + row * stride;
  if (target == ignore_index) {
    if (threadIdx.x == 0) row_loss[row] = 0.0f;
    if (write_gradient) zero_row<kVec>(x, vocab);
    return;
  }
  // Read before the barriers in row_log_sum_exp, hence before any thread overwrites the row.
  const float target_logit = in_vocab(target, vocab) ? to_float(x[target]) : NAN;
  const float row_lse = in_vocab(target, vocab) ? row_log_sum_exp<kVec>(x, vocab) : NAN;
  if (threadIdx.x == 0) row_loss[row] = row_lse - target_logit;
  if (write_gradient) transform_row<kVec>(x, x, vocab, SoftmaxGradient{row_lse, 1.0f, target});
}

// The same with the gradient, the row held in shared memory: copied there once with
// asynchronous 16-byte copies (no registers held, the whole row in flight), then read from
// there for the lse and again for the gradient. The copy keeps the row's offset from a 16-byte
// boundary, so the two split alike.
template <class T>
__global__ void __launch_bounds__(kRowThreads, kMinRowBlocks)
    cross_entropy_loss_and_grad_shared_kernel(float* row_loss, T* logits, int64_t stride, const int32_t* targets,
                                              int64_t vocab, int32_t ignore_index) {
  constexpr int kVec = kVector<T>;
  using P = Pack<T, kVec>;
  extern __shared__ uint4 shared_row[];  // uint4: 16-byte aligned
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  T* x = logits + row * stride;
  if (target == ignore_index) {
    if (threadIdx.x == 0) row_loss[row] = 0.0f;
    zero_row<kVec>(x, vocab);
    return;
  }
  const RowSplit s = split_row<kVec>(x, vocab);
  T* copy = reinterpret_cast<T*>(shared_row) + elements_past_boundary(x);
  for (int64_t v = threadIdx.x; v < s.head; v += blockDim.x) copy[v] = x[v];
  for (int64_t p = threadIdx.x; p < s.packs; p += blockDim.x)
    __pipeline_memcpy_async(copy + s.head + p * kVec, x + s.head + p * kVec, sizeof(P));
  for (int64_t v = s.head + s.packs * kVec + threadIdx.x; v < vocab; v += blockDim.x) copy[v] = x[v];
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
  const float target_logit = in_vocab(target, vocab) ? to_float(copy[target]) : NAN;
  const float row_lse = in_vocab(target, vocab) ? row_log_sum_exp<kVec>(copy, vocab) : NAN;
  if (threadIdx.x == 0) row_loss[row] = row_lse - target_logit;
  transform_row<kVec>(x, copy, vocab, SoftmaxGradient{row_lse, 1.0f, target});
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

template <int kVec, class T>
__global__ void __launch_bounds__(kRowThreads, kMinRowBlocks)
    cross_entropy_backward_kernel(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                                  const float* grad_loss, const int32_t* count, int64_t vocab, int32_t ignore_index) {
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  T* d = dlogits + row * vocab;
  if (target == ignore_index) {
    zero_row<kVec>(d, vocab);
    return;
  }
  const float scale = *grad_loss / static_cast<float>(*count);  // count >= 1: this row is counted
  const float row_lse = in_vocab(target, vocab) ? lse[row] : NAN;
  transform_row<kVec>(d, logits + row * vocab, vocab, SoftmaxGradient{row_lse, scale, target});
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

int64_t offset_in_pack(const void* p) { return static_cast<int64_t>(reinterpret_cast<uintptr_t>(p) % kPackBytes); }

// The shared memory that holds a row of `vocab` T at any offset from a 16-byte boundary, or 0
// when two such blocks do not fit on one SM of the current device: with one, a block's
// barrier-separated phases (copy in, reduce, write out) would leave HBM idle in between.
template <class T>
int shared_row_bytes(int64_t vocab) {
  const int64_t bytes = (vocab + kVector<T>)*static_cast<int64_t>(sizeof(T));
  int device = 0, per_block = 0, per_sm = 0;
  FT_CUDA_CHECK(cudaGetDevice(&device));
  FT_CUDA_CHECK(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  FT_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  const bool two_fit = bytes + kSharedPerBlockOverhead <= per_block && 2 * (bytes + kSharedPerBlockOverhead) <= per_sm;
  return two_fit ? static_cast<int>(bytes) : 0;
}

}  // namespace

template <class T>
void cross_entropy_forward_cuda(float* loss, int32_t* count, float* lse, float* row_loss, const T* logits,
                                const int32_t* targets, int64_t rows, int64_t vocab, int32_t ignore_index,
                                cudaStream_t stream) {
  check_rows("cross_entropy forward", rows);
  if (rows > 0) {
    cross_entropy_forward_kernel<kVector<T>><<<static_cast<int>(rows), kRowThreads, 0, stream>>>(
        lse, row_loss, device_ptr(logits), targets, vocab, ignore_index);
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
void cross_entropy_loss_and_grad_cuda(float* row_loss, T* logits, int64_t row_stride, const int32_t* targets,
                                      int64_t rows, int64_t vocab, int32_t ignore_index, bool write_gradient,
                                      cudaStream_t stream) {
  check_rows("cross_entropy loss and gradient", rows);
  FT_CHECK(row_stride >= vocab, "cross_entropy loss and gradient: row stride ", row_stride,
           " is shorter than the vocabulary (", vocab, ")");
  if (rows == 0) return;
  const int shared_bytes = write_gradient ? shared_row_bytes<T>(vocab) : 0;
  if (shared_bytes > 0) {
    const auto kernel = cross_entropy_loss_and_grad_shared_kernel<cuda_t<T>>;
    FT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes));
    FT_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
    kernel<<<static_cast<int>(rows), kRowThreads, shared_bytes, stream>>>(row_loss, device_ptr(logits), row_stride,
                                                                          targets, vocab, ignore_index);
  } else {
    cross_entropy_loss_and_grad_kernel<<<static_cast<int>(rows), kRowThreads, 0, stream>>>(
        row_loss, device_ptr(logits), row_stride, targets, vocab, ignore_index, write_gradient);
  }
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
  // Row r of each starts r * vocab elements in: they split into packs alike when their bases
  // sit at the same offset from a 16-byte boundary (always, for fresh tensors).
  const auto kernel = offset_in_pack(dlogits) == offset_in_pack(logits)
                          ? cross_entropy_backward_kernel<kVector<T>, cuda_t<T>>
                          : cross_entropy_backward_kernel<1, cuda_t<T>>;
  kernel<<<static_cast<int>(rows), kRowThreads, 0, stream>>>(device_ptr(dlogits), device_ptr(logits), lse, targets,
                                                             grad_loss, count, vocab, ignore_index);
  FT_CUDA_CHECK_LAUNCH();
}

#define FT_INSTANTIATE(T)                                                                                           \
  template void cross_entropy_forward_cuda<T>(float*, int32_t*, float*, float*, const T*, const int32_t*, int64_t,  \
                                              int64_t, int32_t, cudaStream_t);                                      \
  template void cross_entropy_backward_cuda<T>(T*, const T*, const float*, const int32_t*, const float*,            \
                                               const int32_t*, int64_t, int64_t, int32_t, cudaStream_t);            \
  template void cross_entropy_loss_and_grad_cuda<T>(float*, T*, int64_t, const int32_t*, int64_t, int64_t, int32_t, \
                                                    bool, cudaStream_t);                                            \
  template void scale_loss_gradient_cuda<T>(T*, const float*, const float*, const int32_t*, int64_t, cudaStream_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(ft::bfloat16)
FT_INSTANTIATE(ft::half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
