#include "kernels/copy/copy_cpu.h"

#include <cstring>

#include "framework/error.h"

namespace ft::kernels {

void gather_strided_cpu(void* dst, const void* src, int elem_bytes, const std::vector<int64_t>& shape,
                        const std::vector<int64_t>& strides) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (n == 0) return;
  auto* out = static_cast<char*>(dst);
  const auto* in = static_cast<const char*>(src);
  // Walk the destination in row-major order, keeping a multi-index into the source.
  std::vector<int64_t> index(ndim, 0);
  int64_t src_offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * elem_bytes, in + src_offset * elem_bytes, elem_bytes);
    for (int64_t d = ndim - 1; d >= 0; --d) {
      if (++index[d] < shape[d]) {
        src_offset += strides[d];
        break;
      }
      src_offset -= strides[d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
}

namespace {

double load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f64: return static_cast<const double*>(p)[i];
    case DType::f16: return to_float(static_cast<const half*>(p)[i]);
    case DType::bf16: return to_float(static_cast<const bfloat16*>(p)[i]);
    case DType::i32: return static_cast<const int32_t*>(p)[i];
    case DType::u8: return static_cast<const uint8_t*>(p)[i];
    case DType::nf4: break;
  }
  throw Error("convert: nf4 is a packed type and converts only through dequantisation");
}

void store(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = static_cast<float>(v); return;
    case DType::f64: static_cast<double*>(p)[i] = v; return;
    case DType::f16: static_cast<half*>(p)[i] = to_half(static_cast<float>(v)); return;
    case DType::bf16: static_cast<bfloat16*>(p)[i] = to_bfloat16(static_cast<float>(v)); return;
    case DType::i32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); return;
    case DType::u8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); return;
    case DType::nf4: break;
  }
  throw Error("convert: nf4 is a packed type and converts only through quantisation");
}

}  // namespace

void convert_cpu(void* dst, DType dst_type, const void* src, DType src_type, int64_t n) {
  if (dst_type == src_type) {
    std::memcpy(dst, src, dtype_bytes(dst_type, n));
    return;
  }
  FT_CHECK(dst_type != DType::nf4 && src_type != DType::nf4,
           "convert: nf4 is a packed type and converts only through (de)quantisation");
  // Going through double is exact for every pair here: double holds f32, f16, bf16 and i32
  // values exactly, and the narrowing store rounds once.
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) store(dst, dst_type, i, load(src, src_type, i));
}

void fill_cpu(void* dst, DType type, int64_t n, double value) {
  FT_CHECK(type != DType::nf4, "fill: nf4 is a packed type and is written only by quantisation");
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) store(dst, type, i, value);
}

}  // namespace ft::kernels
