// Checkpoint files (layout in docs/checkpoints.md). Every value is a dataset with a `dtype`
// attribute, and a `manifest` dataset lists each one as "sha256 dtype shape name"; the root
// attribute manifest_sha256 seals the manifest. So one chain of SHA-256 sums covers all content.
//
// Why SHA-256 over every dataset rather than HDF5's Fletcher-32 filter: the filter needs chunked
// datasets (and so a chunk index per tensor), checks only on read through the filter pipeline,
// and would leave the small counters and the recipe text unchecked unless they were chunked too;
// a manifest also says which datasets must exist, so a missing one is named, and it is readable
// with any HDF5 tool. OpenSSL's SHA-256 runs at about a GB/s, small beside writing the file.
#include "framework/train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "framework/io/atomic_file.h"
#include "framework/io/hdf5_file.h"
#include "framework/io/sha256.h"

namespace ft::train {
namespace {

namespace fs = std::filesystem;

constexpr const char* kManifest = "manifest";
constexpr const char* kManifestTitle = "flashtrain checkpoint manifest";
// A manifest line is about 100 bytes; this allows ~600k datasets and stops a corrupt size from
// becoming a huge allocation.
constexpr int64_t kMaxManifestBytes = int64_t{64} << 20;

// ---- element types ---------------------------------------------------------------------------

// Element type names as the manifest and the `dtype` attributes write them: ft's dtype names for
// tensors (f16 and bf16 stored as their raw uint16 bits) and i64/u64 for counters.
template <class F>
bool with_stored_type(const std::string& dtype, F&& f) {
  if (dtype == "f32")
    f(float{});
  else if (dtype == "f64")
    f(double{});
  else if (dtype == "f16" || dtype == "bf16")
    f(uint16_t{});
  else if (dtype == "i32")
    f(int32_t{});
  else if (dtype == "u8")
    f(uint8_t{});
  else if (dtype == "i64")
    f(int64_t{});
  else if (dtype == "u64")
    f(uint64_t{});
  else
    return false;
  return true;
}

// The element type of a counter dataset.
constexpr const char* counter_type(int64_t) { return "i64"; }
constexpr const char* counter_type(uint64_t) { return "u64"; }
constexpr const char* counter_type(double) { return "f64"; }

std::string sha256_hex(const void* data, size_t bytes) {
  return io::sha256_hex(std::string_view(static_cast<const char*>(data), bytes));
}

// "[768,2304]", "[]" for a scalar: one whitespace-free manifest field.
std::string shape_field(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::optional<Shape> parse_shape_field(const std::string& field) {
  if (field.size() < 2 || field.front() != '[' || field.back() != ']') return std::nullopt;
  Shape shape;
  std::stringstream dims(field.substr(1, field.size() - 2));
  for (std::string dim; std::getline(dims, dim, ',');) {
    if (dim.empty() || dim.size() > 18 || dim.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    shape.push_back(std::stoll(dim));
  }
  return shape;
}

size_t stored_bytes(const std::string& dtype, const Shape& shape) {
  size_t element = 0;
  with_stored_type(dtype, [&](auto tag) { element = sizeof(tag); });
  return element * static_cast<size_t>(shape_numel(shape));
}

// ---- the manifest ------------------------------------------------------------------------------

struct Entry {
  std::string sha256;
  std::string dtype;
  Shape shape;
  std::string name;
  size_t bytes() const { return stored_bytes(dtype, shape); }
};

std::string manifest_header(int64_t step) {
  return str(kManifestTitle, "\nformat_version ", kCheckpointFormatVersion, "\nstep ", step, "\n");
}

// ---- writing ------------------------------------------------------------------------------------

class CheckpointWriter {
 public:
  explicit CheckpointWriter(const std::string& path) : file_(io::Hdf5File::create(path)) {}

  void add(const std::string& name, const std::string& dtype, const Shape& shape, const void* data) {
    with_stored_type(dtype, [&](auto tag) {
      using T = decltype(tag);
      file_.write<T>(name, static_cast<const T*>(data), shape);
    });
    file_.set_attribute(name, "dtype", dtype);
    entries_ += str(sha256_hex(data, stored_bytes(dtype, shape)), ' ', dtype, ' ', shape_field(shape), ' ', name, '\n');
  }

  // Copied to the host first when it lives on a device.
  void add_tensor(const std::string& name, const Tensor& tensor) {
    FT_CHECK(tensor.dtype() != DType::nf4, "checkpoint: '", name, "' is nf4, which checkpoints do not store");
    Tensor host = tensor.to(Device::cpu()).contiguous();
    add(name, dtype_name(host.dtype()), host.shape(), host.raw_data());
  }

  template <class T>
  void add_counter(const std::string& name, T value) {
    add(name, counter_type(T{}), {}, &value);
  }

  void add_text(const std::string& name, const std::string& text) {
    add(name, "u8", {static_cast<int64_t>(text.size())}, text.data());
  }

  // Writes the manifest and the root attributes; the file is complete after this.
  void finish(int64_t step) {
    const std::string manifest = manifest_header(step) + entries_;
    file_.write<uint8_t>(kManifest, reinterpret_cast<const uint8_t*>(manifest.data()),
                         {static_cast<int64_t>(manifest.size())});
    file_.set_attribute("/", "format_version", kCheckpointFormatVersion);
    file_.set_attribute("/", "step", step);
    file_.set_attribute("/", "flashtrain_version", FLASHTRAIN_VERSION);
    file_.set_attribute("/", "manifest_sha256", io::sha256_hex(manifest));
    file_.flush();
  }

 private:
  io::Hdf5File file_;
  std::string entries_;  // manifest lines, in writing order
};

// ---- reading ------------------------------------------------------------------------------------

// An open checkpoint whose format version and manifest have been checked. Reading a dataset
// checks its shape, dtype attribute and SHA-256 against the manifest.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path) : file_(io::Hdf5File::open(path)) {
    check_format_version();
    parse_manifest(read_manifest());
  }

  const std::string& path() const { return file_.path(); }
  int64_t step() const { return step_; }
  const std::vector<Entry>& entries() const { return entries_; }

  const Entry* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }

  // Reads entry.bytes() bytes into `out`.
  void read(const Entry& entry, void* out) const {
    FT_CHECK(file_.has(entry.name), path(), ": dataset '", entry.name, "' listed in the manifest is missing");
    const Shape stored = file_.shape(entry.name);
    FT_CHECK(stored == entry.shape, path(), ": dataset '", entry.name, "' has shape ", shape_str(stored),
             " but the manifest says ", shape_str(entry.shape));
    const std::string dtype =
        file_.has_attribute(entry.name, "dtype") ? file_.string_attribute(entry.name, "dtype") : "(none)";
    FT_CHECK(dtype == entry.dtype, path(), ": dataset '", entry.name, "' has dtype attribute '", dtype,
             "' but the manifest says '", entry.dtype, "'");
    with_stored_type(entry.dtype, [&](auto tag) {
      using T = decltype(tag);
      file_.read_into<T>(entry.name, static_cast<T*>(out), static_cast<size_t>(shape_numel(entry.shape)));
    });
    const std::string sum = sha256_hex(out, entry.bytes());
    FT_CHECK(sum == entry.sha256, path(), ": dataset '", entry.name, "' is corrupt: its SHA-256 is ", sum,
             " but the manifest records ", entry.sha256);
  }

  // A host tensor of the entry's dtype and shape.
  Tensor read_tensor(const Entry& entry) const {
    Tensor t = Tensor::empty(entry.shape, dtype_from_name(entry.dtype));
    read(entry, t.raw_data());
    return t;
  }

  template <class T>
  T read_counter(const std::string& name) const {
    const Entry& entry = required(name);
    FT_CHECK(entry.dtype == counter_type(T{}) && entry.shape.empty(), path(), ": '", name, "' is ", entry.dtype,
             shape_str(entry.shape), ", expected a scalar ", counter_type(T{}));
    T value{};
    read(entry, &value);
    return value;
  }

  std::string read_text(const std::string& name) const {
    const Entry& entry = required(name);
    FT_CHECK(entry.dtype == "u8" && entry.shape.size() == 1, path(), ": '", name, "' is ", entry.dtype,
             shape_str(entry.shape), ", expected u8 text");
    std::string text(entry.bytes(), '\0');
    read(entry, text.data());
    return text;
  }

  const Entry& required(const std::string& name) const {
    const Entry* entry = find(name);
    FT_CHECK(entry, path(), ": the checkpoint has no '", name, "'");
    return *entry;
  }

 private:
  void check_format_version() {
    FT_CHECK(file_.has_attribute("/", "format_version"), path(),
             ": not a flashtrain checkpoint (the file has no format_version attribute)");
    const int64_t version = file_.int_attribute("/", "format_version");
    if (version > kCheckpointFormatVersion) {
      const std::string writer = file_.has_attribute("/", "flashtrain_version")
                                     ? file_.string_attribute("/", "flashtrain_version")
                                     : "an unknown version";
      throw Error(str(path(), ": checkpoint format version ", version, " (written by flashtrain ", writer,
                      ") is newer than this flashtrain ", FLASHTRAIN_VERSION, " reads (up to version ",
                      kCheckpointFormatVersion, "); update flashtrain to load it"));
    }
    FT_CHECK(version >= 1, path(), ": checkpoint format version ", version, " is not valid (versions start at 1)");
  }

  std::string read_manifest() const {
    FT_CHECK(file_.has(kManifest), path(), ": the checkpoint has no manifest dataset (incomplete or not a checkpoint)");
    const Shape shape = file_.shape(kManifest);
    FT_CHECK(shape.size() == 1 && shape[0] <= kMaxManifestBytes, path(), ": the manifest has shape ", shape_str(shape),
             ", expected one dimension of at most ", kMaxManifestBytes, " bytes");
    std::string manifest(static_cast<size_t>(shape[0]), '\0');
    file_.read_into<uint8_t>(kManifest, reinterpret_cast<uint8_t*>(manifest.data()), manifest.size());
    const std::string expected = file_.string_attribute("/", "manifest_sha256");
    const std::string sum = io::sha256_hex(manifest);
    FT_CHECK(sum == expected, path(), ": the manifest is corrupt: its SHA-256 is ", sum,
             " but the file's manifest_sha256 attribute records ", expected);
    return manifest;
  }

  // The manifest's header must agree with the root attributes (which are not checksummed).
  void parse_manifest(const std::string& manifest) {
    step_ = file_.int_attribute("/", "step");
    const int64_t version = file_.int_attribute("/", "format_version");
    const std::string header = str(kManifestTitle, "\nformat_version ", version, "\nstep ", step_, "\n");
    FT_CHECK(manifest.compare(0, header.size(), header) == 0, path(), ": the root attributes (format_version ", version,
             ", step ", step_, ") disagree with the manifest's header (corrupt attributes?)");
    std::istringstream lines(manifest.substr(header.size()));
    int line_number = 4;  // after the three header lines
    for (std::string line; std::getline(lines, line); ++line_number) {
      std::istringstream fields(line);
      Entry entry;
      std::string shape, rest;
      fields >> entry.sha256 >> entry.dtype >> shape >> entry.name >> rest;
      std::optional<Shape> parsed = parse_shape_field(shape);
      FT_CHECK(entry.sha256.size() == 64 && parsed && !entry.name.empty() && rest.empty() &&
                   with_stored_type(entry.dtype, [](auto) {}),
               path(), ": manifest line ", line_number, " is malformed: '", line, "'");
      entry.shape = *parsed;
      FT_CHECK(index_.emplace(entry.name, entries_.size()).second, path(), ": manifest line ", line_number, " lists '",
               entry.name, "' a second time");
      entries_.push_back(std::move(entry));
    }
  }

  io::Hdf5File file_;
  int64_t step_ = 0;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

// ---- matching parameters and optimizer state ---------------------------------------------------

// A tensor to overwrite and its verified contents from the checkpoint (on the host).
struct Restore {
  Tensor target;
  Tensor contents;
};

// Names become dataset paths and manifest fields (separated by spaces).
bool valid_name(const std::string& name) {
  return !name.empty() && name.front() != '/' && name.find_first_of(" \t\n\r") == std::string::npos;
}

void check_names(const std::vector<NamedParameter>& list, const char* what) {
  std::unordered_set<std::string> seen;
  for (const NamedParameter& p : list) {
    FT_CHECK(valid_name(p.name), "checkpoint: a ", what, " is named '", p.name,
             "' (names must be non-empty, without spaces, and not start with '/')");
    FT_CHECK(seen.insert(p.name).second, "checkpoint: two ", what, "s are named '", p.name, "'");
  }
}

// Reads `name` for `target`, which must have the same dtype and shape.
Restore match(const CheckpointReader& reader, const std::string& name, const Tensor& target, const char* what) {
  const Entry& entry = reader.required(name);
  FT_CHECK(entry.dtype == dtype_name(target.dtype()) && entry.shape == target.shape(), reader.path(), ": ", what, " '",
           name, "' is ", entry.dtype, shape_str(entry.shape), " in the checkpoint but ", dtype_name(target.dtype()),
           shape_str(target.shape()), " here");
  return {target, reader.read_tensor(entry)};
}

// Every parameter of `list` under `group` ("params/"), and no stored one the list lacks.
// With `preferred` ("masters/"), a parameter is read from preferred + name instead where that
// exists in the parameter's dtype and shape.
void match_parameters(const CheckpointReader& reader, const std::string& group, const std::vector<NamedParameter>& list,
                      std::vector<Restore>& restores, const std::string& preferred = "") {
  check_names(list, "parameter");
  std::unordered_set<std::string> wanted;
  for (const NamedParameter& p : list) {
    wanted.insert(group + p.name);
    FT_CHECK(reader.find(group + p.name), reader.path(), ": the checkpoint has no '", group + p.name,
             "' for the parameter '", p.name, "'");
    const Entry* alternative = preferred.empty() ? nullptr : reader.find(preferred + p.name);
    const bool use_alternative =
        alternative && alternative->dtype == dtype_name(p.tensor.dtype()) && alternative->shape == p.tensor.shape();
    restores.push_back(match(reader, (use_alternative ? preferred : group) + p.name, p.tensor, "parameter"));
  }
  for (const Entry& entry : reader.entries())
    FT_CHECK(entry.name.rfind(group, 0) != 0 || wanted.count(entry.name), reader.path(), ": the checkpoint holds '",
             entry.name, "', which is not among the ", list.size(), " parameters given to load into");
}

// The name each optimizer parameter is saved under: a master weight's (a mixed-precision
// optimizer updates the masters) or else a parameter's.
std::vector<std::string> optimizer_names(const AdamW& optimizer, const std::vector<NamedParameter>& params,
                                         const std::vector<NamedParameter>& masters) {
  std::unordered_map<const TensorImpl*, std::string> names;
  for (const NamedParameter& p : params) names.emplace(p.tensor.impl(), p.name);
  for (const NamedParameter& m : masters) names[m.tensor.impl()] = m.name;
  std::vector<std::string> out;
  for (size_t i = 0; i < optimizer.params().size(); ++i) {
    auto it = names.find(optimizer.params()[i].impl());
    FT_CHECK(it != names.end(), "checkpoint: optimizer parameter ", i, " (", describe(optimizer.params()[i]),
             ") is neither one of the named parameters nor a master weight");
    out.push_back(it->second);
  }
  return out;
}

// ---- files --------------------------------------------------------------------------------------

// The checkpoints in `dir` by step, oldest first ("step_<digits>.h5"; temporaries do not match).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const fs::directory_entry& file : fs::directory_iterator(dir, ec)) {
    const std::string name = file.path().filename().string();
    const size_t prefix = 5, suffix = 3;  // "step_", ".h5"
    if (name.size() <= prefix + suffix || name.rfind("step_", 0) != 0 ||
        name.compare(name.size() - suffix, suffix, ".h5") != 0)
      continue;
    const std::string digits = name.substr(prefix, name.size() - prefix - suffix);
    if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoll(digits), file.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

void remove_old_checkpoints(const std::string& dir, int64_t newest_step, int64_t keep) {
  std::vector<std::pair<int64_t, std::string>> older;
  for (const auto& checkpoint : list_checkpoints(dir))
    if (checkpoint.first <= newest_step) older.push_back(checkpoint);
  for (size_t i = 0; i + keep < older.size(); ++i) {
    std::error_code ec;
    fs::remove(older[i].second, ec);
    FT_CHECK(!ec, older[i].second, ": cannot delete the old checkpoint: ", ec.message());
  }
}

void apply(const std::vector<Restore>& restores) {
  for (const Restore& r : restores) r.target.copy_(r.contents);
}

}  // namespace

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%06lld.h5", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::string save_checkpoint(const std::string& dir, int64_t step, const std::vector<NamedParameter>& params,
                            const AdamW& optimizer, const CheckpointState& state, int64_t keep,
                            const std::vector<NamedParameter>& masters) {
  FT_CHECK(!dir.empty(), "checkpoint: the checkpoint directory is empty (use \".\" for the current one)");
  FT_CHECK(step >= 0, "checkpoint: step ", step, " is negative");
  FT_CHECK(keep >= 1, "checkpoint: keep = ", keep, " must be at least 1 (the checkpoint being written)");
  check_names(params, "parameter");
  check_names(masters, "master weight");
  for (const auto& rng : state.rng)
    FT_CHECK(valid_name(rng.first) && rng.first.find('/') == std::string::npos, "checkpoint: generator name '",
             rng.first, "' must be non-empty, without spaces and without '/'");
  const std::vector<std::string> names = optimizer_names(optimizer, params, masters);

  std::error_code ec;
  fs::create_directories(dir, ec);
  FT_CHECK(!ec, dir, ": cannot create the checkpoint directory: ", ec.message());
  const std::string path = checkpoint_path(dir, step);
  io::write_file_atomically(path, [&](const std::string& temp) {
    CheckpointWriter w(temp);
    for (const NamedParameter& p : params) w.add_tensor("params/" + p.name, p.tensor);
    for (const NamedParameter& m : masters) w.add_tensor("masters/" + m.name, m.tensor);
    w.add_counter("adam/step_count", optimizer.step_count());
    for (size_t i = 0; i < names.size(); ++i) {
      const AdamWState& s = optimizer.states()[i];
      w.add_tensor("adam/m/" + names[i], s.exp_avg);
      w.add_tensor("adam/v/" + names[i], s.exp_avg_sq);
      w.add_counter("adam/step/" + names[i], s.step);
    }
    for (const auto& [name, generator] : state.rng) {
      const uint64_t seed_offset[2] = {generator.seed, generator.offset};
      w.add("rng/" + name, "u64", {2}, seed_offset);
    }
    w.add_counter("loader/epoch", state.loader.epoch);
    w.add_counter("loader/next_row", state.loader.next_row);
    w.add_counter("loader/real_tokens", state.loader.real_tokens);
    w.add_counter("loader/padding_tokens", state.loader.padding_tokens);
    w.add_counter("loader/fingerprint", state.loader.fingerprint);
    w.add_counter("scaler/scale", state.scaler.scale);
    w.add_counter("scaler/good_steps", state.scaler.good_steps);
    w.add_text("recipe", state.recipe_text);
    w.finish(step);
  });
  remove_old_checkpoints(dir, step, keep);
  return path;
}

int64_t load_checkpoint(const std::string& path, const std::vector<NamedParameter>& params, AdamW& optimizer,
                        CheckpointState& state, const std::vector<NamedParameter>& masters) {
  const CheckpointReader reader(path);
  std::vector<Restore> restores;
  match_parameters(reader, "params/", params, restores);
  const bool has_masters = std::any_of(reader.entries().begin(), reader.entries().end(),
                                       [](const Entry& e) { return e.name.rfind("masters/", 0) == 0; });
  FT_CHECK(has_masters == !masters.empty(), path, ": ",
           has_masters
               ? "the checkpoint holds fp32 master weights (a mixed-precision run) but none were given"
               : "master weights were given but the checkpoint holds none (it is not from a mixed-precision run)");
  match_parameters(reader, "masters/", masters, restores);

  const std::vector<std::string> names = optimizer_names(optimizer, params, masters);
  std::vector<int64_t> steps;
  for (size_t i = 0; i < names.size(); ++i) {
    FT_CHECK(reader.find("adam/m/" + names[i]), path, ": the checkpoint has no optimizer state for the trainable ",
             "parameter '", names[i], "' (was it frozen when the checkpoint was saved?)");
    const AdamWState& s = optimizer.states()[i];
    restores.push_back(match(reader, "adam/m/" + names[i], s.exp_avg, "optimizer state"));
    restores.push_back(match(reader, "adam/v/" + names[i], s.exp_avg_sq, "optimizer state"));
    steps.push_back(reader.read_counter<int64_t>("adam/step/" + names[i]));
  }
  const int64_t step_count = reader.read_counter<int64_t>("adam/step_count");

  CheckpointState loaded;
  for (const Entry& entry : reader.entries()) {
    if (entry.name.rfind("rng/", 0) != 0) continue;
    FT_CHECK(entry.dtype == "u64" && entry.shape == Shape{2}, path, ": '", entry.name, "' is ", entry.dtype,
             shape_str(entry.shape), ", expected u64[2] (seed, offset)");
    uint64_t seed_offset[2];
    reader.read(entry, seed_offset);
    loaded.rng[entry.name.substr(4)] = {seed_offset[0], seed_offset[1]};
  }
  loaded.loader.epoch = reader.read_counter<int64_t>("loader/epoch");
  loaded.loader.next_row = reader.read_counter<int64_t>("loader/next_row");
  loaded.loader.real_tokens = reader.read_counter<int64_t>("loader/real_tokens");
  loaded.loader.padding_tokens = reader.read_counter<int64_t>("loader/padding_tokens");
  loaded.loader.fingerprint = reader.read_counter<uint64_t>("loader/fingerprint");
  loaded.scaler.scale = reader.read_counter<double>("scaler/scale");
  loaded.scaler.good_steps = reader.read_counter<int64_t>("scaler/good_steps");
  loaded.recipe_text = reader.read_text("recipe");

  // Everything is read and verified: now change the caller's objects.
  apply(restores);
  for (size_t i = 0; i < steps.size(); ++i) optimizer.states()[i].step = steps[i];
  optimizer.set_step_count(step_count);
  state = std::move(loaded);
  return reader.step();
}

void load_checkpoint_parameters(const std::string& path, const std::vector<NamedParameter>& params) {
  const CheckpointReader reader(path);
  std::vector<Restore> restores;
  // A mixed-precision run's weights are its f32 masters; its params are their 16-bit roundings.
  match_parameters(reader, "params/", params, restores, "masters/");
  apply(restores);
}

std::string load_checkpoint_recipe(const std::string& path) { return CheckpointReader(path).read_text("recipe"); }

void verify_checkpoint(const std::string& path) {
  const CheckpointReader reader(path);
  std::vector<unsigned char> buffer;
  for (const Entry& entry : reader.entries()) {
    buffer.resize(entry.bytes());
    reader.read(entry, buffer.data());
  }
}

std::optional<std::string> find_latest_checkpoint(const std::string& dir) {
  const auto checkpoints = list_checkpoints(dir);
  for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
    try {
      verify_checkpoint(it->second);
      return it->second;
    } catch (const std::exception& e) {
      // ft::Error messages start with the path already.
      const std::string why = e.what();
      const std::string prefix = it->second + ": ";
      std::cerr << "flashtrain: warning: skipping checkpoint " << prefix
                << (why.rfind(prefix, 0) == 0 ? why.substr(prefix.size()) : why) << "\n";
    }
  }
  return std::nullopt;
}

}  // namespace ft::train
