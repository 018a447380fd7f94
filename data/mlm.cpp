#include "data/mlm.h"

#include <algorithm>

#include "data/random_index.h"

namespace ft::data {
namespace {

// A uniform number in [0, 1) from 32 random bits.
double unit_interval(uint32_t bits) { return bits * (1.0 / 4294967296.0); }

void check_mlm(const Batch& batch, const MlmOptions& o) {
  FT_CHECK(batch.inputs.defined() && batch.inputs.dtype() == DType::i32 && batch.inputs.dim() == 2 &&
               batch.inputs.device().is_cpu() && batch.inputs.is_contiguous(),
           "mask_tokens: inputs must be a contiguous i32 [B, T] tensor on the CPU, got ",
           batch.inputs.defined() ? describe(batch.inputs) : "an undefined tensor");
  FT_CHECK(!batch.targets.defined(), "mask_tokens: the batch already has targets (", describe(batch.targets),
           "); build it with Objective::masked_lm");
  if (batch.segment_ids.defined())
    FT_CHECK(batch.segment_ids.dtype() == DType::i32 && batch.segment_ids.shape() == batch.inputs.shape() &&
                 batch.segment_ids.device().is_cpu() && batch.segment_ids.is_contiguous(),
             "mask_tokens: segment_ids is ", describe(batch.segment_ids), ", expected contiguous i32 ",
             shape_str(batch.inputs.shape()), " on the CPU");
  FT_CHECK(o.vocab_size >= 1, "mask_tokens: vocab_size must be at least 1, got ", o.vocab_size);
  FT_CHECK(o.mask_id >= 0 && o.mask_id < o.vocab_size, "mask_tokens: mask_id ", o.mask_id, " is outside [0, ",
           o.vocab_size, ")");
  auto is_probability = [](double p) { return p >= 0.0 && p <= 1.0; };
  FT_CHECK(is_probability(o.select_probability) && is_probability(o.mask_probability) &&
               is_probability(o.random_probability) && o.mask_probability + o.random_probability <= 1.0,
           "mask_tokens: probabilities must lie in [0, 1] with mask + random <= 1, got select ", o.select_probability,
           ", mask ", o.mask_probability, ", random ", o.random_probability);
}

}  // namespace

Batch mask_tokens(const Batch& batch, const MlmOptions& options, Generator& gen) {
  check_mlm(batch, options);
  const int64_t n = batch.inputs.numel();
  const int32_t* original = batch.inputs.data<int32_t>();
  const int32_t* segments = batch.segment_ids.defined() ? batch.segment_ids.data<int32_t>() : nullptr;
  Batch masked = batch;
  masked.inputs = Tensor::empty(batch.inputs.shape(), DType::i32);
  masked.targets = Tensor::empty(batch.inputs.shape(), DType::i32);
  int32_t* inputs = masked.inputs.data<int32_t>();
  int32_t* labels = masked.targets.data<int32_t>();
  const uint64_t seed = gen.seed(), first = gen.take(static_cast<uint64_t>(n));
  const auto& specials = options.special_ids;
  for (int64_t i = 0; i < n; ++i) {
    // Word 0 selects, word 1 picks the replacement, words 2 and 3 are the random id.
    const kernels::PhiloxBlock r = kernels::philox4x32(seed, first + static_cast<uint64_t>(i));
    const bool candidate = (segments == nullptr || segments[i] >= 0) &&
                           std::find(specials.begin(), specials.end(), original[i]) == specials.end();
    inputs[i] = original[i];
    labels[i] = kIgnoreTarget;
    if (!candidate || unit_interval(r.x[0]) >= options.select_probability) continue;
    labels[i] = original[i];
    const double action = unit_interval(r.x[1]);
    if (action < options.mask_probability) {
      inputs[i] = options.mask_id;
    } else if (action < options.mask_probability + options.random_probability) {
      const uint64_t bits = (static_cast<uint64_t>(r.x[3]) << 32) | r.x[2];
      inputs[i] = static_cast<int32_t>(scale_below(bits, static_cast<uint64_t>(options.vocab_size)));
    }
  }
  return masked;
}

}  // namespace ft::data
