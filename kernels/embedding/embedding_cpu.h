// Token embedding lookup on the CPU: a gather in the forward, a scatter-add in the backward.
//   forward:  out[t, c] = weight[ids[t], c]
//   backward: dweight[v, c] = sum over t with ids[t] == v of dout[t, c]
// The backward is deterministic and race-free: tokens are bucketed by id (a counting sort),
// then each thread owns whole rows of dweight and adds its tokens in position order, so the
// result is bit-identical for any number of threads. Ids must be validated by the caller.
#pragma once

#include <cstdint>

namespace ft::kernels {

// out: [tokens, channels]; weight: [vocab, channels]; every id in [0, vocab).
template <class T>
void embedding_forward_cpu(T* out, const int32_t* ids, const T* weight, int64_t tokens, int64_t channels);

// Overwrites dweight ([vocab, channels]) with the scatter-add of dout ([tokens, channels]).
template <class T>
void embedding_backward_cpu(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                            int64_t channels);

}  // namespace ft::kernels
