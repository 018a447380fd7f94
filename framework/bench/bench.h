// Benchmarks: `flashtrain bench train` (whole training steps of a GPT-2) and `flashtrain bench
// kernels` (each fused kernel beside the unfused path it replaces, measured in the same run).
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

namespace ft::bench {

inline constexpr double kPeakBf16Tflops = 790.0;  // dense bf16 tensor-core rate, H100 as measured here
inline constexpr double kPeakCopyTBps = 3.0;      // device-to-device copy bandwidth, H100 as measured here

// Milliseconds per call of `fn`, the median of `repeats` timed calls after `warmup` untimed
// ones. On CUDA the calls are timed with events on the device's stream (the work is queued
// asynchronously, so host time would mislead); on the CPU with a steady clock.
double time_ms(Device device, const std::function<void()>& fn, int warmup = 3, int repeats = 10);

struct TrainBenchOptions {
  std::string model = "gpt2-124m";  // a models/gpt2 size name
  int64_t seq_len = 1024;
  int64_t batch = 16;
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (16-bit models train through f32 masters)
  Device device = Device::cpu();
  int steps = 10;                  // timed steps, after 3 warmup steps
  bool recompute_gelu = false;     // the model.recompute_gelu trade: less activation memory
  std::string attention = "math";  // math | flash (flash: CUDA, bf16 or fp16)
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
