// Attention in its plain "math" form on the CPU: the reference that the flash attention CUDA
// kernels are tested against. It materialises the [T, T] probabilities of every head, which
// the flash kernels exist to avoid; everything else (masking, scale, the zero rows) must match.
//
// Per batch b and head h, with Q, K, V, O of shape [T, D] and P, S of shape [T, T]:
//   S = scale * Q K^T, then S[i, j] = -inf where query i may not see key j
//   P = softmax(S) over j (a row with no visible key is all zeros, not NaN)
//   O = P V
// Query i sees key j when (not causal or j <= i) and, with segment ids, when
// segment_ids[b, i] == segment_ids[b, j] >= 0: packed documents never see each other, and
// padding (id -1) sees nothing, so its output is zero.
//
// Backward, given dO:
//   dV = P^T dO
//   dP = dO V^T
//   dS = P * (dP - rowsum(dP * P))     (the softmax backward, row by row; * is elementwise)
//   dQ = dS K * scale,   dK = dS^T Q * scale
// No mask is needed here: P is 0 wherever a key was masked, so dS is too, and a query that saw
// nothing gets dQ = 0 and adds nothing to dK and dV. (The flash kernels keep, instead of P,
// each row's log-sum-exp L and recompute P = exp(S - L) tile by tile; they get
// rowsum(dP * P) as rowsum(dO * O), which equals it.)
#pragma once

#include <cstdint>

namespace ft::kernels {

struct AttentionShape {
  int64_t batch, heads, seq_len, head_dim;
};

struct AttentionMask {
  bool causal;
  const int32_t* segment_ids;  // [batch, seq_len], or null: no segments
};

// q, k, v, out: [batch, heads, seq_len, head_dim]; probs (output, saved for the backward):
// [batch, heads, seq_len, seq_len]. All contiguous.
template <class T>
void attention_forward_cpu(const AttentionShape& s, const AttentionMask& mask, T scale, const T* q, const T* k,
                           const T* v, T* probs, T* out);

// Writes dq, dk, dv (shaped like q) from d_out and the forward's probs.
template <class T>
void attention_backward_cpu(const AttentionShape& s, T scale, const T* q, const T* k, const T* v, const T* probs,
                            const T* d_out, T* dq, T* dk, T* dv);

}  // namespace ft::kernels
