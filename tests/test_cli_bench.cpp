// `flashtrain bench kernels` as a user runs it, where it cannot time anything: on a device that is
// not a GPU, on a machine without one, or with a bad option, it exits with code 1 and a message
// that names the option and what it needs, instead of crashing. (On a GPU it runs the benchmark,
// which no test times.) Likewise `bench train --attention` where the kernel cannot run.
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
  CHECK(r.output.find("flashtrain: error: bench kernels: " + message) != std::string::npos);
}

}  // namespace

TEST_CASE("bench kernels without a GPU exits with code 1 and says it needs one") {
  check_fails_with("bench kernels --device cpu", "--device cpu: expected cuda or cuda:N");
  if (ft::cuda_available()) return;  // here the default device would run the benchmark
  const ToolResult r = run_tool("bench kernels");
  CAPTURE(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("flashtrain: error: bench kernels: ") != std::string::npos);
  CHECK(r.output.find("needs a GPU") != std::string::npos);
}

TEST_CASE("bench kernels rejects bad options before it looks for a GPU") {
  check_fails_with("bench kernels --dtype f64", "--dtype f64: expected bf16, f32 or f16");
  check_fails_with("bench kernels --rows 1000",
                   "--rows 1000: expected a positive multiple of the sequence length 1024");
  check_fails_with("bench kernels --only no_such_kernel", "--only 'no_such_kernel' matches no kernel");
}

TEST_CASE("bench train --attention: an unknown kernel, and flash or cudnn on the CPU, exit with code 1 naming it") {
  for (const auto& [arguments, message] :
       {std::pair<std::string, std::string>{"bench train --model tiny --device cpu --attention fast",
                                            "bench train: --attention fast: expected math, flash or cudnn"},
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
