#include "models/gpt2/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "framework/autograd.h"
#include "kernels/random/philox.h"

namespace ft::models {
namespace {

// Picks a token from one row of logits by top-k / temperature sampling, u uniform in (0, 1].
int32_t pick(const std::vector<double>& logits, const SamplingOptions& o, double u) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  if (o.temperature == 0)
    return *std::max_element(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] < logits[b]; });
  const size_t k = o.top_k > 0 ? std::min<size_t>(o.top_k, logits.size()) : logits.size();
  // The k largest, ties broken by the lower id, so the result never depends on sort internals.
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> weights(k);
  for (size_t i = 0; i < k; ++i) weights[i] = std::exp((logits[order[i]] - logits[order[0]]) / o.temperature);
  double target = u * std::accumulate(weights.begin(), weights.end(), 0.0);
  for (size_t i = 0; i < k; ++i) {
    target -= weights[i];
    if (target <= 0) return order[i];
  }
  return order[k - 1];
}

}  // namespace

std::vector<int32_t> generate(const Gpt2& model, const std::vector<int32_t>& prompt, const SamplingOptions& o,
                              Generator& gen) {
  FT_CHECK(!prompt.empty(), "generate: the prompt is empty (give at least one token)");
  FT_CHECK(o.temperature >= 0 && o.top_k >= 0, "generate: temperature and top_k must be >= 0");
  NoGradGuard no_grad;
  const int64_t block = model.config().block_size, vocab = model.config().vocab_size;
  std::vector<int32_t> context = prompt, out;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(context.size()) - block);
    std::vector<int32_t> window(context.begin() + start, context.end());
    const int64_t t = static_cast<int64_t>(window.size());
    Tensor logits = model.forward(Tensor::from_ints(window, {1, t}, model.device()));
    std::vector<double> last = slice(reshape(logits, {t, vocab}), 0, t - 1, t).to_double_vector();
    const double u = kernels::philox_uniform(gen.seed(), gen.take(1));
    const int32_t token = pick(last, o, u);
    out.push_back(token);
    context.push_back(token);
    if (token == o.stop_token) break;
  }
  return out;
}

}  // namespace ft::models
