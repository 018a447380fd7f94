// Which GELU an op or kernel computes: GPT-2's tanh approximation or the exact erf form that
// BERT and DistilBERT use. It lives beside the kernels so that the ops (framework/ops.h) and
// the kernels name the same enum without the kernels depending on the framework.
#pragma once

namespace ft {

enum class GeluForm {
  tanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  erf,   // 0.5 x (1 + erf(x / sqrt(2))), the exact one
};

}  // namespace ft
