// Elementwise CPU kernels: broadcasting binary ops, scaling, GELU (tanh or erf form), ReLU, and
// the reduction that undoes broadcasting in the backward.
//
// Broadcasting is expressed by strides: an input's stride is 0 along a dimension in which it
// is stretched, so out[i] = a[offset_a(i)] op b[offset_b(i)] walks both inputs with one loop.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/elementwise/gelu_form.h"

namespace ft::kernels {

enum class BinaryOp { add, sub, mul };

// out (contiguous, shape `shape`) = a op b, where a and b are read through `a_strides` and
// `b_strides` (in elements, 0 where broadcast), each of length shape.size().
template <class T>
void binary_cpu(BinaryOp op, T* out, const T* a, const T* b, const std::vector<int64_t>& shape,
                const std::vector<int64_t>& a_strides, const std::vector<int64_t>& b_strides);

template <class T>
void scale_cpu(T* out, const T* x, T factor, int64_t n);

// out += x, n elements.
template <class T>
void accumulate_cpu(T* out, const T* x, int64_t n);

// GELU, tanh form: y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
//   dx = dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2));
// erf form: y = 0.5 x (1 + erf(x / sqrt 2)), dx = dy * (0.5 (1 + erf(x / sqrt 2)) + x phi(x)),
// phi the standard normal density. dx may alias dy.
template <class T>
void gelu_forward_cpu(T* y, const T* x, int64_t n, GeluForm form = GeluForm::tanh);
template <class T>
void gelu_backward_cpu(T* dx, const T* dy, const T* x, int64_t n, GeluForm form = GeluForm::tanh);

// ReLU: y = max(x, 0); dx = dy where x > 0, else 0.
template <class T>
void relu_forward_cpu(T* y, const T* x, int64_t n);
template <class T>
void relu_backward_cpu(T* dx, const T* dy, const T* x, int64_t n);

// out (contiguous, shape `out_shape` padded with leading 1s to x's rank) = x summed over the
// dimensions where out_shape is 1 and x's shape is not. x is contiguous with shape x_shape.
template <class T>
void sum_to_shape_cpu(T* out, const T* x, const std::vector<int64_t>& x_shape, const std::vector<int64_t>& out_shape);

}  // namespace ft::kernels
