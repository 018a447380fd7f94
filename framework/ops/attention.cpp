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
// refused likewise and for segment ids. Both fused kernels read q, k, v and the upstream gradient
// through their strides and write their results heads-last (see ops.h), so neither direction
// copies; an operand whose layout they cannot read (rows not whole 16-byte chunks) is copied
// first, a cost in time only.
//
// attention_packed_qkv takes q, k and v side by side in one [B, T, 3C] tensor (GPT-2's c_attn
// output). Through math it is the composition a model would write (split, attention, merge);
// through a fused kernel it is one node that reads q, k, v in place, writes [B, T, C] with the
// heads merged, and writes the gradient of qkv whole: without it, each of q, k, v costs a copy
// forward, and backward a copy, a zero-padded concat and a sum.
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

// What options.kernel takes, for flash and cudnn (math takes everything check_attention_inputs
// lets through).
void check_kernel_takes(const Tensor& q, const AttentionOptions& options) {
  if (options.kernel == AttentionKernel::flash) check_fused_inputs(q, "flash");
  if (options.kernel == AttentionKernel::cudnn) check_cudnn_inputs(q, options.segment_ids);
}

// qkv: [B, T, 3C], q, k and v side by side, each `heads` heads of C / heads columns.
void check_packed_qkv(const Tensor& qkv, int64_t heads) {
  check_defined("attention_packed_qkv", "qkv", qkv);
  check_dim("attention_packed_qkv", "qkv", qkv, 3);
  FT_CHECK(heads > 0, "attention_packed_qkv: heads must be positive, got ", heads);
  FT_CHECK(qkv.size(2) % (3 * heads) == 0, "attention_packed_qkv: qkv ", describe(qkv),
           " does not split into q, k and v of ", heads, " heads (its last size must be a multiple of 3 * ", heads,
           ")");
}

double attention_scale(const AttentionOptions& options, int64_t head_dim) {
  return options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

Tensor contiguous_segments(const AttentionOptions& options) {
  return options.segment_ids.defined() ? options.segment_ids.contiguous() : Tensor();
}

// The [B, H, T, D] view of columns [column, column + H D) of a [B, T, W] tensor x whose heads lie
// side by side, D columns each (q, k and v in GPT-2's c_attn output; the merged heads of its
// result): element (b, h, t, d) is x[b, t, column + h D + d]. A view whatever x's strides.
Tensor heads_view(const Tensor& x, int64_t column, const kernels::AttentionShape& s) {
  const Shape& st = x.strides();
  return x.as_strided({s.batch, s.heads, s.seq_len, s.head_dim}, {st[0], s.head_dim * st[2], st[1], st[2]},
                      x.storage_offset() + column * st[2]);
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

// ---- the fused kernels (flash, cudnn): every operand read or written in place --------------

kernels::AttentionStrides strides_of(const Tensor& x) {
  const Shape& s = x.strides();
  return {s[0], s[1], s[2], s[3]};
}

// x itself when the fused kernels read it in place (any strides of whole 16-byte rows), else a
// contiguous copy.
Tensor fused_operand(const Tensor& x) {
  return kernels::fused_attention_takes(strides_of(x), x.raw_data()) ? x : x.clone();
}

// A [B, H, T, D] tensor like `like`, laid out as [B, T, H, D] (heads last).
Tensor empty_heads_last(const Tensor& like) {
  const int64_t b = like.size(0), h = like.size(1), t = like.size(2), d = like.size(3);
  const Tensor memory = Tensor::empty({b, t, h, d}, like.dtype(), like.device());
  return memory.as_strided(like.shape(), {t * h * d, d, h * d, 1}, memory.storage_offset());
}

// One fp32 value per query row, [B, H, T]: the log-sum-exp the forward keeps for the backward.
Tensor empty_rows(const kernels::AttentionShape& s, Device device) {
  return Tensor::empty({s.batch, s.heads, s.seq_len}, DType::f32, device);
}

// f(bfloat16{}) or f(half{}) by the dtype: the fused kernels' two (check_fused_inputs refused others).
template <class F>
void dispatch_flash(DType dtype, F&& f) {
  if (dtype == DType::bf16)
    f(bfloat16{});
  else
    f(half{});
}

// A tensor as the flash launchers take it (T const for what they read).
template <class T>
kernels::FlashOperand<T> flash_operand(const Tensor& x) {
  return {x.data<std::remove_const_t<T>>(), strides_of(x)};
}

// One run of a fused kernel (flash or cudnn) on [B, H, T, D] operands, each a view the kernel
// takes in place (fused_operand, empty_heads_last, heads_view). The forward keeps the output and
// one fp32 log-sum-exp per query (lse) instead of the probabilities; the backward recomputes them
// tile by tile from it.
struct FusedAttention {
  AttentionKernel kernel;  // flash or cudnn
  kernels::AttentionShape shape;
  bool causal;
  Tensor segments;  // i32 [B, T], contiguous, or undefined (always, for cudnn)
  float scale;

  kernels::AttentionMask mask() const { return {causal, segments.defined() ? segments.data<int32_t>() : nullptr}; }
  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse) const;
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& d_out,
                const Tensor& lse, const Tensor& dq, const Tensor& dk, const Tensor& dv) const;
};

#ifdef FLASHTRAIN_HAS_CUDNN
// `bytes` of scratch from the device's caching allocator (an empty tensor for none).
Tensor cudnn_workspace(size_t bytes, Device device) {
  return Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, device);
}
void* workspace_data(const Tensor& workspace) { return workspace.numel() > 0 ? workspace.raw_data() : nullptr; }

// What cuDNN's plans for this run are built for (and cached by: the strides are part of it).
kernels::CudnnAttentionForward cudnn_problem(const FusedAttention& f, const Tensor& q, const Tensor& k, const Tensor& v,
                                             const Tensor& out) {
  return {f.shape, q.dtype(), f.causal, q.device().index, strides_of(q), strides_of(k), strides_of(v), strides_of(out)};
}
#endif

void FusedAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse) const {
  const int device = q.device().index;
  cuda::DeviceGuard guard(device);
  const cudaStream_t stream = cuda::context(device).stream;
  if (kernel == AttentionKernel::flash) {
    dispatch_flash(q.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::flash_attention_forward_cuda<T>(shape, mask(), scale, flash_operand<const T>(q),
                                               flash_operand<const T>(k), flash_operand<const T>(v),
                                               flash_operand<T>(out), lse.data<float>(), stream);
    });
    return;
  }
#ifdef FLASHTRAIN_HAS_CUDNN
  const kernels::CudnnAttentionForward problem = cudnn_problem(*this, q, k, v, out);
  const Tensor workspace = cudnn_workspace(kernels::cudnn_attention_forward_workspace(problem), q.device());
  kernels::cudnn_attention_forward(problem, scale, q.raw_data(), k.raw_data(), v.raw_data(), out.raw_data(),
                                   lse.data<float>(), workspace_data(workspace), stream);
#endif
}

void FusedAttention::backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& d_out,
                              const Tensor& lse, const Tensor& dq, const Tensor& dk, const Tensor& dv) const {
  const int device = q.device().index;
  cuda::DeviceGuard guard(device);
  const cudaStream_t stream = cuda::context(device).stream;
  if (kernel == AttentionKernel::flash) {
    const Tensor delta = empty_rows(shape, q.device());
    dispatch_flash(q.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::flash_attention_backward_cuda<T>(
          shape, mask(), scale, flash_operand<const T>(q), flash_operand<const T>(k), flash_operand<const T>(v),
          flash_operand<const T>(out), flash_operand<const T>(d_out), lse.data<float>(), delta.data<float>(),
          flash_operand<T>(dq), flash_operand<T>(dk), flash_operand<T>(dv), stream);
    });
    return;
  }
#ifdef FLASHTRAIN_HAS_CUDNN
  const kernels::CudnnAttentionBackward problem{cudnn_problem(*this, q, k, v, out), strides_of(d_out), strides_of(dq),
                                                strides_of(dk), strides_of(dv)};
  const Tensor workspace = cudnn_workspace(kernels::cudnn_attention_backward_workspace(problem), q.device());
  kernels::cudnn_attention_backward(problem, scale, q.raw_data(), k.raw_data(), v.raw_data(), out.raw_data(),
                                    d_out.raw_data(), lse.data<float>(), dq.raw_data(), dk.raw_data(), dv.raw_data(),
                                    workspace_data(workspace), stream);
#endif
}

FusedAttention fused_attention_for(const kernels::AttentionShape& shape, const AttentionOptions& options) {
  return {options.kernel, shape, options.causal, contiguous_segments(options),
          static_cast<float>(attention_scale(options, shape.head_dim))};
}

// attention's fused form: q, k, v and the upstream gradient read in place (copied only when their
// strides do not allow it), out and dq, dk, dv written heads-last.
Tensor fused_attention(const FusedAttention& f, const Tensor& q, const Tensor& k, const Tensor& v) {
  const Tensor qs = fused_operand(q), ks = fused_operand(k), vs = fused_operand(v);
  const Tensor out = empty_heads_last(q), lse = empty_rows(f.shape, q.device());
  f.forward(qs, ks, vs, out, lse);
  // out is detached: the node holding its own output with the grad_fn would be a cycle.
  return record(out, "attention", {q, k, v}, [f, qs, ks, vs, o = out.detach(), lse](const Tensor& g, const GradNeeds&) {
    const Tensor dq = empty_heads_last(qs), dk = empty_heads_last(qs), dv = empty_heads_last(qs);
    f.backward(qs, ks, vs, o, fused_operand(g), lse, dq, dk, dv);
    return std::vector<Tensor>{dq, dk, dv};
  });
}

// attention_packed_qkv's fused form, one node: q, k, v read where they lie in qkv, the result
// written as [B, T, C] (its [B, H, T, D] view is heads-last), and the backward writes dq, dk, dv
// side by side into one [B, T, 3C] gradient laid out like qkv, so nothing is split, zero-padded or
// summed.
Tensor fused_attention_packed(const FusedAttention& f, const Tensor& qkv) {
  const kernels::AttentionShape& s = f.shape;
  const int64_t c = s.heads * s.head_dim;
  const Tensor q = fused_operand(heads_view(qkv, 0, s)), k = fused_operand(heads_view(qkv, c, s)),
               v = fused_operand(heads_view(qkv, 2 * c, s));
  const Tensor out = Tensor::empty({s.batch, s.seq_len, c}, qkv.dtype(), qkv.device());
  const Tensor lse = empty_rows(s, qkv.device());
  f.forward(q, k, v, heads_view(out, 0, s), lse);
  return record(out, "attention_packed_qkv", {qkv},
                [f, q, k, v, o = out.detach(), lse](const Tensor& g, const GradNeeds&) {
                  const kernels::AttentionShape& s = f.shape;
                  const int64_t c = s.heads * s.head_dim;
                  const Tensor d_qkv = Tensor::empty({s.batch, s.seq_len, 3 * c}, g.dtype(), g.device());
                  f.backward(q, k, v, heads_view(o, 0, s), fused_operand(heads_view(g, 0, s)), lse,
                             heads_view(d_qkv, 0, s), heads_view(d_qkv, c, s), heads_view(d_qkv, 2 * c, s));
                  return std::vector<Tensor>{d_qkv};
                });
}
#endif

// attention on [B, H, T, T] probabilities (kernel math): on every device, the reference.
Tensor math_attention(const Tensor& q, const Tensor& k, const Tensor& v, const kernels::AttentionShape& shape,
                      const AttentionOptions& options) {
  const int64_t t = shape.seq_len;
  const double scale = attention_scale(options, shape.head_dim);
  const Tensor segments = contiguous_segments(options);
  const kernels::AttentionMask mask{options.causal, segments.defined() ? segments.data<int32_t>() : nullptr};
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

// attention_packed_qkv's math form (and the reference of its fused one): the composition a model
// would write, through autograd. reshape copies each slice, and slice's backward pads with zeros.
Tensor composed_attention_packed(const Tensor& qkv, const kernels::AttentionShape& s, const AttentionOptions& options) {
  const int64_t c = s.heads * s.head_dim;
  auto split = [&](int64_t part) {  // [B, T, C] slice -> [B, H, T, D]
    return transpose(reshape(slice(qkv, 2, part * c, (part + 1) * c), {s.batch, s.seq_len, s.heads, s.head_dim}), 1, 2);
  };
  const Tensor y = attention(split(0), split(1), split(2), options);
  return reshape(transpose(y, 1, 2), {s.batch, s.seq_len, c});
}

}  // namespace

bool flash_attention_takes_head_dim(int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

const char* attention_kernel_name(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::math:
      return "math";
    case AttentionKernel::flash:
      return "flash";
    case AttentionKernel::cudnn:
      return "cudnn";
  }
  return "?";
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  check_attention_inputs(q, k, v, options.segment_ids);
  const kernels::AttentionShape shape{q.size(0), q.size(1), q.size(2), q.size(3)};
  if (options.kernel != AttentionKernel::math) {
    check_kernel_takes(q, options);
#ifdef FLASHTRAIN_HAS_CUDA
    return fused_attention(fused_attention_for(shape, options), q, k, v);
#endif
  }
  return math_attention(q, k, v, shape, options);
}

Tensor attention_packed_qkv(const Tensor& qkv, int64_t heads, const AttentionOptions& options) {
  check_packed_qkv(qkv, heads);
  const int64_t c = qkv.size(2) / 3;
  const kernels::AttentionShape shape{qkv.size(0), heads, qkv.size(1), c / heads};
  if (options.kernel != AttentionKernel::math) {
    const Tensor q = heads_view(qkv, 0, shape), k = heads_view(qkv, c, shape), v = heads_view(qkv, 2 * c, shape);
    check_attention_inputs(q, k, v, options.segment_ids);
    check_kernel_takes(q, options);
#ifdef FLASHTRAIN_HAS_CUDA
    return fused_attention_packed(fused_attention_for(shape, options), qkv);
#endif
  }
  return composed_attention_packed(qkv, shape, options);
}

}  // namespace ft
