// DistilBERT built from framework ops: sizes and names, the masked-LM loss's gradients against
// float64 finite differences, padded rows equal to their sequences run alone, the
// classification head, dropout only in training, and the head-mismatch errors.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "framework/autograd.h"
#include "models/distilbert/distilbert.h"
#include "tests/support/gradcheck.h"
#include "tests/support/small_distilbert.h"

using namespace ft;
using models::DistilBert;
using models::DistilBertBatch;
using models::DistilBertConfig;

namespace {

DistilBertConfig small(int64_t num_labels = 0) { return testing::small_distilbert(num_labels); }

// A model with every parameter random, in f64.
DistilBert random_model(const DistilBertConfig& c, uint64_t seed) {
  return testing::random_distilbert(c, seed, DType::f64);
}

Tensor parameter(const DistilBert& model, const std::string& name) {
  for (const NamedParameter& p : model.parameters())
    if (p.name == name) return p.tensor;
  throw Error("no parameter " + name);
}

// Checks autograd's gradient of loss() at three entries of each named parameter against
// central differences in float64; loss() must have been run backward once already.
void check_gradients(const DistilBert& model, const std::vector<std::string>& names,
                     const std::function<Tensor()>& loss) {
  NoGradGuard no_grad;
  for (const std::string& name : names) {
    CAPTURE(name);
    const Tensor p = parameter(model, name);
    const std::vector<double> grad = p.grad().to_double_vector();
    for (int64_t i : {int64_t(0), p.numel() / 2 + 1, p.numel() - 1}) {
      CAPTURE(i);
      const Tensor element = slice(reshape(p, {-1}), 0, i, i + 1);
      const double original = element.item(), step = 1e-6;
      element.copy_(Tensor::full({1}, original + step, DType::f64));
      const double up = loss().item();
      element.copy_(Tensor::full({1}, original - step, DType::f64));
      const double down = loss().item();
      element.copy_(Tensor::full({1}, original, DType::f64));
      // Central differences in f64 carry a rounding error of about 1e-16 * loss / step.
      const double numeric = (up - down) / (2 * step);
      CHECK(std::abs(grad[i] - numeric) < 1e-8 + 1e-6 * std::abs(numeric));
    }
  }
}

}  // namespace

TEST_CASE("distilbert: sizes, names, initialisation") {
  Generator init(1);
  DistilBert model(small(), init);
  const int64_t d = 8, v = 30, h = 16;
  const int64_t layer = 4 * (d * d + d) + 2 * d + (h * d + h) + (d * h + d) + 2 * d;
  CHECK(model.parameter_count() == v * d + 12 * d + 2 * d + 2 * layer + (d * d + d) + 2 * d + v);
  CHECK(model.mlm_logits({Tensor::from_ints(std::vector<int32_t>(10, 3), {2, 5})}).shape() == Shape{2, 5, 30});
  CHECK(model.hidden({Tensor::from_ints(std::vector<int32_t>(10, 3), {2, 5})}).shape() == Shape{2, 5, 8});
  CHECK(parameter(model, "transformer.layer.1.attention.q_lin.weight").shape() == Shape{8, 8});
  CHECK(parameter(model, "transformer.layer.0.ffn.lin1.weight").shape() == Shape{16, 8});
  // The padding token's embedding starts at zero, the others do not.
  const Tensor words = parameter(model, "embeddings.word_embeddings.weight");
  CHECK(slice(words, 0, 0, 1).to_double_vector() == std::vector<double>(8, 0.0));
  CHECK(slice(words, 0, 1, 2).to_double_vector() != std::vector<double>(8, 0.0));
  for (const NamedParameter& p : model.parameters()) {
    CAPTURE(p.name);
    CHECK(p.tensor.requires_grad());
    CHECK(p.weight_decay == (p.tensor.dim() == 2 && p.name.find("embeddings") == std::string::npos));
  }
  const DistilBertConfig base = models::distilbert_config("distilbert-base");
  Generator g(2);
  CHECK(DistilBert(base, g).parameter_count() == 66985530);  // DistilBertForMaskedLM's count in transformers
  CHECK_THROWS_WITH(models::distilbert_config("bert"), doctest::Contains("unknown DistilBERT size 'bert'"));
  CHECK_THROWS_WITH(model.hidden({Tensor::from_ints(std::vector<int32_t>(13, 1), {1, 13})}),
                    doctest::Contains("sequence length 13 exceeds max_positions 12"));
  CHECK_THROWS_WITH(model.classify({Tensor::from_ints({1, 2}, {1, 2})}),
                    doctest::Contains("this model has the masked-LM head, not a classification head"));
}

TEST_CASE("distilbert: the masked-LM loss's gradients match finite differences") {
  const DistilBert model = random_model(small(), 3);
  const DistilBertBatch batch{Tensor::from_ints({2, 5, 7, 0, 11, 29, 3, 4}, {2, 4}), Tensor(),
                              Tensor::from_ints({0, 0, 0, -1, 0, 0, 0, 0}, {2, 4})};
  const Tensor labels = Tensor::from_ints({-100, 6, -100, -100, 11, -100, 21, 9}, {2, 4});
  auto loss = [&] { return model.mlm_loss(batch, labels); };
  loss().backward();
  // A few entries of parameters from every part: embeddings, attention, both norms, the FFN, the head.
  check_gradients(model,
                  {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                   "embeddings.LayerNorm.weight", "transformer.layer.0.attention.q_lin.weight",
                   "transformer.layer.0.attention.v_lin.bias", "transformer.layer.0.attention.out_lin.weight",
                   "transformer.layer.1.sa_layer_norm.bias", "transformer.layer.1.ffn.lin1.weight",
                   "transformer.layer.1.ffn.lin2.bias", "transformer.layer.1.output_layer_norm.weight",
                   "vocab_transform.weight", "vocab_layer_norm.weight", "vocab_projector.bias"},
                  loss);
}

TEST_CASE("distilbert: padded rows give their sequences' logits and loss, unpadded one at a time") {
  const DistilBert model = random_model(small(), 4);
  const std::vector<int32_t> a = {1, 8, 13, 21, 2}, b = {1, 17, 2};
  const std::vector<int32_t> la = {-100, 8, -100, 4, -100}, lb = {-100, -100, 9};
  // Row 1 is b followed by two padding tokens (segment id -1, whatever ids they hold).
  const DistilBertBatch padded{Tensor::from_ints({1, 8, 13, 21, 2, 1, 17, 2, 0, 0}, {2, 5}), Tensor(),
                               Tensor::from_ints({0, 0, 0, 0, 0, 0, 0, 0, -1, -1}, {2, 5})};
  const Tensor logits = model.mlm_logits(padded);
  const std::vector<double> alone_a = model.mlm_logits({Tensor::from_ints(a, {1, 5})}).to_double_vector();
  const std::vector<double> alone_b = model.mlm_logits({Tensor::from_ints(b, {1, 3})}).to_double_vector();
  auto rows = [&](int64_t row, int64_t t) {
    return slice(slice(logits, 0, row, row + 1), 1, 0, t).contiguous().to_double_vector();
  };
  CHECK(ft::testing::relative_error(rows(0, 5), alone_a) < 1e-12);
  CHECK(ft::testing::relative_error(rows(1, 3), alone_b) < 1e-12);
  // The mean over the four labelled tokens equals the label-weighted mean of the two alone.
  const double loss =
      model.mlm_loss(padded, Tensor::from_ints({-100, 8, -100, 4, -100, -100, -100, 9, -100, -100}, {2, 5})).item();
  const double loss_a = model.mlm_loss({Tensor::from_ints(a, {1, 5})}, Tensor::from_ints(la, {1, 5})).item();
  const double loss_b = model.mlm_loss({Tensor::from_ints(b, {1, 3})}, Tensor::from_ints(lb, {1, 3})).item();
  CHECK(loss == doctest::Approx((2 * loss_a + loss_b) / 3).epsilon(1e-12));
}

TEST_CASE("distilbert: a token sees the whole sequence (bidirectional)") {
  const DistilBert model = random_model(small(), 5);
  std::vector<int32_t> x = {1, 5, 9, 2}, y = x;
  y[3] = 20;  // a later token changes the first position's logits
  const std::vector<double> lx = model.mlm_logits({Tensor::from_ints(x, {1, 4})}).to_double_vector();
  const std::vector<double> ly = model.mlm_logits({Tensor::from_ints(y, {1, 4})}).to_double_vector();
  CHECK(std::vector<double>(lx.begin(), lx.begin() + 30) != std::vector<double>(ly.begin(), ly.begin() + 30));
}

TEST_CASE("distilbert: the classification head reads [CLS]; its gradients match finite differences") {
  const DistilBert model = random_model(small(3), 6);
  const DistilBertBatch batch{Tensor::from_ints({1, 4, 9, 1, 6, 2}, {2, 3})};
  const Tensor logits = model.classify(batch);
  REQUIRE(logits.shape() == Shape{2, 3});
  // classifier(relu(pre_classifier(h[:, 0]))), composed by hand from the hidden states.
  const Tensor cls = reshape(slice(model.hidden(batch), 1, 0, 1), {2, 8});
  const Tensor pre = linear(cls, parameter(model, "pre_classifier.weight"), parameter(model, "pre_classifier.bias"));
  std::vector<double> rectified = pre.to_double_vector();
  for (double& v : rectified) v = v > 0 ? v : 0;
  const Tensor expected = linear(Tensor::from_vector(rectified, {2, 8}, DType::f64),
                                 parameter(model, "classifier.weight"), parameter(model, "classifier.bias"));
  CHECK(ft::testing::relative_error(logits.to_double_vector(), expected.to_double_vector()) < 1e-14);

  auto loss = [&] { return cross_entropy(model.classify(batch), Tensor::from_ints({2, 0}, {2})); };
  loss().backward();
  check_gradients(model,
                  {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias",
                   "transformer.layer.1.ffn.lin2.weight", "embeddings.word_embeddings.weight"},
                  loss);
  CHECK_THROWS_WITH(model.mlm_logits(batch), doctest::Contains("this model has a classification head (num_labels 3)"));
}

TEST_CASE("distilbert: dropout only with a generator, reproducible from its state") {
  DistilBertConfig c = small();
  c.dropout = 0.3;
  Generator init(7);
  DistilBert model(c, init);
  const DistilBertBatch batch{Tensor::from_ints({1, 2, 3, 4}, {1, 4})};
  CHECK(model.mlm_logits(batch).to_double_vector() == model.mlm_logits(batch).to_double_vector());
  Generator g1(9), g2(9);
  const std::vector<double> train = model.mlm_logits(batch, &g1).to_double_vector();
  CHECK(train == model.mlm_logits(batch, &g2).to_double_vector());
  CHECK(train != model.mlm_logits(batch).to_double_vector());
}
