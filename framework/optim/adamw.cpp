// AdamW's bookkeeping: which parameters it updates, their state, and the checks. The update
// itself is kernels/adamw. step() checks every gradient before it changes any parameter, so a
// bad gradient leaves the model as it was. Parameters on a GPU (f32 there) are gathered per
// device and gradient dtype and stepped together in a few multi-tensor launches.
#include "framework/optim/adamw.h"

#include <cmath>
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

// A mixed-precision group's compute copy of a parameter: the same shape and device, 16 bits.
void check_compute(size_t group, size_t index, const Tensor& p, const Tensor& compute) {
  FT_CHECK(compute.defined() && compute.shape() == p.shape() && compute.device() == p.device() &&
               (compute.dtype() == DType::bf16 || compute.dtype() == DType::f16) && compute.is_contiguous(),
           "adamw: the compute copy of ", param_label(group, index, p), " is ", describe(compute),
           ", expected a contiguous bf16 or f16 tensor of its shape on its device");
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
    FT_CHECK(group.compute.empty() || group.compute.size() == group.params.size(), "adamw: group ", gi, " has ",
             group.compute.size(), " compute copies for ", group.params.size(), " parameters");
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
      if (!group.compute.empty()) check_compute(gi, pi, p, group.compute[pi]);
      params_.push_back(p);
      compute_.push_back(group.compute.empty() ? Tensor() : group.compute[pi]);
      weight_decays_.push_back(group.weight_decay);
      states_.push_back(
          {Tensor::zeros(p.shape(), p.dtype(), p.device()), Tensor::zeros(p.shape(), p.dtype(), p.device()), 0});
    }
  }
}

std::vector<Tensor> AdamW::gradient_holders() const {
  std::vector<Tensor> holders;
  for (size_t i = 0; i < params_.size(); ++i) holders.push_back(compute_[i].defined() ? compute_[i] : params_[i]);
  return holders;
}

void AdamW::step() { step(Tensor(), GradientScaling{}); }

void AdamW::step(const Tensor& grad_sum_squares, const GradientScaling& scaling) {
  NoGradGuard no_grad;
  const std::vector<Tensor> holders = gradient_holders();
  std::vector<size_t> stepped;  // every check passes before anything is counted or written
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const Tensor g = holders[i].grad();
    if (!p.requires_grad() || !g.defined()) continue;  // frozen since, or no gradient this step
    FT_CHECK(g.shape() == p.shape() && g.dtype() == holders[i].dtype() && g.device() == p.device(), "adamw: gradient ",
             describe(g), " does not match its parameter ", describe(holders[i]));
    FT_CHECK(stepped.empty() || p.device() == params_[stepped[0]].device(), "adamw: ", describe(p), " is not on ",
             params_[stepped[0]].device().str(), " like the first parameter stepped (one step runs on one device)");
    stepped.push_back(i);
  }
  FT_CHECK(scaling.unscale > 0 && scaling.max_norm >= 0, "adamw: gradient scaling by ", scaling.unscale, " clipped at ",
           scaling.max_norm, "; expected a positive unscale and max_norm >= 0 (0: no clipping)");
  last_stepped_ = std::move(stepped);
  ++step_count_;
  can_uncount_ = true;
  if (last_stepped_.empty()) return;
  FT_CHECK(!grad_sum_squares.defined() || (grad_sum_squares.numel() == 1 && grad_sum_squares.dtype() == DType::f64 &&
                                           grad_sum_squares.device() == params_[last_stepped_[0]].device()),
           "adamw: the gradients' sum of squares is ", describe(grad_sum_squares),
           ", expected an f64 scalar on the parameters' device");
  for (size_t i : last_stepped_) ++states_[i].step;
  if (params_[last_stepped_[0]].device().is_cuda())
    step_cuda(grad_sum_squares, scaling);
  else
    step_cpu(grad_sum_squares, scaling);
}

void AdamW::step_cpu(const Tensor& grad_sum_squares, const GradientScaling& scaling) {
  const double factor =
      grad_sum_squares.defined() ? kernels::adamw_gradient_factor(grad_sum_squares.item(), scaling) : scaling.unscale;
  if (std::isnan(factor)) return;
  for (size_t i : last_stepped_) {
    const Tensor& p = params_[i];
    const Tensor& compute = compute_[i];
    const Tensor g = (compute.defined() ? compute : p).grad().to(p.dtype()).contiguous();
    AdamWState& s = states_[i];
    const kernels::AdamWHyper hyper{options_.lr,  options_.beta1,    options_.beta2,
                                    options_.eps, weight_decays_[i], s.step};
    dispatch_float("adamw", p.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::adamw_step_cpu<T>(p.data<T>(), g.data<T>(), s.exp_avg.data<T>(), s.exp_avg_sq.data<T>(), p.numel(),
                                 hyper, static_cast<T>(factor));
    });
    if (compute.defined()) compute.copy_(p);
  }
}

void AdamW::step_cuda(const Tensor& grad_sum_squares, const GradientScaling& scaling) {
#ifdef FLASHTRAIN_HAS_CUDA
  const Device device = params_[last_stepped_[0]].device();
  std::map<DType, std::vector<size_t>> by_grad_dtype;
  std::vector<Tensor> grads(params_.size());  // contiguous, alive until the launches
  for (size_t i : last_stepped_) {
    grads[i] = (compute_[i].defined() ? compute_[i] : params_[i]).grad().contiguous();
    by_grad_dtype[grads[i].dtype()].push_back(i);
  }
  cuda::DeviceGuard guard(device.index);
  const double* sum_squares = grad_sum_squares.defined() ? grad_sum_squares.data<double>() : nullptr;
  for (const auto& [dtype, indices] : by_grad_dtype) {
    dispatch_cuda_float("adamw", dtype, [&](auto tag) {
      using G = decltype(tag);
      std::vector<kernels::AdamWTensor<G>> tensors;
      for (size_t i : indices) {
        const Tensor& p = params_[i];
        const Tensor& compute = compute_[i];
        AdamWState& s = states_[i];
        tensors.push_back({p.data<float>(),
                           grads[i].data<G>(),
                           s.exp_avg.data<float>(),
                           s.exp_avg_sq.data<float>(),
                           compute.defined() ? compute.data<G>() : nullptr,
                           p.numel(),
                           {options_.lr, options_.beta1, options_.beta2, options_.eps, weight_decays_[i], s.step}});
      }
      kernels::adamw_step_cuda(tensors, sum_squares, scaling, cuda::context(device.index).stream);
    });
  }
#else
  (void)grad_sum_squares;
  (void)scaling;
  FT_CHECK(false, "adamw: parameters on a GPU, but flashtrain was built without CUDA");
#endif
}

void AdamW::uncount_step() {
  FT_CHECK(can_uncount_, "adamw: uncount_step() without a step() to take back");
  can_uncount_ = false;
  for (size_t i : last_stepped_) --states_[i].step;
  --step_count_;
  last_stepped_.clear();
}

void AdamW::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
  for (const Tensor& c : compute_)
    if (c.defined()) c.zero_grad();
}

std::vector<ParamGroup> weight_decay_groups(const ParameterList& params, double weight_decay) {
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = weight_decay;
  for (const NamedParameter& p : params) groups[p.weight_decay ? 0 : 1].params.push_back(p.tensor);
  return groups;
}

void AdamW::set_lr(double lr) {
  FT_CHECK(lr >= 0.0, "adamw: lr = ", lr, " is negative");
  options_.lr = lr;
}

}  // namespace ft
