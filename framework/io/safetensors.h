// The safetensors format (Hugging Face's weight files): 8 bytes of little-endian header length,
// a JSON header mapping each tensor name to {dtype, shape, data_offsets} (plus an optional
// "__metadata__" object of strings), then the raw row-major data. Reading validates the whole
// header up front, including that the tensors tile the data section exactly (no overlaps, no
// holes), so a bad file fails with the file and tensor named before any data is read.
//
//   io::SafetensorsReader file("model.safetensors");
//   Tensor wte = file.read("wte.weight", DType::f32);
//   io::write_safetensors("out.safetensors", {{"wte.weight", wte}});
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "framework/tensor.h"

namespace ft::io {

// One tensor as the header describes it.
struct SafetensorsEntry {
  std::string dtype;  // as the file spells it: "F32", "BF16", "I64", ...
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data section, [begin, end)
  uint64_t end = 0;
};

class SafetensorsReader {
 public:
  // Reads and validates the header; throws ft::Error naming the file (and tensor) otherwise.
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor's data on `device`. Stored F32, F16, BF16 and F64 convert to any floating dtype;
  // I32 and U8 read only as themselves; other stored dtypes are an error.
  Tensor read(const std::string& name, DType dtype, Device device = Device::cpu()) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;  // file offset of the data section
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes the tensors (f32, f16, bf16, f64, i32 or u8; any device, any layout) in name order,
// each in its own dtype, atomically (framework/io/atomic_file.h). The header is padded with
// spaces to a multiple of 8 bytes so the data is aligned; the same tensors give the same bytes.
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ft::io
