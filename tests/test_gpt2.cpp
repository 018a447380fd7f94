// GPT-2 built from framework ops: shapes, causality, packed rows equal to separate documents,
// rotary positions, dropout only in training, and sampling.
#include <doctest/doctest.h>

#include "framework/autograd.h"
#include "models/gpt2/generate.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using models::Gpt2;
using models::Gpt2Batch;
using models::Gpt2Config;

namespace {

Gpt2Config small(bool rotary = false) {
  Gpt2Config c{40, 16, 2, 2, 16};
  c.rotary = rotary;
  return c;
}

std::vector<double> row_logits(const Tensor& logits, int64_t b, int64_t t0, int64_t t1) {
  return slice(slice(logits, 0, b, b + 1), 1, t0, t1).contiguous().to_double_vector();
}

}  // namespace

TEST_CASE("gpt2: sizes, parameters and initialisation") {
  Generator init(1);
  Gpt2 model(small(), init);
  // wte 40x16, wpe 16x16, per layer 12 C^2 + 13 C, final norm 2C.
  const int64_t c = 16;
  CHECK(model.parameter_count() == 40 * c + 16 * c + 2 * (12 * c * c + 13 * c) + 2 * c);
  CHECK(model.forward(Tensor::from_ints(std::vector<int32_t>(10, 3), {2, 5})).shape() == Shape{2, 5, 40});
  CHECK(models::gpt2_config("gpt2-124m").n_embd == 768);
  CHECK_THROWS_WITH(models::gpt2_config("gpt5"), doctest::Contains("unknown GPT-2 size 'gpt5'"));
  CHECK_THROWS_WITH(model.forward(Tensor::from_ints(std::vector<int32_t>(17, 1), {1, 17})),
                    doctest::Contains("sequence length 17 exceeds block_size 16"));
  for (const NamedParameter& p : model.parameters()) {
    CHECK(p.tensor.requires_grad());
    CHECK(p.weight_decay ==
          (p.tensor.dim() == 2 && p.name.find("wte") == std::string::npos && p.name.find("wpe") == std::string::npos));
  }
}

TEST_CASE("gpt2: a token never sees the future") {
  Generator init(2);
  for (bool rotary : {false, true}) {
    Gpt2 model(small(rotary), init);
    std::vector<int32_t> a = {1, 5, 9, 2, 7, 3}, b = a;
    b[4] = 30;  // change position 4: logits of positions 0-3 must not move
    Tensor la = model.forward(Tensor::from_ints(a, {1, 6})), lb = model.forward(Tensor::from_ints(b, {1, 6}));
    CHECK(row_logits(la, 0, 0, 4) == row_logits(lb, 0, 0, 4));
    CHECK(row_logits(la, 0, 4, 6) != row_logits(lb, 0, 4, 6));
  }
}

TEST_CASE("gpt2: a packed row equals its documents run one at a time") {
  Generator init(3);
  for (bool rotary : {false, true}) {
    Gpt2 model(small(rotary), init);
    std::vector<int32_t> doc1 = {4, 8, 15}, doc2 = {16, 23, 42 % 40, 7};
    std::vector<int32_t> packed = doc1;
    packed.insert(packed.end(), doc2.begin(), doc2.end());
    Gpt2Batch batch{Tensor::from_ints(packed, {1, 7}), Tensor::from_ints({0, 1, 2, 0, 1, 2, 3}, {1, 7}),
                    Tensor::from_ints({0, 0, 0, 1, 1, 1, 1}, {1, 7})};
    Tensor together = model.forward(batch);
    std::vector<double> one = model.forward(Tensor::from_ints(doc1, {1, 3})).to_double_vector();
    std::vector<double> two = model.forward(Tensor::from_ints(doc2, {1, 4})).to_double_vector();
    CHECK(ft::testing::relative_error(row_logits(together, 0, 0, 3), one) < 1e-6);
    CHECK(ft::testing::relative_error(row_logits(together, 0, 3, 7), two) < 1e-6);
  }
}

TEST_CASE("gpt2: dropout only with a generator, reproducible from its state") {
  Gpt2Config c = small();
  c.dropout = 0.2;
  Generator init(4);
  Gpt2 model(c, init);
  Tensor ids = Tensor::from_ints({1, 2, 3, 4}, {1, 4});
  CHECK(model.forward(ids).to_double_vector() == model.forward(ids).to_double_vector());
  Generator g1(9), g2(9);
  std::vector<double> train1 = model.forward(Gpt2Batch{ids, {}, {}}, &g1).to_double_vector();
  CHECK(train1 == model.forward(Gpt2Batch{ids, {}, {}}, &g2).to_double_vector());
  CHECK(train1 != model.forward(ids).to_double_vector());
}

TEST_CASE("gpt2: gradients reach every parameter") {
  Generator init(5);
  Gpt2 model(small(), init);
  Tensor logits = model.forward(Tensor::from_ints({1, 2, 3, 4, 5, 6}, {2, 3}));
  cross_entropy(reshape(logits, {6, 40}), Tensor::from_ints({2, 3, 4, 5, 6, 7}, {6})).backward();
  for (const NamedParameter& p : model.parameters()) {
    CAPTURE(p.name);
    REQUIRE(p.tensor.grad().defined());
    CHECK(p.tensor.grad().shape() == p.tensor.shape());
  }
}

TEST_CASE("gpt2: the fused loss equals cross_entropy of the logits, with the same gradients") {
  for (bool recompute : {false, true}) {
    CAPTURE(recompute);
    Gpt2Config c = small();
    c.recompute_gelu = recompute;
    Generator init(8);
    Gpt2 model(c, init, DType::f64);
    const Tensor ids = Tensor::from_ints({1, 2, 3, 4, 5, 6}, {2, 3});
    const Tensor targets = Tensor::from_ints({2, 3, -100, 5, 6, 39}, {2, 3});
    Tensor reference = cross_entropy(reshape(model.forward(ids), {6, 40}), reshape(targets, {6}));
    reference.backward();
    std::vector<std::vector<double>> reference_grads;
    for (const NamedParameter& p : model.parameters()) {
      reference_grads.push_back(p.tensor.grad().to_double_vector());
      p.tensor.zero_grad();
    }
    Tensor fused = model.loss(Gpt2Batch{ids, {}, {}}, targets);
    CHECK(fused.item() == doctest::Approx(reference.item()).epsilon(1e-13));
    fused.backward();
    for (size_t i = 0; i < reference_grads.size(); ++i) {
      CAPTURE(model.parameters()[i].name);
      CHECK(testing::relative_error(model.parameters()[i].tensor.grad().to_double_vector(), reference_grads[i]) <
            1e-12);
    }
  }
  Generator init(9);
  Gpt2 model(small(), init);
  CHECK_THROWS_WITH(model.loss(Gpt2Batch{Tensor::from_ints({1, 2}, {1, 2}), {}, {}}, Tensor::from_ints({1}, {1})),
                    doctest::Contains("targets must have the ids' shape [1, 2], got [1]"));
}

TEST_CASE("generate: greedy is deterministic, sampling follows the seed, top-k 1 is greedy") {
  Generator init(6);
  Gpt2 model(small(), init);
  models::SamplingOptions greedy{8, 40, 0.0, -1};
  Generator g(1);
  std::vector<int32_t> a = models::generate(model, {1, 2, 3}, greedy, g);
  CHECK(a.size() == 8);
  CHECK(a == models::generate(model, {1, 2, 3}, greedy, g));
  models::SamplingOptions top1{8, 1, 1.0, -1};
  CHECK(models::generate(model, {1, 2, 3}, top1, g) == a);
  models::SamplingOptions sampled{20, 0, 1.5, -1};
  Generator s1(7), s2(7);
  CHECK(models::generate(model, {1}, sampled, s1) == models::generate(model, {1}, sampled, s2));
  // The context is cropped to block_size, so long generations work.
  models::SamplingOptions longer{30, 5, 1.0, -1};
  CHECK(models::generate(model, {1, 2}, longer, s1).size() == 30);
  CHECK_THROWS_WITH(models::generate(model, {}, greedy, g), doctest::Contains("prompt is empty"));
}

TEST_CASE("gpt2: the config's attention kernel reaches the attention op") {
  Gpt2Config config = small();
  config.attention = AttentionKernel::flash;
  Generator init(1);
  const Gpt2 model(config, init);
  // flash refuses the CPU: the error shows the model asked for it.
  CHECK_THROWS_WITH(model.forward(Tensor::from_ints({1, 2, 3}, {1, 3})),
                    doctest::Contains("attention: kernel flash runs on cuda"));
}
