// Softmax over rows on CUDA, plain or with attention's key mask, and its backward.
//
// Forward, per row: y[j] = exp(x[j] - m) / sum_k exp(x[k] - m), m = max_k x[k]. One warp owns a
// row; each lane walks every 32nd entry keeping an online (max, sum) pair: on a new maximum
// m' the running sum is rescaled by exp(m - m') before adding 1, so max and sum take one read
// of the row instead of two. The lanes' pairs then merge the same way across the warp, and a
// second read writes y. Masked keys and -inf entries add nothing; a row where nothing is left
// (a padding query, an all -inf row) is all zeros, not NaN, as on the CPU.
//
// Backward, per row: dx[j] = scale * y[j] * (dy[j] - sum_k dy[k] y[k]), a warp sum and a
// second read. Masks are not needed there: y is 0 wherever a key was masked.
//
// A warp per row, not a block: attention has B*H*T rows of T <= a few thousand entries, and
// the op's rows (up to a vocabulary of 50257) are many too, so warps fill the GPU without the
// block-wide synchronisation a row per block would need. The math is fp32 with expf (not
// __expf, whose error grows with |x| and would show against an f32 reference).
#include <cmath>

#include "framework/cuda/check.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/softmax/softmax_cuda.h"

namespace ft::kernels {
namespace {

constexpr int kWarp = 32;
// 8 rows per 256-thread block: small blocks keep the tail of the last wave short.
constexpr int kRowsPerBlock = 8;

// Which keys one row (a query) sees: those before `end` whose segment id equals the query's.
struct RowKeys {
  int64_t end;
  const int32_t* segments;  // the row's batch of segment ids, or null
  int32_t segment;

  __device__ bool visible(int64_t key) const { return key < end && (!segments || segments[key] == segment); }
};

__device__ RowKeys row_keys(const KeyMask& mask, int64_t row, int64_t cols) {
  RowKeys keys{cols, nullptr, 0};
  const int64_t query = row % cols;
  if (mask.causal) keys.end = query + 1;
  if (mask.segment_ids) {
    keys.segments = mask.segment_ids + (row / (mask.heads * cols)) * cols;
    keys.segment = keys.segments[query];
    if (keys.segment < 0) keys.end = 0;  // padding sees nothing
  }
  return keys;
}

// Adds exp(v - max) to a running (max, sum) pair; -inf adds nothing (and exp(-inf - -inf) would be NaN).
__device__ __forceinline__ void online_add(float& max, float& sum, float v) {
  if (v == -INFINITY) return;
  if (v > max) {
    sum = sum * expf(max - v) + 1.0f;
    max = v;
  } else {
    sum += expf(v - max);
  }
}

// Merges the (max, sum) pairs of a warp's lanes; every lane gets the row's pair.
__device__ __forceinline__ void warp_merge(float& max, float& sum) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
    const float other_max = __shfl_xor_sync(0xffffffffu, max, offset);
    const float other_sum = __shfl_xor_sync(0xffffffffu, sum, offset);
    const float merged = fmaxf(max, other_max);
    if (merged == -INFINITY) continue;  // both empty
    sum = (max == -INFINITY ? 0.0f : sum * expf(max - merged)) +
          (other_max == -INFINITY ? 0.0f : other_sum * expf(other_max - merged));
    max = merged;
  }
}

__device__ __forceinline__ int64_t warp_row() {
  return static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
}

template <class In, class Out>
__global__ void softmax_forward_kernel(Out* y, const In* x, int64_t rows, int64_t cols, KeyMask mask) {
  const int64_t row = warp_row();
  if (row >= rows) return;  // a whole warp leaves together: the shuffles below stay full-warp
  const int lane = threadIdx.x % kWarp;
  const In* xr = x + row * cols;
  Out* yr = y + row * cols;
  const RowKeys keys = row_keys(mask, row, cols);

  float max = -INFINITY, sum = 0.0f;
  for (int64_t j = lane; j < keys.end; j += kWarp)
    if (keys.visible(j)) online_add(max, sum, to_float(xr[j]));
  warp_merge(max, sum);

  const bool empty = max == -INFINITY;
  const float inv_sum = empty ? 0.0f : 1.0f / sum;
  for (int64_t j = lane; j < cols; j += kWarp) {
    const float p = !empty && keys.visible(j) ? expf(to_float(xr[j]) - max) * inv_sum : 0.0f;
    yr[j] = from_float<Out>(p);
  }
}

template <class Grad, class T>
__global__ void softmax_backward_kernel(T* dx, const Grad* dy, const T* y, int64_t rows, int64_t cols, float scale) {
  const int64_t row = warp_row();
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const Grad* dyr = dy + row * cols;
  const T* yr = y + row * cols;
  T* dxr = dx + row * cols;
  float dot = 0.0f;
  for (int64_t j = lane; j < cols; j += kWarp) dot += to_float(dyr[j]) * to_float(yr[j]);
  dot = warp_sum(dot);
  for (int64_t j = lane; j < cols; j += kWarp)
    dxr[j] = from_float<T>(scale * to_float(yr[j]) * (to_float(dyr[j]) - dot));
}

unsigned row_blocks(int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

template <class In, class Out>
void softmax_forward_cuda(Out* y, const In* x, int64_t rows, int64_t cols, const KeyMask& mask, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  softmax_forward_kernel<<<row_blocks(rows), kRowsPerBlock * kWarp, 0, stream>>>(device_ptr(y), device_ptr(x), rows,
                                                                                 cols, mask);
  FT_CUDA_CHECK_LAUNCH();
}

template <class Grad, class T>
void softmax_backward_cuda(T* dx, const Grad* dy, const T* y, int64_t rows, int64_t cols, float scale,
                           cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  softmax_backward_kernel<<<row_blocks(rows), kRowsPerBlock * kWarp, 0, stream>>>(device_ptr(dx), device_ptr(dy),
                                                                                  device_ptr(y), rows, cols, scale);
  FT_CUDA_CHECK_LAUNCH();
}

#define FT_INSTANTIATE(In, Out)                                                                                 \
  template void softmax_forward_cuda<In, Out>(Out*, const In*, int64_t, int64_t, const KeyMask&, cudaStream_t); \
  template void softmax_backward_cuda<In, Out>(Out*, const In*, const Out*, int64_t, int64_t, float, cudaStream_t);
FT_INSTANTIATE(float, float)
FT_INSTANTIATE(bfloat16, bfloat16)
FT_INSTANTIATE(half, half)
FT_INSTANTIATE(float, bfloat16)
FT_INSTANTIATE(float, half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
