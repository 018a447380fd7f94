// Masked-LM batching: over about 250k candidate tokens the selection rate and the 80/10/10
// split land within a few standard deviations of BERT's numbers, special ids and padding are
// never selected, labels are -100 everywhere else, and a restored generator reproduces the masks.
#include <doctest/doctest.h>

#include <cmath>

#include "data/mlm.h"

using namespace ft;
using namespace ft::data;

namespace {

constexpr int64_t kB = 16, kT = 128;
constexpr int32_t kPad = 0, kCls = 101, kSep = 102, kMask = 103;

// Rows [CLS] w w ... w [SEP] [PAD] ..., with words in [1000, 29000) and row b holding
// T - 3b real tokens; the padding has segment id -1.
Batch bert_batch(uint64_t seed) {
  Generator gen(seed);
  std::vector<double> u = rand({kB, kT}, gen, DType::f64).to_double_vector();
  std::vector<int32_t> inputs(kB * kT), segments(kB * kT);
  Batch batch;
  for (int64_t b = 0; b < kB; ++b) {
    const int64_t length = kT - 3 * b;
    for (int64_t t = 0; t < kT; ++t) {
      const int64_t i = b * kT + t;
      inputs[i] = t == 0            ? kCls
                  : t == length - 1 ? kSep
                  : t < length      ? 1000 + static_cast<int32_t>(u[i] * 28000)
                                    : kPad;
      segments[i] = t < length ? 0 : -1;
      batch.real_tokens += t < length;
    }
  }
  batch.inputs = Tensor::from_ints(inputs, {kB, kT});
  batch.segment_ids = Tensor::from_ints(segments, {kB, kT});
  batch.padding_tokens = kB * kT - batch.real_tokens;
  return batch;
}

}  // namespace

TEST_CASE("15% of the candidates are selected, then 80% masked, 10% random, 10% kept") {
  const MlmOptions options;
  Generator gen(7);
  int64_t candidates = 0, selected = 0, masked = 0, randomised = 0, kept = 0;
  for (uint64_t round = 0; round < 150; ++round) {
    const Batch batch = bert_batch(round);
    const Batch out = mask_tokens(batch, options, gen);
    const std::vector<int32_t> original = batch.inputs.to_int_vector(), inputs = out.inputs.to_int_vector(),
                               labels = out.targets.to_int_vector(), segments = batch.segment_ids.to_int_vector();
    for (size_t i = 0; i < original.size(); ++i) {
      const bool special = original[i] == kCls || original[i] == kSep || segments[i] < 0;
      candidates += !special;
      if (labels[i] == kIgnoreTarget) {
        REQUIRE(inputs[i] == original[i]);  // unselected positions are untouched
        continue;
      }
      REQUIRE_FALSE(special);
      REQUIRE(labels[i] == original[i]);
      ++selected;
      REQUIRE(inputs[i] >= 0);
      REQUIRE(inputs[i] < options.vocab_size);
      if (inputs[i] == kMask)
        ++masked;
      else if (inputs[i] == original[i])
        ++kept;  // includes the rare random draw of the original id (1 in 30522)
      else
        ++randomised;
    }
    CHECK(out.segment_ids.impl() == batch.segment_ids.impl());
    CHECK(out.real_tokens == batch.real_tokens);
  }
  // Binomial standard deviations: about 0.0007 for the rate, 0.002 and 0.0016 for the split.
  const double rate = double(selected) / candidates;
  MESSAGE("mlm: ", candidates, " candidates, rate ", rate, ", mask ", double(masked) / selected, ", random ",
          double(randomised) / selected, ", keep ", double(kept) / selected);
  CHECK(candidates > 240000);
  CHECK(std::abs(rate - 0.15) < 0.004);
  CHECK(std::abs(double(masked) / selected - 0.8) < 0.01);
  CHECK(std::abs(double(randomised) / selected - 0.1) < 0.008);
  CHECK(std::abs(double(kept) / selected - 0.1) < 0.008);
}

TEST_CASE("random replacements spread over the whole vocabulary") {
  MlmOptions options;
  options.vocab_size = 8;
  options.mask_id = 7;
  options.special_ids = {};
  options.select_probability = 1.0;
  options.mask_probability = 0.0;
  options.random_probability = 1.0;
  Batch batch;
  batch.inputs = Tensor::full({kB, kT}, 3, DType::i32);
  Generator gen(1);
  std::vector<int64_t> counts(8, 0);
  for (int32_t id : mask_tokens(batch, options, gen).inputs.to_int_vector()) ++counts.at(id);
  for (int64_t c : counts) CHECK(std::abs(c - kB * kT / 8.0) < 5 * std::sqrt(kB * kT / 8.0));
}

TEST_CASE("the same generator state gives the same masks; the generator advances by B x T") {
  const Batch batch = bert_batch(3);
  const MlmOptions options;
  Generator gen(42);
  gen.take(1000);
  const GeneratorState saved = gen.state();
  const Batch first = mask_tokens(batch, options, gen);
  CHECK(gen.state().offset == saved.offset + kB * kT);
  const Batch second = mask_tokens(batch, options, gen);
  CHECK(first.inputs.to_int_vector() != second.inputs.to_int_vector());
  Generator restored(0);
  restored.set_state(saved);
  const Batch again = mask_tokens(batch, options, restored);
  CHECK(again.inputs.to_int_vector() == first.inputs.to_int_vector());
  CHECK(again.targets.to_int_vector() == first.targets.to_int_vector());
}

TEST_CASE("batches from the loader: padding and end-of-text ids are never selected") {
  TokenCorpus corpus;
  for (int32_t d = 0; d < 40; ++d) corpus.add_document(std::vector<int32_t>(1 + d % 9 * 7, 1000 + d));
  LoaderOptions loader_options;
  loader_options.mode = PackingMode::padded;
  loader_options.objective = Objective::masked_lm;
  loader_options.seq_len = 32;
  loader_options.batch_size = 8;
  loader_options.eot_id = kSep;
  loader_options.pad_id = kPad;
  Loader loader(corpus, loader_options);
  MlmOptions options;
  options.select_probability = 0.5;
  Generator gen(5);
  for (int step = 0; step < 4; ++step) {
    const Batch batch = loader.next();
    const Batch out = mask_tokens(batch, options, gen);
    const std::vector<int32_t> original = batch.inputs.to_int_vector(), labels = out.targets.to_int_vector(),
                               segments = batch.segment_ids.to_int_vector();
    int64_t selected = 0;
    for (size_t i = 0; i < original.size(); ++i) {
      if (segments[i] < 0 || original[i] == kSep) CHECK(labels[i] == kIgnoreTarget);
      selected += labels[i] != kIgnoreTarget;
    }
    CHECK(selected > 0);
  }
}

TEST_CASE("mask_tokens refuses batches with targets, malformed tensors and invalid options") {
  const Batch batch = bert_batch(0);
  Generator gen(0);
  Batch causal = batch;
  causal.targets = batch.inputs;
  CHECK_THROWS_WITH(mask_tokens(causal, {}, gen), doctest::Contains("already has targets (i32[16, 128] on cpu)"));
  Batch floating = batch;
  floating.inputs = Tensor::zeros({kB, kT});
  CHECK_THROWS_WITH(mask_tokens(floating, {}, gen), doctest::Contains("inputs must be a contiguous i32 [B, T]"));
  Batch short_segments = batch;
  short_segments.segment_ids = Tensor::zeros({kB, kT - 1}, DType::i32);
  CHECK_THROWS_WITH(mask_tokens(short_segments, {}, gen),
                    doctest::Contains("segment_ids is i32[16, 127] on cpu, expected contiguous i32 [16, 128]"));
  MlmOptions bad_mask;
  bad_mask.mask_id = 30522;
  CHECK_THROWS_WITH(mask_tokens(batch, bad_mask, gen), doctest::Contains("mask_id 30522 is outside [0, 30522)"));
  MlmOptions bad_split;
  bad_split.random_probability = 0.3;
  CHECK_THROWS_WITH(mask_tokens(batch, bad_split, gen), doctest::Contains("mask + random <= 1"));
  CHECK(gen.state().offset == 0);  // nothing was drawn
}
