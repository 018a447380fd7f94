// Creating a model's named parameters: each new tensor becomes a leaf that requires grad, named,
// and appended to the model's list in creation order (the order checkpoints and Hugging Face
// export follow). Shared by the models so their initialisation reads the same.
#pragma once

#include <string>
#include <vector>

#include "framework/ops.h"
#include "framework/parameter.h"

namespace ft::models {

class ParameterInit {
 public:
  ParameterInit(std::vector<NamedParameter>& list, Generator& gen, DType dtype, Device device)
      : list_(list), gen_(gen), dtype_(dtype), device_(device) {}

  // normal(0, std) values, or zeros when std is 0.
  Tensor normal(const std::string& name, const Shape& shape, double std, bool weight_decay) {
    Tensor t = std == 0 ? Tensor::zeros(shape, dtype_, device_) : Tensor::empty(shape, dtype_, device_);
    if (std > 0) normal_(t, gen_, 0.0, std);
    return add(name, t, weight_decay);
  }
  Tensor zeros(const std::string& name, int64_t n) { return normal(name, {n}, 0, false); }
  Tensor ones(const std::string& name, int64_t n) { return add(name, Tensor::full({n}, 1.0, dtype_, device_), false); }

 private:
  Tensor add(const std::string& name, Tensor t, bool weight_decay) {
    t.set_requires_grad(true).set_name(name);
    list_.push_back({name, t, weight_decay});
    return t;
  }

  std::vector<NamedParameter>& list_;
  Generator& gen_;
  DType dtype_;
  Device device_;
};

}  // namespace ft::models
