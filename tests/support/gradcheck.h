// Test helpers: gradient checks against float64 central finite differences, and the fp32 vs
// fp64 forward comparison every op must pass.
#pragma once

#include <functional>
#include <vector>

#include "framework/ops.h"

namespace ft::testing {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Relative error ||a - b|| / max(||a||, ||b||) (0 when both are zero).
double relative_error(const std::vector<double>& a, const std::vector<double>& b);
double relative_error(const Tensor& a, const Tensor& b);

// Compares autograd's gradients of every floating input of `f` with central differences of
// L = sum(f(inputs) * w) for a fixed random w, in float64. Inputs must be f64 (floating ones
// become leaves requiring grad; integer ones pass through). Returns the largest relative error
// over the inputs.
double gradcheck(const OpFn& f, std::vector<Tensor> inputs, double step = 1e-6);

// Runs f on the inputs as given (f64) and on the inputs converted to f32; returns the relative
// error of the f32 output against the f64 one.
double fp32_vs_fp64_error(const OpFn& f, const std::vector<Tensor>& inputs64);

// A new f64 tensor of standard normals from a fixed seed.
Tensor random_f64(const Shape& shape, uint64_t seed);

}  // namespace ft::testing
