// Mixed precision's host-side pieces: the dynamic loss scaler's grow/back-off rule, the fp32
// master weights (AdamW steps them from the 16-bit gradients, unscaled, and rounds them back
// into the 16-bit parameters), and the step's clipping and skipping by the global norm. The kernels these use have
// their own GPU suites; here the 16-bit parameters are CPU tensors, which hold bf16 and f16 values though no CPU op
// computes in them.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "framework/optim/grad_norm.h"
#include "framework/optim/loss_scaler.h"
#include "framework/optim/master_weights.h"
#include "framework/random.h"

namespace ft {
namespace {

TEST_CASE("a dynamic loss scaler halves on overflow and doubles after growth_interval good steps") {
  LossScaler scaler(true, {1024, 2, 0.5, 3});
  CHECK(scaler.scale() == 1024);
  CHECK(scaler.update(true));
  CHECK(scaler.update(true));
  CHECK(scaler.state() == LossScalerState{1024, 2});
  CHECK_FALSE(scaler.update(false));  // overflow: skip, back off, count afresh
  CHECK(scaler.state() == LossScalerState{512, 0});
  for (int i = 0; i < 2; ++i) CHECK(scaler.update(true));
  CHECK(scaler.scale() == 512);
  CHECK(scaler.update(true));  // the third good step in a row
  CHECK(scaler.state() == LossScalerState{1024, 0});
}

TEST_CASE("a static loss scaler stays at 1 and reports non-finite steps as not to apply") {
  LossScaler scaler(false);
  CHECK(scaler.scale() == 1);
  CHECK(scaler.update(true));
  CHECK_FALSE(scaler.update(false));
  CHECK(scaler.state() == LossScalerState{1, 0});
  CHECK_THROWS_WITH_AS(scaler.set_state({8, 0}), doctest::Contains("static scaler's scale is 1"), Error);
}

TEST_CASE("a loss scaler's state round-trips and bad options are errors") {
  LossScaler scaler(true);
  scaler.set_state({256, 17});
  CHECK(scaler.state() == LossScalerState{256, 17});
  CHECK_THROWS_WITH_AS(scaler.set_state({0, 0}), doctest::Contains("invalid state"), Error);
  CHECK_THROWS_AS(LossScaler(true, {-1, 2, 0.5, 10}), Error);
  CHECK_THROWS_AS(LossScaler(true, {8, 2, 1.5, 10}), Error);
}

ParameterList named(const std::vector<Tensor>& tensors) {
  ParameterList out;
  for (size_t i = 0; i < tensors.size(); ++i) out.push_back({"p" + std::to_string(i), tensors[i], i == 0});
  return out;
}

TEST_CASE(
    "master weights pair each f32 master with its 16-bit parameter, and AdamW steps the masters from 16-bit "
    "gradients") {
  for (DType dtype : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dtype));
    Generator gen(3);
    const std::vector<Tensor> sources = {randn({4, 5}, gen), randn({7}, gen)};
    std::vector<Tensor> params;
    for (const Tensor& s : sources) params.push_back(Tensor::zeros(s.shape(), dtype).set_requires_grad(true));
    const MasterWeights masters(named(params), named(sources));

    REQUIRE(masters.masters().size() == 2);
    CHECK(masters.masters()[0].weight_decay);
    for (size_t i = 0; i < params.size(); ++i) {
      CHECK(masters.masters()[i].tensor.impl() == sources[i].impl());  // the sources are the masters
      CHECK(masters.params()[i].impl() == params[i].impl());
      // Each parameter holds its master rounded to 16 bits: converting the master gives the same bits.
      CHECK(params[i].to_double_vector() == sources[i].to(dtype).to_double_vector());
    }

    // The reference: an f32 AdamW over copies of the masters, given the unscaled f32 gradients.
    const std::vector<double> initial = sources[0].to_double_vector();
    const std::vector<Tensor> copies = {sources[0].clone().set_requires_grad(true),
                                        sources[1].clone().set_requires_grad(true)};
    AdamW reference({{{copies[0]}, 0.1}, {{copies[1]}, 0.0}});
    AdamW optimizer(masters.groups(0.1));
    REQUIRE(optimizer.gradient_holders().size() == 2);
    const Tensor grad = randn({4, 5}, gen).to(dtype);
    params[0].set_grad(grad);  // params[1] has no gradient this step
    copies[0].set_grad(grad.to(DType::f32));
    const double unscale = 1.0 / 1024;  // a power of two: unscaling the 16-bit values is exact
    const Tensor sum_squares = grad_sum_of_squares(optimizer.gradient_holders());
    optimizer.step(sum_squares, {unscale, 0.0});
    reference.step(grad_sum_of_squares(copies), {unscale, 0.0});

    CHECK(sources[0].to_double_vector() == copies[0].to_double_vector());  // the master stepped as the reference
    CHECK(sources[0].to_double_vector() != initial);
    CHECK(params[0].to_double_vector() == sources[0].to(dtype).to_double_vector());  // and rounded into the param
    CHECK(sources[1].to_double_vector() == copies[1].to_double_vector());            // no gradient: untouched
    CHECK(optimizer.states()[0].step == 1);
    CHECK(optimizer.states()[1].step == 0);

    optimizer.zero_grad();
    CHECK_FALSE(params[0].grad().defined());
  }
}

TEST_CASE("adamw clips by the global norm and skips a step whose norm is not finite, leaving every value as it was") {
  Generator gen(5);
  Tensor clipped = randn({6}, gen).set_requires_grad(true), unclipped = clipped.clone().set_requires_grad(true);
  const Tensor grad = randn({6}, gen);
  double sum_squares = 0;
  for (double g : grad.to_double_vector()) sum_squares += g * g;
  const double norm = std::sqrt(sum_squares);
  REQUIRE(norm > 0.5);
  clipped.set_grad(grad.clone());
  unclipped.set_grad(scale(grad, 0.5 / norm));  // what clipping to max_norm 0.5 must give
  AdamW a({{{clipped}, 0.0}}), b({{{unclipped}, 0.0}});
  a.step(grad_sum_of_squares({clipped}), {1.0, 0.5});
  b.step();
  const std::vector<double> got = clipped.to_double_vector(), expected = unclipped.to_double_vector();
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-6));

  const std::vector<double> before = clipped.to_double_vector();
  Tensor bad = grad.clone();
  bad.fill_(INFINITY);
  clipped.set_grad(bad);
  a.step(grad_sum_of_squares({clipped}), {1.0, 0.5});
  CHECK(clipped.to_double_vector() == before);
  CHECK(a.states()[0].step == 2);  // counted until the caller, who learns the norm, takes it back
  a.uncount_step();
  CHECK(a.states()[0].step == 1);
  CHECK(a.step_count() == 1);
  CHECK_THROWS_WITH_AS(a.uncount_step(), doctest::Contains("without a step() to take back"), Error);

  clipped.set_grad(grad.clone());
  CHECK_THROWS_WITH_AS(a.step(grad_sum_of_squares({clipped}), {0.0, 0.5}),
                       doctest::Contains("expected a positive unscale and max_norm >= 0"), Error);
  CHECK(a.states()[0].step == 1);  // a refused step counts nothing
  CHECK(clipped.to_double_vector() == before);
}

TEST_CASE("master weights refuse a missing or mismatched f32 source and skip frozen parameters") {
  Generator gen(4);
  Tensor frozen = Tensor::zeros({3}, DType::bf16);
  Tensor trained = Tensor::zeros({2, 2}, DType::bf16).set_requires_grad(true);
  const ParameterList params = {{"frozen", frozen, false}, {"trained", trained, true}};
  const MasterWeights masters(params, {{"trained", randn({2, 2}, gen), true}});
  REQUIRE(masters.masters().size() == 1);
  CHECK(masters.masters()[0].name == "trained");
  CHECK_THROWS_WITH_AS(MasterWeights(params, {}), doctest::Contains("no f32 source for the parameter 'trained'"),
                       Error);
  CHECK_THROWS_WITH_AS(MasterWeights(params, {{"trained", randn({4}, gen), true}}),
                       doctest::Contains("expected a contiguous f32 leaf [2, 2]"), Error);
}

}  // namespace
}  // namespace ft
