// attention on kernels/attention: the plain "math" form, which materialises the [B, H, T, T]
// probabilities and keeps them for the backward. Memory grows with T^2; the flash attention
// kernels (options.kernel = flash) replace it on the GPU, and this op stays their reference.
//
// On CUDA it is composed of per-head batched products (kernels/matmul) around the masked
// softmax (kernels/softmax), with the math of attention_cpu.h. The scores S and their gradient
// dP are fp32 even for 16-bit inputs: rounding logits of size ~10 to bf16 would move the
// probabilities by percents. They live only inside the forward or the backward; the
// probabilities P, saved between the two, are in the inputs' dtype.
//
// The flash form saves the output and one fp32 log-sum-exp per query instead of P, so it is
// linear in T. It refuses what its kernels do not take (the CPU, f32, other head dims) rather
// than falling back to math: a silent fallback would hide a T^2 memory cost the caller chose to
// avoid. The cudnn form is the same algorithm in cuDNN's engines (kernels/cudnn_attention),
// refused likewise and for segment ids; it reads q, k, v and the upstream gradient through their
// strides and writes its results heads-last (see ops.h), so neither side copies.
#include <cmath>
#include <type_traits>

#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/attention/attention_cpu.h"
#include "kernels/attention/attention_strides.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/flash_attention/flash_attention_cuda.h"
#include "kernels/matmul/matmul_cuda.h"
#include "kernels/softmax/softmax_cuda.h"
#endif
#ifdef FLASHTRAIN_HAS_CUDNN
#include "kernels/cudnn_attention/cudnn_attention.h"
#endif

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
}

// What the fused kernels (flash and cudnn) take, checked before anything is allocated.
void check_fused_inputs(const Tensor& q, const char* kernel) {
  FT_CHECK(q.device().is_cuda(), "attention: kernel ", kernel, " runs on cuda, got q ", describe(q),
           " (use kernel math on the cpu)");
  FT_CHECK(q.dtype() == DType::bf16 || q.dtype() == DType::f16, "attention: kernel ", kernel,
           " takes bf16 or f16, got q ", describe(q), " (use kernel math for ", dtype_name(q.dtype()), ")");
  FT_CHECK(flash_attention_takes_head_dim(q.size(3)), "attention: kernel ", kernel, " takes head dim 64 or 128, got q ",
           describe(q));
}

// cudnn also takes no segment ids (cuDNN's padding masks are per-row lengths, not documents),
// and exists only in builds that found cuDNN 9.
void check_cudnn_inputs(const Tensor& q, const Tensor& segment_ids) {
  FT_CHECK(!segment_ids.defined(), "attention: kernel cudnn takes no segment_ids (packed or padded rows), got ",
           describe(segment_ids), " (use kernel flash or math)");
  check_fused_inputs(q, "cudnn");
#ifndef FLASHTRAIN_HAS_CUDNN
  throw Error(
      "attention: kernel cudnn is not in this build (cuDNN 9's headers were not found when it was "
      "configured; use kernel flash or math)");
#endif
}

#ifdef FLASHTRAIN_HAS_CUDA
// C[h] = alpha op(A[h]) op(B[h]) for each of the B*H heads, where A[h] is stored as a
// contiguous [a_rows, a_cols] matrix (a [T, D] slice of q, k, v or o, or a [T, T] one of the
// scores), likewise B[h]; C[h] is contiguous.
template <class T, class Out>
void per_head_product(const cuda::Context& ctx, int64_t heads, const T* a, int64_t a_rows, int64_t a_cols, bool ta,
                      const T* b, int64_t b_rows, int64_t b_cols, bool tb, Out* c, float alpha = 1.0f) {
  const int64_t m = ta ? a_cols : a_rows, k = ta ? a_rows : a_cols, n = tb ? b_rows : b_cols;
  const kernels::GemmShape shape{m, n, k, ta, tb, a_cols, b_cols, n};
  kernels::gemm_cuda<T, Out>(ctx, shape, {heads, a_rows * a_cols, b_rows * b_cols, m * n}, a, b, c, alpha);
}

// Forward on CUDA: S = scale Q K^T (fp32), P = masked softmax(S), O = P V.
void attention_forward_cuda(const kernels::AttentionShape& s, bool causal, const Tensor& segments, double scale,
                            const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs, const Tensor& out) {
  const int64_t heads = s.batch * s.heads, t = s.seq_len, d = s.head_dim;
  const cuda::Context& ctx = cuda::context(q.device().index);
  Tensor scores = Tensor::empty(probs.shape(), DType::f32, q.device());
  const kernels::KeyMask mask{causal, segments.defined() ? segments.data<int32_t>() : nullptr, s.heads};
  dispatch_cuda_float("attention", q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    per_head_product<T, float>(ctx, heads, q.data<T>(), t, d, false, k.data<T>(), t, d, true, scores.data<float>(),
                               static_cast<float>(scale));
    kernels::softmax_forward_cuda<float, T>(probs.data<T>(), scores.data<float>(), heads * t, t, mask, ctx.stream);
    per_head_product<T, T>(ctx, heads, probs.data<T>(), t, t, false, v.data<T>(), t, d, false, out.data<T>());
  });
}

// Backward on CUDA, as attention_cpu.h: dV = P^T dO, dP = dO V^T (fp32), dS = scale P (dP -
// rowsum(dP P)), dQ = dS K, dK = dS^T Q.
std::vector<Tensor> attention_backward_cuda(const kernels::AttentionShape& s, double scale, const Tensor& q,
                                            const Tensor& k, const Tensor& v, const Tensor& probs,
                                            const Tensor& d_out) {
  const int64_t heads = s.batch * s.heads, t = s.seq_len, d = s.head_dim;
  const cuda::Context& ctx = cuda::context(q.device().index);
  Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor dk = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor dv = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor d_scores = Tensor::empty(probs.shape(), q.dtype(), q.device());
  dispatch_cuda_float("attention backward", q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    per_head_product<T, T>(ctx, heads, probs.data<T>(), t, t, true, d_out.data<T>(), t, d, false, dv.data<T>());
    {
      Tensor d_probs = Tensor::empty(probs.shape(), DType::f32, q.device());  // freed before the last two products
      per_head_product<T, float>(ctx, heads, d_out.data<T>(), t, d, false, v.data<T>(), t, d, true,
                                 d_probs.data<float>());
      kernels::softmax_backward_cuda<float, T>(d_scores.data<T>(), d_probs.data<float>(), probs.data<T>(), heads * t, t,
                                               static_cast<float>(scale), ctx.stream);
    }
    per_head_product<T, T>(ctx, heads, d_scores.data<T>(), t, t, false, k.data<T>(), t, d, false, dq.data<T>());
    per_head_product<T, T>(ctx, heads, d_scores.data<T>(), t, t, true, q.data<T>(), t, d, false, dk.data<T>());
  });
  return {dq, dk, dv};
}

kernels::AttentionStrides strides_of(const Tensor& x) {
  const Shape& s = x.strides();
  return {s[0], s[1], s[2], s[3]};
}

// A contiguous tensor as the flash launchers take it (T const for what they read).
template <class T>
kernels::FlashOperand<T> flash_operand(const Tensor& x) {
  return {x.data<std::remove_const_t<T>>(), strides_of(x)};
}

// f(bfloat16{}) or f(half{}) by the dtype: the flash kernels' two (check_flash_inputs refused others).
template <class F>
void dispatch_flash(DType dtype, F&& f) {
  if (dtype == DType::bf16)
    f(bfloat16{});
  else
    f(half{});
}

// The flash form on CUDA: the forward writes out and lse (fp32 [B, H, T]), which the node keeps
// with the inputs; the backward recomputes the probabilities from them tile by tile.
Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, const kernels::AttentionShape& shape,
                       bool causal, const Tensor& segments, double scale) {
  Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({shape.batch, shape.heads, shape.seq_len}, DType::f32, q.device());
  const kernels::AttentionMask mask{causal, segments.defined() ? segments.data<int32_t>() : nullptr};
  {
    cuda::DeviceGuard guard(q.device().index);
    dispatch_flash(q.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::flash_attention_forward_cuda<T>(
          shape, mask, static_cast<float>(scale), flash_operand<const T>(qc), flash_operand<const T>(kc),
          flash_operand<const T>(vc), flash_operand<T>(out), lse.data<float>(), cuda::context(q.device().index).stream);
    });
  }
  // out is detached: the node holding its own output with the grad_fn would be a cycle.
  return record(out, "attention", {q, k, v},
                [qc, kc, vc, o = out.detach(), lse, segments, mask, shape, scale](const Tensor& g, const GradNeeds&) {
                  Tensor gc = g.contiguous();
                  Tensor dq = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
                  Tensor dk = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
                  Tensor dv = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
                  Tensor delta = Tensor::empty(lse.shape(), DType::f32, qc.device());
                  cuda::DeviceGuard guard(qc.device().index);
                  dispatch_flash(qc.dtype(), [&](auto tag) {
                    using T = decltype(tag);
                    kernels::flash_attention_backward_cuda<T>(
                        shape, mask, static_cast<float>(scale), flash_operand<const T>(qc), flash_operand<const T>(kc),
                        flash_operand<const T>(vc), flash_operand<const T>(o), flash_operand<const T>(gc),
                        lse.data<float>(), delta.data<float>(), flash_operand<T>(dq), flash_operand<T>(dk),
                        flash_operand<T>(dv), cuda::context(qc.device().index).stream);
                  });
                  return std::vector<Tensor>{dq, dk, dv};
                });
}
#endif

#ifdef FLASHTRAIN_HAS_CUDNN
// x itself when cuDNN reads it in place (any strides of whole 16-byte rows), else a copy.
Tensor cudnn_operand(const Tensor& x) {
  return kernels::fused_attention_takes(strides_of(x), x.raw_data()) ? x : x.clone();
}

// A [B, H, T, D] tensor like `like`, laid out as [B, T, H, D] (heads last).
Tensor empty_heads_last(const Tensor& like) {
  const int64_t b = like.size(0), h = like.size(1), t = like.size(2), d = like.size(3);
  const Tensor memory = Tensor::empty({b, t, h, d}, like.dtype(), like.device());
  return memory.as_strided(like.shape(), {t * h * d, d, h * d, 1}, memory.storage_offset());
}

// `bytes` of scratch from the device's caching allocator (an empty tensor for none).
Tensor cudnn_workspace(size_t bytes, Device device) {
  return Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, device);
}
void* workspace_data(const Tensor& workspace) { return workspace.numel() > 0 ? workspace.raw_data() : nullptr; }

// The cudnn form on CUDA: like flash, the node keeps out and the fp32 lse; the plans behind both
// directions are built on first use of a shape and cached (kernels/cudnn_attention).
Tensor cudnn_attention(const Tensor& q, const Tensor& k, const Tensor& v, const kernels::AttentionShape& shape,
                       bool causal, double scale) {
  const Tensor qs = cudnn_operand(q), ks = cudnn_operand(k), vs = cudnn_operand(v);
  const Tensor out = empty_heads_last(q);
  const Tensor lse = Tensor::empty({shape.batch, shape.heads, shape.seq_len}, DType::f32, q.device());
  const int device = q.device().index;
  const kernels::CudnnAttentionForward problem{shape,          q.dtype(),      causal,         device,
                                               strides_of(qs), strides_of(ks), strides_of(vs), strides_of(out)};
  {
    cuda::DeviceGuard guard(device);
    const Tensor workspace = cudnn_workspace(kernels::cudnn_attention_forward_workspace(problem), q.device());
    kernels::cudnn_attention_forward(problem, static_cast<float>(scale), qs.raw_data(), ks.raw_data(), vs.raw_data(),
                                     out.raw_data(), lse.data<float>(), workspace_data(workspace),
                                     cuda::context(device).stream);
  }
  return record(out, "attention", {q, k, v},
                [qs, ks, vs, o = out.detach(), lse, problem, scale](const Tensor& g, const GradNeeds&) {
                  const Tensor gs = cudnn_operand(g);
                  const Tensor dq = empty_heads_last(qs), dk = empty_heads_last(qs), dv = empty_heads_last(qs);
                  const kernels::CudnnAttentionBackward backward{problem, strides_of(gs), strides_of(dq),
                                                                 strides_of(dk), strides_of(dv)};
                  cuda::DeviceGuard guard(problem.device);
                  const Tensor workspace =
                      cudnn_workspace(kernels::cudnn_attention_backward_workspace(backward), qs.device());
                  kernels::cudnn_attention_backward(backward, static_cast<float>(scale), qs.raw_data(), ks.raw_data(),
                                                    vs.raw_data(), o.raw_data(), gs.raw_data(), lse.data<float>(),
                                                    dq.raw_data(), dk.raw_data(), dv.raw_data(),
                                                    workspace_data(workspace), cuda::context(problem.device).stream);
                  return std::vector<Tensor>{dq, dk, dv};
                });
}
#endif

}  // namespace

bool flash_attention_takes_head_dim(int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  check_attention_inputs(q, k, v, options.segment_ids);
  const int64_t t = q.size(2);
  const kernels::AttentionShape shape{q.size(0), q.size(1), t, q.size(3)};
  const double scale = options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(shape.head_dim));
  Tensor segments = options.segment_ids.defined() ? options.segment_ids.contiguous() : Tensor();
  const kernels::AttentionMask mask{options.causal, segments.defined() ? segments.data<int32_t>() : nullptr};
  if (options.kernel == AttentionKernel::flash) {
    check_fused_inputs(q, "flash");
#ifdef FLASHTRAIN_HAS_CUDA
    return flash_attention(q, k, v, shape, options.causal, segments, scale);
#endif
  }
  if (options.kernel == AttentionKernel::cudnn) {
    check_cudnn_inputs(q, options.segment_ids);
#ifdef FLASHTRAIN_HAS_CUDNN
    return cudnn_attention(q, k, v, shape, options.causal, scale);
#endif
  }

  Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  Tensor probs = Tensor::empty({shape.batch, shape.heads, t, t}, q.dtype(), q.device());
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  if (q.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    cuda::DeviceGuard guard(q.device().index);
    attention_forward_cuda(shape, options.causal, segments, scale, qc, kc, vc, probs, out);
#endif
  } else {
    dispatch_float("attention", q.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::attention_forward_cpu<T>(shape, mask, static_cast<T>(scale), qc.data<T>(), kc.data<T>(), vc.data<T>(),
                                        probs.data<T>(), out.data<T>());
    });
  }
  return record(out, "attention", {q, k, v}, [qc, kc, vc, probs, shape, scale](const Tensor& g, const GradNeeds&) {
    Tensor gc = g.contiguous();
    if (qc.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
      cuda::DeviceGuard guard(qc.device().index);
      return attention_backward_cuda(shape, scale, qc, kc, vc, probs, gc);
#endif
    }
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
