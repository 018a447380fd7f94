// The TF32 switch: an atomic, so a setting made on one thread holds for ops run on another.
#include "framework/cuda/matmul_settings.h"

#include <atomic>

namespace ft::cuda {
namespace {

std::atomic<bool> g_allow_tf32{true};

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

}  // namespace ft::cuda
