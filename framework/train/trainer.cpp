#include "framework/train/trainer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "data/loader.h"
#include "framework/allocator.h"
#include "framework/autograd.h"
#include "framework/optim/adamw.h"
#include "framework/optim/grad_norm.h"
#include "framework/optim/lr_schedule.h"
#include "framework/train/checkpoint.h"
#include "framework/train/metrics.h"
#include "framework/train/plot.h"
#include "framework/train/progress.h"
#include "framework/train/run_setup.h"
#include "framework/train/saved_model.h"
#include "framework/train/training_data.h"
#include "models/gpt2/generate.h"
#include "models/gpt2/gpt2_hf.h"

namespace fs = std::filesystem;

namespace ft::train {
namespace {

data::LoaderOptions loader_options(const Recipe& r, const TrainingData& d, bool shuffle) {
  data::LoaderOptions o;
  o.mode = data::parse_packing_mode(r.data.packing);
  o.batch_size = r.optim.batch_size;
  o.seq_len = r.data.seq_len;
  o.eot_id = d.eot_id;
  o.pad_id = d.pad_id;
  o.seed = r.seed;
  o.shuffle = shuffle;
  return o;
}

// The loader makes batches on the CPU; they go to the model's device here (undefined tensors,
// such as concat rows' segment ids, stay undefined).
Tensor on_device(const Tensor& t, Device device) { return t.defined() ? t.to(device) : t; }

Tensor batch_loss(const models::Gpt2& model, const data::Batch& b, Generator* dropout_gen) {
  const Device d = model.parameters().front().tensor.device();
  const models::Gpt2Batch batch{on_device(b.inputs, d), on_device(b.positions, d), on_device(b.segment_ids, d)};
  Tensor logits = model.forward(batch, dropout_gen);
  return cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(on_device(b.targets, d), {-1}));
}

// Token-weighted mean loss over the first `batches` batches of the validation split.
double validation_loss(const models::Gpt2& model, const data::TokenCorpus& corpus, const data::LoaderOptions& o,
                       int64_t batches) {
  NoGradGuard no_grad;
  data::Loader loader(corpus, o);
  const int64_t n = std::min(batches, loader.steps_in_epoch());
  double total = 0, count = 0;
  for (int64_t i = 0; i < n; ++i) {
    data::Batch b = loader.next();
    double targets = 0;
    for (int32_t t : b.targets.to_int_vector()) targets += t != data::kIgnoreTarget;
    total += batch_loss(model, b, nullptr).item() * targets;
    count += targets;
  }
  return count > 0 ? total / count : NAN;
}

std::vector<ParamGroup> weight_decay_groups(const models::Gpt2& model, double weight_decay) {
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = weight_decay;
  for (const NamedParameter& p : model.parameters()) groups[p.weight_decay ? 0 : 1].params.push_back(p.tensor);
  return groups;
}

int64_t total_steps(const Recipe& r, const data::Loader& loader) {
  if (r.optim.steps > 0) return r.optim.steps;
  const double per_epoch = static_cast<double>(loader.steps_in_epoch()) / r.optim.grad_accum;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(r.optim.epochs * per_epoch)));
}

std::string sample(const models::Gpt2& model, const TrainingData& data, const LoggingRecipe& l, Generator& gen) {
  const models::SamplingOptions options{l.sample_tokens, l.top_k, l.temperature, data.eot_id};
  return l.sample_prompt + complete_text(model, *data.tokenizer, l.sample_prompt, options, gen);
}

// Resumes from the newest valid checkpoint when the recipe says resume: auto, and returns its
// step (0 for a fresh start). A fresh start refuses to run over an earlier run's checkpoints.
int64_t restore(const Recipe& r, const std::string& checkpoint_dir, models::Gpt2& model, AdamW& optimizer,
                data::Loader& loader, Generator& dropout_gen, Generator& sample_gen) {
  const std::optional<std::string> path = find_latest_checkpoint(checkpoint_dir);
  if (!path) return 0;
  FT_CHECK(r.resume == "auto", checkpoint_dir, " holds checkpoints of an earlier run (newest: ", *path,
           "): pass --resume (resume: auto) to continue it, or choose another run_dir or checkpoint.dir");
  CheckpointState state;
  const int64_t step = load_checkpoint(*path, model.parameters(), optimizer, state);
  loader.set_state(state.loader);
  dropout_gen.set_state(state.rng.at("dropout"));
  sample_gen.set_state(state.rng.at("sample"));
  std::printf("resumed from %s (step %lld)\n", path->c_str(), static_cast<long long>(step));
  return step;
}

}  // namespace

TrainSummary run_training(const Recipe& r, const TrainHooks& hooks) {
  const Device device = resolve_device(r);
  const std::string run_dir = r.run_dir.empty() ? (fs::path("runs") / r.name).string() : r.run_dir;
  const std::string checkpoint_dir =
      r.checkpoint.dir.empty() ? (fs::path(run_dir) / "checkpoints").string() : r.checkpoint.dir;
  fs::create_directories(run_dir);
  std::ofstream(fs::path(run_dir) / "recipe.yaml") << r.text;

  TrainingData data = load_training_data(r, run_dir);
  Generator init(r.seed), dropout_gen(r.seed + 1), sample_gen(r.seed + 2);
  const models::Gpt2Config config = model_config(r, data.tokenizer->vocab_size());
  models::Gpt2 model = r.model.init_from.empty() ? models::Gpt2(config, init, DType::f32, device)
                                                 : models::import_hf_gpt2(pretrained_dir(r), DType::f32, device);
  AdamWOptions adam{r.optim.lr, r.optim.beta1, r.optim.beta2, r.optim.eps};
  AdamW optimizer(weight_decay_groups(model, r.optim.weight_decay), adam);
  data::Loader loader(data.train, loader_options(r, data, true));
  const data::LoaderOptions val_options = loader_options(r, data, false);
  const int64_t steps = total_steps(r, loader);
  const LrSchedule schedule{r.optim.schedule, r.optim.lr, r.optim.min_lr, r.optim.warmup_steps, steps};

  const int64_t start = restore(r, checkpoint_dir, model, optimizer, loader, dropout_gen, sample_gen);
  std::printf("%s: GPT-2 %lld parameters on %s | %lld steps of %lld x %lld x %lld tokens | run dir %s\n",
              r.name.c_str(), static_cast<long long>(model.parameter_count()), device.str().c_str(),
              static_cast<long long>(steps), static_cast<long long>(r.optim.grad_accum),
              static_cast<long long>(r.optim.batch_size), static_cast<long long>(r.data.seq_len), run_dir.c_str());

  auto save = [&](int64_t step) {
    CheckpointState state{
        {{"dropout", dropout_gen.state()}, {"sample", sample_gen.state()}}, loader.state(), {}, r.text};
    save_checkpoint(checkpoint_dir, step, model.parameters(), optimizer, state, r.checkpoint.keep);
  };
  MetricsLog metrics((fs::path(run_dir) / "metrics.jsonl").string(), start);
  ProgressLine progress(steps, r.logging.every, start);
  TrainSummary summary{run_dir, start + 1, start, NAN, NAN, 0};
  const std::vector<Tensor>& params = optimizer.params();
  for (int64_t step = start + 1; step <= steps; ++step) {
    optimizer.set_lr(schedule.at(step));
    optimizer.zero_grad();
    double loss = 0;
    int64_t tokens = 0;
    for (int64_t micro = 0; micro < r.optim.grad_accum; ++micro) {
      data::Batch b = loader.next();
      Tensor l = scale(batch_loss(model, b, &dropout_gen), 1.0 / static_cast<double>(r.optim.grad_accum));
      l.backward();
      loss += l.item();
      tokens += b.real_tokens;
    }
    FT_CHECK(std::isfinite(loss), "step ", step, ": the loss is ", loss,
             "; stopping (try a lower optim.lr or "
             "optim.grad_clip: 1.0)");
    if (hooks.reduce_gradients) hooks.reduce_gradients(params);
    const double norm = r.optim.grad_clip > 0 ? clip_grad_norm(params, r.optim.grad_clip) : global_grad_norm(params);
    FT_CHECK(std::isfinite(norm), "step ", step, ": the gradient norm is ", norm, "; stopping (try a lower optim.lr)");
    optimizer.step();
    progress.update(step, loss, tokens);

    const bool last = step == steps;
    std::vector<std::pair<std::string, double>> values = {
        {"loss", loss},
        {"lr", optimizer.lr()},
        {"grad_norm", norm},
        {"tokens", static_cast<double>(tokens)},
        {"tokens_per_s", progress.tokens_per_second()},
        {"peak_memory_bytes", static_cast<double>(allocator_for(device).stats().peak_allocated_bytes)}};
    const bool evaluate = (r.logging.val_every > 0 && step % r.logging.val_every == 0) || last;
    if (evaluate) {
      summary.last_val_loss = validation_loss(model, data.validation, val_options, r.logging.val_batches);
      values.push_back({"val_loss", summary.last_val_loss});
      values.push_back({"val_ppl", std::exp(summary.last_val_loss)});
      progress.note(str("step ", step, ": validation loss ", summary.last_val_loss, ", perplexity ",
                        std::exp(summary.last_val_loss)));
    }
    if (step % r.logging.every == 0 || last || evaluate) metrics.write(step, values);
    if (evaluate)
      write_line_plot((fs::path(run_dir) / "loss.svg").string(), r.name + ": loss", "step",
                      loss_series(metrics.path()));
    if (r.logging.sample_every > 0 && step % r.logging.sample_every == 0)
      progress.note(str("sample at step ", step, ": ", sample(model, data, r.logging, sample_gen)));
    if ((r.checkpoint.every > 0 && step % r.checkpoint.every == 0) || last) save(step);
    summary.last_step = step;
    summary.last_loss = loss;
  }
  progress.finish();
  summary.tokens_per_second = progress.tokens_per_second();
  return summary;
}

}  // namespace ft::train
