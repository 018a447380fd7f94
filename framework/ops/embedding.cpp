// embedding: rows of a [V, C] weight picked by i32 token ids, on kernels/embedding.
//
// On the CPU every id is checked before any kernel runs (an out-of-range id would read or write
// outside the weight, and a throw inside an OpenMP loop would end the process). On CUDA the ids
// live on the GPU, and reading them back would stall the host at every step: they are trusted
// to be validated where they were made (data/prepare.cpp checks every token of a dataset), and
// the kernels skip an id out of range rather than touch memory for it (embedding_cuda.h). Only
// the weight gets a gradient; ids are integers.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "framework/ops/cuda_dispatch.h"
#include "kernels/embedding/embedding_cpu.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "kernels/embedding/embedding_cuda.h"
#endif

namespace ft {
namespace {

void check_ids_in_range(const Tensor& ids, const Tensor& weight) {
  const int64_t vocab = weight.size(0);
  const int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    FT_CHECK(p[i] >= 0 && p[i] < vocab, "embedding: token id ", p[i], " at position ", i, " is out of range [0, ",
             vocab, ") for weight ", shape_str(weight.shape()));
}

// dweight [vocab, channels] from the output gradient gc (contiguous, [ids..., channels]).
Tensor embedding_weight_grad(const Tensor& idc, const Tensor& gc, int64_t vocab, int64_t channels) {
  FT_CHECK(gc.device() == idc.device(), "embedding backward: gradient ", describe(gc), " is not on the ids' device ",
           describe(idc));
  Tensor dweight = Tensor::empty({vocab, channels}, gc.dtype(), gc.device());
  if (gc.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda("embedding backward", gc, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      const auto workspace_bytes = kernels::embedding_backward_workspace_bytes(idc.numel(), vocab, channels);
      Tensor workspace = Tensor::empty({static_cast<int64_t>(workspace_bytes)}, DType::u8, gc.device());
      kernels::embedding_backward_cuda<T>(dweight.data<T>(), idc.data<int32_t>(), gc.data<T>(), idc.numel(), vocab,
                                          channels, workspace.raw_data(), stream);
    });
#endif
    return dweight;
  }
  dispatch_float("embedding backward", gc.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::embedding_backward_cpu<T>(dweight.data<T>(), idc.data<int32_t>(), gc.data<T>(), idc.numel(), vocab,
                                       channels);
  });
  return dweight;
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
  Tensor idc = ids.contiguous(), wc = weight.contiguous();
  const int64_t tokens = ids.numel(), vocab = weight.size(0), channels = weight.size(1);
  Shape out_shape = ids.shape();
  out_shape.push_back(channels);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  if (weight.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda("embedding", weight, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      kernels::embedding_forward_cuda<T>(out.data<T>(), idc.data<int32_t>(), wc.data<T>(), tokens, vocab, channels,
                                         stream);
    });
#endif
  } else {
    check_ids_in_range(idc, wc);
    dispatch_float("embedding", weight.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::embedding_forward_cpu<T>(out.data<T>(), idc.data<int32_t>(), wc.data<T>(), tokens, channels);
    });
  }
  return record(out, "embedding", {ids, weight}, [idc, vocab, channels](const Tensor& g, const GradNeeds&) {
    return std::vector<Tensor>{Tensor(), embedding_weight_grad(idc, g.contiguous(), vocab, channels)};
  });
}

}  // namespace ft
