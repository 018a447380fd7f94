#include "data/copy_task.h"

#include <vector>

#include "kernels/random/philox.h"

namespace ft::data {

TokenBatch copy_task_batch(int64_t batch, int64_t seq_len, int64_t vocab, Generator& gen) {
  FT_CHECK(seq_len >= 2 && seq_len % 2 == 0, "copy task: seq_len must be even and at least 2, got ", seq_len);
  FT_CHECK(vocab >= 2, "copy task: vocab must be at least 2, got ", vocab);
  // Rows of T + 1 tokens: k = (T + 2) / 2 random ones, then their copy (cut to T + 1).
  const int64_t half = (seq_len + 2) / 2;
  const uint64_t seed = gen.seed(), first = gen.take(batch * half);
  std::vector<int32_t> inputs(batch * seq_len), targets(batch * seq_len);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int32_t> row(seq_len + 1);
    for (int64_t i = 0; i < half; ++i) {
      float u = kernels::philox_uniform(seed, first + b * half + i);  // in (0, 1]
      int32_t token = static_cast<int32_t>(std::min<int64_t>(vocab - 1, static_cast<int64_t>((1.0f - u) * vocab)));
      row[i] = token;
      if (i + half <= seq_len) row[i + half] = token;
    }
    for (int64_t t = 0; t < seq_len; ++t) {
      inputs[b * seq_len + t] = row[t];
      // Target row[t + 1] is a copy (predictable) once t + 1 >= half.
      targets[b * seq_len + t] = t + 1 >= half ? row[t + 1] : -100;
    }
  }
  return {Tensor::from_ints(inputs, {batch, seq_len}), Tensor::from_ints(targets, {batch, seq_len})};
}

}  // namespace ft::data
