// dropout, on kernels/dropout. The op reserves x.numel() Philox counters from the generator;
// the backward closure keeps only (seed, first counter) and recomputes the mask from them.
//
// Both devices round p to the same 16-bit threshold (kernels/dropout/dropout_cpu.h), so a CUDA
// tensor loses the same elements as its CPU copy for the same generator state; p == 0 returns x
// itself and draws nothing, so turning dropout off does not shift the generator's later numbers.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "framework/ops/cuda_dispatch.h"
#include "kernels/dropout/dropout_cpu.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "kernels/dropout/dropout_cuda.h"
#endif

namespace ft {
namespace {

struct DropoutMask {
  uint64_t seed, first;
  double p;
};

Tensor apply_mask(const char* op, const Tensor& x, const DropoutMask& mask) {
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda(op, x, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      kernels::dropout_cuda<T>(out.data<T>(), xc.data<T>(), x.numel(), static_cast<float>(mask.p), mask.seed,
                               mask.first, stream);
    });
#endif
    return out;
  }
  dispatch_float(op, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::dropout_cpu<T>(out.data<T>(), xc.data<T>(), x.numel(), static_cast<float>(mask.p), mask.seed, mask.first);
  });
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, Generator& gen) {
  check_defined("dropout", "x", x);
  FT_CHECK(p >= 0.0 && p < 1.0, "dropout: p = ", p, " is outside [0, 1) (x ", shape_str(x.shape()), ")");
  check_floating("dropout", "x", x);
  if (p == 0.0) return x;
  // The counters are taken once the mask is applied: a call that fails (say, on a dtype without a
  // kernel) draws nothing.
  const DropoutMask mask{gen.seed(), gen.state().offset, p};
  Tensor out = apply_mask("dropout", x, mask);
  gen.take(static_cast<uint64_t>(x.numel()));
  return record(out, "dropout", {x}, [mask](const Tensor& g, const GradNeeds&) {
    return std::vector<Tensor>{apply_mask("dropout backward", g, mask)};
  });
}

}  // namespace ft
