// `flashtrain convert`: Hugging Face GPT-2 and DistilBERT directories in and out. `hf-check DIR`
// imports one (the model config.json's model_type names) and prints its size and the logits of a
// few tokens (and can save them all, for parity checks against transformers); `export --checkpoint RUN --out DIR`
// writes a trained model as a directory that transformers loads, `export --random SIZE --out DIR` a freshly initialised
// one.
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framework/autograd.h"
#include "framework/error.h"
#include "framework/io/safetensors.h"
#include "framework/train/saved_model.h"
#include "models/common/hf_files.h"
#include "models/distilbert/distilbert_hf.h"
#include "models/gpt2/gpt2_hf.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {

namespace {

struct HfCheckOptions {
  std::string dir;
  std::string dtype = "f32";
  std::string device = "cpu";
  std::vector<int32_t> ids;
  std::string logits_path;
};

struct ExportOptions {
  std::string checkpoint;
  std::string size;
  std::string out;
  uint64_t seed = 0;
  std::string dtype = "f32";
};

// 0, 1, 2, ... as many as fit both the vocabulary and the context (at most 8).
std::vector<int32_t> default_ids(int64_t vocab_size, int64_t max_positions) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < std::min<int64_t>({8, vocab_size, max_positions}); ++i)
    ids.push_back(static_cast<int32_t>(i));
  return ids;
}

void print_logits(const Tensor& logits) {  // [1, T, V]
  const int64_t t_count = logits.size(1), vocab = logits.size(2);
  const std::vector<double> values = logits.to_double_vector();
  std::printf("logits [1, %lld, %lld]; per position: argmax, then the first values\n", static_cast<long long>(t_count),
              static_cast<long long>(vocab));
  for (int64_t t = 0; t < t_count; ++t) {
    const double* row = values.data() + t * vocab;
    int64_t best = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;
    std::printf("  t=%lld argmax %lld |", static_cast<long long>(t), static_cast<long long>(best));
    for (int64_t v = 0; v < std::min<int64_t>(vocab, 5); ++v) std::printf(" %.6f", row[v]);
    std::printf("\n");
  }
}

// Prints the ids, then runs `logits_of` on them ([1, T, V]), prints and optionally saves them.
void check_logits(const HfCheckOptions& o, std::vector<int32_t> ids, Device device,
                  const std::function<Tensor(const Tensor&)>& logits_of) {
  std::printf("ids");
  for (int32_t id : ids) std::printf(" %d", id);
  std::printf("\n");
  NoGradGuard no_grad;
  const Tensor logits = logits_of(Tensor::from_ints(ids, {1, static_cast<int64_t>(ids.size())}, device));
  print_logits(logits);
  if (!o.logits_path.empty()) {
    io::write_safetensors(o.logits_path, {{"logits", logits.to(DType::f32)}});
    std::printf("wrote %s (\"logits\", f32)\n", o.logits_path.c_str());
  }
}

void print_parameters(int64_t count, const HfCheckOptions& o, Device device) {
  std::printf("parameters %lld, %s on %s\n", static_cast<long long>(count), o.dtype.c_str(), device.str().c_str());
}

void check_gpt2(const HfCheckOptions& o, Device device) {
  const models::Gpt2 model = models::import_hf_gpt2(o.dir, dtype_from_name(o.dtype), device);
  const models::Gpt2Config& c = model.config();
  std::printf("%s: GPT-2 n_layer %lld, n_head %lld, n_embd %lld, n_positions %lld, vocab_size %lld\n", o.dir.c_str(),
              static_cast<long long>(c.n_layer), static_cast<long long>(c.n_head), static_cast<long long>(c.n_embd),
              static_cast<long long>(c.block_size), static_cast<long long>(c.vocab_size));
  print_parameters(model.parameter_count(), o, device);
  check_logits(o, o.ids.empty() ? default_ids(c.vocab_size, c.block_size) : o.ids, device,
               [&](const Tensor& ids) { return model.forward(ids); });
}

// The masked-LM logits [1, T, V], or a classifier's [1, 1, num_labels] (one row: [CLS]).
void check_distilbert(const HfCheckOptions& o, Device device) {
  const models::DistilBert model = models::import_hf_distilbert(o.dir, dtype_from_name(o.dtype), device);
  const models::DistilBertConfig& c = model.config();
  const std::string head = c.num_labels == 0 ? "masked-LM head" : str("classifier of ", c.num_labels, " labels");
  std::printf(
      "%s: DistilBERT n_layers %lld, n_heads %lld, dim %lld, hidden_dim %lld, max_position_embeddings %lld, "
      "vocab_size %lld, %s\n",
      o.dir.c_str(), static_cast<long long>(c.n_layers), static_cast<long long>(c.n_heads),
      static_cast<long long>(c.dim), static_cast<long long>(c.hidden_dim), static_cast<long long>(c.max_positions),
      static_cast<long long>(c.vocab_size), head.c_str());
  print_parameters(model.parameter_count(), o, device);
  check_logits(o, o.ids.empty() ? default_ids(c.vocab_size, c.max_positions) : o.ids, device, [&](const Tensor& ids) {
    const models::DistilBertBatch batch{ids, Tensor(), Tensor()};
    return c.num_labels == 0 ? model.mlm_logits(batch) : reshape(model.classify(batch), {1, 1, c.num_labels});
  });
}

void run_hf_check(const HfCheckOptions& o) {
  const Device device = parse_device(o.device);
  // transformers' GPT-2 configs may omit model_type; import_hf_gpt2 checks the rest.
  const models::hf::json type = models::hf::ConfigFile(o.dir, "flashtrain convert").get("model_type", "gpt2");
  if (type == "distilbert") {
    check_distilbert(o, device);
  } else {
    check_gpt2(o, device);
  }
}

void run_export(const ExportOptions& o) {
  FT_CHECK(!o.checkpoint.empty() || !o.size.empty(), "convert export: give --checkpoint RUN or --random SIZE");
  if (!o.checkpoint.empty()) {
    const train::SavedModel saved = train::load_saved_model(o.checkpoint);
    models::export_hf_gpt2(*saved.model, o.out);
    std::printf("wrote %s/config.json and model.safetensors from %s, %lld parameters\n", o.out.c_str(),
                saved.checkpoint.c_str(), static_cast<long long>(saved.model->parameter_count()));
    return;
  }
  Generator init(o.seed);
  const models::Gpt2 model(models::gpt2_config(o.size), init, dtype_from_name(o.dtype));
  models::export_hf_gpt2(model, o.out);
  std::printf("wrote %s/config.json and model.safetensors: random GPT-2 %s (seed %llu), %lld parameters, %s\n",
              o.out.c_str(), o.size.c_str(), static_cast<unsigned long long>(o.seed),
              static_cast<long long>(model.parameter_count()), o.dtype.c_str());
}

}  // namespace

void add_convert_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("convert", "Import and export Hugging Face GPT-2 and DistilBERT directories");
  cmd->require_subcommand(1);

  auto check = std::make_shared<HfCheckOptions>();
  CLI::App* hf_check = cmd->add_subcommand(
      "hf-check",
      "Import a Hugging Face GPT-2 or DistilBERT directory (config.json + safetensors); print its size and logits");
  hf_check->add_option("dir", check->dir, "The directory")->required();
  hf_check->add_option("--dtype", check->dtype, "Parameter dtype: f32, f64, bf16, f16")->capture_default_str();
  hf_check->add_option("--device", check->device, "cpu or cuda[:N]")->capture_default_str();
  hf_check->add_option("--ids", check->ids, "Comma-separated token ids to run (default 0,1,...,7)")->delimiter(',');
  hf_check->add_option("--save-logits", check->logits_path, "Write the logits [1, T, V] as safetensors (\"logits\")");
  hf_check->callback([check] { run_hf_check(*check); });

  auto exp = std::make_shared<ExportOptions>();
  CLI::App* export_cmd = cmd->add_subcommand("export", "Write a GPT-2 as a Hugging Face directory");
  CLI::Option* from_checkpoint = export_cmd->add_option("--checkpoint", exp->checkpoint,
                                                        "A trained model: checkpoint file, or run folder (newest)");
  export_cmd->add_option("--random", exp->size, "Randomly initialised model of this size: gpt2-124m, ..., tiny")
      ->excludes(from_checkpoint);
  export_cmd->add_option("--out", exp->out, "The directory to write (created if needed)")->required();
  export_cmd->add_option("--seed", exp->seed, "Seed of the initialisation")->capture_default_str();
  export_cmd->add_option("--dtype", exp->dtype, "Dtype of the saved weights: f32, f64, bf16, f16")
      ->capture_default_str();
  export_cmd->callback([exp] { run_export(*exp); });
}

}  // namespace ft::tools
