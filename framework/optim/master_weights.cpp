#include "framework/optim/master_weights.h"

#include <unordered_map>

#include "framework/autograd.h"

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

std::vector<ParamGroup> MasterWeights::groups(double weight_decay) const {
  std::vector<ParamGroup> groups = weight_decay_groups(masters_, weight_decay);
  for (size_t i = 0; i < masters_.size(); ++i) groups[masters_[i].weight_decay ? 0 : 1].compute.push_back(params_[i]);
  return groups;
}

}  // namespace ft
