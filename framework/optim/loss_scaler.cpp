#include "framework/optim/loss_scaler.h"

#include <cmath>

#include "framework/error.h"

namespace ft {

LossScaler::LossScaler(bool dynamic, LossScalerOptions options) : dynamic_(dynamic), options_(options) {
  FT_CHECK(options.initial_scale > 0 && std::isfinite(options.initial_scale), "loss scaler: the initial scale ",
           options.initial_scale, " must be positive and finite");
  FT_CHECK(options.growth_factor > 1 && options.backoff_factor > 0 && options.backoff_factor < 1,
           "loss scaler: growth_factor must exceed 1 and backoff_factor lie in (0, 1), got ", options.growth_factor,
           " and ", options.backoff_factor);
  FT_CHECK(options.growth_interval > 0, "loss scaler: growth_interval must be positive, got ", options.growth_interval);
  if (dynamic_) state_.scale = options.initial_scale;
}

bool LossScaler::update(bool grads_finite) {
  if (!dynamic_) return grads_finite;
  if (!grads_finite) {
    state_.scale *= options_.backoff_factor;
    state_.good_steps = 0;
    return false;
  }
  if (++state_.good_steps == options_.growth_interval) {
    state_.scale *= options_.growth_factor;
    state_.good_steps = 0;
  }
  return true;
}

void LossScaler::set_state(const LossScalerState& state) {
  FT_CHECK(state.scale > 0 && std::isfinite(state.scale) && state.good_steps >= 0, "loss scaler: invalid state (scale ",
           state.scale, ", good steps ", state.good_steps, ")");
  FT_CHECK(dynamic_ || state.scale == 1, "loss scaler: a static scaler's scale is 1, the state says ", state.scale);
  state_ = state;
}

}  // namespace ft
