// Checkpoints: a resumed GPT-2 run continues bitwise identically, the file layout is as
// documented, saves are reproducible byte for byte, old files are pruned, and every kind of
// damage (truncation, a flipped byte that HDF5 reads silently, a missing dataset, a wrong shape,
// a newer format) is refused with a message naming the file and the problem.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "framework/io/hdf5_file.h"
#include "framework/train/checkpoint.h"
#include "models/gpt2/gpt2.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using namespace ft::train;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kVocab = 40;

AdamW make_optimizer(const std::vector<NamedParameter>& params) {
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = 0.1;
  for (const NamedParameter& p : params) groups[p.weight_decay ? 0 : 1].params.push_back(p.tensor);
  AdamWOptions options;
  options.lr = 1e-2;
  return AdamW(groups, options);
}

// A tiny GPT-2 with dropout, its frozen position embedding, and AdamW over the rest.
struct Gpt2Run {
  Generator init;
  Generator dropout{77};
  models::Gpt2 model;
  AdamW optimizer;

  explicit Gpt2Run(uint64_t init_seed)
      : init(init_seed), model(tiny_config(), init), optimizer(make_optimizer(freeze_wpe(model.parameters()))) {}

  static models::Gpt2Config tiny_config() {
    models::Gpt2Config c{kVocab, 16, 2, 2, 16};
    c.dropout = 0.1;
    return c;
  }
  static const std::vector<NamedParameter>& freeze_wpe(const std::vector<NamedParameter>& params) {
    for (NamedParameter p : params)
      if (p.name == "wpe.weight") p.tensor.set_requires_grad(false);
    return params;
  }
  const std::vector<NamedParameter>& params() const { return model.parameters(); }

  void step(uint64_t data_seed) {
    Generator data(data_seed);
    std::vector<int32_t> ids(2 * 9);
    for (int32_t& id : ids) id = static_cast<int32_t>(data.take(1) * 7919 % kVocab);
    Tensor all = Tensor::from_ints(ids, {2, 9});
    Tensor inputs = slice(all, 1, 0, 8).contiguous(), targets = slice(all, 1, 1, 9).contiguous();
    Tensor logits = model.forward(models::Gpt2Batch{inputs, Tensor(), Tensor()}, &dropout);
    Tensor loss = cross_entropy(reshape(logits, {-1, kVocab}), reshape(targets, {-1}));
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
};

bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor x = a.to(Device::cpu()).contiguous(), y = b.to(Device::cpu()).contiguous();
  return x.dtype() == y.dtype() && x.shape() == y.shape() && std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

// A small model: "w" f32 [8, 8] that trains, "norm.bias" f32 [8] that does not decay, and a
// frozen "frozen.scale" bf16 [4], after one AdamW step.
struct SmallRun {
  std::vector<NamedParameter> params;
  AdamW optimizer;

  explicit SmallRun(uint64_t seed, Shape w_shape = {8, 8}, DType w_dtype = DType::f32)
      : params(make_params(seed, w_shape, w_dtype)), optimizer(make_optimizer(params)) {
    Generator grads(seed + 9);
    for (const NamedParameter& p : params)
      if (p.tensor.requires_grad()) p.tensor.set_grad(randn(p.tensor.shape(), grads, p.tensor.dtype()));
    optimizer.step();
  }
  static std::vector<NamedParameter> make_params(uint64_t seed, const Shape& w_shape, DType w_dtype) {
    Generator gen(seed);
    Tensor w = randn(w_shape, gen, w_dtype).set_requires_grad(true);
    Tensor bias = randn({8}, gen).set_requires_grad(true);
    Tensor frozen = Tensor::from_vector({1.5, -2.25, 1e-3, 65504.0}, {4}, DType::bf16);
    return {{"w", w, true}, {"norm.bias", bias, false}, {"frozen.scale", frozen, false}};
  }
  const Tensor& tensor(const std::string& name) const {
    return std::find_if(params.begin(), params.end(), [&](const NamedParameter& p) { return p.name == name; })->tensor;
  }
};

CheckpointState example_state() {
  CheckpointState s;
  s.rng = {{"dropout", {77, 1234}}, {"sampling", {5, 0xfedcba9876543210ull}}};
  s.loader = {2, 48, 1000, 24, 0xfeedbeefcafef00dull};  // a fingerprint with the top bit set
  s.scaler = {1024.0, 17};
  s.recipe_text = "name: tiny\noptim:\n  lr: 0.001\n";
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

template <class F>
std::string error_from(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Redirects std::cerr for its lifetime.
class CerrCapture {
 public:
  CerrCapture() : old_(std::cerr.rdbuf(captured_.rdbuf())) {}
  ~CerrCapture() { std::cerr.rdbuf(old_); }
  std::string text() const { return captured_.str(); }

 private:
  std::ostringstream captured_;
  std::streambuf* old_;
};

std::vector<std::string> file_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

template <class F>
void with_element_type(const std::string& dtype, F&& f) {
  if (dtype == "f32")
    f(float{});
  else if (dtype == "f16" || dtype == "bf16")
    f(uint16_t{});
  else if (dtype == "i64")
    f(int64_t{});
  else if (dtype == "u64")
    f(uint64_t{});
  else if (dtype == "f64")
    f(double{});
  else if (dtype == "u8")
    f(uint8_t{});
  else
    FAIL("unexpected dtype ", dtype);
}

// Rewrites a checkpoint dataset by dataset, following its manifest, leaving out `dropped`.
void copy_checkpoint_without(const std::string& from, const std::string& to, const std::string& dropped) {
  io::Hdf5File in = io::Hdf5File::open(from), out = io::Hdf5File::create(to);
  std::vector<uint8_t> manifest = in.read<uint8_t>("manifest");
  std::istringstream lines(std::string(manifest.begin(), manifest.end()));
  std::string line;
  for (int header = 0; header < 3; ++header) std::getline(lines, line);
  while (std::getline(lines, line)) {
    std::string sha, dtype, shape, name;
    std::istringstream(line) >> sha >> dtype >> shape >> name;
    if (name == dropped) continue;
    with_element_type(dtype, [&](auto tag) {
      using T = decltype(tag);
      out.write<T>(name, in.read<T>(name).data(), in.shape(name));
    });
    out.set_attribute(name, "dtype", in.string_attribute(name, "dtype"));
  }
  out.write<uint8_t>("manifest", manifest);
  out.set_attribute("/", "format_version", in.int_attribute("/", "format_version"));
  out.set_attribute("/", "step", in.int_attribute("/", "step"));
  out.set_attribute("/", "flashtrain_version", in.string_attribute("/", "flashtrain_version"));
  out.set_attribute("/", "manifest_sha256", in.string_attribute("/", "manifest_sha256"));
}

std::string sha256_of(const void* data, size_t bytes) {
  unsigned char digest[32];
  unsigned int length = 0;
  EVP_Digest(data, bytes, digest, &length, EVP_sha256(), nullptr);
  std::ostringstream hex;
  for (unsigned char d : digest) hex << std::hex << (d >> 4) << (d & 15);
  return hex.str();
}

}  // namespace

TEST_CASE("checkpoint round trip: a resumed GPT-2 run continues bitwise identically") {
  testing::TempDir dir;
  Gpt2Run a(1);
  for (uint64_t step = 1; step <= 3; ++step) a.step(step);
  CheckpointState saved = example_state();
  saved.rng["dropout"] = a.dropout.state();
  const std::string path = save_checkpoint(dir.path(), 3, a.params(), a.optimizer, saved, 2);
  CHECK(path == dir.path() + "/step_000003.h5");

  Gpt2Run b(2);  // another initialisation: every value below must come from the file
  REQUIRE_FALSE(same_bits(a.params()[0].tensor, b.params()[0].tensor));
  CheckpointState loaded;
  CHECK(load_checkpoint(path, b.params(), b.optimizer, loaded) == 3);
  CHECK(loaded.rng == saved.rng);
  CHECK(loaded.loader == saved.loader);
  CHECK(loaded.scaler == saved.scaler);
  CHECK(loaded.recipe_text == saved.recipe_text);
  CHECK(b.optimizer.step_count() == 3);
  b.dropout.set_state(loaded.rng.at("dropout"));

  a.step(4);
  b.step(4);
  REQUIRE(a.optimizer.state_count() == a.params().size() - 1);  // the frozen wpe has no state
  for (size_t i = 0; i < a.params().size(); ++i) {
    CAPTURE(a.params()[i].name);
    CHECK(same_bits(a.params()[i].tensor, b.params()[i].tensor));
  }
  for (size_t i = 0; i < a.optimizer.state_count(); ++i) {
    CAPTURE(i);
    CHECK(same_bits(a.optimizer.states()[i].exp_avg, b.optimizer.states()[i].exp_avg));
    CHECK(same_bits(a.optimizer.states()[i].exp_avg_sq, b.optimizer.states()[i].exp_avg_sq));
    CHECK(a.optimizer.states()[i].step == b.optimizer.states()[i].step);
  }
  CHECK(a.dropout.state() == b.dropout.state());
}

TEST_CASE("checkpoint layout: groups, dtype attributes, counters, root attributes and the manifest") {
  testing::TempDir dir;
  SmallRun run(3);
  const CheckpointState state = example_state();
  const std::string path = save_checkpoint(dir.path(), 7, run.params, run.optimizer, state, 1);
  io::Hdf5File f = io::Hdf5File::open(path);

  CHECK(f.int_attribute("/", "format_version") == kCheckpointFormatVersion);
  CHECK(f.int_attribute("/", "step") == 7);
  CHECK(f.string_attribute("/", "flashtrain_version") == FLASHTRAIN_VERSION);
  CHECK(f.children("/") == std::vector<std::string>{"adam", "loader", "manifest", "params", "recipe", "rng", "scaler"});
  CHECK(f.children("params") == std::vector<std::string>{"frozen.scale", "norm.bias", "w"});
  CHECK(f.children("adam/m") == std::vector<std::string>{"norm.bias", "w"});  // frozen: no state

  // bf16 as raw bits, tagged by the dtype attribute.
  const Tensor& frozen = run.tensor("frozen.scale");
  std::vector<uint16_t> bits(4);
  std::memcpy(bits.data(), frozen.raw_data(), 8);
  CHECK(f.string_attribute("params/frozen.scale", "dtype") == "bf16");
  CHECK(f.read<uint16_t>("params/frozen.scale") == bits);
  CHECK(f.string_attribute("params/w", "dtype") == "f32");
  const std::vector<float> w = f.read<float>("params/w");
  CHECK(std::vector<double>(w.begin(), w.end()) == run.tensor("w").to_double_vector());
  CHECK(f.shape("adam/v/w") == Shape{8, 8});
  const std::vector<float> m = f.read<float>("adam/m/w");
  CHECK(std::vector<double>(m.begin(), m.end()) == run.optimizer.states()[0].exp_avg.to_double_vector());
  CHECK(f.read<int64_t>("adam/step/w") == std::vector<int64_t>{1});
  CHECK(f.read<int64_t>("adam/step_count") == std::vector<int64_t>{1});
  CHECK(f.read<uint64_t>("rng/sampling") == std::vector<uint64_t>{5, 0xfedcba9876543210ull});
  CHECK(f.read<uint64_t>("loader/fingerprint") == std::vector<uint64_t>{state.loader.fingerprint});
  CHECK(f.read<double>("scaler/scale") == std::vector<double>{1024.0});
  const std::vector<uint8_t> recipe = f.read<uint8_t>("recipe");
  CHECK(std::string(recipe.begin(), recipe.end()) == state.recipe_text);

  // The manifest lists each dataset's SHA-256 (computed here with OpenSSL directly), and the
  // root attribute holds the manifest's own.
  const std::vector<uint8_t> manifest_bytes = f.read<uint8_t>("manifest");
  const std::string manifest(manifest_bytes.begin(), manifest_bytes.end());
  CHECK(manifest.rfind("flashtrain checkpoint manifest\nformat_version 1\nstep 7\n", 0) == 0);
  CHECK(contains(manifest, sha256_of(w.data(), w.size() * 4) + " f32 [8,8] params/w\n"));
  CHECK(contains(manifest, sha256_of(bits.data(), 8) + " bf16 [4] params/frozen.scale\n"));
  CHECK(f.string_attribute("/", "manifest_sha256") == sha256_of(manifest.data(), manifest.size()));
}

TEST_CASE("checkpoint: mixed precision keeps bf16 weights and fp32 masters, the optimizer state under the names") {
  testing::TempDir dir;
  auto make = [](uint64_t seed) {
    Generator gen(seed);
    Tensor master = randn({4, 4}, gen).set_requires_grad(true);
    return std::make_pair(std::vector<NamedParameter>{{"w", master.to(DType::bf16), true}},
                          std::vector<NamedParameter>{{"w", master, true}});
  };
  auto [params, masters] = make(1);
  AdamW optimizer(std::vector<ParamGroup>{{{masters[0].tensor}, 0.0}});
  masters[0].tensor.set_grad(Tensor::full({4, 4}, 0.5));
  optimizer.step();
  const std::string path = save_checkpoint(dir.path(), 1, params, optimizer, {}, 1, masters);
  {
    io::Hdf5File f = io::Hdf5File::open(path);
    CHECK(f.string_attribute("params/w", "dtype") == "bf16");
    CHECK(f.string_attribute("masters/w", "dtype") == "f32");
    CHECK(f.has("adam/m/w"));
  }
  auto [params2, masters2] = make(2);
  AdamW optimizer2(std::vector<ParamGroup>{{{masters2[0].tensor}, 0.0}});
  CheckpointState state;
  load_checkpoint(path, params2, optimizer2, state, masters2);
  CHECK(same_bits(params[0].tensor, params2[0].tensor));
  CHECK(same_bits(masters[0].tensor, masters2[0].tensor));
  CHECK(same_bits(optimizer.states()[0].exp_avg_sq, optimizer2.states()[0].exp_avg_sq));

  const std::string message = error_from([&] { load_checkpoint(path, params2, optimizer2, state); });
  CAPTURE(message);
  CHECK(contains(message, "holds fp32 master weights"));
}

TEST_CASE("checkpoint: weights-only loading into f32 takes a mixed-precision run's masters, not their bf16 rounding") {
  testing::TempDir dir;
  Generator gen(3);
  Tensor master = randn({4, 4}, gen).set_requires_grad(true);
  const std::vector<NamedParameter> params{{"w", master.to(DType::bf16), true}}, masters{{"w", master, true}};
  AdamW optimizer(std::vector<ParamGroup>{{{master}, 0.0}});
  const std::string path = save_checkpoint(dir.path(), 1, params, optimizer, {}, 1, masters);
  REQUIRE(master.to_double_vector() != params[0].tensor.to_double_vector());  // bf16 rounded something

  Tensor f32 = Tensor::zeros({4, 4});
  load_checkpoint_parameters(path, {{"w", f32, true}});
  CHECK(same_bits(f32, master));
  Tensor bf16 = Tensor::zeros({4, 4}, DType::bf16);  // a bf16 model takes the stored bf16 weights
  load_checkpoint_parameters(path, {{"w", bf16, true}});
  CHECK(same_bits(bf16, params[0].tensor));
}

TEST_CASE("checkpoint: saving the same state twice gives byte-identical files") {
  testing::TempDir dir;
  Gpt2Run run(1);
  run.step(1);
  const CheckpointState state = example_state();
  const std::string first = save_checkpoint(dir.path() + "/a", 1, run.params(), run.optimizer, state, 1);
  const std::string second = save_checkpoint(dir.path() + "/b", 1, run.params(), run.optimizer, state, 1);
  const std::string bytes = read_file(first);
  CHECK(bytes.size() > 10000);
  CHECK(bytes == read_file(second));
  run.step(2);
  CHECK(read_file(save_checkpoint(dir.path() + "/c", 1, run.params(), run.optimizer, state, 1)) != bytes);
}

TEST_CASE("checkpoint retention keeps the newest K up to the saved step") {
  testing::TempDir dir;
  SmallRun run(3);
  dir.write("step_000090.h5", "from an abandoned later run");
  dir.write("notes.txt", "not a checkpoint");
  for (int64_t step : {10, 20, 30, 40}) save_checkpoint(dir.path(), step, run.params, run.optimizer, {}, 2);
  CHECK(file_names(dir.path()) ==
        std::vector<std::string>{"notes.txt", "step_000030.h5", "step_000040.h5", "step_000090.h5"});
  save_checkpoint(dir.path(), 50, run.params, run.optimizer, {}, 1);
  CHECK(file_names(dir.path()) == std::vector<std::string>{"notes.txt", "step_000050.h5", "step_000090.h5"});
  CHECK(contains(error_from([&] { save_checkpoint(dir.path(), 60, run.params, run.optimizer, {}, 0); }),
                 "keep = 0 must be at least 1"));
}

TEST_CASE("find_latest_checkpoint skips a truncated newest file with a warning") {
  testing::TempDir dir;
  SmallRun run(3);
  CHECK(find_latest_checkpoint(dir.path()) == std::nullopt);
  CHECK(find_latest_checkpoint(dir.path() + "/missing") == std::nullopt);
  const std::string older = save_checkpoint(dir.path(), 1, run.params, run.optimizer, {}, 5);
  const std::string newer = save_checkpoint(dir.path(), 2, run.params, run.optimizer, {}, 5);
  CHECK(find_latest_checkpoint(dir.path()) == newer);

  const std::string bytes = read_file(newer);
  write_file(newer, bytes.substr(0, bytes.size() / 2));
  const std::string message = error_from([&] { verify_checkpoint(newer); });
  CAPTURE(message);
  CHECK(contains(message, newer + ": not an HDF5 file (or truncated or corrupt)"));

  CerrCapture warnings;
  CHECK(find_latest_checkpoint(dir.path()) == older);
  CHECK(warnings.text() ==
        "flashtrain: warning: skipping checkpoint " + newer + ": not an HDF5 file (or truncated or corrupt)\n");
}

TEST_CASE("checkpoint: a flipped byte inside tensor data, which HDF5 reads silently, is caught") {
  testing::TempDir dir;
  SmallRun run(3);
  const std::string older = save_checkpoint(dir.path(), 1, run.params, run.optimizer, {}, 5);
  const std::string path = save_checkpoint(dir.path(), 2, run.params, run.optimizer, {}, 5);
  const Tensor& w = run.tensor("w");
  std::string bytes = read_file(path);
  const std::string w_bytes(static_cast<const char*>(w.raw_data()), w.nbytes());
  const size_t at = bytes.find(w_bytes);
  REQUIRE(at != std::string::npos);
  REQUIRE(bytes.find(w_bytes, at + 1) == std::string::npos);
  bytes[at + 101] ^= 0x40;
  write_file(path, bytes);

  // HDF5 alone returns the damaged values without complaint.
  const std::vector<float> damaged = io::Hdf5File::open(path).read<float>("params/w");
  CHECK(std::vector<double>(damaged.begin(), damaged.end()) != w.to_double_vector());

  const std::string message = error_from([&] { verify_checkpoint(path); });
  CAPTURE(message);
  CHECK(contains(message, path + ": dataset 'params/w' is corrupt: its SHA-256 is "));

  // Loading refuses it and leaves the model as it was.
  SmallRun fresh(4);
  const std::vector<double> before = fresh.tensor("w").to_double_vector();
  CheckpointState state;
  CHECK(contains(error_from([&] { load_checkpoint(path, fresh.params, fresh.optimizer, state); }), "is corrupt"));
  CHECK(fresh.tensor("w").to_double_vector() == before);

  CerrCapture warnings;
  CHECK(find_latest_checkpoint(dir.path()) == older);
  CHECK(contains(warnings.text(), "skipping checkpoint " + path + ": dataset 'params/w' is corrupt"));
}

TEST_CASE("checkpoint: a flipped byte in the manifest is caught") {
  testing::TempDir dir;
  SmallRun run(3);
  const std::string path = save_checkpoint(dir.path(), 2, run.params, run.optimizer, {}, 5);
  std::string bytes = read_file(path);
  const size_t at = bytes.find(" params/w\n");
  REQUIRE(at != std::string::npos);
  bytes[at - 1] = bytes[at - 1] == '0' ? '1' : '0';  // the last hex digit of its SHA-256
  write_file(path, bytes);
  const std::string message = error_from([&] { verify_checkpoint(path); });
  CAPTURE(message);
  CHECK(contains(message, path + ": the manifest is corrupt"));
}

TEST_CASE("checkpoint: a dataset missing from the file is named") {
  testing::TempDir dir;
  SmallRun run(3);
  const std::string path = save_checkpoint(dir.path(), 2, run.params, run.optimizer, {}, 5);
  const std::string faithful = dir.path() + "/copy.h5", damaged = dir.path() + "/damaged.h5";
  copy_checkpoint_without(path, faithful, "");
  CHECK_NOTHROW(verify_checkpoint(faithful));  // the copy itself is sound
  copy_checkpoint_without(path, damaged, "adam/v/w");
  const std::string message = error_from([&] { verify_checkpoint(damaged); });
  CAPTURE(message);
  CHECK(contains(message, damaged + ": dataset 'adam/v/w' listed in the manifest is missing"));
}

TEST_CASE("checkpoint: parameters must match by name, shape and dtype, or nothing is loaded") {
  testing::TempDir dir;
  SmallRun run(3);
  const std::string path = save_checkpoint(dir.path(), 2, run.params, run.optimizer, {}, 5);
  CheckpointState state;

  SmallRun wrong_shape(4, {8, 4});
  const std::vector<double> before = wrong_shape.tensor("norm.bias").to_double_vector();
  std::string message = error_from([&] { load_checkpoint(path, wrong_shape.params, wrong_shape.optimizer, state); });
  CAPTURE(message);
  CHECK(contains(message, path + ": parameter 'params/w' is f32[8, 8] in the checkpoint but f32[8, 4] here"));
  CHECK(wrong_shape.tensor("norm.bias").to_double_vector() == before);  // matched, but not written

  SmallRun wrong_dtype(4, {8, 8}, DType::f64);
  message = error_from([&] { load_checkpoint_parameters(path, wrong_dtype.params); });
  CHECK(contains(message, "parameter 'params/w' is f32[8, 8] in the checkpoint but f64[8, 8] here"));

  std::vector<NamedParameter> fewer(run.params.begin(), run.params.end() - 1);
  message = error_from([&] { load_checkpoint_parameters(path, fewer); });
  CHECK(contains(message, path + ": the checkpoint holds 'params/frozen.scale', which is not among the 2 parameters"));

  std::vector<NamedParameter> more = run.params;
  more.push_back({"extra", Tensor::zeros({2}), false});
  message = error_from([&] { load_checkpoint_parameters(path, more); });
  CHECK(contains(message, path + ": the checkpoint has no 'params/extra' for the parameter 'extra'"));
}

TEST_CASE("checkpoint: a parameter frozen when saved but trainable now has no optimizer state to resume") {
  testing::TempDir dir;
  auto make = [](bool train_b) {
    std::vector<NamedParameter> params = {{"w", Tensor::full({3}, 1.0).set_requires_grad(true), true},
                                          {"b", Tensor::full({3}, 2.0).set_requires_grad(train_b), false}};
    return params;
  };
  const std::vector<NamedParameter> saved_params = make(false);
  AdamW saved_optimizer = make_optimizer(saved_params);
  const std::string path = save_checkpoint(dir.path(), 1, saved_params, saved_optimizer, {}, 1);

  const std::vector<NamedParameter> params = make(true);
  AdamW optimizer = make_optimizer(params);
  CheckpointState state;
  const std::string message = error_from([&] { load_checkpoint(path, params, optimizer, state); });
  CAPTURE(message);
  CHECK(contains(message, path + ": the checkpoint has no optimizer state for the trainable parameter 'b' (was it "
                                 "frozen when the checkpoint was saved?)"));
}

TEST_CASE("checkpoint: files that are not checkpoints or come from a newer format are refused clearly") {
  testing::TempDir dir;
  const std::string newer = dir.path() + "/step_000001.h5";
  {
    io::Hdf5File f = io::Hdf5File::create(newer);
    f.set_attribute("/", "format_version", int64_t{kCheckpointFormatVersion + 1});
    f.set_attribute("/", "flashtrain_version", "9.1.0");
  }
  std::string message = error_from([&] { verify_checkpoint(newer); });
  CAPTURE(message);
  CHECK(contains(message, newer + ": checkpoint format version 2 (written by flashtrain 9.1.0) is newer than this "
                                  "flashtrain " FLASHTRAIN_VERSION " reads (up to version 1)"));

  const std::string plain = dir.path() + "/plain.h5";
  io::Hdf5File::create(plain).write<float>("x", std::vector<float>{1});
  CHECK(contains(error_from([&] { verify_checkpoint(plain); }),
                 plain + ": not a flashtrain checkpoint (the file has no format_version attribute)"));

  dir.write("text.h5", "name: not hdf5\n");
  CHECK(contains(error_from([&] { verify_checkpoint(dir.path() + "/text.h5"); }), "not an HDF5 file"));
}

TEST_CASE("checkpoint: names that cannot be dataset paths are refused before anything is written") {
  testing::TempDir dir;
  SmallRun run(3);
  std::vector<NamedParameter> spaced = run.params, twice = run.params;
  spaced[1].name = "norm bias";
  twice[1].name = "w";
  CHECK(contains(error_from([&] { save_checkpoint(dir.path(), 1, spaced, run.optimizer, {}, 1); }),
                 "checkpoint: a parameter is named 'norm bias' (names must be non-empty, without spaces"));
  CHECK(contains(error_from([&] { save_checkpoint(dir.path(), 1, twice, run.optimizer, {}, 1); }),
                 "checkpoint: two parameters are named 'w'"));
  CheckpointState state;
  state.rng["a/b"] = {1, 2};
  CHECK(contains(error_from([&] { save_checkpoint(dir.path(), 1, run.params, run.optimizer, state, 1); }),
                 "generator name 'a/b'"));
  CHECK(file_names(dir.path()).empty());
}

TEST_CASE("checkpoint: a save that fails half-way leaves the previous file and no temporary") {
  testing::TempDir dir;
  SmallRun run(3);
  const std::string path = save_checkpoint(dir.path(), 5, run.params, run.optimizer, {}, 3);
  const std::string before = read_file(path);
  std::vector<NamedParameter> unsavable = run.params;
  unsavable.push_back({"quantized", Tensor::empty({8}, DType::nf4), false});  // fails after the others are written
  const std::string message = error_from([&] { save_checkpoint(dir.path(), 5, unsavable, run.optimizer, {}, 3); });
  CAPTURE(message);
  CHECK(contains(message, "checkpoint: 'params/quantized' is nf4, which checkpoints do not store"));
  CHECK(file_names(dir.path()) == std::vector<std::string>{"step_000005.h5"});
  CHECK(read_file(path) == before);
}
