#include "framework/train/trainer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "data/loader.h"
#include "framework/allocator.h"
#include "framework/autograd.h"
#include "framework/optim/adamw.h"
#include "framework/optim/grad_norm.h"
#include "framework/optim/loss_scaler.h"
#include "framework/optim/lr_schedule.h"
#include "framework/optim/master_weights.h"
#include "framework/train/checkpoint.h"
#include "framework/train/metrics.h"
#include "framework/train/model_step.h"
#include "framework/train/plot.h"
#include "framework/train/progress.h"
#include "framework/train/run_setup.h"
#include "framework/train/training_data.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/matmul_settings.h"
#endif

namespace fs = std::filesystem;

namespace ft::train {
namespace {

data::LoaderOptions loader_options(const Recipe& r, const TrainingData& d, data::Objective objective, bool shuffle) {
  data::LoaderOptions o;
  o.mode = data::parse_packing_mode(r.data.packing);
  o.objective = objective;
  o.batch_size = r.optim.batch_size;
  o.seq_len = r.data.seq_len;
  o.eot_id = d.eot_id;
  o.pad_id = d.pad_id;
  o.seed = r.seed;
  o.shuffle = shuffle;
  return o;
}

// The model a run trains, in its compute dtype, and in a mixed-precision run the fp32 masters
// that the optimizer updates and checkpoints keep.
struct TrainedModel {
  std::unique_ptr<ModelStep> step;
  std::optional<MasterWeights> masters;
  std::vector<ParamGroup> optimizer_groups(double weight_decay) const {
    return masters ? masters->groups(weight_decay) : weight_decay_groups(step->parameters(), weight_decay);
  }
  ParameterList checkpointed_masters() const { return masters ? masters->masters() : ParameterList(); }
};

// The initial weights are made in f32 whatever the precision, so every device and precision
// starts from the same numbers; a 16-bit model gets them rounded, and the f32 ones become its
// masters.
TrainedModel make_model(const Recipe& r, const data::Tokenizer& tokenizer, Generator& init, Device device) {
  std::unique_ptr<ModelStep> f32 = make_model_step(r, tokenizer, init, DType::f32, device);
  const DType dtype = compute_dtype(r);
  if (dtype == DType::f32) return {std::move(f32), std::nullopt};
  Generator unused(0);  // the 16-bit weights are overwritten by the masters
  std::unique_ptr<ModelStep> compute = make_model_step(r, tokenizer, unused, dtype, device, false);
  MasterWeights masters(compute->parameters(), f32->parameters());
  return {std::move(compute), std::move(masters)};
}

// The step's validation metrics over the first `batches` batches of the validation split.
Metrics validate(const ModelStep& model, const data::TokenCorpus& corpus, const data::LoaderOptions& o,
                 int64_t batches) {
  data::Loader loader(corpus, o);
  return model.validate(loader, std::min(batches, loader.steps_in_epoch()));
}

// "val_loss 5.1, val_ppl 164" for the progress line.
std::string describe(const Metrics& metrics) {
  std::string out;
  for (const auto& [name, value] : metrics) out += str(out.empty() ? "" : ", ", name, " ", value);
  return out;
}

int64_t total_steps(const Recipe& r, const data::Loader& loader) {
  if (r.optim.steps > 0) return r.optim.steps;
  const double per_epoch = static_cast<double>(loader.steps_in_epoch()) / r.optim.grad_accum;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(r.optim.epochs * per_epoch)));
}

// Restores the checkpoint the recipe resumes from (run_setup.h) and returns its step, or 0
// for a fresh start.
int64_t restore(const Recipe& r, const TrainedModel& trained, AdamW& optimizer, LossScaler& scaler,
                data::Loader& loader, const std::map<std::string, Generator*>& generators) {
  const std::optional<std::string> path = checkpoint_to_resume(r);
  if (!path) return 0;
  CheckpointState state;
  const int64_t step =
      load_checkpoint(*path, trained.step->parameters(), optimizer, state, trained.checkpointed_masters());
  scaler.set_state(state.scaler);
  loader.set_state(state.loader);
  for (const auto& [name, gen] : generators) gen->set_state(state.rng.at(name));
  std::printf("resumed from %s (step %lld)\n", path->c_str(), static_cast<long long>(step));
  return step;
}

}  // namespace

TrainSummary run_training(const Recipe& r, const TrainHooks& hooks) {
  const Device device = resolve_device(r);
  allocator_for(device).reset_peak();  // the logged peak is this run's (a comparison runs several in one process)
  const std::string run_dir = run_folder(r), checkpoint_dir = checkpoint_folder(r);
  fs::create_directories(run_dir);
  std::ofstream(fs::path(run_dir) / "recipe.yaml") << r.text;

  TrainingData data = load_training_data(r, run_dir);
  Generator init(r.seed), dropout_gen(r.seed + 1), sample_gen(r.seed + 2);
#ifdef FLASHTRAIN_HAS_CUDA
  cuda::set_allow_tf32(r.tf32);
#endif
  const TrainedModel trained = make_model(r, *data.tokenizer, init, device);
  ModelStep& model = *trained.step;
  std::map<std::string, Generator*> generators = model.generators();
  generators.insert({{"dropout", &dropout_gen}, {"sample", &sample_gen}});
  AdamWOptions adam{r.optim.lr, r.optim.beta1, r.optim.beta2, r.optim.eps};
  AdamW optimizer(trained.optimizer_groups(r.optim.weight_decay), adam);
  LossScaler scaler(r.precision == "fp16");
  data::Loader loader(data.train, loader_options(r, data, model.objective(), true));
  const data::LoaderOptions val_options = loader_options(r, data, model.objective(), false);
  const int64_t steps = total_steps(r, loader);
  const LrSchedule schedule{r.optim.schedule, r.optim.lr, r.optim.min_lr, r.optim.warmup_steps, steps};

  const int64_t start = restore(r, trained, optimizer, scaler, loader, generators);
  std::printf(
      "%s: %s %lld parameters on %s, %s, %s attention | %lld steps of %lld x %lld x %lld tokens | run dir %s\n",
      r.name.c_str(), model.name().c_str(), static_cast<long long>(model.parameter_count()), device.str().c_str(),
      r.precision.c_str(), attention_kernel_name(model.attention_kernel()), static_cast<long long>(steps),
      static_cast<long long>(r.optim.grad_accum), static_cast<long long>(r.optim.batch_size),
      static_cast<long long>(r.data.seq_len), run_dir.c_str());

  auto save = [&](int64_t step) {
    CheckpointState state{{}, loader.state(), scaler.state(), r.text};
    for (const auto& [name, gen] : generators) state.rng[name] = gen->state();
    save_checkpoint(checkpoint_dir, step, model.parameters(), optimizer, state, r.checkpoint.keep,
                    trained.checkpointed_masters());
  };
  MetricsLog metrics(metrics_file(run_dir), start);
  ProgressLine progress(steps, r.logging.every, start);
  const bool can_plot = gnuplot_available();
  if (!can_plot) progress.note(str("warning: no gnuplot, so no loss plot in ", run_dir, ": ", kInstallGnuplot));
  TrainSummary summary{run_dir, start + 1, start, NAN, NAN, 0};
  const std::vector<Tensor> gradient_holders = optimizer.gradient_holders();
  int64_t skipped_steps = 0;
  for (int64_t step = start + 1; step <= steps; ++step) {
    optimizer.set_lr(schedule.at(step));
    optimizer.zero_grad();
    Tensor loss_sum;  // on the device: the step reads it once, after the update is queued
    int64_t tokens = 0;
    for (int64_t micro = 0; micro < r.optim.grad_accum; ++micro) {
      data::Batch b = loader.next();
      Tensor l = model.loss(b, &dropout_gen);
      scale(l, scaler.scale() / static_cast<double>(r.optim.grad_accum)).backward();
      NoGradGuard no_grad;
      loss_sum = loss_sum.defined() ? add(loss_sum, l) : l.detach();
      tokens += b.real_tokens;
    }
    if (hooks.reduce_gradients) hooks.reduce_gradients(gradient_holders);
    // Clipping, unscaling and skipping an overflowed step are decided on the device from the
    // sum of squares; the host reads the loss and the norm once the whole step is queued.
    const GradientScaling scaling{1.0 / scaler.scale(), r.optim.grad_clip};
    const Tensor sum_squares = grad_sum_of_squares(gradient_holders);
    optimizer.step(sum_squares, scaling);
    const double loss = loss_sum.item() / static_cast<double>(r.optim.grad_accum);
    const double norm = kernels::unscaled_norm(sum_squares.item(), scaling);
    FT_CHECK(std::isfinite(loss), "step ", step, ": the loss is ", loss,
             "; stopping (try a lower optim.lr or optim.grad_clip: 1.0)");
    if (!scaler.update(std::isfinite(norm))) {
      FT_CHECK(scaler.dynamic(), "step ", step, ": the gradient norm is ", norm,
               "; stopping before the update (try a lower optim.lr)");
      optimizer.uncount_step();
      ++skipped_steps;
      progress.note(
          str("step ", step, ": the fp16 gradients overflowed; step skipped, loss scale now ", scaler.scale()));
    }
    progress.update(step, loss, tokens);

    const bool last = step == steps;
    std::vector<std::pair<std::string, double>> values = {
        {"loss", loss},
        {"lr", optimizer.lr()},
        {"grad_norm", norm},
        {"tokens", static_cast<double>(tokens)},
        {"tokens_per_s", progress.tokens_per_second()},
        {"peak_memory_bytes", static_cast<double>(allocator_for(device).stats().peak_allocated_bytes)}};
    if (scaler.dynamic()) {
      values.push_back({"loss_scale", scaler.scale()});
      values.push_back({"skipped_steps", static_cast<double>(skipped_steps)});
    }
    const bool evaluate = (r.logging.val_every > 0 && step % r.logging.val_every == 0) || last;
    if (evaluate) {
      const Metrics validation = validate(model, data.validation, val_options, r.logging.val_batches);
      summary.last_val_loss = validation.front().second;
      values.insert(values.end(), validation.begin(), validation.end());
      progress.note(str("step ", step, ": validation ", describe(validation)));
    }
    if (step % r.logging.every == 0 || last || evaluate) metrics.write(step, values);
    if (evaluate && can_plot)
      draw_loss_plot((fs::path(run_dir) / "loss.png").string(), r.name + ": loss",
                     {{r.name, read_loss_curves(metrics.path())}}, false);
    if (r.logging.sample_every > 0 && step % r.logging.sample_every == 0)
      progress.note(
          str("sample at step ", step, ": ", model.sample(*data.tokenizer, r.logging, data.eot_id, sample_gen)));
    if ((r.checkpoint.every > 0 && step % r.checkpoint.every == 0) || last) save(step);
    summary.last_step = step;
    summary.last_loss = loss;
  }
  progress.finish();
  summary.tokens_per_second = progress.tokens_per_second();
  return summary;
}

}  // namespace ft::train
