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
// Mixed precision fuses in what would otherwise be three more passes over every parameter: the
// kernel reads the model's 16-bit gradient itself (no fp32 copy of it), multiplies it by the
// step's factor (1 / loss scale, times the clipping factor), and writes the updated master
// both in place and rounded into the model's 16-bit parameter. The factor comes from the sum
// of squares on the device, so the host never waits for the norm before it queues the step.
#include "framework/cuda/check.h"
#include "framework/dtype.h"
#include "kernels/adamw/adamw_cuda.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/common/multi_tensor.cuh"

namespace ft::kernels {
namespace {

constexpr int kAdamWThreads = 256;
// Elements a block updates: 8 per thread, so the block's tensor lookup is amortised and a
// 38M-element embedding still spreads over ~19k blocks.
constexpr int64_t kAdamWChunk = kAdamWThreads * 8;

template <class G>
struct AdamWRecord {
  float* param;
  const G* grad;
  float* exp_avg;
  float* exp_avg_sq;
  G* compute;
  int64_t numel;
  AdamWCoefficients<float> c;
};

// The step's gradient factor, the same for every thread: from the device's sum of squares when
// there is one, else the plain unscale.
__device__ __forceinline__ float gradient_factor(const double* sum_squares, const GradientScaling& scaling) {
  return static_cast<float>(sum_squares ? adamw_gradient_factor(*sum_squares, scaling) : scaling.unscale);
}

template <class G>
__global__ void adamw_kernel(const __grid_constant__ MultiTensorBatch<AdamWRecord<G>> batch,
                             const double* sum_squares, GradientScaling scaling) {
  const float factor = gradient_factor(sum_squares, scaling);
  if (isnan(factor)) return;  // an overflowed step: parameters and moments stay as they are
  const BlockTarget target = block_target(batch);
  const AdamWRecord<G>& r = batch.records[target.slot];
  const AdamWCoefficients<float>& c = r.c;
  const int64_t begin = target.chunk * kAdamWChunk;
  const int64_t end = begin + kAdamWChunk < r.numel ? begin + kAdamWChunk : r.numel;
  const float one_minus_beta1 = __fsub_rn(1.0f, c.beta1), one_minus_beta2 = __fsub_rn(1.0f, c.beta2);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float g = __fmul_rn(to_float(r.grad[i]), factor);
    const float m = __fadd_rn(__fmul_rn(c.beta1, r.exp_avg[i]), __fmul_rn(one_minus_beta1, g));
    const float v = __fadd_rn(__fmul_rn(c.beta2, r.exp_avg_sq[i]), __fmul_rn(__fmul_rn(one_minus_beta2, g), g));
    r.exp_avg[i] = m;
    r.exp_avg_sq[i] = v;
    const float denominator = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.bias_correction2_sqrt), c.eps);
    const float p = __fsub_rn(__fmul_rn(r.param[i], c.decay), __fdiv_rn(__fmul_rn(c.step_size, m), denominator));
    r.param[i] = p;
    if (r.compute) r.compute[i] = from_float<G>(p);
  }
}

}  // namespace

template <class G>
void adamw_step_cuda(const std::vector<AdamWTensor<G>>& tensors, const double* sum_squares,
                     const GradientScaling& scaling, cudaStream_t stream) {
  using D = cuda_t<G>;
  std::vector<AdamWRecord<D>> records;
  records.reserve(tensors.size());
  for (const AdamWTensor<G>& t : tensors)
    records.push_back({t.param, device_ptr(t.grad), t.exp_avg, t.exp_avg_sq, device_ptr(t.compute), t.numel,
                       adamw_coefficients<float>(t.hyper)});
  for_each_multi_tensor_batch(records, kAdamWChunk,
                              [&](const MultiTensorBatch<AdamWRecord<D>>& batch, int64_t blocks, int64_t) {
                                adamw_kernel<<<static_cast<int>(blocks), kAdamWThreads, 0, stream>>>(
                                    batch, sum_squares, scaling);
                                FT_CUDA_CHECK_LAUNCH();
                              });
}

#define FT_INSTANTIATE(G)                                                                                         \
  template void adamw_step_cuda<G>(const std::vector<AdamWTensor<G>>&, const double*, const GradientScaling&, \
                                   cudaStream_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(ft::bfloat16)
FT_INSTANTIATE(ft::half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
