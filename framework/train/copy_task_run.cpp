#include "framework/train/copy_task_run.h"

#include <cmath>
#include <fstream>

#include "data/copy_task.h"
#include "framework/optim/adamw.h"
#include "framework/train/progress.h"
#include "models/gpt2/gpt2.h"

namespace ft::train {

CopyTaskResult train_copy_task(const CopyTaskOptions& o) {
  FT_CHECK(o.steps > 0 && o.batch > 0, "copy task: steps and batch must be positive");
  Generator init(o.seed), data(o.seed + 1);
  models::Gpt2 model({o.vocab, o.seq_len, o.n_layer, o.n_head, o.n_embd}, init);
  // GPT-2 practice: matrices decay, biases, norms and embeddings do not.
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = o.weight_decay;
  for (const NamedParameter& p : model.parameters()) groups[p.weight_decay ? 0 : 1].params.push_back(p.tensor);
  AdamWOptions adam;
  adam.lr = o.lr;
  AdamW optimizer(groups, adam);

  std::ofstream metrics;
  if (!o.metrics_path.empty()) {
    metrics.open(o.metrics_path);
    FT_CHECK(metrics, "copy task: cannot write metrics file '", o.metrics_path, "'");
  }
  CopyTaskResult result;
  result.parameter_count = model.parameter_count();
  ProgressLine progress(o.steps);
  for (int64_t step = 1; step <= o.steps; ++step) {
    data::TokenBatch batch = data::copy_task_batch(o.batch, o.seq_len, o.vocab, data);
    Tensor logits = model.forward(batch.inputs);
    Tensor loss = cross_entropy(reshape(logits, {-1, o.vocab}), reshape(batch.targets, {-1}));
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    double value = loss.item();
    FT_CHECK(std::isfinite(value), "copy task: loss is ", value, " at step ", step, "; stopping");
    result.losses.push_back(value);
    if (o.show_progress) progress.update(step, value, o.batch * o.seq_len);
    if (metrics.is_open())
      metrics << "{\"step\": " << step << ", \"loss\": " << value << ", \"lr\": " << o.lr
              << ", \"tokens_per_s\": " << progress.tokens_per_second() << "}\n";
  }
  if (o.show_progress) progress.finish();
  result.tokens_per_second = progress.tokens_per_second();
  return result;
}

}  // namespace ft::train
