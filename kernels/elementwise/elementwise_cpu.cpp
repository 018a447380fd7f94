#include "kernels/elementwise/elementwise_cpu.h"

#include <cmath>

namespace ft::kernels {
namespace {

template <class T>
T apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
  }
  return T(0);
}

// Offset of the first element of row `row` (all dimensions but the last) through `strides`.
int64_t row_offset(int64_t row, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t offset = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d) {
    offset += (row % shape[d]) * strides[d];
    row /= shape[d];
  }
  return offset;
}

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCubic = 0.044715;
constexpr double kSqrtHalf = 0.7071067811865476;    // 1/sqrt(2)
constexpr double kInvSqrt2Pi = 0.3989422804014327;  // 1/sqrt(2 pi)

template <class T>
T gelu_tanh(T v) {
  const T u = T(kSqrt2OverPi) * (v + T(kGeluCubic) * v * v * v);
  return T(0.5) * v * (T(1) + std::tanh(u));
}

template <class T>
T gelu_tanh_slope(T v) {
  const T t = std::tanh(T(kSqrt2OverPi) * (v + T(kGeluCubic) * v * v * v));
  const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluCubic) * v * v);
  return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du;
}

template <class T>
T gelu_erf(T v) {
  return T(0.5) * v * (T(1) + std::erf(v * T(kSqrtHalf)));
}

template <class T>
T gelu_erf_slope(T v) {
  return T(0.5) * (T(1) + std::erf(v * T(kSqrtHalf))) + v * T(kInvSqrt2Pi) * std::exp(T(-0.5) * v * v);
}

// out[i] = f(a[i], b[i]); out may alias a or b.
template <class T, class F>
void map_cpu(T* out, const T* a, const T* b, int64_t n, F f) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}

}  // namespace

template <class T>
void binary_cpu(BinaryOp op, T* out, const T* a, const T* b, const std::vector<int64_t>& shape,
                const std::vector<int64_t>& a_strides, const std::vector<int64_t>& b_strides) {
  if (shape.empty()) {
    out[0] = apply(op, a[0], b[0]);
    return;
  }
  const int64_t cols = shape.back();
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < shape.size(); ++d) rows *= shape[d];
  const int64_t sa = a_strides.back(), sb = b_strides.back();
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* pa = a + row_offset(r, shape, a_strides);
    const T* pb = b + row_offset(r, shape, b_strides);
    T* po = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) po[c] = apply(op, pa[c * sa], pb[c * sb]);
  }
}

template <class T>
void scale_cpu(T* out, const T* x, T factor, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * factor;
}

template <class T>
void accumulate_cpu(T* out, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) out[i] += x[i];
}

template <class T>
void gelu_forward_cpu(T* y, const T* x, int64_t n, GeluForm form) {
  if (form == GeluForm::erf) return map_cpu(y, x, x, n, [](T v, T) { return gelu_erf(v); });
  map_cpu(y, x, x, n, [](T v, T) { return gelu_tanh(v); });
}

template <class T>
void gelu_backward_cpu(T* dx, const T* dy, const T* x, int64_t n, GeluForm form) {
  if (form == GeluForm::erf) return map_cpu(dx, dy, x, n, [](T g, T v) { return g * gelu_erf_slope(v); });
  map_cpu(dx, dy, x, n, [](T g, T v) { return g * gelu_tanh_slope(v); });
}

template <class T>
void relu_forward_cpu(T* y, const T* x, int64_t n) {
  map_cpu(y, x, x, n, [](T v, T) { return v > T(0) ? v : T(0); });
}

template <class T>
void relu_backward_cpu(T* dx, const T* dy, const T* x, int64_t n) {
  map_cpu(dx, dy, x, n, [](T g, T v) { return v > T(0) ? g : T(0); });
}

template <class T>
void sum_to_shape_cpu(T* out, const T* x, const std::vector<int64_t>& x_shape, const std::vector<int64_t>& out_shape) {
  // Strides into `out` for each dimension of x: 0 where out is broadcast (size 1).
  const size_t ndim = x_shape.size();
  std::vector<int64_t> out_strides(ndim, 0);
  int64_t stride = 1, out_n = 1, n = 1;
  for (int64_t d = static_cast<int64_t>(ndim) - 1; d >= 0; --d) {
    out_strides[d] = out_shape[d] == 1 ? 0 : stride;
    stride *= out_shape[d];
    out_n *= out_shape[d];
    n *= x_shape[d];
  }
  for (int64_t i = 0; i < out_n; ++i) out[i] = T(0);
  std::vector<int64_t> index(ndim, 0);
  int64_t o = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[o] += x[i];
    for (int64_t d = static_cast<int64_t>(ndim) - 1; d >= 0; --d) {
      if (++index[d] < x_shape[d]) {
        o += out_strides[d];
        break;
      }
      o -= out_strides[d] * (x_shape[d] - 1);
      index[d] = 0;
    }
  }
}

#define FT_INSTANTIATE(T)                                                                    \
  template void binary_cpu<T>(BinaryOp, T*, const T*, const T*, const std::vector<int64_t>&, \
                              const std::vector<int64_t>&, const std::vector<int64_t>&);     \
  template void scale_cpu<T>(T*, const T*, T, int64_t);                                      \
  template void accumulate_cpu<T>(T*, const T*, int64_t);                                    \
  template void gelu_forward_cpu<T>(T*, const T*, int64_t, GeluForm);                        \
  template void gelu_backward_cpu<T>(T*, const T*, const T*, int64_t, GeluForm);             \
  template void relu_forward_cpu<T>(T*, const T*, int64_t);                                  \
  template void relu_backward_cpu<T>(T*, const T*, const T*, int64_t);                       \
  template void sum_to_shape_cpu<T>(T*, const T*, const std::vector<int64_t>&, const std::vector<int64_t>&);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
