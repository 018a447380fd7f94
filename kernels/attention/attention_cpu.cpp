#include "kernels/attention/attention_cpu.h"

#include <limits>
#include <vector>

#include "kernels/matmul/matmul_cpu.h"
#include "kernels/softmax/softmax_cpu.h"

namespace ft::kernels {
namespace {

// c [m, n] = op(a) op(b) for contiguous row-major matrices, where op transposes when asked:
// a is stored [m, k] (or [k, m] when transposed), b [k, n] (or [n, k]).
template <class T>
void product(T* c, const T* a, bool transpose_a, const T* b, bool transpose_b, int64_t m, int64_t n, int64_t k) {
  const GemmShape shape{m, n, k, transpose_a, transpose_b, transpose_a ? m : k, transpose_b ? k : n, n};
  gemm_cpu<T>(shape, a, b, c, false);
}

// segments: this batch row's ids, or null.
bool key_visible(const AttentionMask& mask, const int32_t* segments, int64_t query, int64_t key) {
  if (mask.causal && key > query) return false;
  return !segments || (segments[query] >= 0 && segments[query] == segments[key]);
}

}  // namespace

template <class T>
void attention_forward_cpu(const AttentionShape& s, const AttentionMask& mask, T scale, const T* q, const T* k,
                           const T* v, T* probs, T* out) {
  const int64_t t = s.seq_len, d = s.head_dim, batch_heads = s.batch * s.heads;
  // One head per iteration; the products and softmax inside stay serial (nested regions).
#pragma omp parallel for schedule(static) if (batch_heads * t * t * d > 65536)
  for (int64_t bh = 0; bh < batch_heads; ++bh) {
    const int64_t qkv = bh * t * d;
    const int32_t* segments = mask.segment_ids ? mask.segment_ids + (bh / s.heads) * t : nullptr;
    T* p = probs + bh * t * t;
    product(p, q + qkv, false, k + qkv, true, t, t, d);     // S = Q K^T (scaled and masked below)
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < t; ++j)
        p[i * t + j] = key_visible(mask, segments, i, j) ? p[i * t + j] * scale : -std::numeric_limits<T>::infinity();
    softmax_forward_cpu(p, p, t, t);                        // P = softmax(S)
    product(out + qkv, p, false, v + qkv, false, t, d, t);  // O = P V
  }
}

template <class T>
void attention_backward_cpu(const AttentionShape& s, T scale, const T* q, const T* k, const T* v, const T* probs,
                            const T* d_out, T* dq, T* dk, T* dv) {
  const int64_t t = s.seq_len, d = s.head_dim, batch_heads = s.batch * s.heads;
  std::vector<T> d_scores(batch_heads * t * t);  // allocated here: nothing may throw inside the loop
#pragma omp parallel for schedule(static) if (batch_heads * t * t * d > 65536)
  for (int64_t bh = 0; bh < batch_heads; ++bh) {
    const int64_t qkv = bh * t * d;
    const T* p = probs + bh * t * t;
    T* ds = d_scores.data() + bh * t * t;
    product(dv + qkv, p, true, d_out + qkv, false, t, d, t);  // dV = P^T dO
    product(ds, d_out + qkv, false, v + qkv, true, t, t, d);   // dP = dO V^T
    softmax_backward_cpu(ds, ds, p, t, t);                      // dS = P * (dP - rowsum(dP * P))
    for (int64_t e = 0; e < t * t; ++e) ds[e] *= scale;       // S = scale * Q K^T
    product(dq + qkv, ds, false, k + qkv, false, t, d, t);      // dQ = dS K * scale
    product(dk + qkv, ds, true, q + qkv, false, t, d, t);       // dK = dS^T Q * scale
  }
}

#define FT_INSTANTIATE(T)                                                                                        \
  template void attention_forward_cpu<T>(const AttentionShape&, const AttentionMask&, T, const T*, const T*,    \
                                         const T*, T*, T*);                                                     \
  template void attention_backward_cpu<T>(const AttentionShape&, T, const T*, const T*, const T*, const T*,     \
                                          const T*, T*, T*, T*);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
