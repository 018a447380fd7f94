// lm_head_cross_entropy: cross_entropy(linear(h, weight, {}), targets) without ever holding all
// the [N, V] logits (1.6 GB in fp32 for GPT-2's 8 x 1024 rows of 50257). Rows go a chunk at a
// time through one reusable [chunk, V] buffer: logits = h W^T, then one fused kernel per row
// takes the row's loss and overwrites the row with softmax - onehot, from which the two
// products of the backward run at once: dh = dlogits W into rows of a saved [N, C] and
// dW += dlogits^T h into a saved [V, C]. The node's backward only scales those.
//
// The subtle part is where the mean's 1/count and the upstream gradient go: into that final
// scaling, in fp32, not into the logits buffer (softmax / 8192 rows underflows f16). So dh and
// dW are kept in fp32 on CUDA (dW sums over the chunks there: in bf16, each chunk's addition
// would round away the smaller terms; 150 MB for GPT-2, and dh, [N, C], adds 25 MB), and the
// backward turns them into h's and the weight's dtype. On CUDA the vocabulary is padded
// (kLogitsRowAlignment): the products run on a copy of W with zero rows appended, so their
// vocabulary extent and the buffer's rows are aligned (an extent of 50257 keeps cuBLAS off its
// fast kernels even with aligned strides); the padding's logits are 0, its rows of dW are
// dropped, and the loss kernel reads only the first V columns. The CPU path is the same
// algorithm in f32/f64, so the CPU tests check the chunking. On CUDA the loss is f32 and the targets are not
// checked (a target out of range makes the loss NaN, as for cross_entropy); the count of rows
// not ignored stays on the device.
#include <algorithm>

#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/cross_entropy/cross_entropy_cpu.h"
#include "kernels/matmul/matmul_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/cross_entropy/cross_entropy_cuda.h"
#include "kernels/matmul/matmul_cuda.h"
#endif

namespace ft {
namespace {

constexpr const char* kOp = "lm_head_cross_entropy";

// The logits buffer's largest size when the caller names no chunk: 256 MiB is 2670 bf16 rows
// of GPT-2's 50257 words (1335 in f32), a third of the 0.8 GB that 8 x 1024 bf16 rows take
// unchunked. Products of 1000+ rows x 50257 x 768 (80+ GFLOP each) keep an H100's tensor cores
// busy on their own, so smaller chunks would cost little speed, but a few hundred MB are no
// burden either and keep the launches (four a chunk) few.
constexpr int64_t kLogitsChunkBytes = int64_t{256} << 20;

// The CUDA buffer's row stride is the vocabulary rounded up to this many elements (50257 ->
// 50304): cuBLAS's fast tensor-core kernels want 16-byte aligned rows, and a bf16 row of 50257
// is not (an LM head at that stride ran at 12% of the GPU's peak). 64 also makes each row start
// on a 128-byte line for every dtype, as the loss kernel's 16-byte loads like.
constexpr int64_t kLogitsRowAlignment = 64;

int64_t padded_row(int64_t vocab) {
  return (vocab + kLogitsRowAlignment - 1) / kLogitsRowAlignment * kLogitsRowAlignment;
}

// The inputs, contiguous, and what the forward computes.
struct Problem {
  Tensor h, weight, targets;
  int64_t rows, features, vocab, chunk_rows;
  int32_t ignore_index;
  bool grad_h, grad_weight;

  bool any_grad() const { return grad_h || grad_weight; }
  int64_t rows_in_chunk(int64_t start) const { return std::min(chunk_rows, rows - start); }
  // The logits buffer's rows: a chunk, or all rows when there are fewer.
  int64_t buffer_rows() const { return std::min(chunk_rows, rows); }
};

// The three products of a chunk of n rows, row-major as kernels/matmul/matmul_cpu.h describes,
// over a vocabulary of `v` words (V on the CPU, padded on CUDA), which is also the logits' row
// stride.
kernels::GemmShape logits_product(const Problem& p, int64_t n, int64_t v) {  // logits [n, v] = h [n, C] W^T
  return {n, v, p.features, false, true, p.features, p.features, v};
}
kernels::GemmShape input_grad_product(const Problem& p, int64_t n, int64_t v) {  // dh [n, C] = dlogits [n, v] W
  return {n, p.features, v, false, false, v, p.features, p.features};
}
kernels::GemmShape weight_grad_product(const Problem& p, int64_t n, int64_t v) {  // dW [v, C] (+)= dlogits^T h
  return {v, p.features, n, true, false, v, p.features, p.features};
}

// The caller's chunk, or the fewest chunks whose buffer fits kLogitsChunkBytes, made even: 8192
// bf16 rows of 50257 run as 4 chunks of 2048, not 3 of 2670 and a last one of 182.
int64_t chunk_rows_for(int64_t requested, int64_t rows, int64_t vocab, DType dtype) {
  if (requested > 0) return requested;
  const int64_t max_rows = std::max<int64_t>(1, kLogitsChunkBytes / static_cast<int64_t>(dtype_bytes(dtype, vocab)));
  const int64_t chunks = std::max<int64_t>(1, (rows + max_rows - 1) / max_rows);
  return std::max<int64_t>(1, (rows + chunks - 1) / chunks);
}

// The number of targets not ignored; throws on one outside [0, V) that is not ignore_index.
int64_t count_targets(const Problem& p) {
  const int32_t* t = p.targets.data<int32_t>();
  int64_t count = 0;
  for (int64_t n = 0; n < p.rows; ++n) {
    if (t[n] == p.ignore_index) continue;
    FT_CHECK(t[n] >= 0 && t[n] < p.vocab, kOp, ": target ", t[n], " at position ", n, " is out of range [0, ", p.vocab,
             ") for a weight of ", p.vocab, " rows (ignore_index ", p.ignore_index, ")");
    ++count;
  }
  return count;
}

// The loss in h's dtype; dh and dW of the summed loss in h's dtype, scaled by the backward.
Tensor lm_head_cross_entropy_cpu(const Problem& p, const std::vector<Tensor>& inputs) {
  const int64_t count = count_targets(p);
  const DType dtype = p.h.dtype();
  Tensor logits = Tensor::empty({p.buffer_rows(), p.vocab}, dtype);
  Tensor dh = p.grad_h ? Tensor::empty({p.rows, p.features}, dtype) : Tensor();
  Tensor dw = p.grad_weight ? Tensor::zeros({p.vocab, p.features}, dtype) : Tensor();
  Tensor loss = Tensor::empty({}, dtype);
  dispatch_float(kOp, dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* h = p.h.data<T>();
    const T* w = p.weight.data<T>();
    T* chunk = logits.data<T>();
    double total = 0.0;
    for (int64_t start = 0; start < p.rows; start += p.chunk_rows) {
      const int64_t n = p.rows_in_chunk(start);
      const T* h_chunk = h + start * p.features;
      kernels::gemm_cpu<T>(logits_product(p, n, p.vocab), h_chunk, w, chunk, false);
      total += kernels::cross_entropy_loss_and_grad_cpu<T>(chunk, p.targets.data<int32_t>() + start, n, p.vocab,
                                                           p.ignore_index, p.any_grad());
      if (p.grad_h)
        kernels::gemm_cpu<T>(input_grad_product(p, n, p.vocab), chunk, w, dh.data<T>() + start * p.features, false);
      if (p.grad_weight) kernels::gemm_cpu<T>(weight_grad_product(p, n, p.vocab), chunk, h_chunk, dw.data<T>(), true);
    }
    *loss.data<T>() = static_cast<T>(count > 0 ? total / static_cast<double>(count) : 0.0);
  });
  return record(loss, kOp, inputs, [dh, dw, count](const Tensor& g, const GradNeeds& needs) {
    const double factor = count > 0 ? g.item() / static_cast<double>(count) : 0.0;
    return std::vector<Tensor>{needs[0] ? scale(dh, factor) : Tensor(), needs[1] ? scale(dw, factor) : Tensor(),
                               Tensor()};
  });
}

#ifdef FLASHTRAIN_HAS_CUDA
// The mean's gradient in `dtype` from a summed loss's fp32 gradient, the upstream gradient g32
// and the count, all on the device.
Tensor scaled_gradient(const Tensor& gradient, const Tensor& g32, const Tensor& count, DType dtype) {
  Tensor out = Tensor::empty(gradient.shape(), dtype, gradient.device());
  dispatch_cuda_float(kOp, dtype, [&](auto tag) {
    using T = decltype(tag);
    kernels::scale_loss_gradient_cuda<T>(out.data<T>(), gradient.data<float>(), g32.data<float>(),
                                         count.data<int32_t>(), out.numel(), cuda::context(out.device().index).stream);
  });
  return out;
}

// The f32 loss; dh and dW of the summed loss in fp32, scaled and converted by the backward.
Tensor lm_head_cross_entropy_cuda(const Problem& p, const std::vector<Tensor>& inputs) {
  const Device device = p.h.device();
  const DType dtype = p.h.dtype();
  cuda::DeviceGuard guard(device.index);
  const cuda::Context& ctx = cuda::context(device.index);
  const int64_t stride = padded_row(p.vocab);
  // W with zero rows appended up to the padded vocabulary.
  Tensor padded_weight = Tensor::zeros({stride, p.features}, dtype, device);
  padded_weight.as_strided(p.weight.shape(), p.weight.strides(), 0).copy_(p.weight);
  Tensor logits = Tensor::empty({p.buffer_rows(), stride}, dtype, device);
  Tensor row_loss = Tensor::empty({p.rows}, DType::f32, device);
  Tensor dh = p.grad_h ? Tensor::empty({p.rows, p.features}, DType::f32, device) : Tensor();
  Tensor padded_dw = p.grad_weight ? Tensor::zeros({stride, p.features}, DType::f32, device) : Tensor();
  Tensor count = Tensor::empty({}, DType::i32, device);
  Tensor loss = Tensor::empty({}, DType::f32, device);
  const int32_t* targets = p.targets.data<int32_t>();
  dispatch_cuda_float(kOp, dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* h = p.h.data<T>();
    const T* w = padded_weight.data<T>();
    T* chunk = logits.data<T>();
    for (int64_t start = 0; start < p.rows; start += p.chunk_rows) {
      const int64_t n = p.rows_in_chunk(start);
      const T* h_chunk = h + start * p.features;
      kernels::gemm_cuda<T>(ctx, logits_product(p, n, stride), {}, h_chunk, w, chunk);
      kernels::cross_entropy_loss_and_grad_cuda<T>(row_loss.data<float>() + start, chunk, stride, targets + start, n,
                                                   p.vocab, p.ignore_index, p.any_grad(), ctx.stream);
      if (p.grad_h)
        kernels::gemm_cuda<T, float>(ctx, input_grad_product(p, n, stride), {}, chunk, w,
                                     dh.data<float>() + start * p.features);
      if (p.grad_weight)
        kernels::gemm_cuda<T, float>(ctx, weight_grad_product(p, n, stride), {}, chunk, h_chunk,
                                     padded_dw.data<float>(), 1.0f, true);
    }
  });
  kernels::cross_entropy_mean_cuda(loss.data<float>(), count.data<int32_t>(), row_loss.data<float>(), targets, p.rows,
                                   p.ignore_index, ctx.stream);
  // The gradient of W: the padded one's first V rows.
  const Tensor dw = p.grad_weight ? padded_dw.as_strided(p.weight.shape(), p.weight.strides(), 0) : Tensor();
  return record(loss, kOp, inputs, [dh, dw, count, dtype](const Tensor& g, const GradNeeds& needs) {
    cuda::DeviceGuard guard(count.device().index);
    const Tensor g32 = g.to(DType::f32);
    return std::vector<Tensor>{needs[0] ? scaled_gradient(dh, g32, count, dtype) : Tensor(),
                               needs[1] ? scaled_gradient(dw, g32, count, dtype) : Tensor(), Tensor()};
  });
}
#endif

void check_inputs(const Tensor& h, const Tensor& weight, const Tensor& targets, int64_t chunk_rows) {
  check_defined(kOp, "h", h);
  check_defined(kOp, "weight", weight);
  check_defined(kOp, "targets", targets);
  check_floating(kOp, "h", h);
  check_dim(kOp, "h", h, 2);
  check_dim(kOp, "weight", weight, 2);
  check_same_dtype_device(kOp, {h, weight});
  FT_CHECK(h.size(1) == weight.size(1), kOp, ": h ", shape_str(h.shape()), " has ", h.size(1),
           " features, expected the weight's ", weight.size(1), " (weight ", shape_str(weight.shape()), ")");
  FT_CHECK(weight.size(0) > 0, kOp, ": weight ", shape_str(weight.shape()), " has no rows (an empty vocabulary)");
  check_dtype(kOp, "targets", targets, DType::i32);
  check_shape(kOp, "targets", targets, {h.size(0)});
  FT_CHECK(targets.device() == h.device(), kOp, ": device mismatch: h ", describe(h), " and targets ",
           describe(targets));
  FT_CHECK(chunk_rows >= 0, kOp, ": chunk_rows is ", chunk_rows, ", expected a positive count (or 0: automatic)");
}

}  // namespace

Tensor lm_head_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets, int ignore_index,
                             int64_t chunk_rows) {
  check_inputs(h, weight, targets, chunk_rows);
  const bool recording = grad_enabled();
  const Problem p{h.contiguous(),
                  weight.contiguous(),
                  targets.contiguous(),
                  h.size(0),
                  h.size(1),
                  weight.size(0),
                  chunk_rows_for(chunk_rows, h.size(0), weight.size(0), h.dtype()),
                  ignore_index,
                  recording && h.requires_grad(),
                  recording && weight.requires_grad()};
  const std::vector<Tensor> inputs{h, weight, targets};
#ifdef FLASHTRAIN_HAS_CUDA
  if (h.device().is_cuda()) return lm_head_cross_entropy_cuda(p, inputs);
#endif
  return lm_head_cross_entropy_cpu(p, inputs);
}

}  // namespace ft
