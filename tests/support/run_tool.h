// Runs the flashtrain binary as a user would, for the tests/test_cli_*.cpp suites: its exit code
// and everything it printed.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace ft::testing {

struct ToolResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs flashtrain with `arguments` (shell words) and waits for it.
inline ToolResult run_tool(const std::string& arguments) {
  const std::string command = std::string(FLASHTRAIN_BINARY) + " " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  ToolResult r;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace ft::testing
