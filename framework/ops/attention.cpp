// attention on kernels/attention: the plain "math" form, which materialises the [B, H, T, T]
// probabilities and keeps them for the backward. Memory grows with T^2; the flash attention
// kernels replace it on the GPU, and this op stays their reference.
#include <cmath>

#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/attention/attention_cpu.h"

namespace ft {
namespace {

void check_attention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& segment_ids) {
  check_defined("attention", "q", q);
  check_defined("attention", "k", k);
  check_defined("attention", "v", v);
  check_dim("attention", "q", q, 4);
  check_dim("attention", "k", k, 4);
  check_dim("attention", "v", v, 4);
  FT_CHECK(k.size(3) == q.size(3) && v.size(3) == q.size(3), "attention: head dimensions differ: q ",
           shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()));
  check_shape("attention", "k", k, q.shape());
  check_shape("attention", "v", v, q.shape());
  check_same_dtype_device("attention", {q, k, v});
  if (segment_ids.defined()) {
    FT_CHECK(segment_ids.device() == q.device(), "attention: device mismatch: q ", describe(q), " and segment_ids ",
             describe(segment_ids));
    check_dtype("attention", "segment_ids", segment_ids, DType::i32);
    check_shape("attention", "segment_ids", segment_ids, {q.size(0), q.size(2)});
  }
  check_cpu("attention", {q, k, v, segment_ids});
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  check_attention_inputs(q, k, v, options.segment_ids);
  const int64_t t = q.size(2);
  const kernels::AttentionShape shape{q.size(0), q.size(1), t, q.size(3)};
  const double scale = options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(shape.head_dim));
  Tensor segments = options.segment_ids.defined() ? options.segment_ids.contiguous() : Tensor();
  const kernels::AttentionMask mask{options.causal, segments.defined() ? segments.data<int32_t>() : nullptr};

  Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  Tensor probs = Tensor::empty({shape.batch, shape.heads, t, t}, q.dtype(), q.device());
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  dispatch_float("attention", q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::attention_forward_cpu<T>(shape, mask, static_cast<T>(scale), qc.data<T>(), kc.data<T>(), vc.data<T>(),
                                      probs.data<T>(), out.data<T>());
  });
  return record(out, "attention", {q, k, v}, [qc, kc, vc, probs, shape, scale](const Tensor& g, const GradNeeds&) {
    Tensor gc = g.contiguous();
    Tensor dq = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
    Tensor dk = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
    Tensor dv = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
    dispatch_float("attention backward", qc.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::attention_backward_cpu<T>(shape, static_cast<T>(scale), qc.data<T>(), kc.data<T>(), vc.data<T>(),
                                         probs.data<T>(), gc.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>());
    });
    return std::vector<Tensor>{dq, dk, dv};
  });
}

}  // namespace ft
