// `flashtrain bench`: performance figures, each beside its ceiling (framework/bench/bench.h).
//   bench train   GPT-2 training steps on random tokens: tokens/s, ms/step, TFLOP/s, MFU,
//                 the attention op's share, peak memory.
//   bench kernels each kernel at GPT-2 training shapes: GB/s or TFLOP/s against the roofline,
//                 beside the unfused path it replaces.
//   bench attention  each attention kernel alone, T = 512 to 16K: forward and forward + backward
//                 TFLOP/s, peak memory, the ratio to the first kernel.
#include "framework/bench/bench.h"

#include <cstdio>
#include <iostream>

#include "framework/bench/attention_bench.h"
#include "framework/bench/kernel_bench.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {
namespace {

struct TrainBenchArgs {
  bench::TrainBenchOptions options;
  std::string device = "auto";
};

void run_train_bench(TrainBenchArgs a) {
  a.options.device = a.device == "auto" ? (cuda_available() ? Device::cuda(0) : Device::cpu()) : parse_device(a.device);
  const bench::TrainBenchOptions& o = a.options;
  std::printf("bench train: %s, seq %lld, batch %lld, %s on %s, %s attention, %d timed steps%s\n", o.model.c_str(),
              static_cast<long long>(o.seq_len), static_cast<long long>(o.batch), o.precision.c_str(),
              o.device.str().c_str(), o.attention.c_str(), o.steps, o.recompute_gelu ? ", GELU recomputed" : "");
  const bench::TrainBenchResult r = bench::bench_train(o);
  std::printf("parameters        %lld\n", static_cast<long long>(r.parameters));
  std::printf("ms/step           %.2f\n", r.ms_per_step);
  std::printf("tokens/s          %.0f\n", r.tokens_per_second);
  std::printf("TFLOP/s           %.1f (MFU %.1f%% of %.0f TFLOP/s bf16)\n", r.tflops, 100 * r.mfu,
              bench::kPeakBf16Tflops);
  std::printf("attention ms/step %.2f (%.1f%% of the step; forward + backward, all layers)\n", r.attention_ms,
              100 * r.attention_ms / r.ms_per_step);
  std::printf("peak memory       %.2f GiB\n", r.peak_memory_bytes / double(1 << 30));
}

// The options of a benchmark that times CUDA kernels, with --dtype and --device as typed.
template <class Options>
struct GpuBenchArgs {
  Options options;
  std::string dtype = "bf16";
  std::string device = "cuda:0";

  Options parsed() const {
    Options o = options;
    o.dtype = dtype_from_name(dtype);
    o.device = parse_device(device);
    return o;
  }
};

void add_kernels_command(CLI::App& bench) {
  auto a = std::make_shared<GpuBenchArgs<bench::KernelBenchOptions>>();
  CLI::App* kernels = bench.add_subcommand("kernels", "Each kernel at GPT-2 124M training shapes against its roofline");
  kernels->add_option("--dtype", a->dtype, "bf16, f32 or f16")->capture_default_str();
  kernels->add_option("--rows", a->options.rows, "Tokens per step (batch x 1024)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  kernels->add_option("--only", a->options.only,
                      "Only the kernels whose name contains this (or the one named exactly this)");
  kernels->add_option("--device", a->device, "cuda or cuda:N")->capture_default_str();
  kernels->callback([a] { bench::bench_kernels(a->parsed(), std::cout); });
}

// Lists are comma-separated (--seqs 1024,4096); the values are checked by bench::attention_plan.
void add_attention_command(CLI::App& bench) {
  auto a = std::make_shared<GpuBenchArgs<bench::AttentionBenchOptions>>();
  CLI::App* cmd =
      bench.add_subcommand("attention", "Each attention kernel alone: forward and backward TFLOP/s, memory");
  cmd->add_option("--dtype", a->dtype, "bf16 or f16")->capture_default_str();
  cmd->add_option("--seqs", a->options.seq_lens, "Sequence lengths T")->delimiter(',')->capture_default_str();
  cmd->add_option("--head-dims", a->options.head_dims, "Head dims D (flash: 64, 128)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--causal", a->options.causal, "both, yes or no")->capture_default_str();
  cmd->add_option("--kernels", a->options.kernels,
                  "Which kernels, in order: " + bench::attention_kernel_choices() +
                      " (default: all; the first is the reference)")
      ->delimiter(',');
  cmd->add_option("--tokens", a->options.tokens, "Tokens per case, B x T")->capture_default_str();
  cmd->add_option("--device", a->device, "cuda or cuda:N")->capture_default_str();
  cmd->callback([a] { bench::bench_attention(a->parsed(), std::cout); });
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("bench", "Benchmarks, each beside its ceiling");
  cmd->require_subcommand(1);
  auto a = std::make_shared<TrainBenchArgs>();
  CLI::App* train = cmd->add_subcommand("train", "GPT-2 training steps on random tokens");
  train->add_option("--model", a->options.model, "Model size: gpt2-124m, gpt2-350m, ..., tiny")->capture_default_str();
  train->add_option("--seq", a->options.seq_len, "Tokens per row")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--batch", a->options.batch, "Rows per step")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--precision", a->options.precision, "fp32, bf16 or fp16")->capture_default_str();
  train->add_option("--device", a->device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  train->add_option("--steps", a->options.steps, "Timed steps")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--attention", a->options.attention, "math, flash or cudnn (flash, cudnn: cuda, bf16 or fp16)")
      ->capture_default_str();
  train->add_flag("--recompute-gelu", a->options.recompute_gelu,
                  "Keep only the MLP's pre-activation; recompute GELU in the backward");
  train->callback([a] { run_train_bench(*a); });
  add_kernels_command(*cmd);
  add_attention_command(*cmd);
}

}  // namespace ft::tools
