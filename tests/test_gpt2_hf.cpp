// models/gpt2/gpt2_hf.h: a small random GPT-2 survives export and import bit for bit (tensors
// and logits); the files have Hugging Face's names and [in, out] Conv1D layout; the hub's
// unprefixed layout, attention buffers, a tied lm_head and sharded files import; missing,
// misshapen and unexpected tensors and unsupported config.json settings are errors by name.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "framework/autograd.h"
#include "framework/io/safetensors.h"
#include "models/gpt2/gpt2_hf.h"
#include "tests/support/error_message.h"
#include "tests/support/hf_dir.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using models::Gpt2;
using models::Gpt2Config;
using nlohmann::json;
using testing::make_hf_dir;
using testing::read_all;
using testing::read_json;
using testing::write_json;

namespace {

const Gpt2Config kSmall{40, 16, 2, 2, 16};
const int64_t kEmbd = 16;

// A model whose every parameter is random (biases and LayerNorm gains too), so that any tensor
// loaded into the wrong place, or untransposed, changes the logits.
Gpt2 random_model(uint64_t seed, DType dtype = DType::f32) {
  Generator gen(seed);
  Gpt2 model(kSmall, gen, dtype);
  for (const NamedParameter& p : model.parameters()) normal_(p.tensor, gen, 0.0, 0.5);
  return model;
}

std::vector<double> logits_of(const Gpt2& model) {
  NoGradGuard no_grad;
  return model.forward(Tensor::from_ints({3, 14, 15, 9, 26, 5, 35, 8}, {2, 4})).to_double_vector();
}

Tensor parameter(const Gpt2& model, const std::string& name) {
  for (const NamedParameter& p : model.parameters())
    if (p.name == name) return p.tensor;
  throw Error("no parameter " + name);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("gpt2 hf: export then import gives identical tensors and bitwise-identical logits") {
  testing::TempDir tmp;
  const Gpt2 model = random_model(1);
  models::export_hf_gpt2(model, tmp.path() + "/model");
  const Gpt2 back = models::import_hf_gpt2(tmp.path() + "/model");

  const Gpt2Config& c = back.config();
  CHECK(c.vocab_size == kSmall.vocab_size);
  CHECK(c.block_size == kSmall.block_size);
  CHECK(c.n_layer == kSmall.n_layer);
  CHECK(c.n_head == kSmall.n_head);
  CHECK(c.n_embd == kSmall.n_embd);
  CHECK_FALSE(c.rotary);
  REQUIRE(back.parameters().size() == model.parameters().size());
  for (size_t i = 0; i < model.parameters().size(); ++i) {
    INFO("parameter ", model.parameters()[i].name);
    CHECK(back.parameters()[i].name == model.parameters()[i].name);
    CHECK(back.parameters()[i].tensor.requires_grad());
    CHECK(back.parameters()[i].tensor.to_double_vector() == model.parameters()[i].tensor.to_double_vector());
  }
  CHECK(logits_of(back) == logits_of(model));
}

TEST_CASE("gpt2 hf: the files use Hugging Face's names, Conv1D layout and config keys") {
  testing::TempDir tmp;
  const Gpt2 model = random_model(2);
  models::export_hf_gpt2(model, tmp.path() + "/model");
  const std::map<std::string, Tensor> file = read_all(tmp.path() + "/model");
  CHECK(file.size() == model.parameters().size());
  for (const char* name : {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.bias",
                           "transformer.h.1.ln_2.weight", "transformer.h.1.mlp.c_fc.bias"})
    CHECK_MESSAGE(file.count(name) == 1, name);
  // Our c_attn is [3C, C] (out, in); Hugging Face's Conv1D holds the transpose [C, 3C].
  const Tensor ours = parameter(model, "h.0.attn.c_attn.weight");
  const Tensor theirs = file.at("transformer.h.0.attn.c_attn.weight");
  REQUIRE(theirs.shape() == Shape{kEmbd, 3 * kEmbd});
  const std::vector<double> a = ours.to_double_vector(), b = theirs.to_double_vector();
  for (int64_t out = 0; out < 3 * kEmbd; ++out)
    for (int64_t in = 0; in < kEmbd; ++in) CHECK(a[out * kEmbd + in] == b[in * 3 * kEmbd + out]);
  CHECK(file.at("transformer.h.0.mlp.c_proj.weight").shape() == Shape{4 * kEmbd, kEmbd});
  CHECK(io::SafetensorsReader(tmp.path() + "/model/model.safetensors").metadata().at("format") == "pt");

  const json config = read_json(tmp.path() + "/model/config.json");
  CHECK(config.at("model_type") == "gpt2");
  CHECK(config.at("n_positions") == kSmall.block_size);
  CHECK(config.at("vocab_size") == kSmall.vocab_size);
  CHECK(config.at("activation_function") == "gelu_new");
  CHECK(config.at("torch_dtype") == "float32");
}

TEST_CASE("gpt2 hf: the hub's layout imports: no prefix, attention buffers, a tied lm_head, f16 weights") {
  testing::TempDir tmp;
  const Gpt2 model = random_model(3);
  models::export_hf_gpt2(model, tmp.path() + "/model");
  const json config = read_json(tmp.path() + "/model/config.json");
  std::map<std::string, Tensor> hub;
  for (const auto& [name, t] : read_all(tmp.path() + "/model"))
    hub[name.substr(std::string("transformer.").size())] = t;
  for (int layer = 0; layer < 2; ++layer) {
    const std::string p = "h." + std::to_string(layer) + ".attn.";
    hub[p + "bias"] = Tensor::full({1, 1, 16, 16}, 1.0);
    hub[p + "masked_bias"] = Tensor::full({}, -1e4);
  }
  hub["lm_head.weight"] = hub.at("wte.weight");
  const std::string dir = make_hf_dir(tmp, "hub", config, hub);
  CHECK(logits_of(models::import_hf_gpt2(dir)) == logits_of(model));

  hub["lm_head.weight"] = Tensor::zeros({40, kEmbd});
  const std::string untied = make_hf_dir(tmp, "untied", config, hub);
  CHECK(testing::error_message([&] { models::import_hf_gpt2(untied); }) ==
        untied +
            ": lm_head.weight differs from wte.weight; flashtrain's GPT-2 ties them and cannot hold an untied head");

  // f16 weights convert on import to the values the f16 model holds.
  const Gpt2 half_model = random_model(4, DType::f16);
  models::export_hf_gpt2(half_model, tmp.path() + "/half");
  CHECK(io::SafetensorsReader(tmp.path() + "/half/model.safetensors").entry("transformer.wte.weight").dtype == "F16");
  const Gpt2 widened = models::import_hf_gpt2(tmp.path() + "/half", DType::f32);
  for (size_t i = 0; i < half_model.parameters().size(); ++i)
    CHECK(widened.parameters()[i].tensor.to_double_vector() == half_model.parameters()[i].tensor.to_double_vector());
}

TEST_CASE("gpt2 hf: sharded weights import through model.safetensors.index.json") {
  testing::TempDir tmp;
  const Gpt2 model = random_model(5);
  models::export_hf_gpt2(model, tmp.path() + "/model");
  const std::string dir = tmp.path() + "/sharded";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(tmp.path() + "/model/config.json", dir + "/config.json");
  std::map<std::string, Tensor> shard1, shard2;
  json weight_map;
  for (const auto& [name, t] : read_all(tmp.path() + "/model")) {
    const bool first = name.find(".h.1.") == std::string::npos;
    (first ? shard1 : shard2)[name] = t;
    weight_map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  io::write_safetensors(dir + "/model-00001-of-00002.safetensors", shard1);
  io::write_safetensors(dir + "/model-00002-of-00002.safetensors", shard2);
  write_json(dir + "/model.safetensors.index.json", {{"metadata", json::object()}, {"weight_map", weight_map}});
  CHECK(logits_of(models::import_hf_gpt2(dir)) == logits_of(model));

  std::filesystem::remove(dir + "/model.safetensors.index.json");
  CHECK(contains(testing::error_message([&] { models::import_hf_gpt2(dir); }),
                 dir + ": no model.safetensors or model.safetensors.index.json"));
}

TEST_CASE("gpt2 hf: missing, misshapen and unexpected tensors are all named in one error") {
  testing::TempDir tmp;
  models::export_hf_gpt2(random_model(6), tmp.path() + "/model");
  const json config = read_json(tmp.path() + "/model/config.json");
  std::map<std::string, Tensor> tensors = read_all(tmp.path() + "/model");
  tensors.erase("transformer.h.1.mlp.c_fc.bias");
  tensors["transformer.ln_f.weight"] = Tensor::zeros({17});
  tensors["transformer.h.0.attn.c_proj.weight"] = Tensor::zeros({kEmbd, kEmbd + 1});
  tensors["transformer.h.0.adapter.weight"] = Tensor::zeros({2});
  const std::string dir = make_hf_dir(tmp, "broken", config, tensors);
  const std::string e = testing::error_message([&] { models::import_hf_gpt2(dir); });
  CHECK(contains(e, dir + ": the weights do not match the GPT-2 of config.json (n_layer 2, n_embd 16"));
  CHECK(contains(e, "missing: h.1.mlp.c_fc.bias (\"transformer.\" prefix optional)"));
  CHECK(contains(e,
                 "wrong shape: transformer.h.0.attn.c_proj.weight is [16, 17], expected [16, 16], "
                 "transformer.ln_f.weight is [17], expected [16]"));
  CHECK(contains(e, "unexpected: transformer.h.0.adapter.weight"));

  // A config.json for a deeper model than the weights: every tensor of layer 2 is missing.
  json deeper = config;
  deeper["n_layer"] = 3;
  const std::string short_dir = make_hf_dir(tmp, "short", deeper, read_all(tmp.path() + "/model"));
  CHECK(contains(testing::error_message([&] { models::import_hf_gpt2(short_dir); }),
                 "missing: h.2.ln_1.weight, h.2.ln_1.bias, h.2.attn.c_attn.weight"));
}

TEST_CASE("gpt2 hf: config.json defaults as transformers does and refuses what the model cannot be") {
  testing::TempDir tmp;
  const std::string dir = tmp.path() + "/config";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/config.json";

  write_json(path, json::object());  // every key absent: transformers' GPT2Config() is gpt2-124m
  const Gpt2Config defaults = models::read_hf_gpt2_config(dir);
  const Gpt2Config base = models::gpt2_config("gpt2-124m");
  CHECK(defaults.vocab_size == base.vocab_size);
  CHECK(defaults.block_size == base.block_size);
  CHECK(defaults.n_layer == base.n_layer);
  CHECK(defaults.n_head == base.n_head);
  CHECK(defaults.n_embd == base.n_embd);

  const json small = {{"n_layer", 2}, {"n_head", 2}, {"n_embd", 16}, {"n_positions", 16}, {"vocab_size", 40}};
  auto write_with = [&](const char* key, const json& value) {
    json config = small;
    config[key] = value;
    write_json(path, config);
  };
  auto error_with = [&](const char* key, const json& value) {
    write_with(key, value);
    return testing::error_message([&] { models::read_hf_gpt2_config(dir); });
  };
  CHECK(error_with("activation_function", "relu") ==
        path +
            ": 'activation_function' is \"relu\", but flashtrain's GPT-2 supports only \"gelu_new\" (the tanh GELU)");
  write_with("activation_function", "gelu_pytorch_tanh");  // the same function under another name
  CHECK_NOTHROW(models::read_hf_gpt2_config(dir));
  CHECK(error_with("layer_norm_epsilon", 1e-6) ==
        path + ": 'layer_norm_epsilon' is 1e-06, but flashtrain's GPT-2 supports only 1e-05 (the LayerNorm epsilon)");
  CHECK(error_with("n_inner", 48) ==
        path + ": 'n_inner' is 48, but flashtrain's GPT-2 supports only null or 4 n_embd = 64");
  write_with("n_inner", 64);
  CHECK_NOTHROW(models::read_hf_gpt2_config(dir));
  CHECK(contains(error_with("tie_word_embeddings", false), path + ": 'tie_word_embeddings' is false"));
  CHECK(contains(error_with("scale_attn_by_inverse_layer_idx", true), "'scale_attn_by_inverse_layer_idx' is true"));
  CHECK(contains(error_with("scale_attn_weights", false), "'scale_attn_weights' is false"));
  CHECK(contains(error_with("add_cross_attention", true), "'add_cross_attention' is true"));
  CHECK(contains(error_with("model_type", "bert"), path + ": 'model_type' is \"bert\""));
  CHECK(error_with("n_layer", "2") == path + ": 'n_layer' must be a positive integer, got \"2\"");
  CHECK(error_with("n_head", 0) == path + ": 'n_head' must be a positive integer, got 0");
  CHECK(error_with("n_head", 3) == path + ": n_embd 16 is not divisible by n_head 3");

  std::ofstream(path) << "{\"n_layer\": ";
  CHECK(contains(testing::error_message([&] { models::read_hf_gpt2_config(dir); }), path + ": not valid JSON"));
}

TEST_CASE("gpt2 hf: a rotary model has no Hugging Face form") {
  testing::TempDir tmp;
  Gpt2Config rotary = kSmall;
  rotary.rotary = true;
  Generator gen(7);
  const Gpt2 model(rotary, gen);
  CHECK(contains(testing::error_message([&] { models::export_hf_gpt2(model, tmp.path() + "/rotary"); }),
                 "rotary positions have no Hugging Face GPT-2 equivalent"));
}
