// The cases, the timing and the table of `flashtrain bench attention`. Each kernel of a case is
// timed on the same random q, k, v (leaves requiring grad, as a model's activations are) and
// upstream gradient dO, twice: the forward alone, and the forward followed by the op's own
// backward closure, as bench kernels' backward rows run it. Calling the closure rather than
// backward() leaves out the tape walk and the copies of dq, dk, dv into grad(): three passes over
// [B, H, T, D] that would weigh on the short lengths and are not attention's work.
//
// The math path's peak memory is known in advance (math_attention_bytes), so a case it cannot
// fit is skipped before anything is allocated, naming the bytes it needs; an out-of-memory error
// all the same (the prediction leaves out the CUDA context's own memory and fragmentation) skips
// the row too, and the run goes on.
#include "framework/bench/attention_bench.h"

#include <algorithm>
#include <iterator>
#include <memory>

#include "framework/allocator.h"
#include "framework/autograd.h"
#include "framework/error.h"
#include "framework/random.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#endif

namespace ft::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGiB = 1024.0 * kMiB;

std::vector<bool> masks_named(const std::string& causal) {
  if (causal == "both") return {true, false};
  if (causal == "yes") return {true};
  if (causal == "no") return {false};
  throw Error(str("bench attention: --causal ", causal, ": expected both, yes or no"));
}

std::vector<NamedAttentionKernel> kernels_named(const std::vector<std::string>& names) {
  if (names.empty()) return {std::begin(kAttentionKernels), std::end(kAttentionKernels)};
  std::vector<NamedAttentionKernel> kernels;
  for (const std::string& name : names) kernels.push_back(attention_kernel_named(name, "bench attention: --kernels"));
  return kernels;
}

void check_options(const AttentionBenchOptions& o, const std::vector<NamedAttentionKernel>& kernels) {
  FT_CHECK(o.dtype == DType::bf16 || o.dtype == DType::f16, "bench attention: --dtype ", dtype_name(o.dtype),
           ": expected bf16 or f16");
  FT_CHECK(o.tokens >= 1, "bench attention: --tokens ", o.tokens, ": expected at least 1");
  FT_CHECK(!o.seq_lens.empty() && !o.head_dims.empty(), "bench attention: --seqs and --head-dims need a value each");
  for (int64_t t : o.seq_lens) FT_CHECK(t >= 1, "bench attention: --seqs ", t, ": expected lengths of at least 1");
  const bool flash = std::any_of(kernels.begin(), kernels.end(),
                                 [](const NamedAttentionKernel& k) { return k.kernel == AttentionKernel::flash; });
  for (int64_t d : o.head_dims) {
    FT_CHECK(d >= 1, "bench attention: --head-dims ", d, ": expected at least 1");
    FT_CHECK(!flash || d == 64 || d == 128, "bench attention: --head-dims ", d,
             ": kernel flash takes 64 or 128 (leave flash out of --kernels to time the others alone)");
  }
}

// The device's memory, against which the math path's need is held.
size_t device_memory_bytes(Device device) {
#ifdef FLASHTRAIN_HAS_CUDA
  return cuda::device_properties(device.index).totalGlobalMem;
#else
  (void)device;
  return 0;  // never asked: gpu_name refuses every device of a build without CUDA
#endif
}

// One kernel on one case. The previous case's tensors are gone, so the peak is this case's
// alone, its inputs included.
AttentionTiming time_kernel(const AttentionCase& c, AttentionKernel kernel, DType dtype, Device device) {
  Allocator& allocator = allocator_for(device);
  allocator.reset_peak();
  Generator gen(7);
  const Shape shape = {c.batch, c.heads, c.seq_len, c.head_dim};
  const Tensor q = randn(shape, gen, dtype, device).set_requires_grad(true);
  const Tensor k = randn(shape, gen, dtype, device).set_requires_grad(true);
  const Tensor v = randn(shape, gen, dtype, device).set_requires_grad(true);
  const Tensor d_out = randn(shape, gen, dtype, device);
  AttentionOptions options;
  options.causal = c.causal;
  options.kernel = kernel;
  AttentionTiming t;
  t.forward_ms = per_call_ms(device, [&] { attention(q, k, v, options); });
  t.forward_backward_ms = per_call_ms(device, [&] {
    const Tensor out = attention(q, k, v, options);
    const std::shared_ptr<Node>& node = out.grad_fn();
    NoGradGuard no_grad;
    node->backward(d_out, node->needs);
  });
  t.peak_bytes = allocator.stats().peak_allocated_bytes;
  return t;
}

AttentionTiming measure(const AttentionCase& c, const NamedAttentionKernel& kernel, const AttentionBenchOptions& o) {
  AttentionTiming t;
  const size_t needed = math_attention_bytes(c, o.dtype), available = device_memory_bytes(o.device);
  if (kernel.kernel == AttentionKernel::math && needed > available) {
    t.skipped = str("out of memory: needs ", format("%.1f", needed / kGiB), " GiB, the device has ",
                    format("%.1f", available / kGiB));
    return t;
  }
  try {
    return time_kernel(c, kernel.kernel, o.dtype, o.device);
  } catch (const Error& e) {
    // The caching allocator reports a failed cudaMalloc as "cuda:N out of memory: ..."; any other
    // error stops the run.
    if (std::string(e.what()).find(" out of memory") == std::string::npos) throw;
    t.skipped = "out of memory";
    return t;
  }
}

double tflops(double flops, double ms) { return flops / (ms * 1e-3) / 1e12; }

template <class T>
std::string joined(const std::vector<T>& values) {
  std::string text;
  for (const T& v : values) text += str(text.empty() ? "" : ",", v);
  return text;
}

// The command that repeats this run, every option spelled out.
std::string command_text(const AttentionBenchOptions& o, const AttentionBenchPlan& plan) {
  std::vector<std::string> kernels;
  for (const NamedAttentionKernel& k : plan.kernels) kernels.push_back(k.name);
  return str("flashtrain bench attention --dtype ", dtype_name(o.dtype), " --seqs ", joined(o.seq_lens),
             " --head-dims ", joined(o.head_dims), " --causal ", o.causal, " --kernels ", joined(kernels), " --tokens ",
             o.tokens, " --device ", o.device.str());
}

// What the table's figures are, under the command.
std::string legend(const AttentionBenchOptions& o, const std::string& reference) {
  return str("B = ", o.tokens, " tokens / T rows (at least 1) of H = ", kModelWidth, " / D heads (GPT-2 124M's width);",
             " q, k, v and dO random ", dtype_name(o.dtype), " [B, H, T, D]\n",
             "FLOPs as FlashAttention counts them: forward 4 B H T^2 D, halved when causal; backward 2.5x the forward;"
             " the % is forward + backward's of the ",
             format("%.0f", kPeakBf16Tflops), " TFLOP/s dense bf16 ceiling\n",
             "fwd+bwd: the forward and the op's backward from dO; peak: the most the caching allocator held in"
             " tensors during the case, inputs included; vs ",
             reference, ": ", reference, "'s fwd+bwd time over this kernel's (above 1: faster)\n");
}

}  // namespace

AttentionBenchPlan attention_plan(const AttentionBenchOptions& o) {
  AttentionBenchPlan plan;
  plan.kernels = kernels_named(o.kernels);
  const std::vector<bool> masks = masks_named(o.causal);
  check_options(o, plan.kernels);
  for (int64_t d : o.head_dims)
    for (bool causal : masks)
      for (int64_t t : o.seq_lens)
        plan.cases.push_back({std::max<int64_t>(1, o.tokens / t), std::max<int64_t>(1, kModelWidth / d), t, d, causal});
  return plan;
}

double attention_forward_flops(const AttentionCase& c) {
  const double flops = 4.0 * c.batch * c.heads * c.seq_len * c.seq_len * c.head_dim;
  return c.causal ? flops / 2 : flops;
}

size_t math_attention_bytes(const AttentionCase& c, DType dtype) {
  const size_t s = dtype_bytes(dtype, 1);
  const size_t head_tensor = static_cast<size_t>(c.batch * c.heads * c.seq_len * c.head_dim) * s;
  const size_t matrix = static_cast<size_t>(c.batch * c.heads * c.seq_len * c.seq_len);  // elements of [B, H, T, T]
  // Eight [B, H, T, D] tensors; P and dS in the inputs' dtype, dP in f32. (The forward's peak,
  // its f32 scores beside P and five head tensors, is below this.)
  return 8 * head_tensor + matrix * (2 * s + 4);
}

std::string attention_table_head(const std::string& reference_kernel) {
  return str("| T | D | B x H | causal | kernel | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | % of ",
             format("%.0f", kPeakBf16Tflops), " | peak MiB | vs ", reference_kernel, " |\n",
             "| ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
}

std::string attention_table_line(const AttentionCase& c, const std::string& kernel, const AttentionTiming& t,
                                 const AttentionTiming* reference) {
  const std::string head = str("| ", c.seq_len, " | ", c.head_dim, " | ", c.batch, " x ", c.heads, " | ",
                               c.causal ? "yes" : "no", " | ", kernel, " | ");
  if (!t.skipped.empty()) return str(head, t.skipped, " | - | - | - | - | - | - |\n");
  const double forward = attention_forward_flops(c);
  const double both = tflops(kForwardBackwardFlopsFactor * forward, t.forward_backward_ms);
  const bool compared = reference != nullptr && reference->skipped.empty();
  return str(head, format("%.3f", t.forward_ms), " | ", format("%.1f", tflops(forward, t.forward_ms)), " | ",
             format("%.3f", t.forward_backward_ms), " | ", format("%.1f", both), " | ",
             format("%.0f%%", 100 * both / kPeakBf16Tflops), " | ", format("%.0f", t.peak_bytes / kMiB), " | ",
             compared ? format("%.2fx", reference->forward_backward_ms / t.forward_backward_ms) : "-", " |\n");
}

void bench_attention(const AttentionBenchOptions& o, std::ostream& out) {
  const AttentionBenchPlan plan = attention_plan(o);
  const std::string device = gpu_name(o.device, "bench attention");
  const std::string reference = plan.kernels.front().name;
  out << local_date() << ", " << o.device.str() << " (" << device << ")\n"
      << command_text(o, plan) << "\n"
      << legend(o, reference) << "\n"
      << attention_table_head(reference) << std::flush;
  for (const AttentionCase& c : plan.cases) {
    std::vector<AttentionTiming> timings;
    for (const NamedAttentionKernel& kernel : plan.kernels) {
      timings.push_back(measure(c, kernel, o));
      const AttentionTiming* first = timings.size() > 1 ? &timings.front() : nullptr;
      out << attention_table_line(c, kernel.name, timings.back(), first) << std::flush;
    }
  }
}

}  // namespace ft::bench
