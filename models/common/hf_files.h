// The parts of a Hugging Face model directory that every model's import and export share:
// config.json read key by key with errors naming the file and key, the safetensors weights
// (one model.safetensors or shards listed in model.safetensors.index.json) indexed by name, the
// check that they hold exactly the tensors a model expects, and the atomic writing of both files.
//
// Names are matched with an optional prefix removed ("transformer." for GPT-2, "distilbert."
// for DistilBERT's base), since transformers writes the prefix from a model with a head but the
// hub holds files without it; two tensors that differ only by the prefix are an error.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/io/safetensors.h"
#include "framework/parameter.h"

namespace ft::models::hf {

using json = nlohmann::json;

// dir/config.json, read as transformers' from_pretrained does: an absent key takes the
// library's default. `model` names our model in errors ("flashtrain's GPT-2").
class ConfigFile {
 public:
  ConfigFile(const std::string& dir, std::string model);

  const std::string& path() const { return path_; }
  // config[key], or `fallback` when the key is absent.
  json get(const char* key, const json& fallback) const;
  // A positive integer; throws naming the file and key otherwise.
  int64_t positive_int(const char* key, int64_t fallback) const;
  // Throws unless the value is `supported`, saying what the setting means.
  void require(const char* key, const json& fallback, const json& supported, const char* meaning) const;

 private:
  std::string path_;
  std::string model_;
  json config_;
};

// Parses a JSON file; `what` says what the file should be, for the error when it cannot be opened.
json read_json_file(const std::string& path, const char* what);

struct StoredTensor {
  const io::SafetensorsReader* file;
  std::string name_in_file;  // with or without the prefix
  const io::SafetensorsEntry& entry() const { return file->entry(name_in_file); }
  Tensor read(DType dtype, Device device) const { return file->read(name_in_file, dtype, device); }
};

// The weights of a directory, keyed by name without the prefix.
struct WeightFiles {
  std::vector<std::unique_ptr<io::SafetensorsReader>> files;
  std::map<std::string, StoredTensor> tensors;
};

// Opens dir's safetensors weights; throws naming dir when there are none.
WeightFiles open_weight_files(const std::string& dir, const std::string& prefix);

struct ExpectedTensor {
  std::string name;  // without the prefix
  Shape shape;       // as the file stores it
};

// Every expected tensor present with its shape, and nothing else but what `ignored` accepts;
// otherwise one ft::Error, "dir: the weights do not match <model>", listing by name what is
// missing, wrongly shaped and unexpected.
void check_weights_match(const std::vector<ExpectedTensor>& expected, const WeightFiles& weights,
                         const std::function<bool(const std::string&)>& ignored, const std::string& dir,
                         const std::string& model, const std::string& prefix);

// A stored copy of a tied projection (HF's lm_head.weight, vocab_projector.weight) is accepted
// only if bit-equal to the embedding it is tied to; an absent one is fine.
void check_tied_copy(const WeightFiles& weights, const std::string& copy, const std::string& embedding,
                     const std::string& dir, const std::string& model);

// The torch_dtype name of a parameter dtype ("float32"); throws for dtypes torch models lack.
const char* torch_dtype_name(DType dtype);

// Creates dir if needed and writes dir/model.safetensors (metadata format=pt, which
// transformers requires) and dir/config.json, each atomically.
void write_model_dir(const std::string& dir, const std::map<std::string, Tensor>& tensors, const json& config);

}  // namespace ft::models::hf
