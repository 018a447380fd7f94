// DistilBERT (Sanh et al. 2019): word and learned position embeddings with a LayerNorm, then
// post-LayerNorm encoder blocks of bidirectional self-attention and an exact (erf) GELU
// feed-forward, and one of two heads: masked-LM (dense, GELU, LayerNorm, and a projection tied
// to the word embeddings with its own bias) or sequence classification on the [CLS] position.
//
// Parameters carry Hugging Face's names without the "distilbert." prefix of the base model
// ("transformer.layer.0.attention.q_lin.weight"); the heads' names are HF's top-level ones
// ("vocab_transform.weight", "pre_classifier.weight"). Unlike GPT-2 the normalisation comes
// after each residual add, so the block's output is the LayerNorm's, not the residual stream.
#pragma once

#include <string>
#include <vector>

#include "framework/ops.h"
#include "framework/parameter.h"

namespace ft::models {

struct DistilBertConfig {
  int64_t vocab_size = 30522;
  int64_t max_positions = 512;  // the longest sequence (learned positions)
  int64_t dim = 768;
  int64_t n_layers = 6;
  int64_t n_heads = 12;
  int64_t hidden_dim = 3072;  // the feed-forward's inner size
  double dropout = 0.1;       // after the embeddings' LayerNorm and on each feed-forward's output
  double layer_norm_eps = 1e-12;
  int32_t pad_token_id = 0;
  // 0: the masked-LM head; n > 0: the sequence-classification head with n labels.
  int64_t num_labels = 0;
  double classifier_dropout = 0.2;  // between pre_classifier and classifier (HF's seq_classif_dropout)
  AttentionKernel attention = AttentionKernel::math;  // flash: CUDA, bf16 or f16, head dim 64 or 128
};

// What a forward pass reads besides the token ids.
struct DistilBertBatch {
  Tensor ids;          // i32 [B, T]
  Tensor positions;    // i32 [B, T], or undefined for 0..T-1 (packed rows restart per document)
  Tensor segment_ids;  // i32 [B, T], or undefined: attention stays inside a segment; -1 is padding
};

// Named sizes: "distilbert-base" (distilbert-base-uncased) and "tiny" (for tests and CPU runs).
// Throws ft::Error naming the choices for an unknown name.
DistilBertConfig distilbert_config(const std::string& name);

class DistilBert {
 public:
  // Initialises as transformers does: normal(0, 0.02) matrices and embeddings, zero biases,
  // unit LayerNorm gains.
  DistilBert(const DistilBertConfig& config, Generator& init, DType dtype = DType::f32, Device device = Device::cpu());

  // The last block's output [B, T, dim]; T <= max_positions. Dropout only with a generator.
  Tensor hidden(const DistilBertBatch& batch, Generator* dropout_gen = nullptr) const;
  // Masked-LM logits [B, T, vocab_size] (the masked-LM head only).
  Tensor mlm_logits(const DistilBertBatch& batch, Generator* dropout_gen = nullptr) const;
  // The mean cross-entropy of the masked-LM logits against labels (i32 [B, T], ignore_index
  // where no prediction is asked, as data/mlm.h writes them); 0 when every label is ignored.
  Tensor mlm_loss(const DistilBertBatch& batch, const Tensor& labels, Generator* dropout_gen = nullptr,
                  int ignore_index = -100) const;
  // Classification logits [B, num_labels] from each row's first ([CLS]) position.
  Tensor classify(const DistilBertBatch& batch, Generator* dropout_gen = nullptr) const;

  const DistilBertConfig& config() const { return config_; }
  Device device() const { return word_embeddings_.device(); }
  DType dtype() const { return word_embeddings_.dtype(); }
  const std::vector<NamedParameter>& parameters() const { return parameters_; }
  int64_t parameter_count() const;

 private:
  struct Block {
    Tensor q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, out_weight, out_bias;
    Tensor sa_ln_weight, sa_ln_bias, lin1_weight, lin1_bias, lin2_weight, lin2_bias, output_ln_weight, output_ln_bias;
  };
  Tensor attention_branch(const Block& b, const Tensor& x, const DistilBertBatch& batch) const;
  Tensor block_forward(const Block& b, const Tensor& x, const DistilBertBatch& batch, Generator* dropout_gen) const;
  Tensor maybe_dropout(const Tensor& x, double p, Generator* dropout_gen) const;

  DistilBertConfig config_;
  Tensor word_embeddings_, position_embeddings_, embeddings_ln_weight_, embeddings_ln_bias_;
  std::vector<Block> blocks_;
  // The masked-LM head (num_labels == 0).
  Tensor vocab_transform_weight_, vocab_transform_bias_, vocab_ln_weight_, vocab_ln_bias_, vocab_projector_bias_;
  // The classification head (num_labels > 0).
  Tensor pre_classifier_weight_, pre_classifier_bias_, classifier_weight_, classifier_bias_;
  std::vector<NamedParameter> parameters_;
};

}  // namespace ft::models
