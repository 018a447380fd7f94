// Element copies on the GPU: strided gather, dtype conversion and fill, as grid-stride loops.
// Conversions go through double exactly as kernels/copy/copy_cpu.cpp does, so that the bits
// match it: f64 -> f16 rounds to float first and then to half (two roundings, as on the CPU),
// and NaNs are converted by hand, because GPU conversions may return a canonical NaN where
// the CPU keeps the sign and the leading payload bits (and sets the quiet bit).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>

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

// Elements a thread of the gather moves a round: all their loads are issued before the first
// store, so that each thread has that many loads in flight rather than one (bench kernels' head
// split: 0.0286 -> 0.0275 ms a call, on the H200).
constexpr int kGatherUnroll = 4;

// The offset in the layout of the row-major index i: i is split into one coordinate a
// dimension, innermost first.
template <class Index>
__device__ __forceinline__ Index offset_of(Index i, const StridedLayout& layout) {
  Index rest = i, offset = 0;
  for (int d = layout.ndim - 1; d >= 0; --d) {
    const Index size = static_cast<Index>(layout.shape[d]);
    offset += rest % size * static_cast<Index>(layout.strides[d]);
    rest /= size;
  }
  return offset;
}

// dst[i] = src[offset_of(i)], kGatherUnroll indices a thread a round, one grid apart. Index is
// uint32_t when every index and offset fits (the launcher checks), since a 64-bit division is a
// long subroutine and a 32-bit one a few instructions.
template <class Element, class Index>
__global__ void gather_strided_kernel(Element* __restrict__ dst, const Element* __restrict__ src, StridedLayout layout,
                                      Index n) {
  const Index step = static_cast<Index>(index_stride());
  for (Index first = static_cast<Index>(first_index()); first < n; first += kGatherUnroll * step) {
    Element values[kGatherUnroll];
#pragma unroll
    for (int u = 0; u < kGatherUnroll; ++u) {
      const Index i = first + u * step;
      if (i < n) values[u] = src[offset_of(i, layout)];
    }
#pragma unroll
    for (int u = 0; u < kGatherUnroll; ++u) {
      const Index i = first + u * step;
      if (i < n) dst[i] = values[u];
    }
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
    case 16:
      return f(uint4{});
  }
  throw Error(str("copy kernels: elements of ", bytes, " bytes are not supported (expected 1, 2, 4, 8 or 16)"));
}

// ---- strided layouts, made cheap to walk ------------------------------------------------------

// The same view with size-1 dimensions dropped and neighbours merged where one steps over the
// other exactly (stride[d] == shape[d + 1] * stride[d + 1]): a transposed [B, T, H, D] view of
// GPT-2's heads becomes 3 dimensions, a slice of whole rows 2, a contiguous view 1.
StridedLayout simplify(const StridedLayout& in) {
  StridedLayout out;
  for (int d = 0; d < in.ndim; ++d) {
    if (in.shape[d] == 1) continue;
    if (out.ndim > 0 && out.strides[out.ndim - 1] == in.shape[d] * in.strides[d]) {
      out.shape[out.ndim - 1] *= in.shape[d];
      out.strides[out.ndim - 1] = in.strides[d];
      continue;
    }
    out.shape[out.ndim] = in.shape[d];
    out.strides[out.ndim] = in.strides[d];
    ++out.ndim;
  }
  if (out.ndim == 0) {  // a single element
    out.ndim = 1;
    out.shape[0] = 1;
    out.strides[0] = 1;
  }
  return out;
}

struct WideLayout {
  StridedLayout layout;  // in units of `bytes`
  int bytes;
};

// The layout in elements of up to 16 bytes: when the innermost dimension is contiguous, several
// elements move as one wide element (8 bf16 values in one 16-byte load), so the index
// arithmetic and the memory instructions fall by that factor. A width is taken when the
// innermost size, every other stride and both addresses are whole multiples of it.
WideLayout widen_elements(const StridedLayout& layout, int elem_bytes, const void* dst, const void* src) {
  const int inner = layout.ndim - 1;
  for (int bytes = 16; bytes > elem_bytes; bytes /= 2) {
    const int64_t factor = bytes / elem_bytes;
    bool fits = layout.strides[inner] == 1 && layout.shape[inner] % factor == 0 &&
                reinterpret_cast<uintptr_t>(dst) % bytes == 0 && reinterpret_cast<uintptr_t>(src) % bytes == 0;
    for (int d = 0; d < inner; ++d) fits = fits && layout.strides[d] % factor == 0;
    if (!fits) continue;
    StridedLayout wide = layout;
    wide.shape[inner] /= factor;
    for (int d = 0; d < inner; ++d) wide.strides[d] /= factor;
    return {wide, bytes};
  }
  return {layout, elem_bytes};
}

// The largest element offset the layout reaches, or INT64_MAX where a stride is negative (the
// 32-bit index then is not used).
int64_t highest_offset(const StridedLayout& layout) {
  int64_t offset = 0;
  for (int d = 0; d < layout.ndim; ++d) {
    if (layout.strides[d] < 0) return INT64_MAX;
    offset += (layout.shape[d] - 1) * layout.strides[d];
  }
  return offset;
}

// How far the gather's index may run past n before its loop ends (a round of the grid).
int64_t index_slack() { return kGatherUnroll * kMaxBlocks * kThreads; }

}  // namespace

void gather_strided_cuda(void* dst, const void* src, int elem_bytes, const StridedLayout& layout, int64_t n,
                         cudaStream_t stream) {
  if (n == 0) return;
  const WideLayout wide = widen_elements(simplify(layout), elem_bytes, dst, src);
  const int64_t last_offset = highest_offset(wide.layout);
  const int64_t wide_n = n * elem_bytes / wide.bytes;
  const bool narrow_index = wide_n + index_slack() <= UINT32_MAX && last_offset <= UINT32_MAX;
  with_bits_type(wide.bytes, [&](auto tag) {
    using Element = decltype(tag);
    auto* d = static_cast<Element*>(dst);
    const auto* s = static_cast<const Element*>(src);
    const int blocks = blocks_for((wide_n + kGatherUnroll - 1) / kGatherUnroll);
    if (narrow_index)
      gather_strided_kernel<<<blocks, kThreads, 0, stream>>>(d, s, wide.layout, static_cast<uint32_t>(wide_n));
    else
      gather_strided_kernel<<<blocks, kThreads, 0, stream>>>(d, s, wide.layout, wide_n);
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
  FT_CHECK(elem_bytes <= 8, "fill_cuda: elements of ", elem_bytes, " bytes (the pattern holds 8)");
  with_bits_type(elem_bytes, [&](auto tag) {
    using Element = decltype(tag);
    if constexpr (sizeof(Element) <= sizeof(pattern))
      fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<Element*>(dst), static_cast<Element>(pattern), n);
  });
  FT_CUDA_CHECK_LAUNCH();
}

}  // namespace ft::kernels
