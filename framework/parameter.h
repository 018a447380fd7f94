// A model's trainable (or frozen) tensor with its name. Names are stable keys: checkpoints,
// Hugging Face conversion and weight-decay grouping all go by them.
#pragma once

#include <string>
#include <vector>

#include "framework/tensor.h"

namespace ft {

struct NamedParameter {
  std::string name;
  Tensor tensor;
  bool weight_decay;  // GPT-2 practice: matrices decay; biases, norms and embeddings do not
};

using ParameterList = std::vector<NamedParameter>;

}  // namespace ft
