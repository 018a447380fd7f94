// What the trainer's GPU suites share (gpu_test_train for GPT-2, gpu_test_train_distilbert): the
// corpus they train on, a recipe trained to its metrics rows, and the largest per-step loss
// difference between two runs, the measure their CPU/GPU and kernel bounds are stated in.
//
// Needs $FLASHTRAIN_DATA with wikitext-2-raw/wiki.valid.raw (and the runs' tokenizer folder).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "framework/train/metrics.h"
#include "framework/train/recipe.h"
#include "framework/train/trainer.h"

namespace ft::testing {

// WikiText-2's validation text: small enough to prepare in a moment, large enough for hundreds
// of steps without repeating a batch.
inline std::string corpus_path() {
  const char* data = std::getenv("FLASHTRAIN_DATA");
  REQUIRE_MESSAGE(data != nullptr, "FLASHTRAIN_DATA must name the data directory");
  const std::string path = (std::filesystem::path(data) / "wikitext-2-raw" / "wiki.valid.raw").string();
  REQUIRE_MESSAGE(std::filesystem::exists(path), path, " is missing");
  return path;
}

// Trains the recipe and reads back its metrics file, one row per logged step.
inline std::vector<train::MetricsRow> train_metrics(const train::Recipe& recipe, const train::TrainHooks& hooks = {}) {
  const train::TrainSummary summary = train::run_training(recipe, hooks);
  return train::read_metrics(train::metrics_file(summary.run_dir));
}

// The largest |difference| of `key` over the steps, requiring both runs to log the same steps,
// both to have the key wherever one has it, and every difference to be finite.
inline double max_difference(const std::vector<train::MetricsRow>& a, const std::vector<train::MetricsRow>& b,
                             const std::string& key = "loss") {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].step == b[i].step);
    REQUIRE(a[i].values.count(key) == b[i].values.count(key));
    if (!a[i].values.count(key)) continue;
    const double difference = std::abs(a[i].values.at(key) - b[i].values.at(key));
    CAPTURE(a[i].step);
    REQUIRE(std::isfinite(difference));  // std::max would pass over a NaN
    worst = std::max(worst, difference);
  }
  return worst;
}

}  // namespace ft::testing
