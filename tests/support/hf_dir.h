// Hugging Face model directories for the import/export tests: config.json written and read,
// every tensor of an exported model.safetensors, and a directory built from a config and a set
// of tensors (format=pt, as transformers writes them), so a test can break one thing at a time.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "framework/io/safetensors.h"
#include "tests/support/temp_dir.h"

namespace ft::testing {

inline void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(); }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// All tensors of an exported directory, by their names in the file, as f32.
inline std::map<std::string, Tensor> read_all(const std::string& dir) {
  io::SafetensorsReader file(dir + "/model.safetensors");
  std::map<std::string, Tensor> tensors;
  for (const std::string& name : file.names()) tensors[name] = file.read(name, DType::f32);
  return tensors;
}

// tmp/name holding the given config.json and tensors as model.safetensors.
inline std::string make_hf_dir(const TempDir& tmp, const std::string& name, const nlohmann::json& config,
                               const std::map<std::string, Tensor>& tensors) {
  const std::string dir = tmp.path() + "/" + name;
  std::filesystem::create_directories(dir);
  write_json(dir + "/config.json", config);
  io::write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  return dir;
}

}  // namespace ft::testing
