// framework/train/plot: read_loss_curves takes a metrics file's finite loss and val_loss values;
// difference subtracts at common steps only; draw_loss_plot writes the data file gnuplot reads
// (each curve its own index block, the differences from the first run after the losses), a
// script beside it, and a PNG of the requested size that is not blank; a missing gnuplot is an
// error that says how to install it.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>

#include "framework/error.h"
#include "framework/train/metrics.h"
#include "framework/train/plot.h"
#include "tests/support/png_image.h"
#include "tests/support/scoped_env.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using namespace ft::train;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The index blocks of a gnuplot data file: (step, value) lines, blocks parted by blank lines.
std::vector<Curve> data_blocks(const std::string& path) {
  std::vector<Curve> blocks(1);
  std::istringstream in(read_file(path));
  int blank_lines = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() && ++blank_lines == 2) blocks.emplace_back();
    if (line.empty() || line[0] == '#') continue;
    blank_lines = 0;
    std::istringstream fields(line);
    CurvePoint p;
    fields >> p.step >> p.value;
    blocks.back().push_back(p);
  }
  blocks.pop_back();  // after the last block's two blank lines
  return blocks;
}

bool same_points(const Curve& a, const Curve& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].step != b[i].step || a[i].value != doctest::Approx(b[i].value).epsilon(1e-15)) return false;
  return true;
}

}  // namespace

TEST_CASE("read_loss_curves: training loss from every line, validation loss where present") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/metrics.jsonl";
  {
    MetricsLog log(path, 0);
    log.write(1, {{"loss", 5.5}, {"lr", 0.1}});
    log.write(2, {{"loss", 4.25}, {"val_loss", 4.75}});
    log.write(3, {{"loss", NAN}});
  }
  const LossCurves curves = read_loss_curves(path);
  CHECK(same_points(curves.train, {{1, 5.5}, {2, 4.25}}));  // the null (NaN) loss of step 3 is no point
  CHECK(same_points(curves.validation, {{2, 4.75}}));
  dir.write("broken.jsonl", "{\"step\": 1, \"loss\": 2}\nnot json\n");
  CHECK_THROWS_WITH_AS(read_loss_curves(dir.path() + "/broken.jsonl"),
                       doctest::Contains("broken.jsonl:2: not a metrics line"), Error);
}

TEST_CASE("difference: the curve minus the reference at the steps both have") {
  const Curve curve = {{1, 3.0}, {2, 2.5}, {4, 2.0}, {6, 1.5}};
  const Curve reference = {{2, 2.0}, {3, 1.0}, {4, 2.25}, {6, 1.5}};
  CHECK(same_points(difference(curve, reference), {{2, 0.5}, {4, -0.25}, {6, 0.0}}));
  CHECK(difference(curve, {}).empty());
}

TEST_CASE("draw_loss_plot: the data blocks, the script and a 1000 x 700 PNG with two panels") {
  testing::TempDir dir;
  const PlottedRun a{"math", {{{1, 4.0}, {2, 3.5}, {3, 3.25}}, {{2, 3.75}}}};
  const PlottedRun b{"it's flash", {{{1, 4.5}, {2, 3.0}, {3, 3.5}}, {{2, 3.5}}}};
  const std::string png = dir.path() + "/sub/loss.png";
  draw_loss_plot(png, "a comparison", {a, b}, true);

  const std::vector<Curve> blocks = data_blocks(dir.path() + "/sub/loss.dat");
  REQUIRE(blocks.size() == 6);  // a's and b's losses, then b's differences from a
  CHECK(same_points(blocks[0], a.curves.train));
  CHECK(same_points(blocks[1], a.curves.validation));
  CHECK(same_points(blocks[2], b.curves.train));
  CHECK(same_points(blocks[3], b.curves.validation));
  CHECK(same_points(blocks[4], {{1, 0.5}, {2, -0.5}, {3, 0.25}}));
  CHECK(same_points(blocks[5], {{2, -0.25}}));

  const std::string script = read_file(dir.path() + "/sub/loss.gp");
  CHECK(script.find("set output 'loss.png'") != std::string::npos);  // relative: the script runs in its folder
  CHECK(script.find("set multiplot layout 2,1") != std::string::npos);
  CHECK(script.find("title 'it''s flash'") != std::string::npos);  // gnuplot's quote escape
  CHECK(script.find("index 5") != std::string::npos);

  const testing::PngImage image = testing::read_png(png);
  REQUIRE(image.decoded);
  CHECK(image.width == 1000);
  CHECK(image.height == 700);
  CHECK(image.distinct_colors() > 2);  // background, axes and at least one curve colour
}

TEST_CASE("draw_loss_plot: one panel without differences, empty curves left out, nothing to plot an error") {
  testing::TempDir dir;
  const PlottedRun run{"run", {{{1, 2.0}, {2, 1.0}}, {}}};
  draw_loss_plot(dir.path() + "/one.png", "one run", {run}, true);  // a single run has no differences
  CHECK(data_blocks(dir.path() + "/one.dat").size() == 1);
  CHECK(read_file(dir.path() + "/one.gp").find("multiplot") == std::string::npos);
  CHECK(testing::read_png(dir.path() + "/one.png").decoded);
  CHECK_THROWS_WITH_AS(draw_loss_plot(dir.path() + "/none.png", "none", {{"empty", {}}}, false),
                       doctest::Contains("none.png: no loss values to plot"), Error);
}

TEST_CASE("plot_runs: the runs' metrics files; without gnuplot an error that says how to install it") {
  testing::TempDir dir;
  for (const char* name : {"a", "b"}) {
    std::filesystem::create_directories(dir.path() + "/" + name);
    MetricsLog log(metrics_file(dir.path() + "/" + name), 0);
    log.write(1, {{"loss", name[0] == 'a' ? 3.0 : 3.5}});
    log.write(2, {{"loss", 2.0}, {"val_loss", 2.5}});
  }
  plot_runs({dir.path() + "/a", dir.path() + "/b"}, dir.path() + "/runs.png");
  CHECK(data_blocks(dir.path() + "/runs.dat").size() == 4);
  CHECK(testing::read_png(dir.path() + "/runs.png").width == 1000);
  CHECK_THROWS_WITH_AS(plot_runs({dir.path() + "/absent"}, dir.path() + "/x.png"),
                       doctest::Contains("absent/metrics.jsonl: cannot read the metrics file"), Error);

  CHECK(gnuplot_available());
  testing::ScopedEnv no_gnuplot("PATH", "/nonexistent");
  CHECK_FALSE(gnuplot_available());
  CHECK_THROWS_WITH_AS(plot_runs({dir.path() + "/a"}, dir.path() + "/a.png"),
                       doctest::Contains("`gnuplot` was not found"), Error);
  CHECK_THROWS_WITH_AS(plot_runs({dir.path() + "/a"}, dir.path() + "/a.png"),
                       doctest::Contains("apt-get install gnuplot-nox"), Error);
}
