// `flashtrain generate`: text from a trained run (its newest checkpoint, or a given one), with
// top-k / temperature sampling. The model and tokenizer come from the recipe saved in the
// checkpoint.
#include <cstdio>

#include "framework/train/run_setup.h"
#include "framework/train/saved_model.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {
namespace {

struct GenerateArgs {
  std::string source;
  std::string prompt;
  models::SamplingOptions sampling{64, 40, 1.0, -1};
  uint64_t seed = 1;
  int64_t samples = 1;
};

void run_generate(const GenerateArgs& a) {
  const train::SavedModel saved = train::load_saved_model(a.source);
  const auto tokenizer = train::recipe_tokenizer(saved.recipe);
  std::printf("%s: GPT-2 %lld parameters\n", saved.checkpoint.c_str(),
              static_cast<long long>(saved.model->parameter_count()));
  Generator gen(a.seed);
  models::SamplingOptions options = a.sampling;
  options.stop_token = train::end_of_text_id(*tokenizer);
  for (int64_t i = 0; i < a.samples; ++i)
    std::printf("--- sample %lld\n%s%s\n", static_cast<long long>(i + 1), a.prompt.c_str(),
                train::complete_text(*saved.model, *tokenizer, a.prompt, options, gen).c_str());
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Sample text from a trained run");
  cmd->add_option("source", a->source, "A run folder (its newest valid checkpoint) or a checkpoint file")->required();
  cmd->add_option("--prompt", a->prompt, "The text to continue (empty: start of a document)");
  cmd->add_option("--tokens", a->sampling.max_new_tokens, "New tokens per sample")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--top-k", a->sampling.top_k, "Sample among the k likeliest tokens (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", a->sampling.temperature, "Softmax temperature (0: greedy)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", a->seed, "Seed of the sampling")->capture_default_str();
  cmd->add_option("--samples", a->samples, "How many samples")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace ft::tools
