#include "framework/train/model_step.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "data/mlm.h"
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/train/run_setup.h"
#include "framework/train/saved_model.h"
#include "models/distilbert/distilbert.h"
#include "models/distilbert/distilbert_hf.h"
#include "models/gpt2/gpt2.h"
#include "models/gpt2/gpt2_hf.h"

namespace ft::train {
namespace {

// The loader makes batches on the CPU; they go to the model's device here (undefined tensors,
// such as concat rows' segment ids, stay undefined).
Tensor on_device(const Tensor& t, Device device) { return t.defined() ? t.to(device) : t; }

// On a GPU an out-of-range id would read past the embedding table without a word (the kernels
// never wait for the host to report it), so the batch is checked here, while it is still on
// the CPU. The CPU ops check their inputs themselves.
void check_token_ids(const data::Batch& b, int64_t vocab_size, Device device) {
  if (!device.is_cuda()) return;
  for (int32_t id : b.inputs.to_int_vector())
    FT_CHECK(id >= 0 && id < vocab_size, "training batch: token id ", id, " is outside the model's vocabulary [0, ",
             vocab_size, ") (does the dataset match the tokenizer?)");
  for (int32_t t : b.targets.to_int_vector())
    FT_CHECK(t == data::kIgnoreTarget || (t >= 0 && t < vocab_size), "training batch: target ", t,
             " is outside the model's vocabulary [0, ", vocab_size, ")");
}

int64_t predicted_targets(const data::Batch& b) {
  int64_t n = 0;
  for (int32_t t : b.targets.to_int_vector()) n += t != data::kIgnoreTarget;
  return n;
}

class Gpt2Step : public ModelStep {
 public:
  explicit Gpt2Step(models::Gpt2 model) : model_(std::move(model)) {}
  std::string name() const override { return "GPT-2"; }
  data::Objective objective() const override { return data::Objective::causal_lm; }
  const std::vector<NamedParameter>& parameters() const override { return model_.parameters(); }
  int64_t parameter_count() const override { return model_.parameter_count(); }
  AttentionKernel attention_kernel() const override { return model_.config().attention; }

  Tensor loss(const data::Batch& b, Generator* dropout_gen) override { return batch_loss(b, dropout_gen); }

  // Token-weighted mean loss, and its perplexity.
  Metrics validate(data::Loader& loader, int64_t batches) const override {
    NoGradGuard no_grad;
    double total = 0, count = 0;
    for (int64_t i = 0; i < batches; ++i) {
      const data::Batch b = loader.next();
      const double targets = static_cast<double>(predicted_targets(b));
      total += batch_loss(b, nullptr).item() * targets;
      count += targets;
    }
    const double loss = count > 0 ? total / count : NAN;
    return {{"val_loss", loss}, {"val_ppl", std::exp(loss)}};
  }

  std::string sample(const data::Tokenizer& tokenizer, const LoggingRecipe& l, int32_t eot_id,
                     Generator& gen) const override {
    const models::SamplingOptions options{l.sample_tokens, l.top_k, l.temperature, eot_id};
    return l.sample_prompt + complete_text(model_, tokenizer, l.sample_prompt, options, gen);
  }

 private:
  Tensor batch_loss(const data::Batch& b, Generator* dropout_gen) const {
    const Device d = model_.device();
    check_token_ids(b, model_.config().vocab_size, d);
    const models::Gpt2Batch batch{on_device(b.inputs, d), on_device(b.positions, d), on_device(b.segment_ids, d)};
    return model_.loss(batch, on_device(b.targets, d), dropout_gen, data::kIgnoreTarget);
  }

  models::Gpt2 model_;
};

// The masks of validation passes come from a generator of this seed, made afresh for each pass.
constexpr uint64_t kValidationMaskSeed = 0x6d61736b;

class DistilBertStep : public ModelStep {
 public:
  DistilBertStep(models::DistilBert model, data::MlmOptions mlm, uint64_t seed)
      : model_(std::move(model)), mlm_(std::move(mlm)), mask_gen_(seed) {}
  std::string name() const override { return "DistilBERT"; }
  data::Objective objective() const override { return data::Objective::masked_lm; }
  const std::vector<NamedParameter>& parameters() const override { return model_.parameters(); }
  int64_t parameter_count() const override { return model_.parameter_count(); }
  AttentionKernel attention_kernel() const override { return model_.config().attention; }
  std::map<std::string, Generator*> generators() override { return {{"mask", &mask_gen_}}; }

  Tensor loss(const data::Batch& b, Generator* dropout_gen) override {
    const data::Batch masked = data::mask_tokens(b, mlm_, mask_gen_);
    return model_.mlm_loss(on_device_batch(masked), on_device(masked.targets, model_.device()), dropout_gen,
                           data::kIgnoreTarget);
  }

  // Loss and accuracy of the argmax over the masked positions, both weighted by masked tokens,
  // and the unigram baseline: the accuracy of always predicting the most frequent masked token.
  Metrics validate(data::Loader& loader, int64_t batches) const override {
    NoGradGuard no_grad;
    Generator gen(kValidationMaskSeed);
    double total = 0, correct = 0, count = 0;
    std::unordered_map<int32_t, int64_t> target_counts;
    for (int64_t i = 0; i < batches; ++i) {
      const data::Batch b = data::mask_tokens(loader.next(), mlm_, gen);
      const int64_t masked = predicted_targets(b);
      if (masked == 0) continue;
      const Tensor logits = reshape(model_.mlm_logits(on_device_batch(b)), {-1, model_.config().vocab_size});
      const Tensor labels = reshape(on_device(b.targets, model_.device()), {-1});
      total += cross_entropy(logits, labels, data::kIgnoreTarget).item() * static_cast<double>(masked);
      const std::vector<int32_t> targets = b.targets.to_int_vector();
      correct += static_cast<double>(correct_predictions(logits, targets));
      count += static_cast<double>(masked);
      for (int32_t t : targets)
        if (t != data::kIgnoreTarget) ++target_counts[t];
    }
    int64_t most_frequent = 0;
    for (const auto& [token, n] : target_counts) most_frequent = std::max(most_frequent, n);
    const auto share = [&](double x) { return count > 0 ? x / count : NAN; };
    return {{"val_loss", share(total)},
            {"val_masked_accuracy", share(correct)},
            {"val_unigram_accuracy", share(static_cast<double>(most_frequent))}};
  }

  std::string sample(const data::Tokenizer&, const LoggingRecipe&, int32_t, Generator&) const override {
    throw Error("DistilBERT does not sample text (set logging.sample_every: 0)");
  }

 private:
  models::DistilBertBatch on_device_batch(const data::Batch& b) const {
    const Device d = model_.device();
    check_token_ids(b, model_.config().vocab_size, d);
    return {on_device(b.inputs, d), on_device(b.positions, d), on_device(b.segment_ids, d)};
  }

  // How many labelled rows of logits [N, V] have their label as the argmax; only those rows
  // are copied to the host.
  static int64_t correct_predictions(const Tensor& logits, const std::vector<int32_t>& labels) {
    std::vector<Tensor> rows;
    std::vector<int32_t> wanted;
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] != data::kIgnoreTarget) {
        rows.push_back(slice(logits, 0, static_cast<int64_t>(i), static_cast<int64_t>(i) + 1));
        wanted.push_back(labels[i]);
      }
    const std::vector<double> values = concat(rows, 0).to(DType::f32).to(Device::cpu()).to_double_vector();
    const size_t vocab = values.size() / wanted.size();
    int64_t correct = 0;
    for (size_t r = 0; r < wanted.size(); ++r) {
      const auto row = values.begin() + static_cast<std::ptrdiff_t>(r * vocab);
      correct += std::max_element(row, row + static_cast<std::ptrdiff_t>(vocab)) - row == wanted[r];
    }
    return correct;
  }

  models::DistilBert model_;
  data::MlmOptions mlm_;
  Generator mask_gen_;
};

}  // namespace

std::unique_ptr<ModelStep> make_model_step(const Recipe& r, const data::Tokenizer& tokenizer, Generator& init,
                                           DType dtype, Device device, bool initial_weights) {
  // With model.init_from the config is the pretrained model's, with the recipe's training
  // choices (dropout, the attention kernel), and its weights replace the random ones.
  const bool pretrained = initial_weights && !r.model.init_from.empty();
  if (r.model.arch == "distilbert") {
    const models::DistilBertConfig c = distilbert_model_config(r, tokenizer.vocab_size());
    models::DistilBert model = pretrained ? models::import_hf_distilbert(pretrained_dir(r), c, dtype, device)
                                          : models::DistilBert(c, init, dtype, device);
    return std::make_unique<DistilBertStep>(std::move(model), mlm_options(r, tokenizer), r.seed + 3);
  }
  const models::Gpt2Config c = model_config(r, tokenizer.vocab_size());
  models::Gpt2 model =
      pretrained ? models::import_hf_gpt2(pretrained_dir(r), c, dtype, device) : models::Gpt2(c, init, dtype, device);
  return std::make_unique<Gpt2Step>(std::move(model));
}

}  // namespace ft::train
