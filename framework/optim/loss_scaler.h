// Dynamic loss scaling for fp16 training (Micikevicius et al. 2018). fp16 gradients underflow
// below 6e-8, so the loss is multiplied by a large scale before the backward pass and the
// gradients are divided by it before the update. A scale too large makes some gradient
// overflow to inf: that step is skipped and the scale halved. After `growth_interval` steps in
// a row without overflow the scale doubles, so it tracks the largest scale that is safe.
// bf16 has fp32's exponent range and needs none of this: a static scaler of 1 never skips.
#pragma once

#include <cstdint>

namespace ft {

struct LossScalerState {
  double scale = 1;
  int64_t good_steps = 0;  // steps since the last overflow or growth
  bool operator==(const LossScalerState& o) const { return scale == o.scale && good_steps == o.good_steps; }
};

struct LossScalerOptions {
  double initial_scale = 65536;  // 2^16, PyTorch's GradScaler default
  double growth_factor = 2;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class LossScaler {
 public:
  // dynamic = false: the scale stays 1 and every step is applied (fp32, bf16).
  explicit LossScaler(bool dynamic, LossScalerOptions options = {});

  bool dynamic() const { return dynamic_; }
  double scale() const { return state_.scale; }

  // Records whether this step's gradients were all finite and returns whether to apply the
  // step. An overflow (not finite) backs the scale off and resets the count of good steps.
  // A static scaler returns grads_finite and never changes.
  bool update(bool grads_finite);

  const LossScalerState& state() const { return state_; }
  void set_state(const LossScalerState& state);

 private:
  bool dynamic_;
  LossScalerOptions options_;
  LossScalerState state_;
};

}  // namespace ft
