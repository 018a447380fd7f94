#include "framework/train/saved_model.h"

#include <filesystem>
#include <optional>

#include "framework/error.h"
#include "framework/train/checkpoint.h"
#include "framework/train/run_setup.h"

namespace fs = std::filesystem;

namespace ft::train {
namespace {

std::string checkpoint_file(const std::string& source) {
  FT_CHECK(fs::exists(source), source, ": no such checkpoint file, checkpoint folder or run folder");
  if (fs::is_regular_file(source)) return source;
  const fs::path folder =
      fs::is_directory(fs::path(source) / "checkpoints") ? fs::path(source) / "checkpoints" : fs::path(source);
  const std::optional<std::string> newest = find_latest_checkpoint(folder.string());
  FT_CHECK(newest.has_value(), folder.string(), ": no valid checkpoint (step_*.h5) in this folder");
  return *newest;
}

}  // namespace

SavedModel load_saved_model(const std::string& source) {
  SavedModel saved;
  saved.checkpoint = checkpoint_file(source);
  saved.recipe = parse_recipe(load_checkpoint_recipe(saved.checkpoint), saved.checkpoint + " (its recipe)");
  FT_CHECK(saved.recipe.model.arch == "gpt2", saved.checkpoint, ": model.arch is ", saved.recipe.model.arch,
           "; only GPT-2 runs can be loaded for generating text or exporting");
  const std::unique_ptr<data::Tokenizer> tokenizer = recipe_tokenizer(saved.recipe);
  Generator unused(0);  // the weights are overwritten by the checkpoint's
  models::Gpt2Config config = model_config(saved.recipe, tokenizer->vocab_size());
  config.attention = AttentionKernel::math;  // the model is built on the CPU in f32, where only math runs
  saved.model = std::make_unique<models::Gpt2>(config, unused);
  load_checkpoint_parameters(saved.checkpoint, saved.model->parameters());
  return saved;
}

std::string complete_text(const models::Gpt2& model, const data::Tokenizer& tokenizer, const std::string& prompt,
                          const models::SamplingOptions& options, Generator& gen) {
  std::vector<int32_t> ids = tokenizer.encode(prompt);
  if (ids.empty()) ids.push_back(end_of_text_id(tokenizer));
  return tokenizer.decode(models::generate(model, ids, options, gen));
}

}  // namespace ft::train
