// attention's "math" form on CUDA (batched products around the masked softmax) against the CPU
// in f64 from the same inputs, forward and backward (dq, dk, dv), in f32 (TF32 off, then on),
// bf16 and f16: GPT-2's shape, causal and bidirectional, packed segments with padding (whose
// queries see nothing and output exact zeros), odd sizes and a custom scale. Then the flash
// kernel against math on the same inputs, through autograd as the models use it: on heads split
// from separate projections (DistilBERT), whose results and gradients come back heads-last so the
// splits and merges around it are views, and through attention_packed_qkv (GPT-2), one node on
// c_attn's output, bit for bit what the composition with flash gives, also when its operands must
// be copied first.
#include <doctest/doctest.h>

#include <random>

#include "tests/gpu/attention_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

// Segment ids of packed rows: documents of random lengths numbered from 0, then `padding`
// tokens of id -1 at the end of each row.
Twin packed_segments(int64_t batch, int64_t seq_len, int64_t padding, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> length(1, static_cast<int32_t>(std::max<int64_t>(seq_len / 4, 1)));
  std::vector<int32_t> ids;
  for (int64_t b = 0; b < batch; ++b) {
    int32_t id = -1, left = 0;
    for (int64_t t = 0; t < seq_len; ++t) {
      if (t >= seq_len - padding) {
        ids.push_back(-1);
        continue;
      }
      if (left == 0) {
        left = length(rng);
        ++id;
      }
      ids.push_back(id);
      --left;
    }
  }
  return int_twin(ids, {batch, seq_len});
}

struct Mask {
  bool causal;
  const Twin* segments;  // null: none
  double scale = 0.0;
};

OpFn attention_fn(const Mask& mask) {
  return [mask](const std::vector<Tensor>& x) {
    AttentionOptions options;
    options.causal = mask.causal;
    options.scale = mask.scale;
    if (mask.segments) options.segment_ids = x[0].device().is_cuda() ? mask.segments->gpu : mask.segments->cpu;
    return attention(x[0], x[1], x[2], options);
  };
}

OpErrors compare_attention(const Shape& shape, const Mask& mask, DType dtype, uint64_t seed) {
  return compare_with_cpu(
      attention_fn(mask),
      {random_twin(shape, dtype, seed), random_twin(shape, dtype, seed + 1), random_twin(shape, dtype, seed + 2)},
      dtype, seed + 3);
}

// out, dq, dk, dv of one kernel against another's, each within bf16's bound.
void check_out_and_gradients(const std::vector<Tensor>& kernel, const std::vector<Tensor>& reference) {
  const char* names[] = {"out", "dq", "dk", "dv"};
  REQUIRE(kernel.size() == reference.size());
  for (size_t i = 0; i < kernel.size(); ++i) {
    CAPTURE(names[i]);
    REQUIRE(kernel[i].defined());
    CHECK(gpu_error(kernel[i], reference[i]) < tolerance(DType::bf16));
  }
}

}  // namespace

TEST_CASE("attention at GPT-2's shape: causal, bidirectional, packed segments with padding") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  const Shape shape{2, 12, 1024, 64};
  const Twin segments = packed_segments(2, 1024, 100, 1);
  uint64_t seed = 10;
  for (DType dtype : kGpuDTypes)
    for (const Mask& mask :
         {Mask{true, nullptr}, Mask{false, nullptr}, Mask{true, &segments}, Mask{false, &segments}}) {
      CAPTURE(dtype_text(dtype));
      CAPTURE(mask.causal);
      CAPTURE(mask.segments != nullptr);
      check_errors(compare_attention(shape, mask, dtype, seed += 4), tolerance(dtype));
    }
}

TEST_CASE("attention with TF32 products stays within TF32's bound") {
  cuda::set_poison_allocations(true);
  AllowTf32 tf32(true);
  check_errors(compare_attention({2, 12, 1024, 64}, {true, nullptr}, DType::f32, 50), kTf32Bound);
}

TEST_CASE("attention: odd sizes and a custom scale") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  const Shape shapes[] = {{1, 1, 1, 1}, {1, 1, 1, 64}, {2, 3, 5, 8}, {1, 2, 33, 16}, {2, 1, 127, 24}, {1, 2, 1023, 32}};
  uint64_t seed = 100;
  for (DType dtype : kGpuDTypes)
    for (const Shape& shape : shapes) {
      const Twin segments = packed_segments(shape[0], shape[2], shape[2] / 5, seed);
      for (const Mask& mask :
           {Mask{true, nullptr}, Mask{false, nullptr, 0.3}, Mask{true, &segments}, Mask{false, &segments, 0.7}}) {
        CAPTURE(dtype_text(dtype));
        CAPTURE(shape_str(shape));
        CAPTURE(mask.causal);
        CAPTURE(mask.segments != nullptr);
        check_errors(compare_attention(shape, mask, dtype, seed += 4), tolerance(dtype));
      }
    }
}

TEST_CASE("attention: padding queries see no key, so their outputs and dq are exactly zero") {
  cuda::set_poison_allocations(true);
  const int64_t batch = 2, heads = 3, seq_len = 40, head_dim = 16, padding = 7;
  const Twin segments = packed_segments(batch, seq_len, padding, 3);
  for (DType dtype : kGpuDTypes)
    for (bool causal : {true, false}) {
      CAPTURE(dtype_text(dtype));
      CAPTURE(causal);
      std::vector<Tensor> qkv;
      for (uint64_t seed : {10, 11, 12}) qkv.push_back(random_twin({batch, heads, seq_len, head_dim}, dtype, seed).gpu);
      const OpRun run = run_with_gradients(attention_fn({causal, &segments}), qkv, dtype, 13, {});
      const std::vector<double> out = run.out.to_double_vector(), dq = run.grads[0].to_double_vector();
      for (int64_t row = 0; row < batch * heads * seq_len; ++row) {
        if (row % seq_len < seq_len - padding) continue;
        for (int64_t d = 0; d < head_dim; ++d) {
          CHECK(out[row * head_dim + d] == 0);
          CHECK(dq[row * head_dim + d] == 0);
        }
      }
    }
}

TEST_CASE("attention on CUDA rejects segment ids on another device and f64") {
  Tensor q = Tensor::zeros({1, 2, 3, 4}, DType::f32, kGpu);
  AttentionOptions cpu_ids;
  cpu_ids.segment_ids = Tensor::from_ints({0, 0, 0}, {1, 3});
  CHECK_THROWS_WITH(attention(q, q, q, cpu_ids),
                    doctest::Contains("attention: device mismatch: q f32[1, 2, 3, 4] on cuda:0 and segment_ids "
                                      "i32[1, 3] on cpu"));
  Tensor q64 = q.to(DType::f64);
  CHECK_THROWS_WITH(attention(q64, q64, q64), doctest::Contains("attention: dtype f64 is not supported on cuda"));
}

TEST_CASE("attention: kernel flash matches kernel math through autograd (bf16, causal, packed with padding)") {
  cuda::set_poison_allocations(true);
  const int64_t batch = 2, heads = 3, seq_len = 1000;  // not a multiple of any tile
  const Twin segments = packed_segments(batch, seq_len, 100, 7);
  uint64_t seed = 200;
  for (int64_t head_dim : {64, 128}) {
    CAPTURE(head_dim);
    const Shape shape{batch, heads, seq_len, head_dim};
    const Tensor q = random_twin(shape, DType::bf16, ++seed).gpu, k = random_twin(shape, DType::bf16, ++seed).gpu,
                 v = random_twin(shape, DType::bf16, ++seed).gpu,
                 upstream = random_twin(shape, DType::bf16, ++seed).gpu;
    // out, dq, dk, dv of one kernel; the loss sum(out * upstream) feeds the node `upstream`.
    auto run = [&](AttentionKernel kernel) {
      std::vector<Tensor> leaves{leaf(q, DType::bf16, kGpu), leaf(k, DType::bf16, kGpu), leaf(v, DType::bf16, kGpu)};
      AttentionOptions options;
      options.segment_ids = segments.gpu;
      options.kernel = kernel;
      const Tensor out = attention(leaves[0], leaves[1], leaves[2], options);
      weighted_sum(out, upstream).backward();
      return std::vector<Tensor>{out.detach(), leaves[0].grad(), leaves[1].grad(), leaves[2].grad()};
    };
    // Each is within bf16's 1e-2 of the f64 truth (above and test_flash_attention); they round
    // P and dS at different points, so they are held to each other with the same bound.
    check_out_and_gradients(run(AttentionKernel::flash), run(AttentionKernel::math));
  }
}

namespace {

// [B, T, H * D] -> [B, H, T, D] and back, as DistilBERT splits and merges heads.
Tensor split_heads(const Tensor& x, int64_t heads) {
  return transpose(reshape(x, {x.size(0), x.size(1), heads, x.size(2) / heads}), 1, 2);
}
Tensor merge_heads(const Tensor& x) {
  return reshape(transpose(x, 1, 2), {x.size(0), x.size(2), x.size(1) * x.size(3)});
}

bool same_storage(const Tensor& a, const Tensor& b) { return a.storage().get() == b.storage().get(); }

}  // namespace

TEST_CASE(
    "attention: kernel flash on heads split from [B, T, C] projections reads them in place, and its results "
    "and gradients are heads-last, so splitting and merging the heads are views") {
  cuda::set_poison_allocations(true);
  const int64_t batch = 2, heads = 3, seq_len = 1000, head_dim = 64, width = heads * head_dim;
  const Twin segments = packed_segments(batch, seq_len, 100, 11);
  uint64_t seed = 900;
  std::vector<Tensor> projections;
  for (int i = 0; i < 3; ++i) projections.push_back(random_twin({batch, seq_len, width}, DType::bf16, ++seed).gpu);
  const Tensor upstream = random_twin({batch, seq_len, width}, DType::bf16, ++seed).gpu;
  // The merged out and the three projections' gradients.
  auto run = [&](AttentionKernel kernel) {
    std::vector<Tensor> x;
    for (const Tensor& p : projections) x.push_back(leaf(p, DType::bf16, kGpu));
    AttentionOptions options;
    options.causal = false;
    options.segment_ids = segments.gpu;
    options.kernel = kernel;
    const Tensor out = attention(split_heads(x[0], heads), split_heads(x[1], heads), split_heads(x[2], heads), options);
    const Tensor merged = merge_heads(out);
    if (kernel == AttentionKernel::flash) {
      CHECK(out.strides() == Shape{seq_len * width, head_dim, width, 1});
      CHECK(same_storage(merged, out));
      // The gradients the node gives for the upstream gradient autograd hands it (merge_heads'
      // backward of a contiguous [B, T, C] gradient: a view), heads-last, so split_heads'
      // backward merges them back without a copy.
      NoGradGuard no_grad;
      const Node& node = *out.grad_fn();
      const std::vector<Tensor> grads = node.backward(split_heads(upstream, heads), node.needs);
      for (const Tensor& g : grads) {
        CHECK(g.strides() == Shape{seq_len * width, head_dim, width, 1});
        CHECK(same_storage(merge_heads(g), g));
      }
    }
    weighted_sum(merged, upstream).backward();
    return std::vector<Tensor>{merged.detach(), x[0].grad(), x[1].grad(), x[2].grad()};
  };
  check_out_and_gradients(run(AttentionKernel::flash), run(AttentionKernel::math));
}

TEST_CASE("attention_packed_qkv: kernel flash matches kernel math through autograd, in one node on qkv in place") {
  cuda::set_poison_allocations(true);
  const int64_t batch = 2, heads = 3, seq_len = 1000;
  const Twin segments = packed_segments(batch, seq_len, 100, 13);
  uint64_t seed = 1000;
  for (int64_t head_dim : {64, 128})
    for (bool causal : {true, false})
      for (bool packed : {false, true}) {
        CAPTURE(head_dim);
        CAPTURE(causal);
        CAPTURE(packed);
        const int64_t width = heads * head_dim;
        const Tensor qkv = random_twin({batch, seq_len, 3 * width}, DType::bf16, ++seed).gpu;
        const Tensor upstream = random_twin({batch, seq_len, width}, DType::bf16, ++seed).gpu;
        AttentionOptions options;
        options.causal = causal;
        if (packed) options.segment_ids = segments.gpu;
        check_packed_against_math(run_packed_qkv(qkv, upstream, heads, options, AttentionKernel::flash),
                                  run_packed_qkv(qkv, upstream, heads, options, AttentionKernel::math), DType::bf16);
      }
}

TEST_CASE(
    "attention_packed_qkv with kernel flash gives bit for bit what the composition with flash gives, run "
    "after run, and from operands it must copy first") {
  cuda::set_poison_allocations(true);
  const int64_t batch = 2, heads = 3, seq_len = 1000;
  const Twin segments = packed_segments(batch, seq_len, 100, 17);
  uint64_t seed = 1100;
  for (int64_t head_dim : {64, 128}) {
    CAPTURE(head_dim);
    const int64_t width = heads * head_dim;
    const Tensor qkv = random_twin({batch, seq_len, 3 * width}, DType::bf16, ++seed).gpu;
    const Tensor upstream = random_twin({batch, seq_len, width}, DType::bf16, ++seed).gpu;
    AttentionOptions options;
    options.segment_ids = segments.gpu;
    options.kernel = AttentionKernel::flash;
    // The composition GPT-2 used before attention_packed_qkv: slices of qkv split into heads,
    // attention, the heads merged back; slice's backward pads each gradient with zeros and the
    // three are summed, which adds only zeros.
    const Tensor x = leaf(qkv, DType::bf16, kGpu);
    auto split = [&](int64_t part) { return split_heads(slice(x, 2, part * width, (part + 1) * width), heads); };
    const Tensor composed = merge_heads(attention(split(0), split(1), split(2), options));
    weighted_sum(composed, upstream).backward();

    const PackedRun first = run_packed_qkv(qkv, upstream, heads, options, AttentionKernel::flash);
    const PackedRun second = run_packed_qkv(qkv, upstream, heads, options, AttentionKernel::flash);
    // Every row of a qkv one element into its storage is misaligned: the op copies q, k, v and
    // must still give the same bits.
    const PackedRun copied = run_packed_qkv(misaligned_copy(qkv), upstream, heads, options, AttentionKernel::flash);
    CHECK(first.op == "attention_packed_qkv");
    const std::vector<double> out = composed.to_double_vector(), d_qkv = x.grad().to_double_vector();
    for (const PackedRun* run : {&first, &second, &copied}) {
      REQUIRE(run->d_qkv.defined());
      CHECK(run->out.to_double_vector() == out);
      CHECK(run->d_qkv.to_double_vector() == d_qkv);
    }
  }
}

TEST_CASE("attention: kernel flash on misaligned q, k, v copies them first and gives the same bits") {
  cuda::set_poison_allocations(true);
  const Shape shape{2, 3, 100, 64};
  const Tensor q = random_twin(shape, DType::bf16, 1200).gpu, k = random_twin(shape, DType::bf16, 1201).gpu,
               v = random_twin(shape, DType::bf16, 1202).gpu, upstream = random_twin(shape, DType::bf16, 1203).gpu;
  auto run = [&](const std::vector<Tensor>& inputs) {
    std::vector<Tensor> leaves;
    for (const Tensor& t : inputs) leaves.push_back(leaf(t, DType::bf16, kGpu));
    AttentionOptions options;
    options.kernel = AttentionKernel::flash;
    const Tensor out = attention(leaves[0], leaves[1], leaves[2], options);
    weighted_sum(out, upstream).backward();
    return std::vector<Tensor>{out.detach(), leaves[0].grad(), leaves[1].grad(), leaves[2].grad()};
  };
  const std::vector<Tensor> aligned = run({q, k, v});
  const std::vector<Tensor> copied = run({misaligned_copy(q), misaligned_copy(k), misaligned_copy(v)});
  for (size_t i = 0; i < aligned.size(); ++i) {
    CAPTURE(i);
    CHECK(aligned[i].to_double_vector() == copied[i].to_double_vector());
  }
}
