// Rotary position embedding (RoPE) on the CPU, in the GPT-NeoX / Hugging Face "rotate_half"
// layout: the pairs are (x[i], x[i + D/2]), not adjacent elements, so that the two halves of
// a head can be read as two contiguous vectors.
//
// Forward, for i in [0, D/2) at position p:  theta_i = p * base^(-2i/D),
//   out[i]       = x[i] cos theta_i - x[i + D/2] sin theta_i
//   out[i + D/2] = x[i + D/2] cos theta_i + x[i] sin theta_i
// Backward: a rotation is orthogonal, so dx is dout rotated by -theta (the same kernel with
// `inverse`). Angles are computed in double and rounded to T once, so fp32 keeps its accuracy
// at large positions.
#pragma once

#include <cstdint>

namespace ft::kernels {

// x, out: [batch, heads, seq_len, head_dim], contiguous, head_dim even; out may be x.
// positions: [batch, seq_len], or null for 0..seq_len-1 in every row.
template <class T>
void rotary_cpu(T* out, const T* x, const int32_t* positions, int64_t batch, int64_t heads, int64_t seq_len,
                int64_t head_dim, double base, bool inverse);

}  // namespace ft::kernels
