// `flashtrain compare` and `flashtrain plot` as a user runs them: a tiny comparison prints its
// table and writes the summary and the plot; `plot` draws existing runs; a --vary key the
// recipe schema lacks or a value it refuses ends with exit code 1, a message naming the key and
// what it accepts, and no comparison folder.
#include <doctest/doctest.h>

#include <filesystem>

#include "tests/support/png_image.h"
#include "tests/support/run_tool.h"
#include "tests/support/small_corpus.h"
#include "tests/support/temp_dir.h"

using namespace ft;
namespace fs = std::filesystem;
using ft::testing::run_tool;
using ft::testing::ToolResult;

TEST_CASE("compare: a tiny comparison prints its table; plot draws its runs") {
  testing::TempDir dir;
  const std::string out = dir.path() + "/cmp";
  const ToolResult r =
      run_tool("compare " + testing::tiny_recipe(dir) + " --vary model.dropout=0,0.1 --steps 4 --out " + out);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("=== variant 2/2: model.dropout=0.1") != std::string::npos);
  CHECK(r.output.find("| variant | final train loss |") != std::string::npos);
  CHECK(r.output.find("\n| model.dropout=0.1 | ") != std::string::npos);
  for (const char* file : {"summary.md", "summary.csv", "loss.png", "loss.gp", "loss.dat"})
    CHECK_MESSAGE(fs::exists(out + "/" + file), file);

  const ToolResult plot =
      run_tool("plot " + out + "/model.dropout=0 " + out + "/model.dropout=0.1 --out " + dir.path() + "/p.png");
  REQUIRE_MESSAGE(plot.exit_code == 0, plot.output);
  const testing::PngImage image = testing::read_png(dir.path() + "/p.png");
  CHECK(image.decoded);
  CHECK(image.width == 1000);
}

TEST_CASE("compare: a bad --vary key or value is exit code 1 before any run") {
  testing::TempDir dir;
  const std::string recipe = testing::tiny_recipe(dir), out = dir.path() + "/cmp";
  const ToolResult key = run_tool("compare " + recipe + " --vary optim.lrr=1e-3,2e-3 --out " + out);
  CHECK(key.exit_code == 1);
  CHECK(key.output.find("flashtrain: error: --vary optim.lrr=1e-3,2e-3: unknown key optim.lrr (did you mean "
                        "optim.lr?)") != std::string::npos);
  const ToolResult value = run_tool("compare " + recipe + " --vary data.packing=concat,zip --out " + out);
  CHECK(value.exit_code == 1);
  CHECK(value.output.find("data.packing: expected one of concat, packed, padded, got 'zip'") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  const ToolResult no_runs = run_tool("plot " + dir.path() + "/absent --out " + dir.path() + "/p.png");
  CHECK(no_runs.exit_code == 1);
  CHECK(no_runs.output.find("absent/metrics.jsonl: cannot read the metrics file") != std::string::npos);
}
