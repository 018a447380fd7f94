// `flashtrain bench kernels`: every kernel at GPT-2 training shapes, timed through the framework
// ops (what training sees; the caching allocator makes their allocations cheap), with its achieved
// GB/s or TFLOP/s against the roofline and, for a fused kernel, the unfused path it replaces,
// timed in the same run. The table is data: a row is a name, a shape, its minimal cost and a setup
// that allocates the inputs and returns the timed work, so a fused kernel with its baseline is one
// more entry in kernel_rows (framework/bench/kernel_bench.cpp).
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "framework/bench/bench.h"
#include "models/gpt2/gpt2.h"

namespace ft::bench {

// TF32 tensor cores run at half the bf16 rate on Hopper (the H100 datasheet: 495 vs 989 TFLOP/s
// dense), so half of the bf16 rate measured here.
inline constexpr double kPeakTf32Tflops = kPeakBf16Tflops / 2;
// Plain fp32 FMA units, when TF32 is off: the H100 SXM datasheet's 67 TFLOP/s (not measured).
inline constexpr double kPeakFp32Tflops = 67.0;

struct KernelBenchOptions {
  DType dtype = DType::bf16;  // of activations and gradients: bf16, f32 or f16 (AdamW is f32 always)
  int64_t rows = 16 * 1024;   // N, the tokens of one step (batch x seq); a multiple of model.block_size
  std::string only;           // only the rows whose name contains this (one named exactly this: it alone); empty: all
  Device device = Device::cuda(0);
  // C = n_embd, the MLP's H = 4 C, V = vocab_size, heads = n_head, T = block_size; AdamW and the
  // gradient norm run over all of this model's parameters.
  models::Gpt2Config model = models::gpt2_config("gpt2-124m");
};

// A row's figure is bytes moved (read against kPeakCopyTBps) or flops (against the dtype's
// tensor-core rate).
enum class CostUnit { bytes, flops };

// The timed work of one row, made by its setup: the kernel, and the path it replaces (empty when
// there is none).
struct KernelWork {
  std::function<void()> run;
  std::function<void()> baseline;
};

struct KernelRow {
  std::string name;   // "layer_norm bwd"
  std::string shape;  // "16384 x 768"
  std::string dtype;  // as printed: "bf16", "tf32" (f32 products on tensor cores), ...
  CostUnit unit = CostUnit::bytes;
  // Minimal traffic (each input read once, each output written once) or 2 M N K per GEMM.
  double cost = 0;
  double ceiling = 0;                 // the roofline in the printed unit: GB/s or TFLOP/s
  std::string baseline = "-";         // what the kernel replaces, "-" for nothing
  std::function<KernelWork()> setup;  // allocates the inputs on options.device; runs only on a GPU
};

// The rows at the options' shapes (the bandwidth-bound kernels in the order a training step runs
// them, then the matmuls), filtered by options.only. Throws ft::Error for a dtype other than bf16/f32/f16, rows that
// are not a positive multiple of the sequence length, or a filter that matches no row.
std::vector<KernelRow> kernel_rows(const KernelBenchOptions& options);

// Milliseconds per call of the row's kernel and of its baseline (0: none).
struct KernelTiming {
  double ms = 0;
  double baseline_ms = 0;
};

// The table's head and one of its lines (Markdown, so a pasted table renders in docs/).
std::string kernel_table_head();
std::string kernel_table_line(const KernelRow& row, const KernelTiming& timing);

// Prints the date, the device's name, the command, and the table, one line per row as it is
// measured. Throws ft::Error when options.device is not a CUDA device that answers.
void bench_kernels(const KernelBenchOptions& options, std::ostream& out);

}  // namespace ft::bench
