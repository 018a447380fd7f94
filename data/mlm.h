// Masked-LM batching for DistilBERT (BERT's recipe): each real, non-special token is selected
// with probability 0.15; a selected token becomes [MASK] with probability 0.8, a random id in
// [0, vocab) with 0.1, and stays itself otherwise; the labels are the original ids at the
// selected positions and -100 everywhere else.
//
// The draws are counter-based: position i of a [B, T] batch uses Philox block
// (gen.seed(), first + i), where first = gen.take(B * T). So the masks depend only on the
// generator's state, which a checkpoint saves, and not on threads or on what else was drawn.
#pragma once

#include <cstdint>
#include <vector>

#include "data/loader.h"
#include "framework/random.h"

namespace ft::data {

// The defaults are bert-base-uncased's ids.
struct MlmOptions {
  int32_t mask_id = 103;                               // [MASK]
  int64_t vocab_size = 30522;                          // random replacements are drawn from [0, vocab_size)
  std::vector<int32_t> special_ids{0, 101, 102, 103};  // [PAD] [CLS] [SEP] [MASK]: never selected
  double select_probability = 0.15;
  double mask_probability = 0.8;    // of a selected token: becomes mask_id
  double random_probability = 0.1;  // of a selected token: becomes a random id; the rest stay
};

// A copy of `batch` (built with Objective::masked_lm, so its targets are undefined) whose
// inputs are masked and whose targets are the labels. Padding (segment id -1) is never
// selected. Throws ft::Error on a batch with targets, malformed tensors or invalid options.
Batch mask_tokens(const Batch& batch, const MlmOptions& options, Generator& gen);

}  // namespace ft::data
