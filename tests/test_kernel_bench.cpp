// The row table of `flashtrain bench kernels`, on the CPU: each row's minimal traffic or flops at
// a small GPT-2 shape (worked out by hand below, element by element), the rooflines, the --only
// filter, the printed line's figures, and the errors that come before any GPU is touched. The
// timing itself needs a GPU and is shown by the command, never tested.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "framework/bench/kernel_bench.h"
#include "tests/support/error_message.h"

using namespace ft;
using namespace ft::bench;

namespace {

// N = 8 tokens (B = 2 rows of T = 4), C = 8, H = 32, V = 10, 2 heads, one block; bf16 (2 bytes).
KernelBenchOptions small_options() {
  KernelBenchOptions o;
  o.rows = 8;
  o.model = {10, 4, 1, 2, 8};  // vocab, block_size, n_layer, n_head, n_embd
  o.device = Device::cpu();    // kernel_rows only describes; nothing runs
  return o;
}

std::map<std::string, KernelRow> rows_by_name(const KernelBenchOptions& o) {
  std::map<std::string, KernelRow> rows;
  for (KernelRow& r : kernel_rows(o)) rows[r.name] = r;
  return rows;
}

size_t count_columns(const std::string& line) { return static_cast<size_t>(std::count(line.begin(), line.end(), '|')); }

}  // namespace

TEST_CASE("bandwidth rows count each input read once and each output written once") {
  const auto rows = rows_by_name(small_options());
  // NC = 64 elements of 2 bytes = 128 bytes; ids: 8 x 4 = 32 bytes; per-row f32 statistics: 32 bytes.
  const std::map<std::string, double> expected = {
      {"embedding wte fwd", 32 + 128 + 128},            // ids, gathered rows, output
      {"embedding wte bwd", 32 + 128 + 10 * 8 * 2},     // ids, dout, the whole [10, 8] dweight
      {"embedding wpe fwd", 32 + 128 + 128},            // position ids, gathered rows, output
      {"embedding wpe bwd", 32 + 128 + 4 * 8 * 2},      // ids, dout, the whole [4, 8] dweight
      {"layer_norm fwd", 128 + 128 + 2 * 16 + 2 * 32},  // x, y, weight and bias, mean and rstd
      {"layer_norm bwd", 3 * 128 + 3 * 16 + 2 * 32},    // dy, x, dx; weight, dweight, dbias; mean, rstd
      {"softmax fwd", 2 * (2 * 2 * 4 * 4) * 2},         // [2, 2, 4, 4] scores in, probabilities out
      {"softmax bwd", 3 * (2 * 2 * 4 * 4) * 2},         // y, dy, dx
      {"add", 3 * 128},                                 // a, b, out
      {"dropout fwd (p 0.1)", 2 * 128},                 // x, y (the mask is recomputed)
      {"dropout bwd (p 0.1)", 2 * 128},                 // dy, dx
      {"gelu fwd", 2 * (8 * 32) * 2},                   // x, y at [8, 32]
      {"gelu bwd", 3 * (8 * 32) * 2},                   // dy, x, dx
      {"cross_entropy fwd", 8 * 10 * 2 + 32 + 32},      // logits, targets, logsumexp
      {"cross_entropy bwd", 2 * 8 * 10 * 2 + 32 + 32},  // logits, dlogits, targets, logsumexp
  };
  for (const auto& [name, bytes] : expected) {
    CAPTURE(name);
    REQUIRE(rows.count(name) == 1);
    const KernelRow& r = rows.at(name);
    CHECK(r.unit == CostUnit::bytes);
    CHECK(r.cost == bytes);
    CHECK(r.ceiling == kPeakCopyTBps * 1000);
    CHECK(r.dtype == "bf16");
    CHECK(r.baseline == "-");
    CHECK(r.setup);
  }
}

TEST_CASE("AdamW and the gradient norm cover every parameter of the model") {
  const KernelBenchOptions o = small_options();
  const auto rows = rows_by_name(o);
  Generator init(1);
  const int64_t params = models::Gpt2(o.model, init).parameter_count();
  const KernelRow& adamw = rows.at("adamw");
  CHECK(adamw.cost == 28.0 * params);  // f32: parameter r/w 8, gradient 4, two moments r/w 16
  CHECK(adamw.dtype == "f32");
  CHECK(adamw.baseline == "adamw, one tensor per launch");
  CHECK(rows.at("global_grad_norm").cost == 2.0 * params);  // each bf16 gradient read once
}

TEST_CASE("matmul rows count 2 M N K flops per product against the dtype's tensor-core rate") {
  const auto rows = rows_by_name(small_options());
  const std::map<std::string, double> forward_flops = {
      {"linear c_attn", 2 * 8 * 8 * 24},
      {"linear mlp fc", 2 * 8 * 8 * 32},
      {"linear mlp proj", 2 * 8 * 32 * 8},
  };
  for (const auto& [name, flops] : forward_flops) {
    CAPTURE(name);
    const KernelRow& fwd = rows.at(name + " fwd");
    const KernelRow& bwd = rows.at(name + " bwd");
    CHECK(fwd.unit == CostUnit::flops);
    CHECK(fwd.cost == flops);
    CHECK(bwd.cost == 2 * flops);  // dx and dweight
    CHECK(fwd.ceiling == kPeakBf16Tflops);
  }
}

TEST_CASE("--only keeps the rows whose name contains it, or the one named exactly so") {
  KernelBenchOptions o = small_options();
  o.only = "layer_norm";
  const std::vector<KernelRow> rows = kernel_rows(o);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].name == "layer_norm fwd");
  CHECK(rows[1].name == "layer_norm bwd");
  CHECK(rows[2].name == "add_layer_norm fwd");
  CHECK(rows[2].baseline == "add + layer_norm");

  o.only = "layer_norm fwd";  // also inside "add_layer_norm fwd": the exact name wins
  const std::vector<KernelRow> exact = kernel_rows(o);
  REQUIRE(exact.size() == 1);
  CHECK(exact[0].name == "layer_norm fwd");
}

TEST_CASE("the fused rows count their bytes and flops and name the unfused path") {
  const auto rows = rows_by_name(small_options());  // N=8, C=8, V=10, bf16
  CHECK(rows.at("mlp fwd").cost == 4.0 * 8 * 8 * 32);  // 2 GEMMs x 2 N C H
  CHECK(rows.at("mlp fwd").baseline == "linear + gelu + linear");
  const KernelRow& mlp = rows.at("mlp fwd+bwd");
  CHECK(mlp.cost == 12.0 * 8 * 8 * 32);  // 2 GEMMs x (2 forward + 4 backward) x N C H
  CHECK(mlp.baseline == "linear + gelu + linear");
  const KernelRow& lm_head = rows.at("lm_head + cross_entropy fwd+bwd");
  CHECK(lm_head.cost == 6.0 * 8 * 8 * 10);
  CHECK(lm_head.baseline == "linear + cross_entropy");
}

TEST_CASE("a table line gives the achieved rate, the percentage of the roofline and the speedup") {
  KernelRow bytes_row{"copy", "4 x 4", "bf16", CostUnit::bytes, 3e9, 3000, "two copies", {}};
  const std::string with_baseline = kernel_table_line(bytes_row, {1.0, 2.5});
  CHECK(with_baseline == "| copy | 4 x 4 | bf16 | 1.0000 | 3000 GB/s | 100% | two copies | 2.5000 | 2.50x |\n");
  KernelRow flops_row{"gemm", "8 x 8", "bf16", CostUnit::flops, 395e9, 790, "-", {}};
  const std::string alone = kernel_table_line(flops_row, {1.0, 0});
  CHECK(alone == "| gemm | 8 x 8 | bf16 | 1.0000 | 395.0 TFLOP/s | 50% | - | - | - |\n");
  const std::string head = kernel_table_head();
  const std::string first_line = head.substr(0, head.find('\n'));
  CHECK(count_columns(first_line) == count_columns(alone));
}

TEST_CASE("option errors name the option and what was expected") {
  KernelBenchOptions o = small_options();
  o.dtype = DType::f64;
  CHECK(testing::error_message([&] { kernel_rows(o); }) == "bench kernels: --dtype f64: expected bf16, f32 or f16");
  o = small_options();
  o.rows = 6;
  CHECK(testing::error_message([&] { kernel_rows(o); })
            .find("--rows 6: expected a positive multiple of the "
                  "sequence length 4") != std::string::npos);
  o = small_options();
  o.only = "flash";
  const std::string none = testing::error_message([&] { kernel_rows(o); });
  CHECK(none.find("--only 'flash' matches no kernel") != std::string::npos);
  CHECK(none.find("layer_norm fwd") != std::string::npos);  // lists the names to choose from
}

TEST_CASE("the benchmark refuses a device that is not a GPU before printing anything") {
  KernelBenchOptions o = small_options();
  std::ostringstream out;
  CHECK(testing::error_message([&] { bench_kernels(o, out); }) ==
        "bench kernels: --device cpu: expected cuda or cuda:N (this benchmark times CUDA kernels)");
  CHECK(out.str().empty());
  if (cuda_available()) return;
  o.device = Device::cuda(0);
  CHECK(testing::error_message([&] { bench_kernels(o, out); }).find("needs a GPU") != std::string::npos);
  CHECK(out.str().empty());
}
