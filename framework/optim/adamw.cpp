// AdamW's bookkeeping: which parameters it updates, their state, and the checks. The update
// itself is kernels/adamw. step() checks every gradient before it changes any parameter, so a
// bad gradient leaves the model as it was. Parameters on a GPU (f32 there) are gathered per
// device and stepped together in a few multi-tensor launches.
#include "framework/optim/adamw.h"

#include <map>
#include <unordered_set>

#include "framework/autograd.h"
#include "framework/ops/checks.h"
#include "kernels/adamw/adamw_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/adamw/adamw_cuda.h"
#endif

namespace ft {
namespace {

// "parameter 1 of group 0 ('wte', f32[5, 3] on cpu)", for error messages.
std::string param_label(size_t group, size_t index, const Tensor& p) {
  std::string name = p.defined() && !p.name().empty() ? "'" + p.name() + "', " : "";
  return str("parameter ", index, " of group ", group, " (", name, describe(p), ")");
}

void check_options(const AdamWOptions& o) {
  FT_CHECK(o.lr >= 0.0, "adamw: lr = ", o.lr, " is negative");
  FT_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, "adamw: beta1 = ", o.beta1, " is outside [0, 1)");
  FT_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, "adamw: beta2 = ", o.beta2, " is outside [0, 1)");
  FT_CHECK(o.eps >= 0.0, "adamw: eps = ", o.eps, " is negative");
}

}  // namespace

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options) : options_(options) {
  check_options(options_);
  std::unordered_set<const TensorImpl*> seen;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const ParamGroup& group = groups[gi];
    FT_CHECK(group.weight_decay >= 0.0, "adamw: group ", gi, " has negative weight_decay ", group.weight_decay);
    for (size_t pi = 0; pi < group.params.size(); ++pi) {
      const Tensor& p = group.params[pi];
      FT_CHECK(p.defined(), "adamw: ", param_label(gi, pi, p), " is undefined");
      FT_CHECK(p.is_leaf(), "adamw: ", param_label(gi, pi, p),
               " is not a leaf (an op computed it); pass the parameter itself");
      FT_CHECK(seen.insert(p.impl()).second, "adamw: ", param_label(gi, pi, p), " is listed twice");
      if (!p.requires_grad()) continue;  // frozen: no state, never updated
      FT_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "adamw: ", param_label(gi, pi, p),
               " is not f32 or f64 (AdamW keeps its parameters and state in full precision)");
      FT_CHECK(p.device().is_cpu() || p.dtype() == DType::f32, "adamw: ", param_label(gi, pi, p),
               " is on a GPU but not f32 (the CUDA AdamW updates f32 parameters)");
      FT_CHECK(p.is_contiguous(), "adamw: ", param_label(gi, pi, p), " is not contiguous");
      params_.push_back(p);
      weight_decays_.push_back(group.weight_decay);
      states_.push_back(
          {Tensor::zeros(p.shape(), p.dtype(), p.device()), Tensor::zeros(p.shape(), p.dtype(), p.device()), 0});
    }
  }
}

void AdamW::step() {
  NoGradGuard no_grad;
  std::vector<size_t> updated;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const Tensor g = p.grad();
    if (!p.requires_grad() || !g.defined()) continue;  // frozen since, or no gradient this step
    FT_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), "adamw: gradient ",
             describe(g), " does not match its parameter ", describe(p));
    updated.push_back(i);
  }
#ifdef FLASHTRAIN_HAS_CUDA
  std::map<int, std::vector<kernels::AdamWTensor>> cuda_updates;  // by device index
  std::vector<Tensor> cuda_grads;  // alive until the launches: a gradient may be a contiguous copy
#endif
  for (size_t i : updated) {
    const Tensor& p = params_[i];
    const Tensor g = p.grad().contiguous();
    AdamWState& s = states_[i];
    ++s.step;
    kernels::AdamWHyper hyper{options_.lr, options_.beta1, options_.beta2, options_.eps, weight_decays_[i], s.step};
#ifdef FLASHTRAIN_HAS_CUDA
    if (p.device().is_cuda()) {
      cuda_updates[p.device().index].push_back(
          {p.data<float>(), g.data<float>(), s.exp_avg.data<float>(), s.exp_avg_sq.data<float>(), p.numel(), hyper});
      cuda_grads.push_back(g);
      continue;
    }
#endif
    dispatch_float("adamw", p.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::adamw_step_cpu<T>(p.data<T>(), g.data<T>(), s.exp_avg.data<T>(), s.exp_avg_sq.data<T>(), p.numel(),
                                 hyper);
    });
  }
#ifdef FLASHTRAIN_HAS_CUDA
  for (const auto& [device, tensors] : cuda_updates) {
    cuda::DeviceGuard guard(device);
    kernels::adamw_step_cuda(tensors, cuda::context(device).stream);
  }
#endif
  ++step_count_;
}

void AdamW::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

void AdamW::set_lr(double lr) {
  FT_CHECK(lr >= 0.0, "adamw: lr = ", lr, " is negative");
  options_.lr = lr;
}

}  // namespace ft
