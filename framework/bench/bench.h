// Benchmarks: `flashtrain bench train` (whole training steps of a GPT-2), `flashtrain bench
// kernels` (each fused kernel beside the unfused path it replaces, measured in the same run) and
// `flashtrain bench attention` (each attention kernel alone, T from 512 to 16K), and the timing
// and report pieces they share.
// Figures are reported against the H100 ceilings measured on the GPU machine (790 TFLOP/s
// dense bf16, 3.0 TB/s copy), so "70% of roofline" reads straight off the table. Performance
// is shown here, never by timed tests.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "framework/device.h"
#include "framework/dtype.h"
#include "framework/ops.h"

namespace ft::bench {

inline constexpr double kPeakBf16Tflops = 790.0;  // dense bf16 tensor-core rate, H100 as measured here
inline constexpr double kPeakCopyTBps = 3.0;      // device-to-device copy bandwidth, H100 as measured here

// Milliseconds per call of `fn`, the median of `repeats` timed calls after `warmup` untimed
// ones. On CUDA the calls are timed with events on the device's stream (the work is queued
// asynchronously, so host time would mislead); on the CPU with a steady clock.
double time_ms(Device device, const std::function<void()>& fn, int warmup = 3, int repeats = 10);

// Milliseconds per call of `fn`, for work short enough that one timed call would be mostly
// launch latency and event resolution: the median over samples of enough calls to span 1 ms.
double per_call_ms(Device device, const std::function<void()>& fn);

// The attention kernels by the names recipes and flags use. `bench attention` times them in
// this order, the first being the reference of its ratio column; a new AttentionKernel is one
// more line here.
struct NamedAttentionKernel {
  AttentionKernel kernel;
  const char* name;
};
inline constexpr NamedAttentionKernel kAttentionKernels[] = {
    {AttentionKernel::flash, "flash"},
    {AttentionKernel::math, "math"},
    {AttentionKernel::cudnn, "cudnn"},
};
// "flash, math or cudnn": the names, as an error or a help text lists them.
std::string attention_kernel_choices();
// The kernel called `name`; otherwise throws ft::Error "<flag> <name>: expected flash, math or cudnn",
// flag naming the command and option ("bench train: --attention").
const NamedAttentionKernel& attention_kernel_named(const std::string& name, const std::string& flag);

// Pieces of the printed reports.
std::string format(const char* spec, double value);  // one number, printf-style: format("%.2f", x)
std::string local_date();                            // "2026-12-02 14:05", the machine's local time
// The GPU's name; throws ft::Error naming `command` ("bench kernels") unless `device` is a CUDA
// device that answers.
std::string gpu_name(Device device, const std::string& command);

struct TrainBenchOptions {
  std::string model = "gpt2-124m";  // a models/gpt2 size name
  int64_t seq_len = 1024;
  int64_t batch = 16;
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (16-bit models train through f32 masters)
  Device device = Device::cpu();
  int steps = 10;                  // timed steps, after 3 warmup steps
  bool recompute_gelu = false;     // the model.recompute_gelu trade: less activation memory
  std::string attention = "math";  // a name of kAttentionKernels (flash: CUDA, bf16 or fp16)
};

struct TrainBenchResult {
  int64_t parameters = 0;
  double ms_per_step = 0;
  double tokens_per_second = 0;
  double tflops = 0;        // achieved, by the 6N + 12 L T C flops-per-token estimate
  double mfu = 0;           // tflops / kPeakBf16Tflops
  double attention_ms = 0;  // the attention op alone (forward + backward, all layers) per step
  size_t peak_memory_bytes = 0;
};

// Forward, backward and AdamW on random tokens (no data loading): what the model and kernels
// sustain.
TrainBenchResult bench_train(const TrainBenchOptions& options);

}  // namespace ft::bench
