// Reverse-mode autograd, micrograd-sized.
//
// An op that runs while gradients are enabled, on inputs of which at least one requires a
// gradient, records a Node: its inputs and a closure that maps the gradient of its output to
// the gradients of its inputs. Every node gets the next number of a global counter, so the
// numbers are a tape: an op's inputs were made before it. backward() gathers the nodes that
// reach the loss and runs them from the highest number down, summing each input's gradient
// over all its uses ("a value used twice gets both gradients"), and stores the sums of leaves
// in their grad(), adding to what is there (gradient accumulation across micro-batches).
//
// Closures compute gradients with the same framework ops, inside a no-grad scope; double
// backward is not supported. After a pass the graph is freed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framework/tensor.h"

namespace ft {

// Which inputs of a node need a gradient, so closures skip work for frozen weights.
using GradNeeds = std::vector<bool>;
// grad_output -> one gradient per input (an undefined Tensor where none is needed).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output, const GradNeeds& needs)>;

struct Node {
  std::string op;
  std::vector<Tensor> inputs;
  GradNeeds needs;
  BackwardFn backward;
  uint64_t sequence = 0;
};

// Whether ops record nodes now (per thread).
bool grad_enabled();

// Turns recording off for its lifetime (evaluation, optimizer updates, backward closures).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Called by ops after computing `output`: records the node when gradients are enabled and an
// input requires one. Returns output (now with a grad_fn when recorded).
Tensor record(Tensor output, const char* op, std::vector<Tensor> inputs, BackwardFn backward);

// The backward pass behind Tensor::backward(): from a one-element `loss` (seed 1), or from any
// tensor with the gradient of some scalar with respect to it (`upstream`, same shape).
void run_backward(const Tensor& loss, const Tensor& upstream = Tensor());

}  // namespace ft
