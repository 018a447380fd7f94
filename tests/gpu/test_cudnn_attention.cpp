// cuDNN's fused attention (kernels/cudnn_attention, attention: cudnn) against attention_cpu.h in
// f64 from the same rounded inputs: out, lse, dq, dk, dv in bf16 and f16, head dims 64 and 128,
// causal and bidirectional, sequence lengths on and off 64; operands read and written in place
// through the strides the ops hand the kernel (heads-last; q, k, v interleaved in c_attn's output
// and dq, dk, dv likewise in their gradient, as attention_packed_qkv lays them out), at GPT-2's
// 16 x 12 heads; the ops (attention, attention_packed_qkv) through autograd against kernel math;
// the launchers' errors. A build without cuDNN checks instead that the ops refuse the kernel by
// name.
#include <doctest/doctest.h>

#include "framework/autograd.h"
#include "framework/cuda/context.h"
#include "framework/ops.h"
#include "tests/gpu/attention_test_support.h"
#ifdef FLASHTRAIN_HAS_CUDNN
#include "kernels/cudnn_attention/cudnn_attention.h"
#endif

using namespace ft;
using namespace ft::testing;

#ifdef FLASHTRAIN_HAS_CUDNN
namespace {

constexpr DType kCudnnDTypes[] = {DType::bf16, DType::f16};

Tensor workspace(size_t bytes) { return Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, kGpu); }
void* data_or_null(const Tensor& t) { return t.numel() > 0 ? t.raw_data() : nullptr; }

// The forward, then the backward from d_out, straight through the launchers.
AttentionResults run_cudnn(const AttentionProblem& p, const AttentionInputs& in, DType dtype, Layout layout) {
  const kernels::AttentionShape& s = p.shape;
  const AttentionOperands x = place(in, s, dtype, layout);
  const AttentionResults& r = x.results;
  const kernels::CudnnAttentionForward forward{
      s, dtype, p.causal, 0, strides_of(x.q), strides_of(x.k), strides_of(x.v), strides_of(r.out)};
  const kernels::CudnnAttentionBackward backward{forward, strides_of(x.d_out), strides_of(r.dq), strides_of(r.dk),
                                                 strides_of(r.dv)};
  const float scale = default_scale(s);
  cudaStream_t stream = cuda::context(0).stream;
  const Tensor forward_space = workspace(kernels::cudnn_attention_forward_workspace(forward));
  kernels::cudnn_attention_forward(forward, scale, x.q.raw_data(), x.k.raw_data(), x.v.raw_data(), r.out.raw_data(),
                                   r.lse.data<float>(), data_or_null(forward_space), stream);
  const Tensor backward_space = workspace(kernels::cudnn_attention_backward_workspace(backward));
  kernels::cudnn_attention_backward(backward, scale, x.q.raw_data(), x.k.raw_data(), x.v.raw_data(), r.out.raw_data(),
                                    x.d_out.raw_data(), r.lse.data<float>(), r.dq.raw_data(), r.dk.raw_data(),
                                    r.dv.raw_data(), data_or_null(backward_space), stream);
  return r;
}

void check_against_cpu(const AttentionProblem& p, DType dtype, uint64_t seed, Layout layout) {
  const AttentionInputs in = random_attention_inputs(p.shape, dtype, seed);
  check_attention_results(run_cudnn(p, in, dtype, layout), reference_attention(p, in), dtype);
}

}  // namespace

TEST_CASE("cudnn attention against the f64 reference: head dims 64 and 128, causal or not, T on and off 64") {
  MESSAGE(kernels::cudnn_library_version());
  cuda::set_poison_allocations(true);
  uint64_t seed = 1;
  for (DType dtype : kCudnnDTypes)
    for (int64_t head_dim : {64, 128})
      for (bool causal : {true, false})
        for (int64_t seq_len : {17, 64, 100, 1000}) {
          CAPTURE(dtype_text(dtype));
          CAPTURE(head_dim);
          CAPTURE(causal);
          CAPTURE(seq_len);
          check_against_cpu({{2, 3, seq_len, head_dim}, causal, {}}, dtype, seed += 4, Layout::packed);
        }
}

TEST_CASE("cudnn attention reads and writes its operands in place: heads-last, and side by side in [B, T, 3C]") {
  cuda::set_poison_allocations(true);
  uint64_t seed = 300;
  for (Layout layout : {Layout::heads_last, Layout::packed_qkv})
    for (int64_t head_dim : {64, 128})
      for (bool causal : {true, false}) {
        CAPTURE(layout_name(layout));
        CAPTURE(head_dim);
        CAPTURE(causal);
        check_against_cpu({{2, 3, 1000, head_dim}, causal, {}}, DType::bf16, seed += 4, layout);
      }
}

TEST_CASE("cudnn attention at GPT-2's shape: 16 x 12 heads of 64 at T = 1024, causal, as the model lays it out") {
  cuda::set_poison_allocations(true);
  check_against_cpu({{16, 12, 1024, 64}, true, {}}, DType::bf16, 500, Layout::packed_qkv);
}

TEST_CASE("attention: kernel cudnn matches kernel math through autograd, on q, k, v split from one qkv") {
  cuda::set_poison_allocations(true);
  const int64_t batch = 2, heads = 3, seq_len = 1000;
  uint64_t seed = 700;
  for (int64_t head_dim : {64, 128}) {
    CAPTURE(head_dim);
    const int64_t width = heads * head_dim;
    const Tensor qkv = random_twin({batch, seq_len, 3 * width}, DType::bf16, ++seed).gpu;
    const Tensor upstream = random_twin({batch, seq_len, width}, DType::bf16, ++seed).gpu;
    // out merged back to [B, T, C] and qkv's gradient, as GPT-2's attention branch makes them.
    auto run = [&](AttentionKernel kernel) {
      const Tensor x = leaf(qkv, DType::bf16, kGpu);
      auto split = [&](int64_t part) {
        return transpose(reshape(slice(x, 2, part * width, (part + 1) * width), {batch, seq_len, heads, head_dim}), 1,
                         2);
      };
      AttentionOptions options;
      options.kernel = kernel;
      const Tensor out = attention(split(0), split(1), split(2), options);
      if (kernel == AttentionKernel::cudnn)  // heads-last: the merge below is a view
        CHECK(out.strides() == Shape{seq_len * width, head_dim, width, 1});
      const Tensor merged = reshape(transpose(out, 1, 2), {batch, seq_len, width});
      weighted_sum(merged, upstream).backward();
      return std::vector<Tensor>{merged.detach(), x.grad()};
    };
    const std::vector<Tensor> cudnn = run(AttentionKernel::cudnn), math = run(AttentionKernel::math);
    // Each is within bf16's 1e-2 of the f64 truth (above, and test_attention for math); they
    // round P and dS at different points, so they are held to each other with the same bound.
    CHECK(gpu_error(cudnn[0], math[0]) < tolerance(DType::bf16));
    REQUIRE(cudnn[1].defined());
    CHECK(gpu_error(cudnn[1], math[1]) < tolerance(DType::bf16));
  }
}

TEST_CASE("attention_packed_qkv: kernel cudnn matches kernel math through autograd, in one node on qkv in place") {
  cuda::set_poison_allocations(true);
  const int64_t batch = 2, heads = 3, seq_len = 1000;
  uint64_t seed = 800;
  for (int64_t head_dim : {64, 128})
    for (bool causal : {true, false}) {
      CAPTURE(head_dim);
      CAPTURE(causal);
      const int64_t width = heads * head_dim;
      const Tensor qkv = random_twin({batch, seq_len, 3 * width}, DType::bf16, ++seed).gpu;
      const Tensor upstream = random_twin({batch, seq_len, width}, DType::bf16, ++seed).gpu;
      AttentionOptions options;
      options.causal = causal;
      check_packed_against_math(run_packed_qkv(qkv, upstream, heads, options, AttentionKernel::cudnn),
                                run_packed_qkv(qkv, upstream, heads, options, AttentionKernel::math), DType::bf16);
    }
}

TEST_CASE("cudnn attention launchers reject other head dims and misaligned operands before touching cuDNN") {
  const kernels::AttentionShape shape{1, 1, 8, 64};
  const Tensor x = Tensor::empty(qkv_shape(shape), DType::bf16, kGpu);
  const Tensor lse = Tensor::empty(row_shape(shape), DType::f32, kGpu);
  const kernels::AttentionStrides packed = kernels::packed_attention_strides(shape);
  const char* p = static_cast<const char*>(x.raw_data());
  const kernels::CudnnAttentionForward narrow{{1, 1, 8, 32}, DType::bf16, true, 0, packed, packed, packed, packed};
  CHECK_THROWS_WITH(kernels::cudnn_attention_forward_workspace(narrow),
                    doctest::Contains("cudnn_attention_forward: head_dim 32 is not supported (64 or 128)"));
  const kernels::CudnnAttentionForward forward{shape, DType::bf16, true, 0, packed, packed, packed, packed};
  CHECK_THROWS_WITH(kernels::cudnn_attention_forward(forward, 1.0f, p + 2, p, p, x.raw_data(), lse.data<float>(),
                                                     nullptr, cuda::context(0).stream),
                    doctest::Contains("cudnn_attention_forward: q needs unit stride along head_dim, other strides "
                                      "positive multiples of 8 elements and 16-byte aligned data"));
  const kernels::AttentionStrides odd{8 * 64, 8 * 64, 65, 1};
  const kernels::CudnnAttentionForward odd_rows{shape, DType::bf16, true, 0, packed, odd, packed, packed};
  CHECK_THROWS_WITH(kernels::cudnn_attention_forward(odd_rows, 1.0f, p, p, p, x.raw_data(), lse.data<float>(), nullptr,
                                                     cuda::context(0).stream),
                    doctest::Contains("cudnn_attention_forward: k needs unit stride"));
}

#else

TEST_CASE("a build without cuDNN refuses attention: cudnn by name") {
  const Tensor q = Tensor::zeros({1, 1, 8, 64}, DType::bf16, kGpu);
  AttentionOptions options;
  options.kernel = AttentionKernel::cudnn;
  CHECK_THROWS_WITH(attention(q, q, q, options), doctest::Contains("attention: kernel cudnn is not in this build"));
  const Tensor qkv = Tensor::zeros({1, 8, 3 * 64}, DType::bf16, kGpu);
  CHECK_THROWS_WITH(attention_packed_qkv(qkv, 1, options),
                    doctest::Contains("attention: kernel cudnn is not in this build"));
}

#endif
