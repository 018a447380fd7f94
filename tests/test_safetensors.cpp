// framework/io/safetensors.h: round trips in every dtype, the exact bytes the format prescribes
// (checked against a layout written out by hand from the spec), files built byte by byte, and
// one test per kind of corruption, each naming the file and the tensor.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "framework/io/safetensors.h"
#include "framework/ops.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"

using namespace ft;

namespace {

std::string le64(uint64_t v) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return bytes;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A safetensors file from its parts: the header length, the header text and the data.
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  write_bytes(path, le64(header.size()) + header + data);
}

std::string tensor_bytes(const Tensor& t) {
  const Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

// Random values in `dtype`: drawn in f32 and rounded, so every one is exactly representable.
Tensor random_in(DType dtype, const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, gen).to(dtype);
}

}  // namespace

TEST_CASE("safetensors: round trip in every dtype, including empty, scalar and strided tensors") {
  testing::TempDir dir;
  for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    INFO("dtype ", dtype_name(dtype));
    const std::string path = dir.path() + "/" + dtype_name(dtype) + ".safetensors";
    const Tensor matrix = random_in(dtype, {3, 5}, 1);
    std::map<std::string, Tensor> tensors = {{"b.matrix", matrix},
                                             {"a.vector", random_in(dtype, {7}, 2)},
                                             {"c.empty", Tensor::empty({0, 4}, dtype)},
                                             {"d.scalar", random_in(dtype, {}, 3)},
                                             {"e.transposed", transpose(matrix, 0, 1)}};
    const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "round trip"}};
    io::write_safetensors(path, tensors, metadata);

    io::SafetensorsReader file(path);
    CHECK(file.names() == std::vector<std::string>{"a.vector", "b.matrix", "c.empty", "d.scalar", "e.transposed"});
    CHECK(file.metadata() == metadata);
    for (const auto& [name, t] : tensors) {
      INFO("tensor ", name);
      const Tensor back = file.read(name, dtype);
      CHECK(back.dtype() == dtype);
      CHECK(back.shape() == t.shape());
      CHECK(tensor_bytes(back) == tensor_bytes(t));
      CHECK(file.read(name, DType::f64).to_double_vector() == t.to_double_vector());  // converted exactly
    }
  }
}

TEST_CASE("safetensors: integer tensors read only as themselves") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/ints.safetensors";
  io::write_safetensors(path, {{"ids", Tensor::from_ints({3, -1, 7}, {3})}, {"mask", Tensor::full({2}, 1, DType::u8)}});
  io::SafetensorsReader file(path);
  CHECK(file.read("ids", DType::i32).to_int_vector() == std::vector<int32_t>{3, -1, 7});
  CHECK(file.read("mask", DType::u8).to_int_vector() == std::vector<int32_t>{1, 1});
  const std::string e = testing::error_message([&] { file.read("ids", DType::f32); });
  CHECK(e.find(path + ": tensor 'ids': stored as I32, which cannot be read as f32") != std::string::npos);
}

TEST_CASE("safetensors: the writer's bytes are the spec's layout, aligned and deterministic") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/x.safetensors";
  io::write_safetensors(path, {{"x", Tensor::from_vector({1.0, -2.0}, {2})}});
  // Written out by hand: compact JSON with sorted keys is 54 bytes, padded with 2 spaces to a
  // multiple of 8; then 1.0f = 0x3f800000 and -2.0f = 0xc0000000, little-endian.
  const std::string header = R"({"x":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  REQUIRE(header.size() == 54);
  const std::string expected = le64(56) + header + "  " + std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
  CHECK(read_bytes(path) == expected);

  // Insertion order and layout do not matter: the same tensors give the same bytes.
  const Tensor m = random_in(DType::f32, {4, 3}, 9);
  const std::string p1 = dir.path() + "/one.safetensors", p2 = dir.path() + "/two.safetensors";
  io::write_safetensors(p1, {{"b", m}, {"a", transpose(m, 0, 1)}}, {{"k", "v"}});
  io::write_safetensors(p2, {{"a", transpose(m, 0, 1).contiguous()}, {"b", m.clone()}}, {{"k", "v"}});
  const std::string bytes = read_bytes(p1);
  CHECK(bytes == read_bytes(p2));
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  CHECK(header_length % 8 == 0);
  CHECK(bytes.size() == 8 + header_length + 2 * 12 * 4);
}

TEST_CASE("safetensors: reads a file built byte by byte, converting F16, BF16 and F64") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/hand.safetensors";
  // F16 1.0 = 0x3c00, -2.0 = 0xc000; BF16 1.0 = 0x3f80; F64 0.5 = 0x3fe0000000000000; an I64 buffer.
  const std::string header = R"({"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]},)"
                             R"("d":{"dtype":"F64","shape":[1],"data_offsets":[6,14]},)"
                             R"("i":{"dtype":"I64","shape":[1],"data_offsets":[14,22]}}      )";
  const std::string data = std::string("\x00\x3c\x00\xc0", 4) + std::string("\x80\x3f", 2) +
                           std::string("\x00\x00\x00\x00\x00\x00\xe0\x3f", 8) + le64(42);
  write_raw(path, header, data);
  io::SafetensorsReader file(path);
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.entry("i").dtype == "I64");
  CHECK(file.read("h", DType::f32).to_double_vector() == std::vector<double>{1.0, -2.0});
  CHECK(file.read("b", DType::f64).shape() == Shape{1, 1});
  CHECK(file.read("b", DType::f32).item() == 1.0);
  CHECK(file.read("d", DType::f32).item() == 0.5);
  CHECK(testing::error_message([&] {
          file.read("i", DType::f32);
        }).find(path + ": tensor 'i': dtype I64 is not supported") != std::string::npos);
  CHECK(testing::error_message([&] { file.entry("nope"); }) == path + ": no tensor named 'nope'");
}

TEST_CASE("safetensors: every kind of corruption is an error naming the file and the tensor") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/bad.safetensors";
  auto error_for_raw = [&](const std::string& header, const std::string& data) {
    write_raw(path, header, data);
    return testing::error_message([&] { io::SafetensorsReader file(path); });
  };
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, int begin, int end) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(begin) + "," + std::to_string(end) + "]}";
  };
  const std::string eight(8, '\0');

  CHECK(testing::error_message([&] {
          io::SafetensorsReader file(dir.path() + "/absent.safetensors");
        }).find("absent.safetensors: cannot open") != std::string::npos);

  write_bytes(path, "abc");
  CHECK(testing::error_message([&] { io::SafetensorsReader file(path); }) ==
        path + ": 3 bytes is too short for a safetensors file (which starts with an 8-byte header length)");

  write_bytes(path, le64(1000) + "{}");
  CHECK(testing::error_message([&] { io::SafetensorsReader file(path); }) ==
        path + ": header length 1000 runs past the end of the file (10 bytes); is this a safetensors file?");

  CHECK(error_for_raw("{\"w\":", "").find(path + ": header is not valid JSON") == 0);
  CHECK(error_for_raw("[1,2]", "") == path + ": header must be a JSON object, got array");
  CHECK(error_for_raw("{" + entry("w", "F7", "[2]", 0, 8) + "}", eight) == path + ": tensor 'w': unknown dtype 'F7'");
  CHECK(error_for_raw(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", eight) ==
        path + ": tensor 'w': shape must be an array of sizes");
  CHECK(error_for_raw("{" + entry("w", "F32", "[-2]", 0, 8) + "}", eight) ==
        path + ": tensor 'w': shape [-2] must hold non-negative integers");
  CHECK(error_for_raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight) ==
        path + ": tensor 'w': data_offsets must be two non-negative integers [begin, end]");
  CHECK(error_for_raw("{" + entry("w", "F32", "[0]", 8, 0) + "}", eight) ==
        path + ": tensor 'w': data_offsets [8,0] end before they begin");
  CHECK(error_for_raw("{" + entry("w", "F32", "[4]", 0, 16) + "}", eight) ==
        path + ": tensor 'w': data_offsets [0,16] reach past the data section of 8 bytes");
  CHECK(error_for_raw("{" + entry("w", "F32", "[3]", 0, 8) + "}", eight) ==
        path + ": tensor 'w': shape [3] of F32 needs 12 bytes but data_offsets [0,8] hold 8");
  CHECK(error_for_raw("{" + entry("w", "F32", "[4611686018427387904,4]", 0, 8) + "}", eight)
            .find("tensor 'w': shape [4611686018427387904, 4] of F32 needs 18446744073709551615 bytes") !=
        std::string::npos);  // the overflowing byte count saturates rather than wrapping to a match
  CHECK(error_for_raw("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[1]", 4, 8) + "}", eight) ==
        path + ": tensors 'a' and 'b' overlap (bytes 4 to 8 of the data section)");
  CHECK(error_for_raw("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[0]", 8, 8) + "}", eight) ==
        path + ": bytes 4 to 8 of the data section belong to no tensor (a hole before tensor 'b')");
  CHECK(error_for_raw("{" + entry("a", "F32", "[1]", 0, 4) + "}", eight) ==
        path + ": bytes 4 to 8 at the end of the data section belong to no tensor");
  CHECK(error_for_raw(R"({"__metadata__":{"format":1}})", "") ==
        path + ": __metadata__ key 'format' must be a string, got number");
}

TEST_CASE("safetensors: the writer refuses what the format cannot hold") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/w.safetensors";
  CHECK(testing::error_message([&] {
          io::write_safetensors(path, {{"__metadata__", Tensor::zeros({1})}});
        }) == path + ": '__metadata__' is reserved and cannot name a tensor");
  CHECK(testing::error_message([&] {
          io::write_safetensors(path, {{"t", Tensor()}});
        }) == path + ": tensor 't': undefined");
  CHECK_FALSE(std::filesystem::exists(path));
}
