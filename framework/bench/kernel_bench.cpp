// The rows of `flashtrain bench kernels` and the table they print. A row's cost is the least its
// kernel can move (each input read once, each output written once, in the row's dtype; saved
// statistics are f32 and ids i32) or 2 M N K per GEMM: what a perfect kernel would do, so the
// percentage of the roofline says how far each one is from the hardware.
//
// Backward rows time the op's own backward closure: the forward runs once in setup and records a
// node, and the timed call hands that node an upstream gradient, as backward() would, without the
// tape walk or the accumulation into grad().
//
// A fused op's row returns both paths on the same inputs (KernelWork{fused, unfused}) and names
// the unfused one as its baseline. Fused ops whose backward is a chain of nodes in the unfused
// form are timed forward + backward together, through backward(g) from an upstream gradient g.
//
// The bandwidth rows' roofline is the device's own copy bandwidth, measured at the start of the
// run (a 1 GiB device-to-device copy), so the percentages hold on an H100 and an H200 alike.
#include "framework/bench/kernel_bench.h"

#include <algorithm>
#include <memory>

#include "framework/autograd.h"
#include "framework/error.h"
#include "framework/ops.h"
#include "framework/optim/adamw.h"
#include "framework/optim/grad_norm.h"
#include "framework/random.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/matmul_settings.h"
#include "kernels/matmul/matmul_cuda.h"
#endif

namespace ft::bench {
namespace {

constexpr double kCopyCeilingGBps = kPeakCopyTBps * 1e3;
constexpr double kDropoutP = 0.1;

// GPT-2's parameters: the token and position tables, 12 C^2 + 13 C per block (two layer norms,
// c_attn, the attention projection, the MLP's two matrices, and their biases), the final norm.
int64_t gpt2_parameter_count(const models::Gpt2Config& c) {
  const int64_t C = c.n_embd;
  return c.vocab_size * C + (c.rotary ? 0 : c.block_size * C) + c.n_layer * (12 * C * C + 13 * C) + 2 * C;
}

bool tf32_allowed() {
#ifdef FLASHTRAIN_HAS_CUDA
  return cuda::allow_tf32();
#else
  return false;
#endif
}

std::string shape_text(int64_t a, int64_t b) { return str(a, " x ", b); }

// Inputs are normals from one seeded stream: their values do not matter to the timing, only that
// they are finite and repeatable.
Tensor random_input(const Shape& shape, DType dtype, Device device, bool requires_grad) {
  static Generator gen(1234);
  Tensor t = randn(shape, gen, dtype, device);
  return requires_grad ? t.set_requires_grad(true) : t;
}

// Ids uniform in [0, range) (token ids, targets), made on the CPU and copied.
Tensor random_ids(int64_t n, int64_t range, Device device) {
  static Generator gen(4321);
  Tensor u = Tensor::empty({n}, DType::f64);
  uniform_(u, gen, 0.0, static_cast<double>(range) - 1e-6);
  std::vector<int32_t> ids;
  for (double x : u.to_double_vector()) ids.push_back(static_cast<int32_t>(x));
  return Tensor::from_ints(ids, {n}, device);
}

// Positions 0..T-1 in every row of N = B T tokens: the position table's ids in packed rows.
Tensor position_ids(int64_t n, int64_t seq, Device device) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(i % seq);
  return Tensor::from_ints(ids, {n}, device);
}

// The op's own backward for the node that made `out`, on a random upstream gradient.
std::function<void()> backward_of(const Tensor& out) {
  FT_CHECK(out.grad_fn() != nullptr, "bench kernels: the forward recorded no node (no input requires grad)");
  std::shared_ptr<Node> node = out.grad_fn();
  const Tensor upstream = random_input(out.shape(), out.dtype(), out.device(), false);
  return [node, upstream] {
    NoGradGuard no_grad;
    node->backward(upstream, node->needs);
  };
}

// Leaves of the model's parameter shapes in `dtype`, each with a random gradient.
std::vector<Tensor> parameters_with_grads(const models::Gpt2Config& config, DType dtype, Device device) {
  Generator init(1);
  const models::Gpt2 model(config, init, dtype, device);
  std::vector<Tensor> params;
  for (const NamedParameter& p : model.parameters()) {
    p.tensor.set_grad(random_input(p.tensor.shape(), dtype, device, false));
    params.push_back(p.tensor);
  }
  return params;
}

// AdamW over every parameter in one optimizer (the multi-tensor launches), against one optimizer
// per parameter (one launch each).
KernelWork adamw_work(const models::Gpt2Config& config, Device device) {
  const std::vector<Tensor> params = parameters_with_grads(config, DType::f32, device);
  auto all = std::make_shared<AdamW>(std::vector<ParamGroup>{{params, 0.1}});
  auto singles = std::make_shared<std::vector<AdamW>>();
  for (const Tensor& p : params) singles->emplace_back(std::vector<ParamGroup>{{{p}, 0.1}});
  return {[all] { all->step(); },
          [singles] {
            for (AdamW& one : *singles) one.step();
          }};
}

// AdamW as mixed precision runs it: f32 masters stepped from the model's 16-bit gradients and
// rounded into its 16-bit parameters, in the same launches.
KernelWork mixed_adamw_work(const models::Gpt2Config& config, DType dtype, Device device) {
  const std::vector<Tensor> compute = parameters_with_grads(config, dtype, device);
  std::vector<Tensor> masters;
  for (const Tensor& c : compute) masters.push_back(c.to(DType::f32).set_requires_grad(true));
  auto optimizer = std::make_shared<AdamW>(std::vector<ParamGroup>{{masters, 0.1, compute}});
  return {[optimizer] { optimizer->step(); }, {}};
}

// The matmul rows: linear(x [N, in], weight [out, in], bias) forward, 2 N in out flops, and its
// backward (dx and dweight: twice that; the bias gradient's sum is not counted).
void add_linear_rows(std::vector<KernelRow>& rows, const std::string& name, int64_t n, int64_t in, int64_t out,
                     bool bias, DType dtype, Device device) {
  const bool tf32 = dtype == DType::f32 && tf32_allowed();
  const std::string precision = tf32 ? "tf32" : dtype_name(dtype);
  const double ceiling = dtype == DType::f32 ? (tf32 ? kPeakTf32Tflops : kPeakFp32Tflops) : kPeakBf16Tflops;
  const std::string shape = str(n, " x ", in, " -> ", out);
  const double flops = 2.0 * n * in * out;
  auto inputs = [=](bool grad) {
    return std::vector<Tensor>{random_input({n, in}, dtype, device, grad), random_input({out, in}, dtype, device, grad),
                               bias ? random_input({out}, dtype, device, grad) : Tensor()};
  };
  rows.push_back({name + " fwd", shape, precision, CostUnit::flops, flops, ceiling, "-", [=] {
                    const std::vector<Tensor> x = inputs(false);
                    return KernelWork{[x] { linear(x[0], x[1], x[2]); }, {}};
                  }});
  rows.push_back({name + " bwd", shape, precision, CostUnit::flops, 2 * flops, ceiling, "-", [=] {
                    const std::vector<Tensor> x = inputs(true);
                    return KernelWork{backward_of(linear(x[0], x[1], x[2])), {}};
                  }});
}

// Forward and backward of `f`, the backward from the upstream gradient g: the autograd tape
// of a chain of ops, as training runs it, and nothing else (a sum(f() * g) to make a scalar
// would add four elementwise kernels, 0.1 ms at GPT-2's MLP shapes).
std::function<void()> forward_backward(std::function<Tensor()> f, const Tensor& g) {
  return [f, g] { f().backward(g); };
}

// The fused ops, each beside the unfused chain it replaces.
std::vector<KernelRow> fused_rows(const KernelBenchOptions& o) {
  const DType dt = o.dtype;
  const Device dev = o.device;
  const double s = static_cast<double>(dtype_bytes(dt, 1)), f32 = 4;
  const int64_t N = o.rows, C = o.model.n_embd, H = 4 * C, V = o.model.vocab_size;
  const double NC = static_cast<double>(N) * C;
  const bool tf32 = dt == DType::f32 && tf32_allowed();
  const std::string precision = tf32 ? "tf32" : dtype_name(dt);
  const double flops_ceiling = dt == DType::f32 ? (tf32 ? kPeakTf32Tflops : kPeakFp32Tflops) : kPeakBf16Tflops;
  auto x_of = [=](const Shape& shape, bool grad) { return random_input(shape, dt, dev, grad); };
  return {
      // x and branch read, their sum and its normalisation written, weight and bias read, mean
      // and rstd written in f32.
      {"add_layer_norm fwd", shape_text(N, C), dtype_name(dt), CostUnit::bytes, 4 * NC * s + 2 * C * s + 2 * N * f32,
       kCopyCeilingGBps, "add + layer_norm",
       [=] {
         Tensor x = x_of({N, C}, false), b = x_of({N, C}, false), w = x_of({C}, false), bias = x_of({C}, false);
         return KernelWork{[=] { add_layer_norm(x, b, w, bias); }, [=] { layer_norm(add(x, b), w, bias); }};
       }},
      // Two GEMMs of 2 N C H flops.
      {"mlp fwd", str(N, " x ", C, " -> ", H, " -> ", C), precision, CostUnit::flops, 4.0 * N * C * H, flops_ceiling,
       "linear + gelu + linear",
       [=] {
         Tensor x = x_of({N, C}, false), w1 = x_of({H, C}, false), b1 = x_of({H}, false), w2 = x_of({C, H}, false),
                b2 = x_of({C}, false);
         return KernelWork{[=] { mlp(x, w1, b1, w2, b2); }, [=] { linear(gelu(linear(x, w1, b1)), w2, b2); }};
       }},
#ifdef FLASHTRAIN_HAS_CUDA
      // The same op with cuBLASLt's epilogues turned off (plain products, then the bias, GELU
      // and their gradients as kernels): whether the epilogues pay on this GPU.
      {"mlp fwd+bwd, epilogues off", str(N, " x ", C, " -> ", H, " -> ", C), precision, CostUnit::flops,
       12.0 * N * C * H, flops_ceiling, "mlp fwd+bwd with epilogues",
       [=] {
         Tensor x = x_of({N, C}, true), w1 = x_of({H, C}, true), b1 = x_of({H}, true), w2 = x_of({C, H}, true),
                b2 = x_of({C}, true), g = x_of({N, C}, false);
         const std::function<void()> fused = forward_backward([=] { return mlp(x, w1, b1, w2, b2); }, g);
         return KernelWork{[=] {
                             kernels::set_cublaslt_epilogues_enabled(false);
                             fused();
                             kernels::set_cublaslt_epilogues_enabled(true);
                           },
                           fused};
       }},
#endif
      // Two GEMMs of 2 N C H flops forward, four backward.
      {"mlp fwd+bwd", str(N, " x ", C, " -> ", H, " -> ", C), precision, CostUnit::flops, 12.0 * N * C * H,
       flops_ceiling, "linear + gelu + linear",
       [=] {
         Tensor x = x_of({N, C}, true), w1 = x_of({H, C}, true), b1 = x_of({H}, true), w2 = x_of({C, H}, true),
                b2 = x_of({C}, true), g = x_of({N, C}, false);
         return KernelWork{forward_backward([=] { return mlp(x, w1, b1, w2, b2); }, g),
                           forward_backward([=] { return linear(gelu(linear(x, w1, b1)), w2, b2); }, g)};
       }},
      // The projection forward (2 N C V) and its two backward products (4 N C V).
      {"lm_head + cross_entropy fwd+bwd", str(N, " x ", C, " -> ", V), precision, CostUnit::flops, 6.0 * N * C * V,
       flops_ceiling, "linear + cross_entropy",
       [=] {
         Tensor h = x_of({N, C}, true), w = x_of({V, C}, true), t = random_ids(N, V, dev);
         return KernelWork{[=] { lm_head_cross_entropy(h, w, t).backward(); },
                           [=] { cross_entropy(linear(h, w, Tensor()), t).backward(); }};
       }},
  };
}

// Device-to-device copy bandwidth (bytes read + written per second) of a 1 GiB buffer: the
// bandwidth rows' roofline.
double measured_copy_gbps(Device device) {
  constexpr int64_t kBytes = int64_t{1} << 30;
  const Tensor from = Tensor::zeros({kBytes / 4}, DType::f32, device);
  const Tensor to = Tensor::empty({kBytes / 4}, DType::f32, device);
  return 2.0 * kBytes / (per_call_ms(device, [&] { to.copy_(from); }) * 1e-3) / 1e9;
}

// The command that repeats this run, every option spelled out.
std::string command_text(const KernelBenchOptions& o) {
  return str("flashtrain bench kernels --dtype ", dtype_name(o.dtype), " --rows ", o.rows, " --device ", o.device.str(),
             o.only.empty() ? "" : " --only '" + o.only + "'");
}

void check_options(const KernelBenchOptions& o) {
  FT_CHECK(o.dtype == DType::bf16 || o.dtype == DType::f32 || o.dtype == DType::f16, "bench kernels: --dtype ",
           dtype_name(o.dtype), ": expected bf16, f32 or f16");
  FT_CHECK(o.rows > 0 && o.rows % o.model.block_size == 0, "bench kernels: --rows ", o.rows,
           ": expected a positive multiple of the sequence length ", o.model.block_size,
           " (softmax runs at the attention shape [rows / T, heads, T, T])");
}

// Bandwidth rows in the options' dtype, in the order a training step runs them.
std::vector<KernelRow> bandwidth_rows(const KernelBenchOptions& o) {
  const DType dt = o.dtype;
  const Device dev = o.device;
  const std::string dtn = dtype_name(dt);
  const double s = static_cast<double>(dtype_bytes(dt, 1)), f32 = 4, i32 = 4;
  const int64_t N = o.rows, C = o.model.n_embd, H = 4 * C, V = o.model.vocab_size, T = o.model.block_size;
  const int64_t heads = o.model.n_head, B = N / T;
  const double NC = static_cast<double>(N) * C, NH = static_cast<double>(N) * H, NV = static_cast<double>(N) * V;
  const double scores = static_cast<double>(B) * heads * T * T;
  const int64_t P = gpt2_parameter_count(o.model);
  const std::string nc = shape_text(N, C);
  auto row = [&](const std::string& name, const std::string& shape, double bytes, std::function<KernelWork()> setup,
                 std::string baseline = "-") {
    return KernelRow{name, shape, dtn, CostUnit::bytes, bytes, kCopyCeilingGBps, std::move(baseline), std::move(setup)};
  };
  auto x_of = [=](const Shape& shape, bool grad) { return random_input(shape, dt, dev, grad); };
  std::vector<KernelRow> rows = {
      // ids read, the gathered rows read, the output written.
      row("embedding wte fwd", str(N, " ids, ", shape_text(V, C)), N * i32 + 2 * NC * s,
          [=] {
            Tensor ids = random_ids(N, V, dev), w = x_of({V, C}, false);
            return KernelWork{[=] { embedding(ids, w); }, {}};
          }),
      // ids and the output gradient read, the whole table's gradient written.
      row("embedding wte bwd", str(N, " ids, ", shape_text(V, C)), N * i32 + NC * s + double(V) * C * s,
          [=] {
            return KernelWork{backward_of(embedding(random_ids(N, V, dev), x_of({V, C}, true))), {}};
          }),
      row("embedding wpe fwd", str(N, " ids, ", shape_text(T, C)), N * i32 + 2 * NC * s,
          [=] {
            Tensor ids = position_ids(N, T, dev), w = x_of({T, C}, false);
            return KernelWork{[=] { embedding(ids, w); }, {}};
          }),
      row("embedding wpe bwd", str(N, " ids, ", shape_text(T, C)), N * i32 + NC * s + double(T) * C * s,
          [=] {
            return KernelWork{backward_of(embedding(position_ids(N, T, dev), x_of({T, C}, true))), {}};
          }),
      // x read, y written, weight and bias read; mean and rstd written in f32.
      row("layer_norm fwd", nc, 2 * NC * s + 2 * C * s + 2 * N * f32,
          [=] {
            Tensor x = x_of({N, C}, false), w = x_of({C}, false), b = x_of({C}, false);
            return KernelWork{[=] { layer_norm(x, w, b); }, {}};
          }),
      // dy and x read, dx written; weight read, dweight and dbias written; mean and rstd read.
      row("layer_norm bwd", nc, 3 * NC * s + 3 * C * s + 2 * N * f32,
          [=] {
            return KernelWork{backward_of(layer_norm(x_of({N, C}, true), x_of({C}, true), x_of({C}, true))), {}};
          }),
      // One head split of c_attn's [B, T, 3C] output into [B, H, T, D] (the strided gather that
      // makes a view contiguous): read once, written once.
      row("split heads copy", str(B, " x ", T, " x 3C -> ", B, " x ", heads, " x ", T, " x ", C / heads), 2 * NC * s,
          [=] {
            Tensor qkv = x_of({B, T, 3 * C}, false);
            Tensor q = transpose(reshape(slice(qkv, 2, 0, C), {B, T, heads, C / heads}), 1, 2);
            return KernelWork{[=] { q.contiguous(); }, {}};
          }),
      // Scores read, probabilities written.
      row("softmax fwd", str(B, " x ", heads, " x ", T, " x ", T), 2 * scores * s,
          [=] {
            Tensor x = x_of({B, heads, T, T}, false);
            return KernelWork{[=] { softmax(x); }, {}};
          }),
      // y and dy read, dx written.
      row("softmax bwd", str(B, " x ", heads, " x ", T, " x ", T), 3 * scores * s,
          [=] {
            return KernelWork{backward_of(softmax(x_of({B, heads, T, T}, true))), {}};
          }),
      // The residual add: two read, one written (its backward passes the gradient through).
      row("add", nc, 3 * NC * s,
          [=] {
            Tensor a = x_of({N, C}, false), b = x_of({N, C}, false);
            return KernelWork{[=] { add(a, b); }, {}};
          }),
      // x read, y written: the mask is recomputed from counters, never stored (the same backward).
      row(str("dropout fwd (p ", kDropoutP, ")"), nc, 2 * NC * s,
          [=] {
            Tensor x = x_of({N, C}, false);
            return KernelWork{[x, gen = Generator(5)]() mutable { dropout(x, kDropoutP, gen); }, {}};
          }),
      row(str("dropout bwd (p ", kDropoutP, ")"), nc, 2 * NC * s,
          [=] {
            Generator gen(5);
            return KernelWork{backward_of(dropout(x_of({N, C}, true), kDropoutP, gen)), {}};
          }),
      // x read, y written; its backward reads dy and x and writes dx.
      row("gelu fwd", shape_text(N, H), 2 * NH * s,
          [=] {
            Tensor x = x_of({N, H}, false);
            return KernelWork{[=] { gelu(x); }, {}};
          }),
      row("gelu bwd", shape_text(N, H), 3 * NH * s,
          [=] {
            return KernelWork{backward_of(gelu(x_of({N, H}, true))), {}};
          }),
      // Logits and targets read, each row's logsumexp written in f32.
      row("cross_entropy fwd", shape_text(N, V), NV * s + N * i32 + N * f32,
          [=] {
            Tensor logits = x_of({N, V}, false), targets = random_ids(N, V, dev);
            return KernelWork{[=] { cross_entropy(logits, targets); }, {}};
          }),
      // Logits, targets and logsumexp read, dlogits written.
      row("cross_entropy bwd", shape_text(N, V), 2 * NV * s + N * i32 + N * f32,
          [=] {
            return KernelWork{backward_of(cross_entropy(x_of({N, V}, true), random_ids(N, V, dev))), {}};
          }),
      // Every gradient read once (the per-block partial sums are negligible); the sum stays on
      // the device, where AdamW reads it, as in training.
      row("global_grad_norm", str(P, " params"), P * s,
          [=] {
            const std::vector<Tensor> params = parameters_with_grads(o.model, dt, dev);
            return KernelWork{[params] { grad_sum_of_squares(params); }, {}};
          }),
      // f32 whatever --dtype: parameter read and written, gradient read, both moments read and written.
      KernelRow{"adamw", str(P, " params"), "f32", CostUnit::bytes, 28.0 * P, kCopyCeilingGBps,
                "adamw, one tensor per launch", [=] { return adamw_work(o.model, dev); }},
  };
  // Master read and written, 16-bit gradient read, both moments read and written, 16-bit copy written.
  if (dt != DType::f32)
    rows.push_back(row(str("adamw, ", dtype_name(dt), " gradients into f32 masters"), str(P, " params"),
                       (24 + 2 * s) * P, [=] { return mixed_adamw_work(o.model, dt, dev); }));
  return rows;
}

}  // namespace

std::vector<KernelRow> kernel_rows(const KernelBenchOptions& o) {
  check_options(o);
  std::vector<KernelRow> all = bandwidth_rows(o);
  const int64_t N = o.rows, C = o.model.n_embd;
  add_linear_rows(all, "linear c_attn", N, C, 3 * C, true, o.dtype, o.device);
  add_linear_rows(all, "linear mlp fc", N, C, 4 * C, true, o.dtype, o.device);
  add_linear_rows(all, "linear mlp proj", N, 4 * C, C, true, o.dtype, o.device);
  // The LM head is not a plain linear row: training computes it inside lm_head_cross_entropy
  // (a fused row below), whose logits buffer pads each row to an aligned stride. A plain
  // [N, 50257] output has rows that are not 16-byte aligned, which leaves cuBLAS on slow kernels.
  for (KernelRow& r : fused_rows(o)) all.push_back(std::move(r));
  std::vector<KernelRow> chosen;
  std::string names;
  for (KernelRow& r : all) names += (names.empty() ? "" : ", ") + r.name;
  // A row named exactly `only` is chosen alone ("mlp fwd+bwd" without its "epilogues off" twin).
  const auto exact = std::find_if(all.begin(), all.end(), [&](const KernelRow& r) { return r.name == o.only; });
  if (exact != all.end()) {
    chosen.push_back(std::move(*exact));
    return chosen;
  }
  for (KernelRow& r : all)
    if (r.name.find(o.only) != std::string::npos) chosen.push_back(std::move(r));
  FT_CHECK(!chosen.empty(), "bench kernels: --only '", o.only, "' matches no kernel (the kernels: ", names, ")");
  return chosen;
}

std::string kernel_table_head() {
  return "| kernel | shape | dtype | time (ms) | achieved | % of roofline | baseline | baseline time (ms) | speedup |\n"
         "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |\n";
}

std::string kernel_table_line(const KernelRow& row, const KernelTiming& t) {
  const double per_second = row.cost / (t.ms * 1e-3);
  const double achieved = row.unit == CostUnit::bytes ? per_second / 1e9 : per_second / 1e12;
  const std::string figure =
      row.unit == CostUnit::bytes ? format("%.0f GB/s", achieved) : format("%.1f TFLOP/s", achieved);
  const bool has_baseline = t.baseline_ms > 0;
  return str("| ", row.name, " | ", row.shape, " | ", row.dtype, " | ", format("%.4f", t.ms), " | ", figure, " | ",
             format("%.0f%%", 100 * achieved / row.ceiling), " | ", row.baseline, " | ",
             has_baseline ? format("%.4f", t.baseline_ms) : "-", " | ",
             has_baseline ? format("%.2fx", t.baseline_ms / t.ms) : "-", " |\n");
}

void bench_kernels(const KernelBenchOptions& o, std::ostream& out) {
  std::vector<KernelRow> rows = kernel_rows(o);
  const std::string device = gpu_name(o.device, "bench kernels");
  const double copy_gbps = measured_copy_gbps(o.device);
  out << local_date() << ", " << o.device.str() << " (" << device << ")\n"
      << command_text(o) << "\n"
      << "device-to-device copy: " << format("%.0f", copy_gbps) << " GB/s measured now, the bandwidth rows' roofline"
      << "\n\n"
      << kernel_table_head() << std::flush;
  for (KernelRow& row : rows) {
    if (row.unit == CostUnit::bytes) row.ceiling = copy_gbps;
    KernelTiming timing;
    {
      const KernelWork work = row.setup();
      timing.ms = per_call_ms(o.device, work.run);
      if (work.baseline) timing.baseline_ms = per_call_ms(o.device, work.baseline);
    }  // the row's tensors go back to the cache before the next row allocates
    out << kernel_table_line(row, timing) << std::flush;
  }
}

}  // namespace ft::bench
