#include "framework/optim/master_weights.h"

#include <unordered_map>

#include "framework/autograd.h"
#include "framework/ops.h"

namespace ft {

MasterWeights::MasterWeights(const ParameterList& params, const ParameterList& sources) {
  std::unordered_map<std::string, Tensor> by_name;
  for (const NamedParameter& s : sources) by_name[s.name] = s.tensor;
  NoGradGuard no_grad;
  for (const NamedParameter& p : params) {
    if (!p.tensor.requires_grad()) continue;
    auto it = by_name.find(p.name);
    FT_CHECK(it != by_name.end(), "master weights: no f32 source for the parameter '", p.name, "'");
    Tensor master = it->second;
    FT_CHECK(master.dtype() == DType::f32 && master.shape() == p.tensor.shape() &&
                 master.device() == p.tensor.device() && master.is_contiguous() && master.is_leaf(),
             "master weights: the source of '", p.name, "' is ", describe(master), ", expected a contiguous f32 leaf ",
             shape_str(p.tensor.shape()), " on ", p.tensor.device().str());
    master.set_requires_grad(true);
    p.tensor.copy_(master);
    params_.push_back(p.tensor);
    masters_.push_back({p.name, master, p.weight_decay});
  }
}

std::vector<Tensor> MasterWeights::tensors() const {
  std::vector<Tensor> out;
  for (const NamedParameter& m : masters_) out.push_back(m.tensor);
  return out;
}

void MasterWeights::gradients_to_masters(double factor) const {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].grad();
    const Tensor& master = masters_[i].tensor;
    master.zero_grad();
    if (!g.defined()) continue;
    master.set_grad(factor == 1 ? g.to(DType::f32).contiguous() : scale(g.to(DType::f32), factor));
    params_[i].zero_grad();
  }
}

void MasterWeights::masters_to_params() const {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(masters_[i].tensor);
}

}  // namespace ft
