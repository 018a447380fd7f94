// `flashtrain bench kernels` and `bench attention` as a user runs them, where they cannot time
// anything: on a device that is not a GPU, on a machine without one, or with a bad option, they
// exit with code 1 and a message that names the option and what it needs, instead of crashing.
// (On a GPU they run the benchmark, which no test times.) Likewise `bench train --attention`
// where the kernel cannot run.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <utility>

#include "framework/device.h"
#include "tests/support/run_tool.h"

namespace {

using ft::testing::run_tool;
using ft::testing::ToolResult;

void check_fails_with(const std::string& arguments, const std::string& message) {
  CAPTURE(arguments);
  const ToolResult r = run_tool(arguments);
  CAPTURE(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("flashtrain: error: " + message) != std::string::npos);
}

// Without a GPU the command exits with code 1 saying it needs one (with one it would run).
void check_needs_a_gpu(const std::string& arguments, const std::string& command) {
  if (ft::cuda_available()) return;
  CAPTURE(arguments);
  const ToolResult r = run_tool(arguments);
  CAPTURE(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("flashtrain: error: " + command + ": ") != std::string::npos);
  CHECK(r.output.find("needs a GPU") != std::string::npos);
}

}  // namespace

TEST_CASE("bench kernels without a GPU exits with code 1 and says it needs one") {
  check_fails_with("bench kernels --device cpu", "bench kernels: --device cpu: expected cuda or cuda:N");
  check_needs_a_gpu("bench kernels", "bench kernels");
}

TEST_CASE("bench kernels rejects bad options before it looks for a GPU") {
  check_fails_with("bench kernels --dtype f64", "bench kernels: --dtype f64: expected bf16, f32 or f16");
  check_fails_with("bench kernels --rows 1000",
                   "bench kernels: --rows 1000: expected a positive multiple of the sequence length 1024");
  check_fails_with("bench kernels --only no_such_kernel", "bench kernels: --only 'no_such_kernel' matches no kernel");
}

TEST_CASE("bench attention without a GPU exits with code 1 and says it needs one") {
  check_fails_with("bench attention --device cpu", "bench attention: --device cpu: expected cuda or cuda:N");
  check_needs_a_gpu("bench attention", "bench attention");
  check_needs_a_gpu("bench attention --kernels math --seqs 64 --head-dims 32", "bench attention");
}

TEST_CASE("bench attention rejects bad options before it looks for a GPU") {
  check_fails_with("bench attention --kernels flash,fast", "bench attention: --kernels fast: expected flash, math or cudnn");
  check_fails_with("bench attention --head-dims 64,96",
                   "bench attention: --head-dims 96: kernel flash takes 64 or 128");
  check_fails_with("bench attention --kernels math --head-dims 0",
                   "bench attention: --head-dims 0: expected at least 1");
  check_fails_with("bench attention --seqs 512,0", "bench attention: --seqs 0: expected lengths of at least 1");
  check_fails_with("bench attention --causal maybe", "bench attention: --causal maybe: expected both, yes or no");
  check_fails_with("bench attention --dtype f32", "bench attention: --dtype f32: expected bf16 or f16");
  check_fails_with("bench attention --tokens 0", "bench attention: --tokens 0: expected at least 1");
}

TEST_CASE("bench train --attention: an unknown kernel, and flash or cudnn on the CPU, exit with code 1 naming it") {
  for (const auto& [arguments, message] :
       {std::pair<std::string, std::string>{"bench train --model tiny --device cpu --attention fast",
                                            "bench train: --attention fast: expected flash, math or cudnn"},
        {"bench train --model tiny --device cpu --attention flash --steps 1",
         "attention: kernel flash runs on cuda, got q f32"},
        {"bench train --model tiny --device cpu --attention cudnn --steps 1",
         "attention: kernel cudnn runs on cuda, got q f32"}}) {
    CAPTURE(arguments);
    const ToolResult r = run_tool(arguments);
    CAPTURE(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("flashtrain: error: " + message) != std::string::npos);
  }
}
