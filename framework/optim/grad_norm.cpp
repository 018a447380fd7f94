// The global gradient norm and clipping, on the CPU and on GPUs. A GPU's gradients are
// squared and summed in a few multi-tensor launches that leave the sum on the device
// (kernels/grad_norm). grad_sum_of_squares returns that sum as a device tensor, which the
// trainer hands to AdamW without waiting; global_grad_norm copies it out, its one wait for the
// GPU per call, which returning a double requires. clip_grad_norm scales by a factor computed
// on the host from that norm, so clipping adds launches but no second wait.
#include "framework/optim/grad_norm.h"

#include <cmath>
#include <map>
#include <type_traits>

#include "framework/ops/checks.h"
#include "kernels/elementwise/elementwise_cpu.h"
#include "kernels/reduce/reduce_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/grad_norm/grad_norm_cuda.h"
#endif

namespace ft {
namespace {

#ifdef FLASHTRAIN_HAS_CUDA
// GPU gradients by device index, then by dtype: one multi-tensor launch family per group.
using CudaGrads = std::map<int, std::map<DType, std::vector<Tensor>>>;

template <class T>
std::vector<kernels::DeviceSpan<T>> spans(const std::vector<Tensor>& tensors) {
  std::vector<kernels::DeviceSpan<T>> out;
  for (const Tensor& t : tensors) out.push_back({t.data<std::remove_const_t<T>>(), t.numel()});
  return out;
}

// The sum of squares of one GPU's gradients (contiguous), an f64 scalar on that GPU.
Tensor cuda_sum_squares(int device, const std::map<DType, std::vector<Tensor>>& grads_by_dtype) {
  cuda::DeviceGuard guard(device);
  const cudaStream_t stream = cuda::context(device).stream;
  std::map<DType, int64_t> partial_counts;
  int64_t total_partials = 0;
  for (const auto& [dtype, grads] : grads_by_dtype) {
    std::vector<int64_t> numels;
    for (const Tensor& g : grads) numels.push_back(g.numel());
    total_partials += partial_counts[dtype] = kernels::sum_squares_partial_count(numels);
  }
  Tensor partials = Tensor::empty({total_partials}, DType::f32, Device::cuda(device));
  int64_t offset = 0;
  for (const auto& [dtype, grads] : grads_by_dtype) {
    dispatch_cuda_float("global_grad_norm", dtype, [&](auto tag) {
      using T = decltype(tag);
      kernels::sum_squares_partials_cuda<T>(partials.data<float>() + offset, spans<const T>(grads), stream);
    });
    offset += partial_counts[dtype];
  }
  Tensor total = Tensor::empty({}, DType::f64, Device::cuda(device));
  kernels::sum_partials_cuda(total.data<double>(), partials.data<float>(), total_partials, stream);
  return total;
}

void cuda_scale(const CudaGrads& grads, double factor) {
  for (const auto& [device, by_dtype] : grads) {
    cuda::DeviceGuard guard(device);
    for (const auto& [dtype, tensors] : by_dtype) {
      dispatch_cuda_float("clip_grad_norm", dtype, [&](auto tag) {
        using T = decltype(tag);
        kernels::scale_tensors_cuda<T>(spans<T>(tensors), static_cast<float>(factor), cuda::context(device).stream);
      });
    }
  }
}
#endif

// The sums of squares of the parameters' gradients: the CPU's as a double, each GPU's as an
// f64 scalar left on that GPU (by device index).
struct SumsOfSquares {
  double cpu = 0.0;
  bool any_cpu = false;
  std::map<int, Tensor> cuda;
};

SumsOfSquares sums_of_squares(const std::vector<Tensor>& params) {
  SumsOfSquares sums;
#ifdef FLASHTRAIN_HAS_CUDA
  CudaGrads cuda_grads;
#endif
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor gc = g.contiguous();
#ifdef FLASHTRAIN_HAS_CUDA
    if (g.device().is_cuda()) {
      cuda_grads[g.device().index][g.dtype()].push_back(gc);
      continue;
    }
#endif
    sums.any_cpu = true;
    if (g.dtype() == DType::bf16 || g.dtype() == DType::f16) gc = g.to(DType::f32);  // exact: 16 bits fit in f32
    dispatch_float("global_grad_norm", gc.dtype(), [&](auto tag) {
      using T = decltype(tag);
      sums.cpu += kernels::sum_squares_cpu<T>(gc.data<T>(), g.numel());
    });
  }
#ifdef FLASHTRAIN_HAS_CUDA
  for (const auto& [device, by_dtype] : cuda_grads) sums.cuda[device] = cuda_sum_squares(device, by_dtype);
#endif
  return sums;
}

}  // namespace

double global_grad_norm(const std::vector<Tensor>& params) {
  const SumsOfSquares sums = sums_of_squares(params);
  double total = sums.cpu;
  for (const auto& [device, sum] : sums.cuda) total += sum.item();
  return std::sqrt(total);
}

Tensor grad_sum_of_squares(const std::vector<Tensor>& params) {
  SumsOfSquares sums = sums_of_squares(params);
  FT_CHECK(sums.cuda.size() + (sums.any_cpu ? 1 : 0) <= 1,
           "grad_sum_of_squares: the gradients are on several devices; all must be on one");
  if (!sums.cuda.empty()) return sums.cuda.begin()->second;
  return Tensor::full({}, sums.cpu, DType::f64);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  FT_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  const double norm = global_grad_norm(params);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double factor = max_norm / norm;
#ifdef FLASHTRAIN_HAS_CUDA
  CudaGrads cuda_grads;
#endif
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    FT_CHECK(g.is_contiguous(), "clip_grad_norm: gradient of ", describe(p), " is not contiguous");
#ifdef FLASHTRAIN_HAS_CUDA
    if (g.device().is_cuda()) {
      cuda_grads[g.device().index][g.dtype()].push_back(g);
      continue;
    }
#endif
    dispatch_float("clip_grad_norm", g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::scale_cpu<T>(g.data<T>(), g.data<T>(), static_cast<T>(factor), g.numel());
    });
  }
#ifdef FLASHTRAIN_HAS_CUDA
  cuda_scale(cuda_grads, factor);
#endif
  return norm;
}

}  // namespace ft
