// The seam between the trainer and a model: what a training step, a validation pass and a
// checkpoint need of GPT-2 (causal LM) or DistilBERT (masked LM), so the trainer never asks
// which one it runs. make_model_step picks the model by model.arch.
//
// What is not obvious: DistilBERT masks each training batch with a generator of its own, which
// generators() hands to checkpoints so a resumed run masks exactly as an uninterrupted one;
// validation masks with a fresh generator of a fixed seed, so every pass scores the same masks.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "framework/ops.h"
#include "framework/parameter.h"
#include "framework/random.h"
#include "framework/train/recipe.h"

namespace ft::train {

// Metric name and value, in the order metrics.jsonl gets them.
using Metrics = std::vector<std::pair<std::string, double>>;

class ModelStep {
 public:
  virtual ~ModelStep() = default;
  virtual std::string name() const = 0;  // "GPT-2", for the run's first line
  virtual data::Objective objective() const = 0;
  virtual const std::vector<NamedParameter>& parameters() const = 0;
  virtual int64_t parameter_count() const = 0;
  // The attention kernel the model runs (the recipe's, `auto` resolved), for the run's first line.
  virtual AttentionKernel attention_kernel() const = 0;
  // The mean loss of a training batch (an f32 scalar on the model's device); dropout only with
  // a generator.
  virtual Tensor loss(const data::Batch& batch, Generator* dropout_gen) = 0;
  // Metrics over the loader's first `batches` batches, without gradients: val_loss and what
  // else the model reports (val_ppl; val_masked_accuracy and
  // val_unigram_accuracy, the most frequent masked token's share).
  virtual Metrics validate(data::Loader& loader, int64_t batches) const = 0;
  // Generators besides the trainer's that a checkpoint must keep, by name.
  virtual std::map<std::string, Generator*> generators() { return {}; }
  // The prompt continued (logging.sample_every); the recipe allows samples only where there is this.
  virtual std::string sample(const data::Tokenizer& tokenizer, const LoggingRecipe& logging, int32_t eot_id,
                             Generator& gen) const = 0;
};

// The recipe's model in `dtype` on `device`, for the tokenizer's vocabulary. With
// initial_weights its weights are model.init_from's when set; otherwise (and without
// initial_weights, where the caller overwrites them) random from `init`.
std::unique_ptr<ModelStep> make_model_step(const Recipe& r, const data::Tokenizer& tokenizer, Generator& init,
                                           DType dtype, Device device, bool initial_weights = true);

}  // namespace ft::train
