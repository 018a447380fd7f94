// The small DistilBERT the model's tests share: sizes that run in milliseconds on a CPU yet have
// two layers and two heads, and every parameter random (biases and LayerNorm gains too) so that a
// tensor used in the wrong place changes the outputs.
#pragma once

#include "models/distilbert/distilbert.h"

namespace ft::testing {

// Vocabulary 30, 12 positions, dim 8, 2 layers of 2 heads, hidden_dim 16, no dropout.
inline models::DistilBertConfig small_distilbert(int64_t num_labels = 0) {
  models::DistilBertConfig c;
  c.vocab_size = 30;
  c.max_positions = 12;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.hidden_dim = 16;
  c.dropout = 0;
  c.num_labels = num_labels;
  return c;
}

inline models::DistilBert random_distilbert(const models::DistilBertConfig& c, uint64_t seed, DType dtype) {
  Generator gen(seed);
  models::DistilBert model(c, gen, dtype);
  for (const NamedParameter& p : model.parameters()) normal_(p.tensor, gen, 0.0, 0.5);
  return model;
}

}  // namespace ft::testing
