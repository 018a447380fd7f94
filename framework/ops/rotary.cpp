// rotary_embedding on kernels/rotary: rotates each head's pairs (x[i], x[i + D/2]) by an angle
// proportional to the token's position. The backward is the same kernel rotating back; the
// positions (integers) get no gradient.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/rotary/rotary_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/rotary/rotary_cuda.h"
#endif

namespace ft {
namespace {

// out = x rotated by +theta (forward) or -theta (inverse, the backward).
Tensor rotate(const Tensor& x, const Tensor& positions, double base, bool inverse) {
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int32_t* pos = positions.defined() ? positions.data<int32_t>() : nullptr;
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    cuda::DeviceGuard guard(x.device().index);
    dispatch_cuda_float("rotary_embedding", x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::rotary_cuda<T>(out.data<T>(), xc.data<T>(), pos, x.size(0), x.size(1), x.size(2), x.size(3), base,
                              inverse, cuda::context(x.device().index).stream);
    });
#endif
  } else {
    dispatch_float("rotary_embedding", x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::rotary_cpu<T>(out.data<T>(), xc.data<T>(), pos, x.size(0), x.size(1), x.size(2), x.size(3), base,
                             inverse);
    });
  }
  return out;
}

}  // namespace

Tensor rotary_embedding(const Tensor& x, const Tensor& positions, double base) {
  check_defined("rotary_embedding", "x", x);
  FT_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rotary_embedding: x has shape ", shape_str(x.shape()),
           ", expected [B, H, T, D] with D even");
  FT_CHECK(base > 0, "rotary_embedding: base is ", base, ", expected a positive number");
  if (positions.defined()) {
    FT_CHECK(positions.device() == x.device(), "rotary_embedding: device mismatch: x ", describe(x), " and positions ",
             describe(positions));
    check_dtype("rotary_embedding", "positions", positions, DType::i32);
    check_shape("rotary_embedding", "positions", positions, {x.size(0), x.size(2)});
  }
  Tensor pc = positions.defined() ? positions.contiguous() : Tensor();
  Tensor out = rotate(x, pc, base, false);
  return record(out, "rotary_embedding", {x}, [pc, base](const Tensor& g, const GradNeeds&) {
    return std::vector<Tensor>{rotate(g, pc, base, true)};
  });
}

}  // namespace ft
