#include "models/gpt2/gpt2_hf.h"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "framework/io/atomic_file.h"
#include "framework/io/safetensors.h"

namespace ft::models {

namespace {

using json = nlohmann::json;

const std::string kPrefix = "transformer.";
const double kLayerNormEps = 1e-5;  // what Gpt2's layer_norm calls use

json read_json_file(const std::string& path, const char* what) {
  std::ifstream in(path);
  FT_CHECK(in, path, ": cannot open (expected ", what, ")");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(str(path, ": not valid JSON (", e.what(), ")"));
  }
}

// config[key], or transformers' default when the key is absent.
json field(const json& config, const char* key, const json& fallback) {
  auto it = config.find(key);
  return it == config.end() ? fallback : *it;
}

// Hugging Face's Conv1D modules store their weights [in, out]; ours are [out, in].
bool is_conv1d_weight(const std::string& name) {
  for (const char* module : {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"}) {
    const size_t n = std::strlen(module);
    if (name.size() > n && name.compare(name.size() - n, n, module) == 0) return true;
  }
  return false;
}

// "h.N.attn.bias" and "h.N.attn.masked_bias": the causal mask buffers older transformers saved.
bool is_attention_buffer(const std::string& name) {
  if (name.rfind("h.", 0) != 0) return false;
  size_t i = 2;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) ++i;
  const std::string rest = name.substr(i);
  return i > 2 && (rest == ".attn.bias" || rest == ".attn.masked_bias");
}

Shape hf_shape(const NamedParameter& p) {
  Shape shape = p.tensor.shape();
  if (is_conv1d_weight(p.name)) std::swap(shape[0], shape[1]);
  return shape;
}

// ---- weight files ----------------------------------------------------------------------

struct StoredTensor {
  const io::SafetensorsReader* file;
  std::string name_in_file;  // with or without the prefix
  const io::SafetensorsEntry& entry() const { return file->entry(name_in_file); }
  Tensor read(DType dtype, Device device) const { return file->read(name_in_file, dtype, device); }
};

struct WeightFiles {
  std::vector<std::unique_ptr<io::SafetensorsReader>> files;
  std::map<std::string, StoredTensor> tensors;  // by name without the prefix
};

std::vector<std::string> weight_file_names(const std::string& dir) {
  if (std::filesystem::exists(dir + "/model.safetensors")) return {"model.safetensors"};
  const std::string index_path = dir + "/model.safetensors.index.json";
  FT_CHECK(std::filesystem::exists(index_path), dir, ": no model.safetensors or model.safetensors.index.json ",
           "(flashtrain reads safetensors weights only; transformers' save_pretrained writes them)");
  const json index = read_json_file(index_path, "a safetensors shard index");
  const json weight_map = index.is_object() ? index.value("weight_map", json()) : json();
  FT_CHECK(weight_map.is_object(), index_path, ": expected an object with a \"weight_map\" object");
  std::set<std::string> shards;
  for (const auto& [name, file] : weight_map.items()) {
    FT_CHECK(file.is_string(), index_path, ": weight_map entry '", name, "' must name a file, got ", file.dump());
    shards.insert(file.get<std::string>());
  }
  return {shards.begin(), shards.end()};
}

WeightFiles open_weight_files(const std::string& dir) {
  WeightFiles weights;
  for (const std::string& file : weight_file_names(dir)) {
    weights.files.push_back(std::make_unique<io::SafetensorsReader>(dir + "/" + file));
    const io::SafetensorsReader* reader = weights.files.back().get();
    for (const std::string& name : reader->names()) {
      const bool prefixed = name.rfind(kPrefix, 0) == 0;
      const std::string key = prefixed ? name.substr(kPrefix.size()) : name;
      auto [it, inserted] = weights.tensors.emplace(key, StoredTensor{reader, name});
      FT_CHECK(inserted, dir, ": tensor '", key, "' appears twice, as '", it->second.name_in_file, "' in ",
               it->second.file->path(), " and as '", name, "' in ", reader->path());
    }
  }
  return weights;
}

// "a, b, c" (at most 12 names, then how many more).
std::string name_list(const std::vector<std::string>& names) {
  const size_t shown = std::min<size_t>(names.size(), 12);
  std::string list;
  for (size_t i = 0; i < shown; ++i) list += (i ? ", " : "") + names[i];
  if (names.size() > shown) list += str(" and ", names.size() - shown, " more");
  return list;
}

// Every parameter present with its shape and nothing else but ignorable buffers; otherwise one
// error listing all the differences.
void check_weights_match(const Gpt2& model, const WeightFiles& weights, const std::string& dir) {
  std::vector<std::string> missing, misshapen, unexpected;
  std::set<std::string> expected;
  for (const NamedParameter& p : model.parameters()) {
    expected.insert(p.name);
    auto it = weights.tensors.find(p.name);
    if (it == weights.tensors.end()) {
      missing.push_back(p.name);
    } else if (it->second.entry().shape != hf_shape(p)) {
      misshapen.push_back(str(it->second.name_in_file, " is ", shape_str(it->second.entry().shape), ", expected ",
                              shape_str(hf_shape(p))));
    }
  }
  for (const auto& [name, stored] : weights.tensors)
    if (!expected.count(name) && !is_attention_buffer(name) && name != "lm_head.weight")
      unexpected.push_back(stored.name_in_file);
  if (missing.empty() && misshapen.empty() && unexpected.empty()) return;
  const Gpt2Config& c = model.config();
  std::string message = str(dir, ": the weights do not match the GPT-2 of config.json (n_layer ", c.n_layer,
                            ", n_embd ", c.n_embd, ", vocab_size ", c.vocab_size, ", n_positions ", c.block_size, ")");
  if (!missing.empty()) message += str("; missing: ", name_list(missing), " (\"transformer.\" prefix optional)");
  if (!misshapen.empty()) message += str("; wrong shape: ", name_list(misshapen));
  if (!unexpected.empty()) message += str("; unexpected: ", name_list(unexpected));
  throw Error(message);
}

// Some conversions save the tied output projection too; accept it only if it is wte.
void check_lm_head_tied(const WeightFiles& weights, const std::string& dir) {
  auto lm_head = weights.tensors.find("lm_head.weight");
  if (lm_head == weights.tensors.end()) return;
  const Tensor head = lm_head->second.read(DType::f32, Device::cpu());
  const Tensor wte = weights.tensors.at("wte.weight").read(DType::f32, Device::cpu());
  FT_CHECK(head.shape() == wte.shape() && std::memcmp(head.raw_data(), wte.raw_data(), wte.nbytes()) == 0, dir,
           ": lm_head.weight differs from wte.weight; flashtrain's GPT-2 ties them and cannot hold an untied head");
}

// ---- export ----------------------------------------------------------------------------

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::f16:
      return "float16";
    case DType::bf16:
      return "bfloat16";
    default:
      throw Error(str("export_hf_gpt2: parameters of dtype ", dtype_name(t), " have no torch dtype"));
  }
}

// What GPT2Config needs to rebuild our model. Our dropout is on the embeddings and residual
// branches only, hence attn_pdrop 0.
json hf_config_json(const Gpt2Config& c, DType dtype) {
  return {{"activation_function", "gelu_new"},
          {"architectures", json::array({"GPT2LMHeadModel"})},
          {"attn_pdrop", 0.0},
          {"embd_pdrop", c.dropout},
          {"layer_norm_epsilon", kLayerNormEps},
          {"model_type", "gpt2"},
          {"n_embd", c.n_embd},
          {"n_head", c.n_head},
          {"n_layer", c.n_layer},
          {"n_positions", c.block_size},
          {"resid_pdrop", c.dropout},
          {"tie_word_embeddings", true},
          {"torch_dtype", torch_dtype_name(dtype)},
          {"vocab_size", c.vocab_size}};
}

}  // namespace

Gpt2Config read_hf_gpt2_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  const json config = read_json_file(path, "a Hugging Face GPT-2 config.json");
  FT_CHECK(config.is_object(), path, ": expected a JSON object, got ", config.type_name());
  auto size = [&](const char* key, int64_t fallback) {
    const json v = field(config, key, fallback);
    FT_CHECK(v.is_number_integer() && v.get<int64_t>() > 0, path, ": '", key, "' must be a positive integer, got ",
             v.dump());
    return v.get<int64_t>();
  };
  auto require = [&](const char* key, const json& fallback, const json& supported, const char* meaning) {
    const json v = field(config, key, fallback);
    FT_CHECK(v == supported, path, ": '", key, "' is ", v.dump(), ", but flashtrain's GPT-2 supports only ",
             supported.dump(), " (", meaning, ")");
  };
  require("model_type", "gpt2", "gpt2", "this reader knows GPT-2 only");
  Gpt2Config c;
  c.vocab_size = size("vocab_size", 50257);
  c.block_size = size("n_positions", 1024);
  c.n_embd = size("n_embd", 768);
  c.n_layer = size("n_layer", 12);
  c.n_head = size("n_head", 12);
  FT_CHECK(c.n_embd % c.n_head == 0, path, ": n_embd ", c.n_embd, " is not divisible by n_head ", c.n_head);
  const json activation = field(config, "activation_function", "gelu_new");
  // gelu_pytorch_tanh is the same tanh approximation under another name.
  FT_CHECK(activation == "gelu_new" || activation == "gelu_pytorch_tanh", path, ": 'activation_function' is ",
           activation.dump(), ", but flashtrain's GPT-2 supports only \"gelu_new\" (the tanh GELU)");
  require("layer_norm_epsilon", kLayerNormEps, kLayerNormEps, "the LayerNorm epsilon");
  const json n_inner = field(config, "n_inner", nullptr);
  FT_CHECK(n_inner.is_null() || n_inner == 4 * c.n_embd, path, ": 'n_inner' is ", n_inner.dump(),
           ", but flashtrain's GPT-2 supports only null or 4 n_embd = ", 4 * c.n_embd);
  require("tie_word_embeddings", true, true, "the output projection is wte");
  require("scale_attn_weights", true, true, "scores are scaled by 1/sqrt(head_dim)");
  require("scale_attn_by_inverse_layer_idx", false, false, "no per-layer score scaling");
  require("add_cross_attention", false, false, "a decoder without cross-attention");
  return c;
}

Gpt2 import_hf_gpt2(const std::string& dir, DType dtype, Device device) {
  const Gpt2Config config = read_hf_gpt2_config(dir);
  const WeightFiles weights = open_weight_files(dir);
  Generator unused(0);  // the initial values are all overwritten below
  Gpt2 model(config, unused, dtype, device);
  check_weights_match(model, weights, dir);
  check_lm_head_tied(weights, dir);
  for (const NamedParameter& p : model.parameters()) {
    const Tensor stored = weights.tensors.at(p.name).read(dtype, device);
    p.tensor.copy_(is_conv1d_weight(p.name) ? transpose(stored, 0, 1) : stored);
  }
  return model;
}

void export_hf_gpt2(const Gpt2& model, const std::string& dir) {
  FT_CHECK(!model.config().rotary, "export_hf_gpt2: ", dir,
           ": rotary positions have no Hugging Face GPT-2 equivalent (it learns position embeddings)");
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  FT_CHECK(!error, dir, ": cannot create the directory: ", error.message());
  std::map<std::string, Tensor> tensors;
  for (const NamedParameter& p : model.parameters()) {
    const Tensor t = p.tensor.detach();
    tensors[kPrefix + p.name] = is_conv1d_weight(p.name) ? transpose(t, 0, 1) : t;
  }
  const DType dtype = model.parameters().front().tensor.dtype();
  io::write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  io::write_text_file_atomically(dir + "/config.json", hf_config_json(model.config(), dtype).dump(2) + "\n");
}

}  // namespace ft::models
