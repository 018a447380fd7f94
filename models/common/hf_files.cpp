#include "models/common/hf_files.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "framework/io/atomic_file.h"

namespace ft::models::hf {

namespace {

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

// "a, b, c" (at most 12 names, then how many more).
std::string name_list(const std::vector<std::string>& names) {
  const size_t shown = std::min<size_t>(names.size(), 12);
  std::string list;
  for (size_t i = 0; i < shown; ++i) list += (i ? ", " : "") + names[i];
  if (names.size() > shown) list += str(" and ", names.size() - shown, " more");
  return list;
}

}  // namespace

json read_json_file(const std::string& path, const char* what) {
  std::ifstream in(path);
  FT_CHECK(in, path, ": cannot open (expected ", what, ")");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(str(path, ": not valid JSON (", e.what(), ")"));
  }
}

ConfigFile::ConfigFile(const std::string& dir, std::string model)
    : path_(dir + "/config.json"), model_(std::move(model)) {
  config_ = read_json_file(path_, "a Hugging Face config.json");
  FT_CHECK(config_.is_object(), path_, ": expected a JSON object, got ", config_.type_name());
}

json ConfigFile::get(const char* key, const json& fallback) const {
  auto it = config_.find(key);
  return it == config_.end() ? fallback : *it;
}

int64_t ConfigFile::positive_int(const char* key, int64_t fallback) const {
  const json v = get(key, fallback);
  FT_CHECK(v.is_number_integer() && v.get<int64_t>() > 0, path_, ": '", key, "' must be a positive integer, got ",
           v.dump());
  return v.get<int64_t>();
}

void ConfigFile::require(const char* key, const json& fallback, const json& supported, const char* meaning) const {
  const json v = get(key, fallback);
  FT_CHECK(v == supported, path_, ": '", key, "' is ", v.dump(), ", but ", model_, " supports only ", supported.dump(),
           " (", meaning, ")");
}

WeightFiles open_weight_files(const std::string& dir, const std::string& prefix) {
  WeightFiles weights;
  for (const std::string& file : weight_file_names(dir)) {
    weights.files.push_back(std::make_unique<io::SafetensorsReader>(dir + "/" + file));
    const io::SafetensorsReader* reader = weights.files.back().get();
    for (const std::string& name : reader->names()) {
      const bool prefixed = name.rfind(prefix, 0) == 0;
      const std::string key = prefixed ? name.substr(prefix.size()) : name;
      auto [it, inserted] = weights.tensors.emplace(key, StoredTensor{reader, name});
      FT_CHECK(inserted, dir, ": tensor '", key, "' appears twice, as '", it->second.name_in_file, "' in ",
               it->second.file->path(), " and as '", name, "' in ", reader->path());
    }
  }
  return weights;
}

void check_weights_match(const std::vector<ExpectedTensor>& expected, const WeightFiles& weights,
                         const std::function<bool(const std::string&)>& ignored, const std::string& dir,
                         const std::string& model, const std::string& prefix) {
  std::vector<std::string> missing, misshapen, unexpected;
  std::set<std::string> names;
  for (const ExpectedTensor& e : expected) {
    names.insert(e.name);
    auto it = weights.tensors.find(e.name);
    if (it == weights.tensors.end()) {
      missing.push_back(e.name);
    } else if (it->second.entry().shape != e.shape) {
      misshapen.push_back(
          str(it->second.name_in_file, " is ", shape_str(it->second.entry().shape), ", expected ", shape_str(e.shape)));
    }
  }
  for (const auto& [name, stored] : weights.tensors)
    if (!names.count(name) && !ignored(name)) unexpected.push_back(stored.name_in_file);
  if (missing.empty() && misshapen.empty() && unexpected.empty()) return;
  std::string message = str(dir, ": the weights do not match ", model);
  if (!missing.empty()) message += str("; missing: ", name_list(missing), " (\"", prefix, "\" prefix optional)");
  if (!misshapen.empty()) message += str("; wrong shape: ", name_list(misshapen));
  if (!unexpected.empty()) message += str("; unexpected: ", name_list(unexpected));
  throw Error(message);
}

void check_tied_copy(const WeightFiles& weights, const std::string& copy, const std::string& embedding,
                     const std::string& dir, const std::string& model) {
  auto stored_copy = weights.tensors.find(copy);
  if (stored_copy == weights.tensors.end()) return;
  const StoredTensor& stored_embedding = weights.tensors.at(embedding);
  const Tensor a = stored_copy->second.read(DType::f32, Device::cpu());
  const Tensor b = stored_embedding.read(DType::f32, Device::cpu());
  FT_CHECK(a.shape() == b.shape() && std::memcmp(a.raw_data(), b.raw_data(), b.nbytes()) == 0, dir, ": ",
           stored_copy->second.name_in_file, " differs from ", stored_embedding.name_in_file, "; ", model,
           " ties them and cannot hold an untied head");
}

const char* torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::f16:
      return "float16";
    case DType::bf16:
      return "bfloat16";
    default:
      throw Error(str("Hugging Face export: parameters of dtype ", dtype_name(dtype), " have no torch dtype"));
  }
}

void write_model_dir(const std::string& dir, const std::map<std::string, Tensor>& tensors, const json& config) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  FT_CHECK(!error, dir, ": cannot create the directory: ", error.message());
  io::write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  io::write_text_file_atomically(dir + "/config.json", config.dump(2) + "\n");
}

}  // namespace ft::models::hf
