#include "framework/io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "framework/io/atomic_file.h"

namespace ft::io {

// The data section is copied byte for byte into tensors, so the host must share the format's
// byte order.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian, and so must the host be");

namespace {

using json = nlohmann::json;

// The spec's dtypes with their element sizes and the DType each maps to, if any. Knowing the
// others lets a file that holds, say, an I64 buffer open, with only that tensor unreadable.
struct StoredType {
  const char* name;
  uint64_t bytes;
  std::optional<DType> dtype;
};
constexpr StoredType kStoredTypes[] = {{"F64", 8, DType::f64},   {"F32", 4, DType::f32}, {"F16", 2, DType::f16},
                                       {"BF16", 2, DType::bf16}, {"I32", 4, DType::i32}, {"U8", 1, DType::u8},
                                       {"I64", 8, {}},           {"U64", 8, {}},         {"U32", 4, {}},
                                       {"I16", 2, {}},           {"U16", 2, {}},         {"I8", 1, {}},
                                       {"BOOL", 1, {}},          {"F8_E4M3", 1, {}},     {"F8_E5M2", 1, {}}};

const StoredType* find_stored_type(const std::string& name) {
  for (const StoredType& t : kStoredTypes)
    if (name == t.name) return &t;
  return nullptr;
}

std::string tensor_at(const std::string& path, const std::string& name) { return str(path, ": tensor '", name, "': "); }

// a * b, or the largest uint64 when that overflows (a byte count that large matches no file).
uint64_t saturating_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::numeric_limits<uint64_t>::max();
  return a * b;
}

SafetensorsEntry parse_entry(const json& value, const std::string& path, const std::string& name, uint64_t data_size) {
  const std::string at = tensor_at(path, name);
  FT_CHECK(value.is_object(), at, "expected an object with dtype, shape and data_offsets, got ", value.type_name());
  SafetensorsEntry e;
  const json dtype = value.value("dtype", json());  // null when absent
  FT_CHECK(dtype.is_string(), at, "dtype must be a string such as \"F32\"");
  e.dtype = dtype.get<std::string>();
  const StoredType* type = find_stored_type(e.dtype);
  FT_CHECK(type, at, "unknown dtype '", e.dtype, "'");

  const json shape = value.value("shape", json());
  FT_CHECK(shape.is_array(), at, "shape must be an array of sizes");
  uint64_t bytes = type->bytes;
  for (const json& size : shape) {
    FT_CHECK(size.is_number_unsigned() && size.get<uint64_t>() <= uint64_t{std::numeric_limits<int64_t>::max()}, at,
             "shape ", shape.dump(), " must hold non-negative integers");
    e.shape.push_back(size.get<int64_t>());
    bytes = saturating_mul(bytes, size.get<uint64_t>());
  }

  const json offsets = value.value("data_offsets", json());
  FT_CHECK(
      offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(),
      at, "data_offsets must be two non-negative integers [begin, end]");
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  FT_CHECK(e.begin <= e.end, at, "data_offsets ", offsets.dump(), " end before they begin");
  FT_CHECK(e.end <= data_size, at, "data_offsets ", offsets.dump(), " reach past the data section of ", data_size,
           " bytes");
  FT_CHECK(e.end - e.begin == bytes, at, "shape ", shape_str(e.shape), " of ", e.dtype, " needs ", bytes,
           " bytes but data_offsets ", offsets.dump(), " hold ", e.end - e.begin);
  return e;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& path) {
  FT_CHECK(value.is_object(), path, ": __metadata__ must be an object of strings, got ", value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& [key, v] : value.items()) {
    FT_CHECK(v.is_string(), path, ": __metadata__ key '", key, "' must be a string, got ", v.type_name());
    metadata[key] = v.get<std::string>();
  }
  return metadata;
}

// The tensors must cover the data section exactly once: an overlap would alias two tensors and
// a hole would hide bytes no reader sees (the spec forbids both).
void check_tiling(const std::map<std::string, SafetensorsEntry>& entries, uint64_t data_size, const std::string& path) {
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> spans;
  for (const auto& [name, e] : entries) spans.emplace_back(e.begin, e.end, name);
  std::sort(spans.begin(), spans.end());
  uint64_t covered = 0;
  std::string previous;
  for (const auto& [begin, end, name] : spans) {
    FT_CHECK(begin >= covered, path, ": tensors '", previous, "' and '", name, "' overlap (bytes ", begin, " to ",
             covered, " of the data section)");
    FT_CHECK(begin == covered, path, ": bytes ", covered, " to ", begin, " of the data section belong to no tensor ",
             "(a hole before tensor '", name, "')");
    covered = end;
    previous = name;
  }
  FT_CHECK(covered == data_size, path, ": bytes ", covered, " to ", data_size,
           " at the end of the data section belong to no tensor");
}

void write_u64_le(std::ostream& out, uint64_t v) {
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.write(bytes, 8);
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  FT_CHECK(in, path, ": cannot open (expected a safetensors file)");
  std::error_code error;
  const uint64_t file_size = std::filesystem::file_size(path, error);
  FT_CHECK(!error, path, ": cannot read the file size: ", error.message());
  FT_CHECK(file_size >= 8, path, ": ", file_size, " bytes is too short for a safetensors file (which starts with ",
           "an 8-byte header length)");
  unsigned char length_bytes[8];
  in.read(reinterpret_cast<char*>(length_bytes), 8);
  uint64_t header_length = 0;
  for (int i = 0; i < 8; ++i) header_length |= uint64_t{length_bytes[i]} << (8 * i);
  FT_CHECK(header_length <= file_size - 8, path, ": header length ", header_length, " runs past the end of the file (",
           file_size, " bytes); is this a safetensors file?");

  std::string text(header_length, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_length));
  FT_CHECK(in, path, ": read of the ", header_length, "-byte header failed");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(str(path, ": header is not valid JSON (", e.what(), ")"));
  }
  FT_CHECK(header.is_object(), path, ": header must be a JSON object, got ", header.type_name());

  data_start_ = 8 + header_length;
  const uint64_t data_size = file_size - data_start_;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      metadata_ = parse_metadata(value, path);
    } else {
      entries_[name] = parse_entry(value, path, name, data_size);
    }
  }
  check_tiling(entries_, data_size, path);
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> names;
  for (const auto& entry : entries_) names.push_back(entry.first);
  return names;
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  auto it = entries_.find(name);
  FT_CHECK(it != entries_.end(), path_, ": no tensor named '", name, "'");
  return it->second;
}

Tensor SafetensorsReader::read(const std::string& name, DType dtype, Device device) const {
  const SafetensorsEntry& e = entry(name);
  const StoredType& type = *find_stored_type(e.dtype);
  const std::string at = tensor_at(path_, name);
  FT_CHECK(type.dtype, at, "dtype ", e.dtype, " is not supported (flashtrain reads F32, F16, BF16, F64, I32, U8)");
  const DType stored = *type.dtype;
  FT_CHECK(stored == dtype || (is_floating(stored) && is_floating(dtype)), at, "stored as ", e.dtype,
           ", which cannot be read as ", dtype_name(dtype));
  Tensor host = Tensor::empty(e.shape, stored);
  std::ifstream in(path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(data_start_ + e.begin));
  in.read(static_cast<char*>(host.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
  FT_CHECK(in, at, "read of ", e.end - e.begin, " bytes failed (did the file change since it was opened?)");
  return host.to(dtype).to(device);
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string at = tensor_at(path, name);
    FT_CHECK(name != "__metadata__", path, ": '__metadata__' is reserved and cannot name a tensor");
    FT_CHECK(tensor.defined(), at, "undefined");
    const StoredType* type = nullptr;
    for (const StoredType& t : kStoredTypes)
      if (t.dtype == tensor.dtype()) type = &t;
    FT_CHECK(type, at, dtype_name(tensor.dtype()), " has no safetensors dtype");
    header[name] = {
        {"dtype", type->name}, {"shape", tensor.shape()}, {"data_offsets", {offset, offset + tensor.nbytes()}}};
    offset += tensor.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned (8 + text.size())

  write_file_atomically(path, [&](const std::string& temp) {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    FT_CHECK(out, temp, ": cannot create");
    write_u64_le(out, text.size());
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& entry : tensors) {
      const Tensor host = entry.second.to(Device::cpu()).contiguous();
      out.write(static_cast<const char*>(host.raw_data()), static_cast<std::streamsize>(host.nbytes()));
    }
    out.close();
    FT_CHECK(out, temp, ": write failed (is the disk full?)");
  });
}

}  // namespace ft::io
