// GPT-2 (Radford et al. 2019): token and learned position embeddings, n pre-LayerNorm blocks
// of causal self-attention and a GELU MLP, a final LayerNorm, and an output projection tied
// to the token embedding. Built only from framework ops, so it runs wherever they run.
//
// Parameters carry Hugging Face's names without the "transformer." prefix ("h.0.attn.c_attn
// .weight"), but linear weights are stored [out, in] as framework/ops.h's linear() takes them
// (Hugging Face's Conv1D stores [in, out]; conversion transposes).
#pragma once

#include <string>
#include <vector>

#include "framework/ops.h"
#include "framework/parameter.h"

namespace ft::models {

struct Gpt2Config {
  int64_t vocab_size = 50257;
  int64_t block_size = 1024;  // the longest sequence (learned positions)
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  bool rotary = false;  // rotary positions on q and k instead of learned position embeddings
  double rope_base = 10000.0;
  double dropout = 0.0;         // on the embeddings and on each block's two residual branches
  bool recompute_gelu = false;  // keep only the MLP's pre-activation; recompute GELU in the backward
  AttentionKernel attention = AttentionKernel::math;  // flash: CUDA, bf16 or f16, head dim 64 or 128
};

// What a forward pass reads besides the token ids.
struct Gpt2Batch {
  Tensor ids;          // i32 [B, T]
  Tensor positions;    // i32 [B, T], or undefined for 0..T-1 (packed rows restart per document)
  Tensor segment_ids;  // i32 [B, T], or undefined: attention stays inside a segment; -1 is padding
};

// Named sizes: "gpt2-124m", "gpt2-350m", "gpt2-774m", "gpt2-1558m", and "tiny" (a small model
// for tests and CPU runs). Throws ft::Error naming the choices for an unknown name.
Gpt2Config gpt2_config(const std::string& name);

class Gpt2 {
 public:
  // Initialises as GPT-2 does: normal(0, 0.02) weights, zero biases, unit LayerNorm gains, and
  // the projections into the residual stream scaled by 1/sqrt(2 n_layer).
  Gpt2(const Gpt2Config& config, Generator& init, DType dtype = DType::f32, Device device = Device::cpu());

  // Returns logits [B, T, vocab_size]; T <= block_size. Dropout is applied only when a
  // generator is given (training); evaluation passes none.
  Tensor forward(const Gpt2Batch& batch, Generator* dropout_gen = nullptr) const;
  Tensor forward(const Tensor& ids) const { return forward(Gpt2Batch{ids, Tensor(), Tensor()}); }
  // The mean next-token cross-entropy against targets (i32 [B, T], ignore_index where none):
  // the output projection and the loss fused, so the [B*T, vocab] logits are never all held.
  Tensor loss(const Gpt2Batch& batch, const Tensor& targets, Generator* dropout_gen = nullptr,
              int ignore_index = -100) const;

  const Gpt2Config& config() const { return config_; }
  Device device() const { return wte_.device(); }
  DType dtype() const { return wte_.dtype(); }
  const std::vector<NamedParameter>& parameters() const { return parameters_; }
  int64_t parameter_count() const;

 private:
  struct Block {
    Tensor ln_1_weight, ln_1_bias, c_attn_weight, c_attn_bias, attn_proj_weight, attn_proj_bias;
    Tensor ln_2_weight, ln_2_bias, c_fc_weight, c_fc_bias, mlp_proj_weight, mlp_proj_bias;
  };
  // The final layer norm's output [B, T, C]: what the output projection reads.
  Tensor hidden(const Gpt2Batch& batch, Generator* dropout_gen) const;
  Tensor attention_branch(const Block& b, const Tensor& normed, const Gpt2Batch& batch, Generator* dropout_gen) const;
  Tensor maybe_dropout(const Tensor& x, Generator* dropout_gen) const;

  Gpt2Config config_;
  Tensor wte_, wpe_, ln_f_weight_, ln_f_bias_;
  std::vector<Block> blocks_;
  std::vector<NamedParameter> parameters_;
};

}  // namespace ft::models
