// Sampling text from a GPT-2: repeatedly run the model on the context (cropped to block_size),
// keep the top-k logits of the last position, divide by the temperature, and draw from the
// softmax with a counter-based draw from `gen` (so a seed gives the same text on any device).
// Temperature 0 means greedy decoding. No key/value cache: samples are short diagnostics.
#pragma once

#include <cstdint>
#include <vector>

#include "models/gpt2/gpt2.h"

namespace ft::models {

struct SamplingOptions {
  int64_t max_new_tokens = 32;
  int64_t top_k = 40;         // 0: the whole vocabulary
  double temperature = 1.0;   // 0: greedy
  int32_t stop_token = -1;    // stop after emitting this id (e.g. end of text); -1: never
};

// Returns only the new tokens.
std::vector<int32_t> generate(const Gpt2& model, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                              Generator& gen);

}  // namespace ft::models
