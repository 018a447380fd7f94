#include "framework/train/plot.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "framework/error.h"
#include "framework/io/atomic_file.h"
#include "framework/train/metrics.h"

namespace ft::train {
namespace {

constexpr double kWidth = 720, kHeight = 440;                       // the picture
constexpr double kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;  // margins around the axes
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"};

struct Range {
  double lo = INFINITY, hi = -INFINITY;
  void add(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  // An empty or flat range is widened so every point maps inside the axes.
  Range widened() const {
    if (!(lo <= hi)) return {0, 1};
    if (lo == hi) return {lo - 0.5, hi + 0.5};
    return *this;
  }
};

// Maps data to picture coordinates (y grows downwards in SVG).
struct Axes {
  Range x, y;
  double px(double v) const { return kLeft + (v - x.lo) / (x.hi - x.lo) * (kWidth - kLeft - kRight); }
  double py(double v) const { return kHeight - kBottom - (v - y.lo) / (y.hi - y.lo) * (kHeight - kTop - kBottom); }
};

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return out;
}

std::string number(double v) {
  std::ostringstream s;
  s.precision(4);
  s << v;
  return s.str();
}

void draw_axes(std::ostream& svg, const Axes& a, const std::string& title, const std::string& x_label) {
  svg << "<text x='" << kWidth / 2 << "' y='22' text-anchor='middle' font-size='15'>" << escape(title) << "</text>\n";
  svg << "<rect x='" << kLeft << "' y='" << kTop << "' width='" << kWidth - kLeft - kRight << "' height='"
      << kHeight - kTop - kBottom << "' fill='none' stroke='#444'/>\n";
  for (int i = 0; i <= 4; ++i) {  // five ticks on each axis, at even fractions of the range
    const double xv = a.x.lo + (a.x.hi - a.x.lo) * i / 4, yv = a.y.lo + (a.y.hi - a.y.lo) * i / 4;
    svg << "<text x='" << a.px(xv) << "' y='" << kHeight - kBottom + 18 << "' text-anchor='middle'>" << number(xv)
        << "</text>\n";
    svg << "<text x='" << kLeft - 6 << "' y='" << a.py(yv) + 4 << "' text-anchor='end'>" << number(yv) << "</text>\n";
    svg << "<line x1='" << kLeft << "' x2='" << kWidth - kRight << "' y1='" << a.py(yv) << "' y2='" << a.py(yv)
        << "' stroke='#ddd'/>\n";
  }
  svg << "<text x='" << kWidth / 2 << "' y='" << kHeight - 10 << "' text-anchor='middle'>" << escape(x_label)
      << "</text>\n";
}

void draw_series(std::ostream& svg, const Axes& a, const PlotSeries& s, const char* color, int index) {
  svg << "<polyline fill='none' stroke='" << color << "' stroke-width='1.5' points='";
  for (size_t i = 0; i < s.x.size(); ++i)
    if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) svg << a.px(s.x[i]) << ',' << a.py(s.y[i]) << ' ';
  svg << "'/>\n";
  const double ly = kTop + 16 + 18 * index;  // the legend, top right inside the axes
  svg << "<line x1='" << kWidth - kRight - 150 << "' x2='" << kWidth - kRight - 128 << "' y1='" << ly - 4 << "' y2='"
      << ly - 4 << "' stroke='" << color << "' stroke-width='2'/>\n";
  svg << "<text x='" << kWidth - kRight - 122 << "' y='" << ly << "'>" << escape(s.name) << "</text>\n";
}

}  // namespace

void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::vector<PlotSeries>& series) {
  Axes axes;
  for (const PlotSeries& s : series) {
    FT_CHECK(s.x.size() == s.y.size(), "plot ", path, ": series '", s.name, "' has ", s.x.size(), " x and ", s.y.size(),
             " y values");
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) axes.x.add(s.x[i]), axes.y.add(s.y[i]);
  }
  axes.x = axes.x.widened();
  axes.y = axes.y.widened();
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << kWidth << "' height='" << kHeight
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  draw_axes(svg, axes, title, x_label);
  for (size_t i = 0; i < series.size(); ++i)
    draw_series(svg, axes, series[i], kColors[i % std::size(kColors)], static_cast<int>(i));
  svg << "</svg>\n";
  io::write_file_atomically(path, [&](const std::string& temp) {
    std::ofstream out(temp);
    out << svg.str();
    FT_CHECK(out.flush(), temp, ": cannot write the plot");
  });
}

std::vector<PlotSeries> loss_series(const std::string& metrics_path) {
  PlotSeries train{"training loss", {}, {}}, validation{"validation loss", {}, {}};
  for (const MetricsRow& row : read_metrics(metrics_path))
    for (auto [key, series] : {std::pair{"loss", &train}, std::pair{"val_loss", &validation}}) {
      auto it = row.values.find(key);
      if (it != row.values.end()) series->x.push_back(static_cast<double>(row.step)), series->y.push_back(it->second);
    }
  return {train, validation};
}

}  // namespace ft::train
