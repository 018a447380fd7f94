// A trained model brought back from its run: the recipe saved in a checkpoint fixes the model's
// shape and the tokenizer, then the weights are loaded (checksums checked). What
// `flashtrain generate` and `flashtrain convert export --checkpoint` start from.
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "framework/train/recipe.h"
#include "models/gpt2/generate.h"
#include "models/gpt2/gpt2.h"

namespace ft::train {

struct SavedModel {
  std::string checkpoint;  // the file it came from
  Recipe recipe;
  std::unique_ptr<models::Gpt2> model;
};

// `source` is a checkpoint file, a checkpoint folder, or a run folder (its checkpoints/): the
// newest valid checkpoint there is used.
SavedModel load_saved_model(const std::string& source);

// The prompt's continuation as text: encode, sample (models/gpt2/generate.h), decode. An empty
// prompt starts from the end-of-text token.
std::string complete_text(const models::Gpt2& model, const data::Tokenizer& tokenizer, const std::string& prompt,
                          const models::SamplingOptions& options, Generator& gen);

}  // namespace ft::train
