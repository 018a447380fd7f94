// Where a [batch, heads, seq_len, head_dim] operand of the fused attention kernels (flash, cudnn)
// lies in memory: its element strides. Both kernels read and write every operand in place through
// them, so a caller hands them views (q, k, v side by side in one projection's output, results
// heads-last) instead of copies. Both move 16-byte vectors along head_dim, whence one rule for
// the layouts they take.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "framework/error.h"
#include "kernels/attention/attention_cpu.h"

namespace ft::kernels {

// Strides, in elements, of a [batch, heads, seq_len, head_dim] operand; `dim` must be 1.
struct AttentionStrides {
  int64_t batch, heads, seq, dim;
};

// The packed [batch, heads, seq_len, head_dim] strides.
inline AttentionStrides packed_attention_strides(const AttentionShape& s) {
  return {s.heads * s.seq_len * s.head_dim, s.seq_len * s.head_dim, s.head_dim, 1};
}

// Whether the fused kernels read (or write) a bf16/f16 operand in place: unit stride along
// head_dim, the other strides positive multiples of 8 elements (16 bytes, so every row starts on
// a vector), the data 16-byte aligned. Launchers throw for an operand that is not.
inline bool fused_attention_takes(const AttentionStrides& t, const void* data) {
  constexpr int64_t kAlignment = 16, kValueBytes = 2;
  for (int64_t stride : {t.batch, t.heads, t.seq})
    if (stride <= 0 || stride * kValueBytes % kAlignment != 0) return false;  // 0: a broadcast
  return t.dim == 1 && reinterpret_cast<uintptr_t>(data) % kAlignment == 0;
}

// The launchers' check of one operand: `what` (the launcher) and `name` (the operand) in the error.
inline void check_fused_operand(const AttentionStrides& t, const void* data, const char* what, const char* name) {
  FT_CHECK(fused_attention_takes(t, data), what, ": ", name,
           " needs unit stride along head_dim, other strides positive multiples of 8 elements and 16-byte aligned "
           "data, got strides [",
           t.batch, ", ", t.heads, ", ", t.seq, ", ", t.dim, "]");
}

}  // namespace ft::kernels
