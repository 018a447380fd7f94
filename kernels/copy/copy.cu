// Element copies on the GPU: strided gather, dtype conversion and fill, as grid-stride loops.
// Conversions go through double exactly as kernels/copy/copy_cpu.cpp does, so that the bits
// match it: f64 -> f16 rounds to float first and then to half (two roundings, as on the CPU),
// and NaNs are converted by hand, because GPU conversions may return a canonical NaN where
// the CPU keeps the sign and the leading payload bits (and sets the quiet bit).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/copy/copy_cuda.h"

namespace ft::kernels {
namespace {

constexpr int kThreads = 256;
// Enough blocks to fill any current GPU several times over; larger inputs loop.
constexpr int64_t kMaxBlocks = 4096;

int blocks_for(int64_t n) { return static_cast<int>(std::min((n + kThreads - 1) / kThreads, kMaxBlocks)); }

__device__ int64_t first_index() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ int64_t index_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ---- float formats, NaNs as the CPU converts them ----------------------------------------------

__device__ double widen(float f) {
  if (!isnan(f)) return f;
  const uint64_t u = __float_as_uint(f);
  return __longlong_as_double(
      static_cast<long long>(((u & 0x80000000u) << 32) | 0x7ff8000000000000ull | ((u & 0x7fffffu) << 29)));
}

__device__ float narrow(double d) {
  if (!isnan(d)) return __double2float_rn(d);
  const uint64_t u = __double_as_longlong(d);
  return __uint_as_float(static_cast<uint32_t>(((u >> 32) & 0x80000000u) | 0x7fc00000u | ((u >> 29) & 0x7fffffu)));
}

__device__ float half_to_float(__half h) {
  const uint32_t bits = __half_as_ushort(h);
  if ((bits & 0x7fffu) <= 0x7c00u) return __half2float(h);
  return __uint_as_float(((bits & 0x8000u) << 16) | 0x7f800000u | ((bits & 0x3ffu) << 13));  // NaN
}

__device__ __half float_to_half(float f) {
  if (!isnan(f)) return __float2half_rn(f);
  return __ushort_as_half(static_cast<unsigned short>(((__float_as_uint(f) >> 16) & 0x8000u) | 0x7e00u));
}

// bf16 is the top half of a float: widening is a shift, NaN or not.
__device__ float bfloat16_to_float(__nv_bfloat16 b) {
  return __uint_as_float(static_cast<uint32_t>(__bfloat16_as_ushort(b)) << 16);
}

__device__ __nv_bfloat16 float_to_bfloat16(float f) {
  if (!isnan(f)) return __float2bfloat16_rn(f);
  return __ushort_as_bfloat16(static_cast<unsigned short>((__float_as_uint(f) >> 16) | 0x40u));
}

// ---- loads to double and stores from double, as copy_cpu.cpp's load and store ----------------

__device__ double load(float v) { return widen(v); }
__device__ double load(double v) { return v; }
__device__ double load(__half v) { return widen(half_to_float(v)); }
__device__ double load(__nv_bfloat16 v) { return widen(bfloat16_to_float(v)); }
__device__ double load(int32_t v) { return v; }
__device__ double load(uint8_t v) { return v; }

__device__ void store(float& out, double v) { out = narrow(v); }
__device__ void store(double& out, double v) { out = v; }
__device__ void store(__half& out, double v) { out = float_to_half(narrow(v)); }
__device__ void store(__nv_bfloat16& out, double v) { out = float_to_bfloat16(narrow(v)); }
__device__ void store(int32_t& out, double v) { out = static_cast<int32_t>(v); }
__device__ void store(uint8_t& out, double v) { out = static_cast<uint8_t>(v); }

// ---- kernels -----------------------------------------------------------------------------------

template <class Src, class Dst>
__global__ void convert_kernel(Dst* dst, const Src* src, int64_t n) {
  for (int64_t i = first_index(); i < n; i += index_stride()) store(dst[i], load(src[i]));
}

template <class Element>
__global__ void gather_strided_kernel(Element* dst, const Element* src, StridedLayout layout, int64_t n) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    int64_t rest = i, offset = 0;
    for (int d = layout.ndim - 1; d >= 0; --d) {
      offset += (rest % layout.shape[d]) * layout.strides[d];
      rest /= layout.shape[d];
    }
    dst[i] = src[offset];
  }
}

template <class Element>
__global__ void fill_kernel(Element* dst, Element value, int64_t n) {
  for (int64_t i = first_index(); i < n; i += index_stride()) dst[i] = value;
}

// ---- dispatch ----------------------------------------------------------------------------------

// Calls f(T{}) with the device element type of a dtype.
template <class F>
void with_element_type(DType type, F&& f) {
  switch (type) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    case DType::f16:
      return f(__half{});
    case DType::bf16:
      return f(__nv_bfloat16{});
    case DType::i32:
      return f(int32_t{});
    case DType::u8:
      return f(uint8_t{});
    case DType::nf4:
      break;
  }
  throw Error("convert: nf4 is a packed type and converts only through (de)quantisation");
}

// Calls f(T{}) with an unsigned integer type of `bytes` bytes: copies and fills move bits only.
template <class F>
void with_bits_type(int bytes, F&& f) {
  switch (bytes) {
    case 1:
      return f(uint8_t{});
    case 2:
      return f(uint16_t{});
    case 4:
      return f(uint32_t{});
    case 8:
      return f(uint64_t{});
  }
  throw Error(str("copy kernels: elements of ", bytes, " bytes are not supported (expected 1, 2, 4 or 8)"));
}

}  // namespace

void gather_strided_cuda(void* dst, const void* src, int elem_bytes, const StridedLayout& layout, int64_t n,
                         cudaStream_t stream) {
  if (n == 0) return;
  with_bits_type(elem_bytes, [&](auto tag) {
    using Element = decltype(tag);
    gather_strided_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<Element*>(dst),
                                                                  static_cast<const Element*>(src), layout, n);
  });
  FT_CUDA_CHECK_LAUNCH();
}

void convert_cuda(void* dst, DType dst_type, const void* src, DType src_type, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (dst_type == src_type) {
    FT_CUDA_CHECK(cudaMemcpyAsync(dst, src, dtype_bytes(dst_type, n), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  with_element_type(src_type, [&](auto src_tag) {
    with_element_type(dst_type, [&](auto dst_tag) {
      using Src = decltype(src_tag);
      using Dst = decltype(dst_tag);
      if constexpr (!std::is_same_v<Src, Dst>)
        convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<Dst*>(dst), static_cast<const Src*>(src), n);
    });
  });
  FT_CUDA_CHECK_LAUNCH();
}

void fill_cuda(void* dst, int elem_bytes, uint64_t pattern, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  with_bits_type(elem_bytes, [&](auto tag) {
    using Element = decltype(tag);
    fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<Element*>(dst), static_cast<Element>(pattern), n);
  });
  FT_CUDA_CHECK_LAUNCH();
}

}  // namespace ft::kernels
