// Elementwise kernels on the GPU: broadcasting add/sub/mul, scale, in-place accumulation and
// GELU (GPT-2's tanh form or BERT's exact erf form) and ReLU with their backwards. Each element is loaded, converted to
// fp32, computed and rounded once to T on the store, so bf16/f16 results differ from the fp32 ones only by that
// rounding.
//
// Everything without broadcasting goes through one map kernel over contiguous arrays. These
// ops are pure memory traffic, so it moves 16 bytes per load and store (4 floats, 8 halves)
// when every pointer involved is 16-byte aligned; a tensor view can start anywhere, so the
// alignment is checked at launch and an unaligned call falls back to one element per load.
//
// Broadcasting reads the inputs through strides (0 along a stretched dimension). Before the
// launch, neighbouring dimensions that are contiguous in both inputs are merged, so the usual
// cases need little index arithmetic: a bias [C] over [B, T, C] becomes [B*T, C] with b's
// strides (0, 1), and equal shapes become one contiguous run that takes the map kernel.
#include <climits>
#include <cstdint>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/elementwise/elementwise_cuda.h"

namespace ft::kernels {
namespace {

// ---- the ops, in fp32 --------------------------------------------------------------------------

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct SubOp {
  __device__ float operator()(float a, float b) const { return a - b; }
};
struct MulOp {
  __device__ float operator()(float a, float b) const { return a * b; }
};
struct ScaleOp {
  float factor;
  __device__ float operator()(float x) const { return x * factor; }
};

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// GELU's tanh form, 0.5 x (1 + tanh u), written as x sigmoid(2u) (1 + tanh u = 2 sigmoid(2u)):
// for x far below 0, 1 + tanhf(u) cancels to a few ulps of 1, while sigmoid(2u) keeps every
// digit of the small result. The backward uses 1 - tanh^2 u = 4 s (1 - s) with s = sigmoid(2u).
struct GeluOp {
  __device__ float operator()(float x) const {
    const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
    return x / (1.0f + expf(-2.0f * u));
  }
};
struct GeluBackwardOp {
  __device__ float operator()(float dy, float x) const {
    const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
    const float s = 1.0f / (1.0f + expf(-2.0f * u));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
    return dy * (s + 2.0f * x * s * (1.0f - s) * du);
  }
};

constexpr float kSqrtHalf = 0.70710678118654752f;    // 1/sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;  // 1/sqrt(2 pi)

// GELU's erf form, x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2: erfc
// keeps Phi's digits where 1 + erf would cancel (x far below 0).
struct GeluErfOp {
  __device__ float operator()(float x) const { return 0.5f * x * erfcf(-x * kSqrtHalf); }
};
struct GeluErfBackwardOp {
  __device__ float operator()(float dy, float x) const {
    return dy * (0.5f * erfcf(-x * kSqrtHalf) + x * kInvSqrt2Pi * expf(-0.5f * x * x));
  }
};
struct ReluOp {
  __device__ float operator()(float x) const { return x > 0.0f ? x : 0.0f; }
};
struct ReluBackwardOp {
  __device__ float operator()(float dy, float x) const { return x > 0.0f ? dy : 0.0f; }
};

// Calls f(op) with the functor of a BinaryOp.
template <class F>
void with_binary_op(BinaryOp op, F&& f) {
  switch (op) {
    case BinaryOp::add:
      return f(AddOp{});
    case BinaryOp::sub:
      return f(SubOp{});
    case BinaryOp::mul:
      return f(MulOp{});
  }
  throw Error("binary_cuda: unknown BinaryOp");
}

// ---- contiguous map ---------------------------------------------------------------------------

template <class T, int kInputs>
struct Inputs {
  const T* data[kInputs];
};

template <class Op>
__device__ __forceinline__ float apply(const Op& op, const float (&v)[1]) {
  return op(v[0]);
}
template <class Op>
__device__ __forceinline__ float apply(const Op& op, const float (&v)[2]) {
  return op(v[0], v[1]);
}

// out[i] = op(in_0[i], ...) for i < n, kPack elements per load (1: no alignment needed). out
// may alias an input: each element is read and written by the same thread.
template <int kPack, int kInputs, class T, class Op>
__global__ void map_kernel(T* out, Inputs<T, kInputs> in, int64_t n, Op op) {
  using P = Pack<T, kPack>;
  const int64_t packs = n / kPack;
  for (int64_t p = global_index(); p < packs; p += grid_stride()) {
    P loaded[kInputs];
#pragma unroll
    for (int j = 0; j < kInputs; ++j) loaded[j] = reinterpret_cast<const P*>(in.data[j])[p];
    P result;
#pragma unroll
    for (int k = 0; k < kPack; ++k) {
      float v[kInputs];
#pragma unroll
      for (int j = 0; j < kInputs; ++j) v[j] = to_float(loaded[j].v[k]);
      result.v[k] = from_float<T>(apply(op, v));
    }
    reinterpret_cast<P*>(out)[p] = result;
  }
  // The tail that does not fill a pack (empty when kPack == 1).
  for (int64_t i = packs * kPack + global_index(); i < n; i += grid_stride()) {
    float v[kInputs];
#pragma unroll
    for (int j = 0; j < kInputs; ++j) v[j] = to_float(in.data[j][i]);
    out[i] = from_float<T>(apply(op, v));
  }
}

template <int kInputs, class T, class Op>
void launch_map(T* out, Inputs<T, kInputs> in, int64_t n, Op op, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kVector = kPackBytes / sizeof(T);
  bool aligned = is_pack_aligned(out);
  for (int j = 0; j < kInputs; ++j) aligned = aligned && is_pack_aligned(in.data[j]);
  if (aligned)
    map_kernel<kVector><<<blocks_for((n + kVector - 1) / kVector), kBlockThreads, 0, stream>>>(out, in, n, op);
  else
    map_kernel<1><<<blocks_for(n), kBlockThreads, 0, stream>>>(out, in, n, op);
  FT_CUDA_CHECK_LAUNCH();
}

// ---- broadcasting -----------------------------------------------------------------------------

struct BroadcastLayout {
  int ndim = 0;
  int64_t shape[kMaxBroadcastDims] = {};
  int64_t a_strides[kMaxBroadcastDims] = {};
  int64_t b_strides[kMaxBroadcastDims] = {};
};

// Drops size-1 dimensions and merges a dimension into the next inner one when both inputs
// step over it as over one longer dimension (stride = inner stride * inner size; 0 and 0 too).
BroadcastLayout merge_dimensions(const std::vector<int64_t>& shape, const std::vector<int64_t>& a_strides,
                                 const std::vector<int64_t>& b_strides) {
  std::vector<int64_t> sizes, as, bs;  // innermost first
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (!sizes.empty() && a_strides[d] == as.back() * sizes.back() && b_strides[d] == bs.back() * sizes.back()) {
      sizes.back() *= shape[d];
      continue;
    }
    sizes.push_back(shape[d]);
    as.push_back(a_strides[d]);
    bs.push_back(b_strides[d]);
  }
  FT_CHECK(sizes.size() <= static_cast<size_t>(kMaxBroadcastDims), "binary_cuda: a broadcast over ", sizes.size(),
           " dimensions that cannot be merged; at most ", kMaxBroadcastDims, " are supported");
  BroadcastLayout layout;
  layout.ndim = static_cast<int>(sizes.size());
  for (int d = 0; d < layout.ndim; ++d) {  // outermost first, as the kernel walks them
    layout.shape[d] = sizes[layout.ndim - 1 - d];
    layout.a_strides[d] = as[layout.ndim - 1 - d];
    layout.b_strides[d] = bs[layout.ndim - 1 - d];
  }
  return layout;
}

bool is_contiguous_run(const BroadcastLayout& layout) {
  return layout.ndim == 1 && layout.a_strides[0] == 1 && layout.b_strides[0] == 1;
}

// Index is uint32_t when every index and offset fits (n < 2^32: offsets stay below each input's
// size, which is at most n), as 64-bit division costs several times more instructions.
template <class Index, class T, class Op>
__global__ void broadcast_kernel(T* out, const T* a, const T* b, BroadcastLayout layout, int64_t n, Op op) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    Index rest = static_cast<Index>(i), offset_a = 0, offset_b = 0;
    for (int d = layout.ndim - 1; d > 0; --d) {
      const Index size = static_cast<Index>(layout.shape[d]);
      const Index index = rest % size;
      rest /= size;
      offset_a += index * static_cast<Index>(layout.a_strides[d]);
      offset_b += index * static_cast<Index>(layout.b_strides[d]);
    }
    if (layout.ndim > 0) {  // what is left of the index is the outermost dimension's
      offset_a += rest * static_cast<Index>(layout.a_strides[0]);
      offset_b += rest * static_cast<Index>(layout.b_strides[0]);
    }
    out[i] = from_float<T>(op(to_float(a[offset_a]), to_float(b[offset_b])));
  }
}

template <class T, class Op>
void launch_broadcast(T* out, const T* a, const T* b, const BroadcastLayout& layout, int64_t n, Op op,
                      cudaStream_t stream) {
  if (n <= static_cast<int64_t>(UINT32_MAX))
    broadcast_kernel<uint32_t><<<blocks_for(n), kBlockThreads, 0, stream>>>(out, a, b, layout, n, op);
  else
    broadcast_kernel<int64_t><<<blocks_for(n), kBlockThreads, 0, stream>>>(out, a, b, layout, n, op);
  FT_CUDA_CHECK_LAUNCH();
}

}  // namespace

// ---- launchers --------------------------------------------------------------------------------

template <class T>
void binary_cuda(BinaryOp op, T* out, const T* a, const T* b, const std::vector<int64_t>& shape,
                 const std::vector<int64_t>& a_strides, const std::vector<int64_t>& b_strides, cudaStream_t stream) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (n == 0) return;
  const BroadcastLayout layout = merge_dimensions(shape, a_strides, b_strides);
  with_binary_op(op, [&](auto functor) {
    if (is_contiguous_run(layout)) {
      launch_map<2>(device_ptr(out), Inputs<cuda_t<T>, 2>{{device_ptr(a), device_ptr(b)}}, n, functor, stream);
      return;
    }
    launch_broadcast(device_ptr(out), device_ptr(a), device_ptr(b), layout, n, functor, stream);
  });
}

template <class T>
void scale_cuda(T* out, const T* x, float factor, int64_t n, cudaStream_t stream) {
  launch_map<1>(device_ptr(out), Inputs<cuda_t<T>, 1>{{device_ptr(x)}}, n, ScaleOp{factor}, stream);
}

template <class T>
void accumulate_cuda(T* out, const T* x, int64_t n, cudaStream_t stream) {
  const cuda_t<T>* current = device_ptr(static_cast<const T*>(out));
  launch_map<2>(device_ptr(out), Inputs<cuda_t<T>, 2>{{current, device_ptr(x)}}, n, AddOp{}, stream);
}

template <class T>
void gelu_forward_cuda(T* y, const T* x, int64_t n, cudaStream_t stream, GeluForm form) {
  const Inputs<cuda_t<T>, 1> in{{device_ptr(x)}};
  if (form == GeluForm::erf) return launch_map<1>(device_ptr(y), in, n, GeluErfOp{}, stream);
  launch_map<1>(device_ptr(y), in, n, GeluOp{}, stream);
}

template <class T>
void gelu_backward_cuda(T* dx, const T* dy, const T* x, int64_t n, cudaStream_t stream, GeluForm form) {
  const Inputs<cuda_t<T>, 2> in{{device_ptr(dy), device_ptr(x)}};
  if (form == GeluForm::erf) return launch_map<2>(device_ptr(dx), in, n, GeluErfBackwardOp{}, stream);
  launch_map<2>(device_ptr(dx), in, n, GeluBackwardOp{}, stream);
}

template <class T>
void relu_forward_cuda(T* y, const T* x, int64_t n, cudaStream_t stream) {
  launch_map<1>(device_ptr(y), Inputs<cuda_t<T>, 1>{{device_ptr(x)}}, n, ReluOp{}, stream);
}

template <class T>
void relu_backward_cuda(T* dx, const T* dy, const T* x, int64_t n, cudaStream_t stream) {
  launch_map<2>(device_ptr(dx), Inputs<cuda_t<T>, 2>{{device_ptr(dy), device_ptr(x)}}, n, ReluBackwardOp{}, stream);
}

#define FT_INSTANTIATE(T)                                                                               \
  template void binary_cuda<T>(BinaryOp, T*, const T*, const T*, const std::vector<int64_t>&,           \
                               const std::vector<int64_t>&, const std::vector<int64_t>&, cudaStream_t); \
  template void scale_cuda<T>(T*, const T*, float, int64_t, cudaStream_t);                              \
  template void accumulate_cuda<T>(T*, const T*, int64_t, cudaStream_t);                                \
  template void gelu_forward_cuda<T>(T*, const T*, int64_t, cudaStream_t, GeluForm);                    \
  template void gelu_backward_cuda<T>(T*, const T*, const T*, int64_t, cudaStream_t, GeluForm);         \
  template void relu_forward_cuda<T>(T*, const T*, int64_t, cudaStream_t);                              \
  template void relu_backward_cuda<T>(T*, const T*, const T*, int64_t, cudaStream_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(ft::bfloat16)
FT_INSTANTIATE(ft::half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
