// AdamW on the GPU: the launcher of kernels/adamw/adamw.cu, which steps many parameters in a
// few launches. The update is adamw_cpu.h's, done with the same fp32 operations in the same
// order, so an f32 parameter ends up with the same bits as on the CPU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/adamw/adamw_cpu.h"

namespace ft::kernels {

// One f32 parameter's update: device pointers of numel elements each, and its hyperparameters
// (t is this parameter's own step count).
struct AdamWTensor {
  float* param;
  const float* grad;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t numel;
  AdamWHyper hyper;
};

// Steps every listed parameter (all on the stream's device), kMultiTensorMax per launch.
void adamw_step_cuda(const std::vector<AdamWTensor>& tensors, cudaStream_t stream);

}  // namespace ft::kernels
