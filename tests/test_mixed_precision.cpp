// Mixed precision's host-side pieces: the dynamic loss scaler's grow/back-off rule, and the
// fp32 master weights (gradients converted and unscaled onto the masters, masters rounded back
// into 16-bit parameters). The kernels these use have their own GPU suites; here the 16-bit
// parameters are CPU tensors, which hold bf16 and f16 values though no CPU op computes in them.
#include <doctest/doctest.h>

#include <cmath>

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

TEST_CASE("master weights round into the parameters and take their gradients unscaled, in f32") {
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
      CHECK(masters.tensors()[i].impl() == sources[i].impl());  // the sources are the masters
      // Each parameter holds its master rounded to 16 bits: converting the master gives the same bits.
      CHECK(params[i].to_double_vector() == sources[i].to(dtype).to_double_vector());
    }

    const Tensor grad = randn({4, 5}, gen).to(dtype);
    params[0].set_grad(grad);  // params[1] has no gradient this step
    masters.gradients_to_masters(1.0 / 1024);
    const Tensor master_grad = masters.tensors()[0].grad();
    REQUIRE(master_grad.defined());
    CHECK(master_grad.dtype() == DType::f32);
    const std::vector<double> g16 = grad.to_double_vector(), g32 = master_grad.to_double_vector();
    for (size_t j = 0; j < g16.size(); ++j) CHECK(g32[j] == g16[j] / 1024);  // a power of two: exact
    CHECK_FALSE(params[0].grad().defined());
    CHECK_FALSE(masters.tensors()[1].grad().defined());

    masters.tensors()[1].fill_(0.3);
    masters.masters_to_params();
    CHECK(params[1].to_double_vector() == Tensor::full({7}, 0.3, dtype).to_double_vector());
  }
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
