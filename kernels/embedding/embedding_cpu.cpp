#include "kernels/embedding/embedding_cpu.h"

#include <algorithm>
#include <vector>

namespace ft::kernels {

template <class T>
void embedding_forward_cpu(T* out, const int32_t* ids, const T* weight, int64_t tokens, int64_t channels) {
#pragma omp parallel for schedule(static) if (tokens * channels > 32768)
  for (int64_t t = 0; t < tokens; ++t) std::copy_n(weight + ids[t] * channels, channels, out + t * channels);
}

template <class T>
void embedding_backward_cpu(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                            int64_t channels) {
  // Counting sort of the positions by id: bucket v is positions[start[v] .. start[v + 1]),
  // in increasing position order.
  std::vector<int64_t> start(vocab + 1, 0);
  for (int64_t t = 0; t < tokens; ++t) ++start[ids[t] + 1];
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  std::vector<int64_t> positions(tokens);
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t t = 0; t < tokens; ++t) positions[next[ids[t]]++] = t;

#pragma omp parallel for schedule(static) if (vocab * channels > 32768)
  for (int64_t v = 0; v < vocab; ++v) {
    T* row = dweight + v * channels;
    std::fill_n(row, channels, T(0));
    for (int64_t j = start[v]; j < start[v + 1]; ++j) {
      const T* src = dout + positions[j] * channels;
      for (int64_t c = 0; c < channels; ++c) row[c] += src[c];
    }
  }
}

#define FT_INSTANTIATE(T)                                                                 \
  template void embedding_forward_cpu<T>(T*, const int32_t*, const T*, int64_t, int64_t); \
  template void embedding_backward_cpu<T>(T*, const int32_t*, const T*, int64_t, int64_t, int64_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
