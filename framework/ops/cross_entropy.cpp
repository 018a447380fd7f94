// cross_entropy: the mean over non-ignored rows of -log softmax(logits)[target], on
// kernels/cross_entropy. The forward saves each row's log-sum-exp ([N], small) so that the
// backward rebuilds the softmax without storing the [N, V] probabilities.
//
// Targets are checked before any kernel runs. With every row ignored the loss is 0 and the
// gradient is zero (not 0/0).
//
// On CUDA the targets stay on the device, unchecked (reading them would wait for the GPU): a
// target out of range makes the loss NaN instead of an error. The loss is f32 whatever the
// logits' dtype (as under PyTorch's autocast: a bf16 loss would log 3 significant digits), and
// the count of rows not ignored stays on the device for the backward.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/cross_entropy/cross_entropy_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/cross_entropy/cross_entropy_cuda.h"
#endif

namespace ft {
namespace {

// The number of rows not ignored; throws on a target outside [0, V) that is not ignore_index.
int64_t count_targets(const Tensor& targets, const Shape& logits_shape, int ignore_index) {
  const int64_t vocab = logits_shape[1];
  const int32_t* p = targets.data<int32_t>();
  int64_t count = 0;
  for (int64_t n = 0; n < targets.numel(); ++n) {
    if (p[n] == ignore_index) continue;
    FT_CHECK(p[n] >= 0 && p[n] < vocab, "cross_entropy: target ", p[n], " at position ", n, " is out of range [0, ",
             vocab, ") for logits ", shape_str(logits_shape), " (ignore_index ", ignore_index, ")");
    ++count;
  }
  return count;
}

// dlogits = scale * (softmax - onehot) on rows with a target, 0 on ignored rows.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                              double scale) {
  Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  dispatch_float("cross_entropy backward", logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::cross_entropy_backward_cpu<T>(dlogits.data<T>(), logits.data<T>(), lse.data<T>(), targets.data<int32_t>(),
                                           logits.size(0), logits.size(1), ignore_index, static_cast<T>(scale));
  });
  return dlogits;
}

#ifdef FLASHTRAIN_HAS_CUDA
// lc, tc: the contiguous logits and targets, on one GPU.
Tensor cross_entropy_cuda(const Tensor& logits, const Tensor& targets, const Tensor& lc, const Tensor& tc,
                          int ignore_index) {
  const Device device = logits.device();
  cuda::DeviceGuard guard(device.index);
  const int64_t rows = lc.size(0), vocab = lc.size(1);
  Tensor lse = Tensor::empty({rows}, DType::f32, device);
  Tensor row_loss = Tensor::empty({rows}, DType::f32, device);
  Tensor count = Tensor::empty({}, DType::i32, device);
  Tensor loss = Tensor::empty({}, DType::f32, device);
  dispatch_cuda_float("cross_entropy", lc.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::cross_entropy_forward_cuda<T>(loss.data<float>(), count.data<int32_t>(), lse.data<float>(),
                                           row_loss.data<float>(), lc.data<T>(), tc.data<int32_t>(), rows, vocab,
                                           ignore_index, cuda::context(device.index).stream);
  });
  return record(
      loss, "cross_entropy", {logits, targets}, [lc, tc, lse, count, ignore_index](const Tensor& g, const GradNeeds&) {
        const Device device = lc.device();
        cuda::DeviceGuard guard(device.index);
        Tensor g32 = g.to(DType::f32);
        Tensor dlogits = Tensor::empty(lc.shape(), lc.dtype(), device);
        dispatch_cuda_float("cross_entropy backward", lc.dtype(), [&](auto tag) {
          using T = decltype(tag);
          kernels::cross_entropy_backward_cuda<T>(
              dlogits.data<T>(), lc.data<T>(), lse.data<float>(), tc.data<int32_t>(), g32.data<float>(),
              count.data<int32_t>(), lc.size(0), lc.size(1), ignore_index, cuda::context(device.index).stream);
        });
        return std::vector<Tensor>{dlogits, Tensor()};
      });
}
#endif

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index) {
  check_defined("cross_entropy", "logits", logits);
  check_defined("cross_entropy", "targets", targets);
  check_floating("cross_entropy", "logits", logits);
  check_dtype("cross_entropy", "targets", targets, DType::i32);
  check_dim("cross_entropy", "logits", logits, 2);
  check_shape("cross_entropy", "targets", targets, {logits.size(0)});
  FT_CHECK(logits.device() == targets.device(), "cross_entropy: device mismatch: logits ", describe(logits),
           " and targets ", describe(targets));
  Tensor lc = logits.contiguous(), tc = targets.contiguous();
#ifdef FLASHTRAIN_HAS_CUDA
  if (logits.device().is_cuda()) return cross_entropy_cuda(logits, targets, lc, tc, ignore_index);
#endif
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const int64_t count = count_targets(tc, logits.shape(), ignore_index);

  Tensor lse = Tensor::empty({rows}, logits.dtype(), logits.device());
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  dispatch_float("cross_entropy", logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    double total = kernels::cross_entropy_forward_cpu<T>(lse.data<T>(), lc.data<T>(), tc.data<int32_t>(), rows, vocab,
                                                         ignore_index);
    *loss.data<T>() = static_cast<T>(count > 0 ? total / static_cast<double>(count) : 0.0);
  });

  return record(loss, "cross_entropy", {logits, targets},
                [lc, tc, lse, count, ignore_index](const Tensor& g, const GradNeeds&) {
                  const double scale = count > 0 ? g.item() / static_cast<double>(count) : 0.0;
                  return std::vector<Tensor>{cross_entropy_backward(lc, tc, lse, ignore_index, scale), Tensor()};
                });
}

}  // namespace ft
