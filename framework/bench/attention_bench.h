// `flashtrain bench attention`: the attention op alone, forward and forward + backward, for each
// attention kernel (kAttentionKernels) at every sequence length, head dim and mask asked for, in
// one run, with TFLOP/s counted as FlashAttention counts them and the caching allocator's peak.
//
// Every case holds the same number of tokens (B x T), so the inputs are the same size at every T
// and the math path's [B, H, T, T] probabilities grow linearly with T while flash stays flat.
// Where math would need more memory than the device has, its row says so instead of running.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "framework/bench/bench.h"

namespace ft::bench {

// Heads per case: H = kModelWidth / D, GPT-2 124M's width (12 heads of 64, 6 of 128), so every
// head dim does the same flops at a given T.
inline constexpr int64_t kModelWidth = 768;

struct AttentionBenchOptions {
  DType dtype = DType::bf16;  // of q, k, v and the gradients: bf16 or f16
  std::vector<int64_t> seq_lens = {512, 1024, 2048, 4096, 8192, 16384};
  std::vector<int64_t> head_dims = {64, 128};
  std::string causal = "both";       // both | yes | no
  std::vector<std::string> kernels;  // names from kAttentionKernels, in print order; empty: all
  int64_t tokens = 16 * 1024;        // B x T of every case: B = tokens / T, at least 1
  Device device = Device::cuda(0);
};

// One shape and mask, timed for every kernel: q, k, v are [batch, heads, seq_len, head_dim].
struct AttentionCase {
  int64_t batch = 0, heads = 0, seq_len = 0, head_dim = 0;
  bool causal = true;
};

// What a run measures: its cases in print order (head dim, then mask, then T) and its kernels.
struct AttentionBenchPlan {
  std::vector<AttentionCase> cases;
  std::vector<NamedAttentionKernel> kernels;
};

// Checks every option and lays out the cases. Throws ft::Error naming the flag ("bench
// attention: --head-dims 96: ...") for a dtype other than bf16/f16, a length or head dim below
// 1, a head dim flash does not take (when flash is timed), an unknown kernel or mask, or fewer
// than 1 token.
AttentionBenchPlan attention_plan(const AttentionBenchOptions& options);

// FlashAttention's count: 4 B H T^2 D for the two products of the forward, halved when causal.
// The backward counts 2.5 times that, so forward + backward is 3.5 times.
double attention_forward_flops(const AttentionCase& c);
inline constexpr double kForwardBackwardFlopsFactor = 3.5;

// The math path's peak bytes in forward + backward (framework/ops/attention.cpp's allocations):
// q, k, v, dO, out, dq, dk, dv, and of the [B, H, T, T] matrices the probabilities, their
// gradient and the f32 gradient before the softmax backward.
size_t math_attention_bytes(const AttentionCase& c, DType dtype);

// One kernel on one case; `skipped` says why it did not run (then the figures are 0).
struct AttentionTiming {
  double forward_ms = 0;
  double forward_backward_ms = 0;
  size_t peak_bytes = 0;
  std::string skipped;
};

// The table's head and one of its lines (Markdown). `reference` is the first kernel's timing of
// the same case, or null on the first kernel's own line; the last column is its forward +
// backward time over this one's (above 1: faster than the reference).
std::string attention_table_head(const std::string& reference_kernel);
std::string attention_table_line(const AttentionCase& c, const std::string& kernel, const AttentionTiming& timing,
                                 const AttentionTiming* reference);

// Prints the date, the device's name, the command, how the cases are sized and counted, and the
// table, one line per kernel and case as it is measured. Throws ft::Error for a bad option before
// any work, and when options.device is not a CUDA device that answers.
void bench_attention(const AttentionBenchOptions& options, std::ostream& out);

}  // namespace ft::bench
