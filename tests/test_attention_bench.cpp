// `flashtrain bench attention` on the CPU: the cases a run lays out (their order, batch and
// heads), FlashAttention's flop count, the math path's predicted bytes worked out by hand, and the
// printed lines. The timing needs a GPU and is shown by the command, never tested; its errors are
// in test_cli_bench.
#include <doctest/doctest.h>

#include <algorithm>
#include <iterator>

#include "framework/bench/attention_bench.h"

using namespace ft;
using namespace ft::bench;

namespace {

size_t count_columns(const std::string& line) { return static_cast<size_t>(std::count(line.begin(), line.end(), '|')); }

}  // namespace

TEST_CASE("the plan holds a fixed token budget, heads of GPT-2's width, every kernel by default") {
  AttentionBenchOptions o;
  o.seq_lens = {512, 32768};
  o.head_dims = {64, 128};
  const AttentionBenchPlan plan = attention_plan(o);
  REQUIRE(plan.kernels.size() == std::size(kAttentionKernels));
  CHECK(plan.kernels.front().kernel == AttentionKernel::flash);
  // Head dim, then mask, then T; B = 16384 / T, and 1 when T is longer than the budget.
  REQUIRE(plan.cases.size() == 8);
  const AttentionCase& first = plan.cases[0];
  CHECK((first.batch == 32 && first.heads == 12 && first.seq_len == 512 && first.head_dim == 64 && first.causal));
  CHECK((plan.cases[1].batch == 1 && plan.cases[1].seq_len == 32768));
  CHECK((plan.cases[2].seq_len == 512 && !plan.cases[2].causal));
  CHECK((plan.cases[4].head_dim == 128 && plan.cases[4].heads == 6 && plan.cases[4].causal));

  o.causal = "no";
  o.kernels = {"math"};
  o.head_dims = {32};  // math takes any head dim
  const AttentionBenchPlan math = attention_plan(o);
  REQUIRE(math.kernels.size() == 1);
  CHECK(math.kernels[0].kernel == AttentionKernel::math);
  REQUIRE(math.cases.size() == 2);
  CHECK((math.cases[0].heads == 24 && !math.cases[0].causal));
}

TEST_CASE("flops are FlashAttention's: 4 B H T^2 D forward, halved when causal") {
  AttentionCase c{2, 3, 8, 16, false};
  CHECK(attention_forward_flops(c) == doctest::Approx(4.0 * 2 * 3 * 8 * 8 * 16));
  c.causal = true;
  CHECK(attention_forward_flops(c) == doctest::Approx(2.0 * 2 * 3 * 8 * 8 * 16));
  CHECK(kForwardBackwardFlopsFactor == 3.5);
}

TEST_CASE("the math path's bytes: eight head tensors and three [B, H, T, T] matrices") {
  const AttentionCase c{2, 3, 8, 16, true};
  // 2 * 3 * 8 * 16 = 768 elements per head tensor, 2 * 3 * 8 * 8 = 384 per matrix; bf16 is 2
  // bytes: P and dS at 2, dP at 4.
  CHECK(math_attention_bytes(c, DType::bf16) == 8 * 768 * 2 + 384 * (2 + 2 + 4));
  // T = 16K at GPT-2's 12 heads: 3.2e9 scores, about 24 GiB.
  const AttentionCase big{1, 12, 16384, 64, true};
  CHECK(math_attention_bytes(big, DType::bf16) / double(1 << 30) == doctest::Approx(24.2).epsilon(0.01));
}

TEST_CASE("a table line: the figures, the ratio to the reference, a skipped kernel") {
  const AttentionCase c{4, 12, 4096, 64, true};  // forward 4 * 4 * 12 * 4096^2 * 64 / 2 = 103.1 GFLOP
  const std::string head = attention_table_head("flash");
  CHECK(head.find("| vs flash |") != std::string::npos);
  const size_t columns = count_columns(head.substr(0, head.find('\n')));

  AttentionTiming flash{0.5, 2.0, size_t{300} << 20, ""};
  const std::string first = attention_table_line(c, "flash", flash, nullptr);
  CHECK(first == "| 4096 | 64 | 4 x 12 | yes | flash | 0.500 | 206.2 | 2.000 | 180.4 | 23% | 300 | - |\n");
  CHECK(count_columns(first) == columns);

  const AttentionTiming math{1.0, 8.0, size_t{5000} << 20, ""};
  CHECK(attention_table_line(c, "math", math, &flash).find("| 5000 | 0.25x |") != std::string::npos);

  const AttentionTiming skipped{0, 0, 0, "out of memory: needs 200.0 GiB, the device has 139.8"};
  const std::string line = attention_table_line(c, "math", skipped, &flash);
  CHECK(line.find("| math | out of memory: needs 200.0 GiB") != std::string::npos);
  CHECK(count_columns(line) == columns);
  flash.skipped = "out of memory";
  CHECK(attention_table_line(c, "math", math, &flash).find("| 5000 | - |") != std::string::npos);
}
