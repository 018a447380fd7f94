// The recipe parser: defaults, values of every type, one test per class of error (each checks
// the whole message: file, line, key and the expected form), --set overrides, checks across
// keys, the exact round trip through recipe_to_yaml, the files in recipes/ and the key table
// in docs/recipes.md. Line numbers in expected messages are counted in the YAML beside them.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/error.h"
#include "framework/train/recipe.h"
#include "models/distilbert/distilbert.h"
#include "models/gpt2/gpt2.h"

using namespace ft;
using namespace ft::train;
namespace fs = std::filesystem;

namespace {

// The message parse_recipe throws for `yaml` (read as "x.yaml") with `overrides`.
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_recipe(yaml, "x.yaml", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The checkout's root, where recipes/ and docs/ are (tests/CMakeLists.txt defines it).
fs::path repository_root() { return FLASHTRAIN_SOURCE_DIR; }

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const RecipeKey& key_named(const std::vector<RecipeKey>& keys, const std::string& path) {
  for (const RecipeKey& k : keys)
    if (k.path == path) return k;
  FAIL("no key ", path);
  return keys.front();
}

}  // namespace

TEST_CASE("an empty recipe takes every default of the Recipe struct") {
  const Recipe empty = parse_recipe("# nothing but a comment\n", "empty.yaml");
  CHECK(empty.text == recipe_to_yaml(Recipe{}));
  CHECK(empty.source_path == "empty.yaml");
  CHECK(empty.name == "tiny-cpu");
  CHECK(empty.optim.lr == 1e-3);
  CHECK(empty.model.size == "tiny");
  CHECK(empty.data.dir.empty());

  const std::vector<RecipeKey> keys = recipe_keys();
  CHECK(key_named(keys, "optim.lr").default_value == "0.001");
  CHECK(key_named(keys, "optim.eps").default_value == "1e-8");
  CHECK(key_named(keys, "deterministic").default_value == "true");
  CHECK(key_named(keys, "data.dir").default_value == "\"\"");
  CHECK(key_named(keys, "data.seq_len").default_value == "128");
}

TEST_CASE("values of every type are read into their fields") {
  const Recipe r = parse_recipe(R"(
name: my run
seed: 7
deterministic: false
device: cuda:1
model:
  n_layer: 3
  dropout: 0.25
data:
  dir:
  source: "corpus.jsonl"
  format: jsonl
optim:
  lr: 3e-4
  epochs: 1.5
  steps: 0
)",
                                "x.yaml");
  CHECK(r.name == "my run");
  CHECK(r.seed == 7);
  CHECK(r.deterministic == false);
  CHECK(r.device == "cuda:1");
  CHECK(r.model.n_layer == 3);
  CHECK(r.model.dropout == 0.25);
  CHECK(r.data.dir.empty());  // a bare `dir:` (null) is the empty path
  CHECK(r.data.source == "corpus.jsonl");
  CHECK(r.data.format == "jsonl");
  CHECK(r.optim.lr == 3e-4);
  CHECK(r.optim.epochs == 1.5);
  CHECK(r.optim.steps == 0);
  CHECK(r.optim.batch_size == Recipe{}.optim.batch_size);  // untouched keys keep their defaults
}

TEST_CASE("each value form is described the way messages and docs say it") {
  const std::vector<RecipeKey> keys = recipe_keys();
  CHECK(key_named(keys, "optim.lr").expected() == "a number > 0");
  CHECK(key_named(keys, "optim.min_lr").expected() == "a number >= 0");
  CHECK(key_named(keys, "model.dropout").expected() == "a number in [0, 1)");
  CHECK(key_named(keys, "data.seq_len").expected() == "an integer >= 1");
  CHECK(key_named(keys, "deterministic").expected() == "true or false");
  CHECK(key_named(keys, "name").expected() == "a non-empty string");
  CHECK(key_named(keys, "data.dir").expected() == "a path");
  CHECK(key_named(keys, "optim.schedule").expected() == "one of cosine, linear, constant");
}

TEST_CASE("error: an unknown key names its line and the closest known key") {
  CHECK(error_of("optim:\n  lr: 0.1\n  lrr: 0.2\n") == "x.yaml:3: unknown key optim.lrr (did you mean optim.lr?)");
  CHECK(error_of("name: a\nlr: 0.1\n") == "x.yaml:2: unknown key lr (did you mean optim.lr?)");
  CHECK(error_of("optimizer:\n  lr: 0.1\n") == "x.yaml:1: unknown key optimizer (did you mean optim?)");
  CHECK(error_of("zzzzzzzz: 1\n") == "x.yaml:1: unknown key zzzzzzzz");
  CHECK(error_of("model:\n  layers: 4\n") == "x.yaml:2: unknown key model.layers (did you mean model.n_layer?)");
}

TEST_CASE("error: a value of the wrong type names the key and the expected form") {
  CHECK(error_of("name: a\noptim:\n  lr: fast\n") == "x.yaml:3: optim.lr: expected a number > 0, got 'fast'");
  CHECK(error_of("optim:\n  steps: 1.5\n") == "x.yaml:2: optim.steps: expected an integer >= 0, got '1.5'");
  CHECK(error_of("deterministic: maybe\n") == "x.yaml:1: deterministic: expected true or false, got 'maybe'");
  CHECK(error_of("optim:\n  lr:\n    peak: 1\n") == "x.yaml:2: optim.lr: expected a number > 0, got a mapping");
  CHECK(error_of("name: [a, b]\n") == "x.yaml:1: name: expected a non-empty string, got a list");
  CHECK(error_of("optim: 3\n") == "x.yaml:1: optim: expected a mapping of optim.* keys, got '3'");
  CHECK(error_of("optim:\n  lr: .inf\n") == "x.yaml:2: optim.lr: expected a number > 0, got '.inf'");
}

TEST_CASE("error: a value out of range names the key and the range") {
  CHECK(error_of("optim:\n  lr: -1\n") == "x.yaml:2: optim.lr: expected a number > 0, got '-1'");
  CHECK(error_of("optim:\n  lr: 0\n") == "x.yaml:2: optim.lr: expected a number > 0, got '0'");
  CHECK(error_of("model:\n  dropout: 1\n") == "x.yaml:2: model.dropout: expected a number in [0, 1), got '1'");
  CHECK(error_of("data:\n  seq_len: 0\n") == "x.yaml:2: data.seq_len: expected an integer >= 1, got '0'");
  CHECK(error_of("seed: 99999999999999999999\n") ==
        "x.yaml:1: seed: expected an integer >= 0, got '99999999999999999999'");
  CHECK(error_of("name: \"\"\n") == "x.yaml:1: name: expected a non-empty string, got ''");
}

TEST_CASE("error: a bad choice lists the choices") {
  CHECK(error_of("optim:\n  schedule: cosin\n") ==
        "x.yaml:2: optim.schedule: expected one of cosine, linear, constant, got 'cosin' (did you mean cosine?)");
  CHECK(error_of("device: cuda:x\n") ==
        "x.yaml:1: device: expected one of auto, cpu, cuda, cuda:N, got 'cuda:x' (did you mean cuda:N?)");
  CHECK(error_of("device: gpu\n") ==
        "x.yaml:1: device: expected one of auto, cpu, cuda, cuda:N, got 'gpu' (did you mean cpu?)");
  CHECK(parse_recipe("device: cuda:12\n", "x.yaml").device == "cuda:12");
}

TEST_CASE("error: malformed YAML gives yaml-cpp's message and the line") {
  CHECK(error_of("name: a\noptim: [1,\n") == "x.yaml:3: malformed YAML: end of sequence flow not found (column 1)");
  CHECK(error_of("optim:\n  lr: 1\n    steps: 2\n") == "x.yaml:3: malformed YAML: illegal map value (column 10)");
  CHECK(error_of("name: a\n---\nname: b\n") == "x.yaml:3: expected one YAML document, got 2");
}

TEST_CASE("error: a missing file is named") {
  const fs::path missing = fs::temp_directory_path() / "flashtrain-no-such-recipe.yaml";
  fs::remove(missing);
  CHECK_THROWS_WITH_AS(load_recipe(missing.string()),
                       (missing.string() + ": cannot read the recipe: no such file").c_str(), Error);
  CHECK_THROWS_WITH_AS(load_recipe(fs::temp_directory_path().string()),
                       (fs::temp_directory_path().string() + ": cannot read the recipe: not a regular file").c_str(),
                       Error);
}

TEST_CASE("error: a top level that is not a mapping") {
  CHECK(error_of("- name: a\n- name: b\n") ==
        "x.yaml:1: expected a mapping of recipe keys (key: value) at the top level, got a list");
  CHECK(error_of("\n\njust words\n") ==
        "x.yaml:3: expected a mapping of recipe keys (key: value) at the top level, got 'just words'");
}

TEST_CASE("error: a duplicate key names both lines") {
  CHECK(error_of("optim:\n  lr: 0.1\n  steps: 5\n  lr: 0.2\n") ==
        "x.yaml:4: optim.lr: duplicate key (first given at line 2)");
  CHECK(error_of("optim:\n  lr: 0.1\nname: a\noptim:\n  steps: 5\n") ==
        "x.yaml:4: optim: duplicate key (first given at line 1)");
}

TEST_CASE("a recipe file is read with its path in messages") {
  const fs::path file = fs::temp_directory_path() / "flashtrain-test-recipe.yaml";
  std::ofstream(file) << "name: from-file\noptim:\n  lr: fast\n";
  CHECK_THROWS_WITH_AS(load_recipe(file.string()),
                       (file.string() + ":3: optim.lr: expected a number > 0, got 'fast'").c_str(), Error);
  std::ofstream(file) << "name: from-file\n";
  const Recipe r = load_recipe(file.string(), {"optim.steps=3", "optim.warmup_steps=1"});
  CHECK(r.name == "from-file");
  CHECK(r.optim.steps == 3);
  CHECK(r.source_path == file.string());
  fs::remove(file);
}

TEST_CASE("overrides are applied in order, after the file, with the same schema") {
  const Recipe r = parse_recipe("optim:\n  lr: 0.01\n  steps: 100\n", "x.yaml",
                                {"optim.lr=1e-4", "optim.steps=50", "optim.steps=60", "name=with spaces",
                                 "data.dir=", "deterministic=false", "model.positions=rotary"});
  CHECK(r.optim.lr == 1e-4);
  CHECK(r.optim.steps == 60);
  CHECK(r.name == "with spaces");
  CHECK(r.data.dir.empty());
  CHECK(r.deterministic == false);
  CHECK(r.model.positions == "rotary");
  CHECK(r.text.find("  lr: 1e-4\n") != std::string::npos);  // text is the effective recipe
}

TEST_CASE("override errors name the --set argument") {
  CHECK(error_of("", {"optim.lr=fast"}) == "--set optim.lr=fast: optim.lr: expected a number > 0, got 'fast'");
  CHECK(error_of("", {"optim.lr"}) == "--set optim.lr: expected key.path=value, e.g. optim.lr=1e-4");
  CHECK(error_of("", {"optim.lrate=1"}) == "--set optim.lrate=1: unknown key optim.lrate (did you mean optim.lr?)");
  CHECK(error_of("", {"optim=1"}) == "--set optim=1: optim is a section: set one of its keys, e.g. optim.batch_size");
  CHECK(error_of("", {"optim.lr=[1,"}) ==
        "--set optim.lr=[1,: optim.lr: malformed value: end of sequence flow not found");
  CHECK(error_of("", {"optim.lr=[1, 2]"}) == "--set optim.lr=[1, 2]: optim.lr: expected a number > 0, got a list");
}

TEST_CASE("checks across keys point at the latest of the keys involved") {
  CHECK(error_of("model:\n  n_head: 3\n  n_embd: 100\n") ==
        "x.yaml:3: model.n_embd: model.n_embd (100) must be a multiple of model.n_head (3)");
  // The tiny size has n_embd 64: a head count alone can break it.
  CHECK(error_of("model:\n  n_head: 3\n") ==
        "x.yaml:2: model.n_head: model.n_embd (64) must be a multiple of model.n_head (3)");
  CHECK(error_of("model:\n  n_head: 3\n  n_embd: 100\n", {"model.n_head=4"}) == "(no error)");
  CHECK(error_of("model:\n  n_head: 4\n  n_embd: 100\n", {"model.positions=rotary"}) ==
        "--set model.positions=rotary: model.positions: rotary positions need an even head width, got "
        "model.n_embd / model.n_head = 25");
  // The flash kernel's head sizes, for either architecture, before any device is looked at.
  CHECK(error_of("attention: flash\n") ==
        "x.yaml:1: attention: the flash attention kernel needs a head size of 64 or 128, got model.n_embd / "
        "model.n_head = 64 / 4 = 16 (or use attention: math)");
  CHECK(error_of("attention: flash\nmodel:\n  n_head: 1\n") == "(no error)");
  CHECK(error_of("attention: flash\nmodel:\n  size: gpt2-124m\n  n_head: 16\n") ==
        "x.yaml:4: model.n_head: the flash attention kernel needs a head size of 64 or 128, got model.n_embd / "
        "model.n_head = 768 / 16 = 48 (or use attention: math)");
  const std::string distilbert =
      "model:\n  arch: distilbert\n  size: tiny\ndata:\n  tokenizer: bert\n  packing: padded\n";
  CHECK(error_of(distilbert, {"attention=flash"}) ==
        "--set attention=flash: attention: the flash attention kernel needs a head size of 64 or 128, got "
        "model.n_embd / model.n_head = 64 / 4 = 16 (or use attention: math)");
  CHECK(error_of(distilbert, {"attention=flash", "model.n_embd=128", "model.n_head=2"}) == "(no error)");
  CHECK(error_of(distilbert + "attention: flash\n", {"model.size=distilbert-base"}) == "(no error)");
  CHECK(error_of("model:\n  block_size: 64\ndata:\n  seq_len: 128\n") ==
        "x.yaml:4: data.seq_len: data.seq_len (128) must be at most model.block_size (64)");
  CHECK(error_of("optim:\n  steps: 0\n") == "x.yaml:2: optim.steps: one of optim.steps and optim.epochs must be > 0");
  CHECK(error_of("optim:\n  epochs: 2\n") ==
        "x.yaml:2: optim.epochs: optim.steps and optim.epochs are both > 0: set optim.steps to 0 to train by epochs");
  CHECK(error_of("optim:\n  steps: 10\n") ==
        "x.yaml:2: optim.steps: optim.warmup_steps (20) must be at most optim.steps (10)");
  CHECK(error_of("optim:\n  lr: 1e-5\n") == "x.yaml:2: optim.lr: optim.min_lr (1e-4) must be at most optim.lr (1e-5)");
  CHECK(error_of("model:\n  init_from: hf/gpt2\n  n_layer: 4\n") ==
        "x.yaml:3: model.n_layer: must stay 0 with model.init_from set");
  CHECK(error_of("logging:\n  sample_every: 10\n  sample_prompt: \"\"\n") ==
        "x.yaml:3: logging.sample_prompt: samples need a non-empty prompt");
  CHECK(error_of("optim:\n  steps: 0\n", {"optim.epochs=1"}) == "(no error)");
  // cudnn takes flash's head sizes, and no document boundaries: the message points at whichever
  // of the two keys came last. (The tiny model with one head has heads of 64.)
  const std::string one_head = "model:\n  n_head: 1\n";
  CHECK(error_of("attention: cudnn\n") ==
        "x.yaml:1: attention: the cudnn attention kernel needs a head size of 64 or 128, got model.n_embd / "
        "model.n_head = 64 / 4 = 16 (or use attention: math)");
  CHECK(error_of("attention: cudnn\ndata:\n  packing: packed\n" + one_head) ==
        "x.yaml:3: data.packing: the cudnn kernel takes no document boundaries, and data.packing: packed gives its "
        "rows some (use attention: flash or math, or data.packing: concat)");
  CHECK(error_of("data:\n  packing: padded\n" + one_head, {"attention=cudnn"}) ==
        "--set attention=cudnn: attention: the cudnn kernel takes no document boundaries, and data.packing: padded "
        "gives its rows some (use attention: flash or math, or data.packing: concat)");
  CHECK(error_of("attention: cudnn\n" + one_head) == "(no error)");
  CHECK(error_of("attention: flash\ndata:\n  packing: packed\n" + one_head) == "(no error)");
}

TEST_CASE("recipe_to_yaml writes every key and reads back to the same recipe, exactly") {
  Recipe r;
  r.name = "a run: \"quoted\" # not a comment";
  r.run_dir = "null";  // a string YAML would otherwise read as null
  r.device = "cuda:3";
  r.seed = 123456789012345;
  r.deterministic = false;
  r.model.n_embd = 96;
  r.model.n_head = 3;
  r.model.dropout = 0.1;
  r.data.dir = "/data/with space";
  r.data.text_field = " leading space";
  r.optim.lr = 1.0 / 3.0;
  r.optim.min_lr = 1e-300;
  r.optim.eps = 1e-12;
  r.optim.beta2 = 0.999;
  r.logging.sample_prompt = "Once upon a time,\n\t\"it\" said: ";
  const std::string yaml = recipe_to_yaml(r);
  const Recipe back = parse_recipe(yaml, "round-trip.yaml");
  CHECK(back.text == yaml);
  CHECK(recipe_to_yaml(back) == yaml);
  CHECK(back.name == r.name);
  CHECK(back.run_dir == r.run_dir);
  CHECK(back.seed == r.seed);
  CHECK(back.optim.lr == r.optim.lr);  // bit for bit: the shortest text that reads back exactly
  CHECK(back.optim.min_lr == r.optim.min_lr);
  CHECK(back.data.text_field == r.data.text_field);
  CHECK(back.logging.sample_prompt == r.logging.sample_prompt);

  for (const RecipeKey& key : recipe_keys()) {  // every key is written, once
    const std::string leaf = key.path.substr(key.path.rfind('.') + 1);
    CHECK_MESSAGE(yaml.find(leaf + ": ") != std::string::npos, key.path);
  }
}

TEST_CASE("every key's default reads back as a --set value") {
  for (const RecipeKey& key : recipe_keys()) {
    const Recipe r = parse_recipe("", "x.yaml", {key.path + "=" + key.default_value});
    CHECK_MESSAGE(r.text == recipe_to_yaml(Recipe{}), key.path);
  }
}

TEST_CASE("every model.size choice is a size models/gpt2 or models/distilbert knows") {
  const std::vector<RecipeKey> keys = recipe_keys();
  for (const std::string& size : key_named(keys, "model.size").choices)
    CHECK_NOTHROW(size == "distilbert-base" ? (void)models::distilbert_config(size) : (void)models::gpt2_config(size));
  CHECK_NOTHROW(models::distilbert_config("tiny"));
}

TEST_CASE("every recipe in recipes/ (and its folders) parses, opens with a comment and round-trips") {
  int count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(repository_root() / "recipes")) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    INFO(entry.path().string());
    const Recipe r = load_recipe(entry.path().string());
    CHECK(read_file(entry.path()).rfind("# ", 0) == 0);
    CHECK(r.name == entry.path().stem().string());
    CHECK(parse_recipe(r.text, "again").text == r.text);
  }
  CHECK(count >= 6);  // recipes/compare/ included
}

TEST_CASE("docs/recipes.md holds the current key table") {
  // FLASHTRAIN_UPDATE_DOCS=1 rewrites the table from recipe_keys() instead of checking it.
  const fs::path docs = repository_root() / "docs" / "recipes.md";
  const std::string begin = "<!-- recipe keys: begin (generated; see tests/test_recipe.cpp) -->\n";
  const std::string end = "<!-- recipe keys: end -->";
  std::string text = read_file(docs);
  const size_t from = text.find(begin), to = text.find(end);
  REQUIRE_MESSAGE((from != std::string::npos && to != std::string::npos && from < to), "markers in ", docs);
  const size_t table = from + begin.size();
  const std::string current = text.substr(table, to - table);
  if (const char* update = std::getenv("FLASHTRAIN_UPDATE_DOCS"); update && std::string(update) == "1") {
    std::ofstream(docs) << text.replace(table, to - table, recipe_keys_markdown());
    MESSAGE("rewrote the key table in ", docs);
    return;
  }
  CHECK_MESSAGE(current == recipe_keys_markdown(),
                "docs/recipes.md is out of date: run FLASHTRAIN_UPDATE_DOCS=1 ./build-cpu/tests/test_recipe");
}

TEST_CASE("string_assignment: any string reads back as itself through an override") {
  for (const std::string value : {"runs/plain", "a: b #c", "it's \"quoted\"", "", "-leading dash", "null"}) {
    INFO(value);
    CHECK(parse_recipe("{}", "(defaults)", {string_assignment("run_dir", value)}).run_dir == value);
  }
}
