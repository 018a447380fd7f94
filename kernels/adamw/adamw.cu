// AdamW on the GPU, beside its CPU reference adamw_cpu.cpp (the update is written out in
// adamw_cpu.h). Every parameter of a model is stepped in a few multi-tensor launches
// (kernels/common/multi_tensor.cuh) instead of one launch per parameter: GPT-2 small has 148
// parameters, most of them a few hundred floats, and launches would cost more than the work.
//
// The subtle decision is exactness. The kernel spells every operation with an explicitly
// rounded intrinsic (__fmul_rn, __fadd_rn, ...) because nvcc would otherwise fuse a * b + c
// into one FMA, rounding once where the CPU rounds twice; with the step's constants derived on
// the host exactly as the CPU does (adamw_coefficients), an f32 parameter, its m and its v come
// out bit for bit as adamw_step_cpu<float> leaves them.
//
// Mixed precision will add a variant with bf16/f16 parameters and fp32 master weights: the
// record gains a `float* master`, the kernel updates the master as below and writes the
// parameter as from_float(master); the moments stay fp32.
#include "framework/cuda/check.h"
#include "kernels/adamw/adamw_cuda.h"
#include "kernels/common/multi_tensor.cuh"

namespace ft::kernels {
namespace {

constexpr int kAdamWThreads = 256;
// Elements a block updates: 8 per thread, so the block's tensor lookup is amortised and a
// 38M-element embedding still spreads over ~19k blocks.
constexpr int64_t kAdamWChunk = kAdamWThreads * 8;

struct AdamWRecord {
  float* param;
  const float* grad;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t numel;
  AdamWCoefficients<float> c;
};

__global__ void adamw_kernel(const __grid_constant__ MultiTensorBatch<AdamWRecord> batch) {
  const BlockTarget target = block_target(batch);
  const AdamWRecord& r = batch.records[target.slot];
  const AdamWCoefficients<float>& c = r.c;
  const int64_t begin = target.chunk * kAdamWChunk;
  const int64_t end = begin + kAdamWChunk < r.numel ? begin + kAdamWChunk : r.numel;
  const float one_minus_beta1 = __fsub_rn(1.0f, c.beta1), one_minus_beta2 = __fsub_rn(1.0f, c.beta2);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float g = r.grad[i];
    const float m = __fadd_rn(__fmul_rn(c.beta1, r.exp_avg[i]), __fmul_rn(one_minus_beta1, g));
    const float v = __fadd_rn(__fmul_rn(c.beta2, r.exp_avg_sq[i]), __fmul_rn(__fmul_rn(one_minus_beta2, g), g));
    r.exp_avg[i] = m;
    r.exp_avg_sq[i] = v;
    const float denominator = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.bias_correction2_sqrt), c.eps);
    r.param[i] = __fsub_rn(__fmul_rn(r.param[i], c.decay), __fdiv_rn(__fmul_rn(c.step_size, m), denominator));
  }
}

}  // namespace

void adamw_step_cuda(const std::vector<AdamWTensor>& tensors, cudaStream_t stream) {
  std::vector<AdamWRecord> records;
  records.reserve(tensors.size());
  for (const AdamWTensor& t : tensors)
    records.push_back({t.param, t.grad, t.exp_avg, t.exp_avg_sq, t.numel, adamw_coefficients<float>(t.hyper)});
  for_each_multi_tensor_batch(records, kAdamWChunk,
                              [&](const MultiTensorBatch<AdamWRecord>& batch, int64_t blocks, int64_t) {
                                adamw_kernel<<<static_cast<int>(blocks), kAdamWThreads, 0, stream>>>(batch);
                                FT_CUDA_CHECK_LAUNCH();
                              });
}

}  // namespace ft::kernels
