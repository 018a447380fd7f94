// The framework's ops: what models compose. Each op checks its inputs (a wrong shape, dtype or
// device is an ft::Error naming the op and the shapes), runs the device's kernel from
// kernels/, and records its backward on the autograd tape (framework/autograd.h).
//
//   ft::Generator gen(42);
//   ft::Tensor w = ft::randn({4, 3}, gen).set_requires_grad(true);
//   ft::Tensor x = ft::randn({8, 3}, gen);
//   ft::Tensor loss = ft::mean(ft::gelu(ft::matmul(x, w, false, true)));
//   loss.backward();  // w.grad() now holds d(loss)/dw
//
// Floating ops compute in the inputs' dtype (f32 or f64 on the CPU); token ids and targets are
// i32. One file per op in framework/ops/; its kernels live in kernels/<op>/.
#pragma once

#include <vector>

#include "framework/random.h"
#include "framework/tensor.h"
#include "kernels/elementwise/gelu_form.h"

namespace ft {

// ---- elementwise (framework/ops/elementwise.cpp) -----------------------------------------
// Binary ops broadcast as NumPy does: shapes align at the right, a size-1 dimension stretches.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double factor);
// GELU: GeluForm::tanh as in GPT-2, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), or
// GeluForm::erf, the exact 0.5 x (1 + erf(x / sqrt(2))) of BERT and DistilBERT.
Tensor gelu(const Tensor& x, GeluForm form = GeluForm::tanh);
// max(x, 0); its gradient is 0 at x <= 0.
Tensor relu(const Tensor& x);
// dst += src in place, same shape and dtype, outside autograd (gradient accumulation).
void add_(const Tensor& dst, const Tensor& src);
// Sums `x` over the dimensions in which `shape` was broadcast to x's shape (the backward of
// broadcasting); outside autograd.
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- reductions (framework/ops/reduce.cpp) -----------------------------------------------
Tensor sum(const Tensor& x);   // all elements, shape []
Tensor mean(const Tensor& x);  // all elements, shape []

// ---- matrix products (framework/ops/matmul.cpp) ------------------------------------------
// a: [..., M, K] (or [..., K, M] with transpose_a), b: [..., K, N] (or [..., N, K] with
// transpose_b). Batch dimensions must be equal, or b is 2-D and shared by every batch.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);
// x: [..., in], weight: [out, in] (PyTorch's layout), bias: [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- normalisation and softmax -------------------------------------------------------------
// Over the last dimension; weight and bias: [C]. (framework/ops/layer_norm.cpp)
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// Over the last dimension. (framework/ops/softmax.cpp)
Tensor softmax(const Tensor& x);

// ---- embedding and dropout -----------------------------------------------------------------
// ids: i32 of any shape, values in [0, V); weight: [V, C]; result: ids.shape + [C].
Tensor embedding(const Tensor& ids, const Tensor& weight);
// Zeroes each element with probability p and scales the rest by 1/(1-p); draws from `gen`.
// The mask is recomputed from the generator's counters in the backward, never stored.
Tensor dropout(const Tensor& x, double p, Generator& gen);

// ---- shape (framework/ops/shape.cpp): views where the layout allows, copies otherwise -------
Tensor reshape(const Tensor& x, Shape shape);  // one size may be -1
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor contiguous(const Tensor& x);

// ---- attention (framework/ops/attention.cpp) ------------------------------------------------
// math: the plain form, which stores the [B, H, T, T] probabilities for the backward (every
// device and dtype). flash: kernels/flash_attention, which keeps one log-sum-exp per query
// instead (CUDA, bf16 or f16, head dim 64 or 128; anything else is an error, not a fallback).
// cudnn: cuDNN's fused flash attention (kernels/cudnn_attention), the baseline flash is measured
// against: what flash takes but segment ids, in builds that found cuDNN 9. Both fused kernels
// (flash, cudnn) read q, k, v and the upstream gradient in place whatever their strides (copied
// first only when a row is not whole, aligned 16-byte chunks), and their out (and dq, dk, dv)
// are [B, H, T, D] views of [B, T, H, D] memory, so merging the heads back costs no copy, nor
// splitting them the gradients.
enum class AttentionKernel { math, flash, cudnn };
// "math", "flash" or "cudnn", as recipes name them.
const char* attention_kernel_name(AttentionKernel kernel);

struct AttentionOptions {
  bool causal = true;
  // Optional i32 [B, T]: query i sees key j only when both have the same id >= 0 (packed rows
  // hold several documents; padding has id -1 and sees nothing, its output is zero).
  Tensor segment_ids;
  double scale = 0.0;  // 0 means 1/sqrt(head_dim)
  AttentionKernel kernel = AttentionKernel::math;
};
// Whether kernel flash takes heads of this size (64 or 128): the one rule, for the op's check
// and for recipes and model configs that check a model's shape before building it.
bool flash_attention_takes_head_dim(int64_t head_dim);
// q, k, v: [B, H, T, D]; result [B, H, T, D] = softmax(q k^T * scale + mask) v.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options = {});
// qkv: [B, T, 3C], q, k and v side by side (GPT-2's c_attn output), each of `heads` heads of
// D = C / heads columns, heads-major. The result [B, T, C] is attention on their [B, H, T, D]
// views with the heads merged back (the input of GPT-2's c_proj). With flash or cudnn one node
// reads q, k, v where they lie and writes the gradient of qkv in one piece; with math it is that
// composition of views (copies where reshape needs them) and attention.
Tensor attention_packed_qkv(const Tensor& qkv, int64_t heads, const AttentionOptions& options = {});

// ---- rotary position embedding (framework/ops/rotary.cpp) ----------------------------------
// x: [B, H, T, D] with D even. Rotates the pairs (x[i], x[i + D/2]) by the angle
// position * base^(-2i/D). positions: i32 [B, T], or undefined for 0..T-1 in every row
// (packed rows restart their positions at each document).
Tensor rotary_embedding(const Tensor& x, const Tensor& positions, double base = 10000.0);

// ---- loss (framework/ops/cross_entropy.cpp) -----------------------------------------------
// logits: [N, V]; targets: i32 [N] in [0, V) or ignore_index. The mean over the targets that
// are not ignored of -log softmax(logits)[target]; zero when all are ignored.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index = -100);

// ---- residual add + layer norm (framework/ops/add_layer_norm.cpp) -------------------------
// GPT-2's `x = x + branch; y = layer_norm(x)` in one pass over x and branch. x and branch have
// the same shape (no broadcasting); weight and bias: [C], C = the last size.
struct ResidualNorm {
  Tensor sum;     // x + branch
  Tensor normed;  // layer_norm(sum, weight, bias, eps)
};
ResidualNorm add_layer_norm(const Tensor& x, const Tensor& branch, const Tensor& weight, const Tensor& bias,
                            double eps = 1e-5);

// ---- the GELU MLP (framework/ops/mlp.cpp): GPT-2's feed-forward block as one op -------------
struct MlpOptions {
  // Keep only the pre-activation for the backward and recompute gelu(pre) there: saves one
  // [rows, H] tensor per block for an elementwise pass.
  bool recompute_gelu = false;
};
// x: [..., C]; fc_weight: [H, C], fc_bias: [H]; proj_weight: [C_out, H], proj_bias: [C_out].
// linear(gelu(linear(x, fc_weight, fc_bias)), proj_weight, proj_bias), GELU in its tanh form;
// result [..., C_out]. On CUDA the bias, GELU and their gradients ride in cuBLASLt's epilogues.
Tensor mlp(const Tensor& x, const Tensor& fc_weight, const Tensor& fc_bias, const Tensor& proj_weight,
           const Tensor& proj_bias, const MlpOptions& options = {});

// ---- language-model head + loss (framework/ops/lm_head_cross_entropy.cpp) -----------------
// h: [N, C]; weight: [V, C] (the tied embedding); targets: i32 [N] in [0, V) or ignore_index.
// cross_entropy(linear(h, weight, {}), targets), computed chunk_rows rows at a time (0: even
// chunks whose logits buffer fits 256 MiB) so the [N, V] logits never exist at once; the
// gradients are computed in the forward and only scaled by the backward. The loss is f32 on
// CUDA, h's dtype on the CPU; 0 when every target is ignored.
Tensor lm_head_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets, int ignore_index = -100,
                             int64_t chunk_rows = 0);

}  // namespace ft
