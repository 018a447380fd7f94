// framework/train/plot: the SVG holds one polyline per series with its finite points mapped
// into the axes (the smallest y at the bottom edge, the largest at the top), a legend entry per
// series, escaped text; loss_series reads a metrics file's loss and val_loss columns.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>

#include "framework/error.h"
#include "framework/train/metrics.h"
#include "framework/train/plot.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using namespace ft::train;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The points of every polyline, in order: [(x, y), ...] per line.
std::vector<std::vector<std::pair<double, double>>> polylines(const std::string& svg) {
  std::vector<std::vector<std::pair<double, double>>> lines;
  const std::regex polyline("<polyline[^>]*points='([^']*)'");
  for (std::sregex_iterator it(svg.begin(), svg.end(), polyline), end; it != end; ++it) {
    std::istringstream points((*it)[1].str());
    lines.emplace_back();
    double x, y;
    char comma;
    while (points >> x >> comma >> y) lines.back().push_back({x, y});
  }
  return lines;
}

}  // namespace

TEST_CASE("plot: points are mapped into the axes, non-finite ones skipped") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/p.svg";
  write_line_plot(path, "a <title>", "step",
                  {{"rising", {0, 1, 2, 3}, {1, 2, 3, 4}}, {"falling & gap", {0, 1, 2, 3}, {4, NAN, 2, 1}}});
  const std::string svg = read_file(path);
  CHECK(svg.find("a &lt;title&gt;") != std::string::npos);
  CHECK(svg.find(">rising<") != std::string::npos);
  CHECK(svg.find(">falling &amp; gap<") != std::string::npos);
  const auto lines = polylines(svg);
  REQUIRE(lines.size() == 2);
  REQUIRE(lines[0].size() == 4);
  REQUIRE(lines[1].size() == 3);  // the NaN is left out
  // Both series share the axes: y = 1 is the bottom edge, y = 4 the top, x = 0 left, x = 3 right.
  CHECK(lines[0][0].second == doctest::Approx(lines[1][2].second));  // both y = 1
  CHECK(lines[0][3].second == doctest::Approx(lines[1][0].second));  // both y = 4
  CHECK(lines[0][0].second > lines[0][3].second);                    // SVG's y grows downwards
  CHECK(lines[0][0].first < lines[0][3].first);
  for (int i = 1; i < 4; ++i)  // equal steps in x and y map to equal distances
    CHECK(lines[0][i].first - lines[0][i - 1].first == doctest::Approx(lines[0][1].first - lines[0][0].first));
}

TEST_CASE("plot: a flat or empty series still draws, mismatched lengths are an error") {
  testing::TempDir dir;
  write_line_plot(dir.path() + "/flat.svg", "flat", "step", {{"flat", {0, 1}, {5, 5}}, {"empty", {}, {}}});
  CHECK(polylines(read_file(dir.path() + "/flat.svg")).size() == 2);
  CHECK_THROWS_WITH_AS(write_line_plot(dir.path() + "/bad.svg", "t", "x", {{"odd", {0, 1}, {1}}}),
                       doctest::Contains("series 'odd' has 2 x and 1 y values"), Error);
}

TEST_CASE("loss_series: training loss from every line, validation loss where present") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/metrics.jsonl";
  {
    MetricsLog log(path, 0);
    log.write(1, {{"loss", 5.5}, {"lr", 0.1}});
    log.write(2, {{"loss", 4.25}, {"val_loss", 4.75}});
    log.write(3, {{"loss", NAN}});
  }
  const std::vector<PlotSeries> series = loss_series(path);
  REQUIRE(series.size() == 2);
  CHECK(series[0].x == std::vector<double>{1, 2});  // the null (NaN) loss of step 3 is no point
  CHECK(series[0].y == std::vector<double>{5.5, 4.25});
  CHECK(series[1].x == std::vector<double>{2});
  CHECK(series[1].y == std::vector<double>{4.75});
  dir.write("broken.jsonl", "{\"step\": 1, \"loss\": 2}\nnot json\n");
  CHECK_THROWS_WITH_AS(loss_series(dir.path() + "/broken.jsonl"),
                       doctest::Contains("broken.jsonl:2: not a metrics line"), Error);
}
