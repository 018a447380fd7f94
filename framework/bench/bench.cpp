#include "framework/bench/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <optional>

#include "framework/allocator.h"
#include "framework/autograd.h"
#include "framework/error.h"
#include "framework/ops.h"
#include "framework/optim/adamw.h"
#include "framework/optim/grad_norm.h"
#include "framework/optim/master_weights.h"
#include "framework/random.h"
#include "models/gpt2/gpt2.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include <cuda_runtime_api.h>

#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#endif

namespace ft::bench {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

#ifdef FLASHTRAIN_HAS_CUDA
double time_cuda_call_ms(int device, const std::function<void()>& fn) {
  cuda::DeviceGuard guard(device);
  cudaStream_t stream = cuda::context(device).stream;
  cudaEvent_t start, stop;
  FT_CUDA_CHECK(cudaEventCreate(&start));
  FT_CUDA_CHECK(cudaEventCreate(&stop));
  FT_CUDA_CHECK(cudaEventRecord(start, stream));
  fn();
  FT_CUDA_CHECK(cudaEventRecord(stop, stream));
  FT_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  FT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms;
}
#endif

double time_call_ms(Device device, const std::function<void()>& fn) {
#ifdef FLASHTRAIN_HAS_CUDA
  if (device.is_cuda()) return time_cuda_call_ms(device.index, fn);
#endif
  FT_CHECK(device.is_cpu(), "bench: ", device.str(), " needs a build with CUDA");
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

DType precision_dtype(const std::string& precision) {
  if (precision == "fp32") return DType::f32;
  if (precision == "bf16") return DType::bf16;
  if (precision == "fp16") return DType::f16;
  throw Error(str("bench train: --precision ", precision, ": expected fp32, bf16 or fp16"));
}

// The attention op alone as GPT-2 runs it (attention_packed_qkv on c_attn's [B, T, 3C] output),
// forward and backward from a random upstream gradient, for every layer.
double attention_ms(const models::Gpt2Config& c, const TrainBenchOptions& o, DType dtype) {
  Generator gen(7);
  Tensor qkv = randn({o.batch, o.seq_len, 3 * c.n_embd}, gen, dtype, o.device).set_requires_grad(true);
  const Tensor upstream = randn({o.batch, o.seq_len, c.n_embd}, gen, dtype, o.device);
  AttentionOptions options;
  options.kernel = c.attention;
  return c.n_layer * time_ms(
                         o.device, [&] { attention_packed_qkv(qkv, c.n_head, options).backward(upstream); }, 1, 3);
}

}  // namespace

double time_ms(Device device, const std::function<void()>& fn, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i) time_call_ms(device, fn);
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) times.push_back(time_call_ms(device, fn));
  return median(times);
}

double per_call_ms(Device device, const std::function<void()>& fn) {
  constexpr double kMinSampleMs = 1.0;
  const double once = time_ms(device, fn, 1, 3);
  const int calls = static_cast<int>(std::clamp(std::ceil(kMinSampleMs / once), 1.0, 1000.0));
  auto sample = [&] {
    for (int i = 0; i < calls; ++i) fn();
  };
  return time_ms(device, sample, 2, 10) / calls;
}

std::string attention_kernel_choices() {
  const size_t n = std::size(kAttentionKernels);
  std::string names;
  for (size_t i = 0; i < n; ++i) names += str(i == 0 ? "" : i + 1 == n ? " or " : ", ", kAttentionKernels[i].name);
  return names;
}

const NamedAttentionKernel& attention_kernel_named(const std::string& name, const std::string& flag) {
  for (const NamedAttentionKernel& k : kAttentionKernels)
    if (name == k.name) return k;
  throw Error(str(flag, " ", name, ": expected ", attention_kernel_choices()));
}

std::string format(const char* spec, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, spec, value);
  return buffer;
}

std::string local_date() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M", std::localtime(&now));
  return buffer;
}

std::string gpu_name(Device device, const std::string& command) {
  FT_CHECK(device.is_cuda(), command, ": --device ", device.str(),
           ": expected cuda or cuda:N (this benchmark times CUDA kernels)");
#ifdef FLASHTRAIN_HAS_CUDA
  FT_CHECK(device.index < cuda_device_count(), command, ": ", device.str(), " requested but ", cuda_device_count(),
           " CUDA devices answer (it needs a GPU)");
  return cuda::device_properties(device.index).name;
#else
  throw Error(str(command, ": this build has no CUDA backend (it needs a GPU and a build with nvcc)"));
#endif
}

TrainBenchResult bench_train(const TrainBenchOptions& o) {
  const DType dtype = precision_dtype(o.precision);
  models::Gpt2Config config = models::gpt2_config(o.model);
  config.block_size = std::max(config.block_size, o.seq_len);
  config.recompute_gelu = o.recompute_gelu;
  config.attention = attention_kernel_named(o.attention, "bench train: --attention").kernel;
  Generator init(1), data(2);
  const models::Gpt2 model(config, init, dtype, o.device);
  // A 16-bit model trains through f32 master weights, as the trainer does (bf16 needs no loss
  // scaling; fp16's scale is a multiply the benchmark leaves out), and the step clips by the
  // global norm as the recipes do.
  std::optional<MasterWeights> masters;
  if (dtype != DType::f32) {
    Generator unused(1);
    masters.emplace(model.parameters(), models::Gpt2(config, unused, DType::f32, o.device).parameters());
  }
  AdamW optimizer(masters ? masters->groups(0.1) : weight_decay_groups(model.parameters(), 0.1), AdamWOptions{});
  const std::vector<Tensor> gradient_holders = optimizer.gradient_holders();

  // Random token ids (uniform over the vocabulary), the same batch every step.
  Tensor u = Tensor::empty({o.batch, o.seq_len + 1});
  uniform_(u, data, 0.0, static_cast<double>(config.vocab_size) - 1e-6);
  std::vector<int32_t> ids;
  for (double x : u.to_double_vector()) ids.push_back(static_cast<int32_t>(x));
  const Tensor tokens = Tensor::from_ints(ids, {o.batch, o.seq_len + 1}, o.device);
  const Tensor inputs = slice(tokens, 1, 0, o.seq_len).contiguous();
  const Tensor targets = slice(tokens, 1, 1, o.seq_len + 1).contiguous();

  auto step = [&] {
    optimizer.zero_grad();
    model.loss(models::Gpt2Batch{inputs, Tensor(), Tensor()}, targets).backward();
    optimizer.step(grad_sum_of_squares(gradient_holders), GradientScaling{1.0, 1.0});  // clipped at 1, as trained
  };
  Allocator& allocator = allocator_for(o.device);
  allocator.reset_peak();
  TrainBenchResult r;
  r.parameters = model.parameter_count();
  r.ms_per_step = time_ms(o.device, step, 3, o.steps);
  r.peak_memory_bytes = allocator.stats().peak_allocated_bytes;
  const double tokens_per_step = static_cast<double>(o.batch * o.seq_len);
  r.tokens_per_second = tokens_per_step / (r.ms_per_step / 1e3);
  // Flops per token: 6 per parameter (forward 2, backward 4) for the matrices the tokens pass
  // through (all but the position table), plus attention's two [T x T] products per layer.
  const double matrix_params = static_cast<double>(r.parameters - config.block_size * config.n_embd);
  const double flops_per_token = 6 * matrix_params + 12.0 * config.n_layer * o.seq_len * config.n_embd;
  r.tflops = flops_per_token * r.tokens_per_second / 1e12;
  r.mfu = r.tflops / kPeakBf16Tflops;
  r.attention_ms = attention_ms(config, o, dtype);
  return r;
}

}  // namespace ft::bench
