// embedding: rows of a [V, C] weight picked by i32 token ids, on kernels/embedding.
//
// Every id is checked before any kernel runs (an out-of-range id would read or write outside
// the weight, and a throw inside an OpenMP loop would end the process). Only the weight gets a
// gradient; ids are integers.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/embedding/embedding_cpu.h"

namespace ft {
namespace {

void check_ids_in_range(const Tensor& ids, const Tensor& weight) {
  const int64_t vocab = weight.size(0);
  const int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    FT_CHECK(p[i] >= 0 && p[i] < vocab, "embedding: token id ", p[i], " at position ", i, " is out of range [0, ",
             vocab, ") for weight ", shape_str(weight.shape()));
}

}  // namespace

Tensor embedding(const Tensor& ids, const Tensor& weight) {
  check_defined("embedding", "ids", ids);
  check_defined("embedding", "weight", weight);
  check_dtype("embedding", "ids", ids, DType::i32);
  check_floating("embedding", "weight", weight);
  check_dim("embedding", "weight", weight, 2);
  FT_CHECK(ids.device() == weight.device(), "embedding: device mismatch: ids ", describe(ids), " and weight ",
           describe(weight));
  check_cpu("embedding", {ids, weight});
  Tensor idc = ids.contiguous(), wc = weight.contiguous();
  check_ids_in_range(idc, wc);

  const int64_t tokens = ids.numel(), vocab = weight.size(0), channels = weight.size(1);
  Shape out_shape = ids.shape();
  out_shape.push_back(channels);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  dispatch_float("embedding", weight.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::embedding_forward_cpu<T>(out.data<T>(), idc.data<int32_t>(), wc.data<T>(), tokens, channels);
  });

  return record(out, "embedding", {ids, weight}, [idc, vocab, channels](const Tensor& g, const GradNeeds&) {
    Tensor gc = g.contiguous();
    Tensor dweight = Tensor::empty({vocab, channels}, g.dtype(), g.device());
    dispatch_float("embedding backward", g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::embedding_backward_cpu<T>(dweight.data<T>(), idc.data<int32_t>(), gc.data<T>(), idc.numel(), vocab,
                                         channels);
    });
    return std::vector<Tensor>{Tensor(), dweight};
  });
}

}  // namespace ft
