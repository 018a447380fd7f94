#include "framework/train/compare.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "framework/error.h"
#include "framework/io/atomic_file.h"
#include "framework/train/metrics.h"
#include "framework/train/plot.h"
#include "framework/train/run_setup.h"
#include "framework/train/trainer.h"

namespace fs = std::filesystem;

namespace ft::train {
namespace {

struct VariedKey {
  std::string key;
  std::vector<std::string> values;
};

// Keys the comparison sets itself: each variant runs in its own folder.
constexpr const char* kReservedKeys[] = {"run_dir", "checkpoint.dir"};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t end; (end = text.find(separator, begin)) != std::string::npos; begin = end + 1)
    parts.push_back(text.substr(begin, end - begin));
  parts.push_back(text.substr(begin));
  return parts;
}

// "key=a,b" with every value checked against the key's form in the schema.
VariedKey parse_vary(const std::string& text) {
  const std::string where = "--vary " + text;
  const size_t equals = text.find('=');
  FT_CHECK(equals != std::string::npos, where, ": expected key.path=value1,value2, e.g. attention=math,flash");
  VariedKey varied{text.substr(0, equals), split(text.substr(equals + 1), ',')};
  for (const char* reserved : kReservedKeys)
    FT_CHECK(varied.key != reserved, where, ": ", reserved,
             " cannot vary: each variant runs in its own folder under the comparison's (--out)");
  for (const std::string& value : varied.values) {
    FT_CHECK(!value.empty(), where, ": ", varied.key, ": an empty value in the list (expected value1,value2,...)");
    check_assignment(varied.key + "=" + value, where);
  }
  return varied;
}

std::vector<VariedKey> parse_varied_keys(const std::vector<std::string>& vary) {
  FT_CHECK(!vary.empty(), "a comparison needs at least one --vary key=value1,value2");
  std::vector<VariedKey> keys;
  for (const std::string& text : vary) {
    keys.push_back(parse_vary(text));
    for (size_t i = 0; i + 1 < keys.size(); ++i)
      FT_CHECK(keys[i].key != keys.back().key, "--vary ", text, ": ", keys.back().key,
               " is varied twice (list all its values in one --vary)");
  }
  return keys;
}

// Every combination of one value per key, as "key=value" lists in --vary order.
std::vector<std::vector<std::string>> combinations(const std::vector<VariedKey>& keys) {
  std::vector<std::vector<std::string>> all = {{}};
  for (const VariedKey& k : keys) {
    std::vector<std::vector<std::string>> longer;
    for (const std::vector<std::string>& head : all)
      for (const std::string& value : k.values) {
        longer.push_back(head);
        longer.back().push_back(k.key + "=" + value);
      }
    all = std::move(longer);
  }
  return all;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

// A variant's folder name: its name with anything but letters, digits and . _ - = , made '_'.
std::string folder_name(const std::string& name) {
  std::string out = name;
  for (char& c : out)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string("._-=,").find(c) == std::string::npos) c = '_';
  return out;
}

// The overrides every variant shares: --set, then --steps.
std::vector<std::string> shared_overrides(const CompareOptions& o) {
  std::vector<std::string> overrides = o.overrides;
  if (o.steps > 0) overrides.insert(overrides.end(), {str("optim.steps=", o.steps), "optim.epochs=0"});
  return overrides;
}

// The variant's recipe: the shared overrides, its values, then its own folders; checked for
// what it needs before it runs. Errors name the variant.
Variant make_variant(const CompareOptions& o, const Recipe& base, const std::string& dir,
                     const std::vector<std::string>& values) {
  Variant v{join(values, ","), {}};
  try {
    std::vector<std::string> overrides = shared_overrides(o);
    overrides.insert(overrides.end(), values.begin(), values.end());
    overrides.push_back(string_assignment("run_dir", (fs::path(dir) / folder_name(v.name)).string()));
    overrides.push_back("checkpoint.dir=");
    if (base.data.cache.empty())
      overrides.push_back(string_assignment("data.cache", (fs::path(dir) / "dataset.h5").string()));
    v.recipe = load_recipe(o.recipe_path, overrides);
    resolve_device(v.recipe);
    checkpoint_to_resume(v.recipe);
  } catch (const Error& e) {
    throw Error(str("variant ", v.name, ": ", e.what()));
  }
  return v;
}

std::string shortest(double value) {
  if (!std::isfinite(value)) return "nan";
  char text[32];
  return std::string(text, std::to_chars(text, text + sizeof text, value).ptr);
}

std::string formatted(const char* format, double value) {
  if (!std::isfinite(value)) return "n/a";
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

// max and mean of |value| over a difference curve; NaN for an empty one.
std::pair<double, double> max_and_mean_abs(const Curve& diff) {
  if (diff.empty()) return {NAN, NAN};
  double max = 0, sum = 0;
  for (const CurvePoint& p : diff) max = std::max(max, std::abs(p.value)), sum += std::abs(p.value);
  return {max, sum / static_cast<double>(diff.size())};
}

double last_value(const Curve& curve) { return curve.empty() ? NAN : curve.back().value; }

// tokens/s, peak memory and skipped fp16 steps of a run's metrics.
void read_run_figures(const std::string& metrics_path, VariantSummary& row) {
  for (const MetricsRow& m : read_metrics(metrics_path)) {
    if (m.values.count("tokens_per_s")) row.tokens_per_second = m.values.at("tokens_per_s");
    if (m.values.count("peak_memory_bytes"))
      row.peak_memory_bytes = std::max(row.peak_memory_bytes, m.values.at("peak_memory_bytes"));
    if (m.values.count("skipped_steps")) row.skipped_fp16_steps = static_cast<int64_t>(m.values.at("skipped_steps"));
  }
}

}  // namespace

ComparisonPlan plan_comparison(const CompareOptions& o) {
  const std::vector<VariedKey> keys = parse_varied_keys(o.vary);
  const Recipe base = load_recipe(o.recipe_path, shared_overrides(o));
  ComparisonPlan plan;
  plan.dir = o.out_dir.empty() ? (fs::path("runs") / ("compare-" + base.name)).string() : o.out_dir;
  std::vector<std::string> key_names;
  for (const VariedKey& k : keys) key_names.push_back(k.key);
  plan.title = base.name + ": " + join(key_names, ", ");
  for (const std::vector<std::string>& values : combinations(keys))
    plan.variants.push_back(make_variant(o, base, plan.dir, values));
  return plan;
}

std::vector<VariantSummary> summarize_runs(const std::vector<std::string>& names,
                                           const std::vector<std::string>& run_dirs) {
  FT_CHECK(!run_dirs.empty() && names.size() == run_dirs.size(), "summarize_runs: expected one name per run, got ",
           names.size(), " names and ", run_dirs.size(), " runs");
  const LossCurves first = read_loss_curves(metrics_file(run_dirs.front()));
  std::vector<VariantSummary> rows;
  for (size_t i = 0; i < run_dirs.size(); ++i) {
    const LossCurves curves = read_loss_curves(metrics_file(run_dirs[i]));
    VariantSummary row;
    row.name = names[i];
    row.final_train_loss = last_value(curves.train);
    row.final_val_loss = last_value(curves.validation);
    std::tie(row.max_train_diff, row.mean_train_diff) = max_and_mean_abs(difference(curves.train, first.train));
    std::tie(row.max_val_diff, row.mean_val_diff) = max_and_mean_abs(difference(curves.validation, first.validation));
    read_run_figures(metrics_file(run_dirs[i]), row);
    rows.push_back(row);
  }
  return rows;
}

std::string summary_markdown(const std::vector<VariantSummary>& rows) {
  std::ostringstream out;
  out << "| variant | final train loss | final val loss | train diff max | train diff mean | val diff max | "
         "val diff mean | tokens/s | peak memory (MiB) | skipped fp16 steps |\n"
      << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const VariantSummary& r : rows)
    out << "| " << r.name << " | " << formatted("%.4f", r.final_train_loss) << " | "
        << formatted("%.4f", r.final_val_loss) << " | " << formatted("%.3g", r.max_train_diff) << " | "
        << formatted("%.3g", r.mean_train_diff) << " | " << formatted("%.3g", r.max_val_diff) << " | "
        << formatted("%.3g", r.mean_val_diff) << " | " << formatted("%.0f", r.tokens_per_second) << " | "
        << formatted("%.1f", r.peak_memory_bytes / (1 << 20)) << " | " << r.skipped_fp16_steps << " |\n";
  return out.str();
}

std::string summary_csv(const std::vector<VariantSummary>& rows) {
  std::ostringstream out;
  out << "variant,final_train_loss,final_val_loss,max_abs_train_diff,mean_abs_train_diff,max_abs_val_diff,"
         "mean_abs_val_diff,tokens_per_s,peak_memory_bytes,skipped_fp16_steps\n";
  for (const VariantSummary& r : rows) {
    std::string quoted_name;
    for (char c : r.name) quoted_name += c == '"' ? std::string("\"\"") : std::string(1, c);
    out << '"' << quoted_name << '"';
    for (double v : {r.final_train_loss, r.final_val_loss, r.max_train_diff, r.mean_train_diff, r.max_val_diff,
                     r.mean_val_diff, r.tokens_per_second, r.peak_memory_bytes})
      out << ',' << shortest(v);
    out << ',' << r.skipped_fp16_steps << '\n';
  }
  return out.str();
}

ComparisonResult run_comparison(const CompareOptions& options) {
  const ComparisonPlan plan = plan_comparison(options);
  const bool can_plot = gnuplot_available();
  if (!can_plot)
    std::printf("warning: no gnuplot, so the comparison leaves its plot's data and script (loss.dat, loss.gp) in %s "
                "for `gnuplot loss.gp` there: %s\n",
                plan.dir.c_str(), kInstallGnuplot);
  std::vector<std::string> names, run_dirs;
  for (size_t i = 0; i < plan.variants.size(); ++i) {
    const Variant& v = plan.variants[i];
    std::printf("=== variant %zu/%zu: %s\n", i + 1, plan.variants.size(), v.name.c_str());
    run_dirs.push_back(run_training(v.recipe).run_dir);
    names.push_back(v.name);
  }
  ComparisonResult result{plan.dir, summarize_runs(names, run_dirs)};
  io::write_text_file_atomically(
      (fs::path(plan.dir) / "summary.md").string(),
      str("# ", plan.title, "\n\n", summary_markdown(result.rows), "\nThe diffs are |loss - ", names.front(),
          "'s| at the steps both runs logged (val: both evaluated).\n"));
  io::write_text_file_atomically((fs::path(plan.dir) / "summary.csv").string(), summary_csv(result.rows));
  std::vector<PlottedRun> runs;
  for (size_t i = 0; i < names.size(); ++i) runs.push_back({names[i], read_loss_curves(metrics_file(run_dirs[i]))});
  const std::string png = (fs::path(plan.dir) / "loss.png").string();
  if (can_plot)
    draw_loss_plot(png, plan.title, runs, true);
  else
    write_loss_plot_files(png, plan.title, runs, true);
  result.plotted = can_plot;
  return result;
}

}  // namespace ft::train
