#include "framework/autograd.h"

#include <algorithm>
#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "framework/ops.h"

namespace ft {
namespace {

thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence{0};

// Sum into a leaf's gradient. The first gradient is copied, because a closure may hand the
// same tensor to several inputs, and later sums happen in place.
void accumulate_leaf(const Tensor& leaf, const Tensor& g) {
  FT_CHECK(g.shape() == leaf.shape(), "autograd: gradient of shape ", shape_str(g.shape()),
           " for a leaf of shape ", shape_str(leaf.shape()), " (an op's backward is wrong)");
  Tensor current = leaf.grad();
  if (!current.defined()) {
    leaf.set_grad(g.to(leaf.dtype()).clone());
  } else {
    add_(current, g);
  }
}

}  // namespace

bool grad_enabled() { return g_grad_enabled; }

NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

Tensor record(Tensor output, const char* op, std::vector<Tensor> inputs, BackwardFn backward) {
  if (!g_grad_enabled) return output;
  GradNeeds needs(inputs.size());
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    needs[i] = inputs[i].defined() && inputs[i].requires_grad();
    any = any || needs[i];
  }
  if (!any) return output;
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs = std::move(inputs);
  node->needs = std::move(needs);
  node->backward = std::move(backward);
  node->sequence = g_next_sequence++;
  output.set_grad_fn(std::move(node));
  return output;
}

void run_backward(const Tensor& loss, const Tensor& upstream) {
  FT_CHECK(loss.defined(), "backward: called on an undefined tensor");
  FT_CHECK(upstream.defined() || loss.numel() == 1, "backward: expected a one-element loss, got shape ",
           shape_str(loss.shape()), " (pass the upstream gradient for a tensor)");
  FT_CHECK(!upstream.defined() || (upstream.shape() == loss.shape() && upstream.dtype() == loss.dtype() &&
                                   upstream.device() == loss.device()),
           "backward: the upstream gradient ", describe(upstream), " does not match the tensor ", describe(loss));
  FT_CHECK(loss.requires_grad(), "backward: the loss does not require grad (no parameter reaches it, or it was "
                                 "computed under no-grad)");
  NoGradGuard no_grad;
  const Tensor seed =
      upstream.defined() ? upstream : Tensor::full(loss.shape(), 1.0, loss.dtype(), loss.device());
  if (!loss.grad_fn()) {  // the loss is itself a leaf
    accumulate_leaf(loss, seed);
    return;
  }

  // Collect every node that reaches the loss. Holding them by shared pointer keeps each alive
  // while the pass frees the saved inputs of the nodes after it.
  std::vector<std::shared_ptr<Node>> nodes;
  std::unordered_set<Node*> seen;
  std::vector<std::shared_ptr<Node>> stack{loss.grad_fn()};
  seen.insert(stack.back().get());
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    for (const Tensor& in : n->inputs) {
      if (!in.defined() || !in.grad_fn()) continue;
      if (seen.insert(in.grad_fn().get()).second) stack.push_back(in.grad_fn());
    }
    nodes.push_back(std::move(n));
  }
  // The tape in reverse: a node runs after every node that consumed its output.
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a->sequence > b->sequence; });

  std::unordered_map<Node*, Tensor> grads;
  grads[loss.grad_fn().get()] = seed;
  for (const std::shared_ptr<Node>& n : nodes) {
    auto it = grads.find(n.get());
    if (it == grads.end()) continue;  // reaches the loss only through inputs that need no grad
    FT_CHECK(n->backward, "backward: the graph through ", n->op, " was freed by an earlier backward()");
    Tensor g_out = std::move(it->second);
    grads.erase(it);
    std::vector<Tensor> g_in = n->backward(g_out, n->needs);
    FT_CHECK(g_in.size() == n->inputs.size(), "autograd: backward of ", n->op, " returned ", g_in.size(),
             " gradients for ", n->inputs.size(), " inputs");
    for (size_t i = 0; i < g_in.size(); ++i) {
      if (!n->needs[i]) continue;
      const Tensor& input = n->inputs[i];
      FT_CHECK(g_in[i].defined(), "autograd: backward of ", n->op, " gave no gradient for input ", i);
      if (!input.grad_fn()) {
        accumulate_leaf(input, g_in[i]);
        continue;
      }
      FT_CHECK(g_in[i].shape() == input.shape(), "autograd: backward of ", n->op, " gave a gradient of shape ",
               shape_str(g_in[i].shape()), " for input ", i, " of shape ", shape_str(input.shape()));
      Tensor& slot = grads[input.grad_fn().get()];
      slot = slot.defined() ? add(slot, g_in[i]) : g_in[i];
    }
    // Free the saved tensors as soon as the node has run.
    n->backward = nullptr;
    n->inputs.clear();
  }
}

}  // namespace ft
