// Flash attention on CUDA: the launchers of kernels/flash_attention/flash_attention.cu. The math,
// the masks (causal, segment ids, padding) and the zero rows are attention_cpu.h's; what differs
// is that nothing of size [T, T] is ever stored: the forward keeps each query row's log-sum-exp
// instead of its probabilities, and the backward recomputes them tile by tile from it.
#pragma once

#include <cuda_runtime_api.h>

#include "framework/dtype.h"
#include "kernels/attention/attention_strides.h"

namespace ft::kernels {

// A [batch, heads, seq_len, head_dim] operand on the device: its data and element strides, any
// that fused_attention_takes (attention_strides.h): rows along head_dim contiguous, everything
// else where the strides say. So q, k and v can be read where a projection left them (side by side
// in its [B, T, 3C] output, token stride 3C) and results written heads-last ([B, T, H, D] memory).
template <class T>
struct FlashOperand {
  T* data;
  AttentionStrides strides;
};

// q, k, v, out: [batch, heads, seq_len, head_dim] operands, head_dim 64 or 128; T is bfloat16
// or half. mask.segment_ids: [batch, seq_len] on the device, or null. Writes out and lse
// [batch, heads, seq_len] (fp32, contiguous): the natural log of sum_j exp(scale q_i . k_j) over
// the keys j that query i sees, and +inf for a query that sees none (padding), whose output is
// zero. +inf rather than log(0) = -inf, so that the backward's P = exp(S - lse) is 0 on such a
// row without a special case.
template <class T>
void flash_attention_forward_cuda(const AttentionShape& s, const AttentionMask& mask, float scale,
                                  FlashOperand<const T> q, FlashOperand<const T> k, FlashOperand<const T> v,
                                  FlashOperand<T> out, float* lse, cudaStream_t stream);

// Writes dq, dk, dv (operands shaped like q, with their own strides) from the forward's inputs,
// its out and lse, and d_out (all as above). delta: workspace of [batch, heads, seq_len] fp32
// (gets rowsum(d_out * out)). Deterministic: the same inputs give the same bits.
template <class T>
void flash_attention_backward_cuda(const AttentionShape& s, const AttentionMask& mask, float scale,
                                   FlashOperand<const T> q, FlashOperand<const T> k, FlashOperand<const T> v,
                                   FlashOperand<const T> out, FlashOperand<const T> d_out, const float* lse,
                                   float* delta, FlashOperand<T> dq, FlashOperand<T> dk, FlashOperand<T> dv,
                                   cudaStream_t stream);

// The kernels' matrix instructions: wgmma (Hopper's warpgroup products, in the sm_90a code built
// where CMake's architectures include 90) on a device of compute capability 9.0, mma.sync
// elsewhere. allow = false makes them take mma.sync everywhere, so that the tests check both on
// Hopper; the choice applies to the launches that follow.
void flash_attention_allow_wgmma(bool allow);

}  // namespace ft::kernels
