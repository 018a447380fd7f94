// AdamW on the GPU: the launcher of kernels/adamw/adamw.cu, which steps many parameters in a
// few launches. The update is adamw_cpu.h's, done with the same fp32 operations in the same
// order, so an f32 parameter ends up with the same bits as on the CPU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/adamw/adamw_cpu.h"

namespace ft::kernels {

// One parameter's update: device pointers of numel elements each, and its hyperparameters (t
// is this parameter's own step count). The fp32 parameter (a mixed-precision run's master)
// and both moments are updated in place; the gradient G is float, bf16 or half. With mixed
// precision, `compute` is the 16-bit copy the model computes with (G's type), which receives
// the updated value rounded; nullptr when there is none.
template <class G>
struct AdamWTensor {
  float* param;
  const G* grad;
  float* exp_avg;
  float* exp_avg_sq;
  G* compute;
  int64_t numel;
  AdamWHyper hyper;
};

// Steps every listed parameter (all on the stream's device) in a few launches. Each gradient
// is multiplied by adamw_gradient_factor(*sum_squares, scaling), computed on the device from
// the sum of squares the norm kernel left there (sum_squares nullptr: a factor of
// scaling.unscale, no clipping); when that factor is NaN (a gradient overflowed) nothing is
// written at all.
template <class G>
void adamw_step_cuda(const std::vector<AdamWTensor<G>>& tensors, const double* sum_squares,
                     const GradientScaling& scaling, cudaStream_t stream);

}  // namespace ft::kernels
