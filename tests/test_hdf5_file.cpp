// framework/io/hdf5_file: typed round trips, attributes, listing, byte-identical rewrites, and
// the errors for a missing, truncated or mistyped file.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "framework/error.h"
#include "framework/io/hdf5_file.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using ft::io::Hdf5File;

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

template <class T>
std::vector<T> ramp(size_t n, double step) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(3 + step * static_cast<double>(i));
  return v;
}

// A file with one dataset of every type, nested groups and attributes of every kind.
void write_sample(const std::string& path) {
  Hdf5File f = Hdf5File::create(path);
  f.write("floats/a", ramp<float>(6, 0.25).data(), {2, 3});
  f.write("floats/b", ramp<double>(5, -1.5));
  f.write("ints/i32", ramp<int32_t>(4, -7));
  f.write("ints/i64", ramp<int64_t>(4, 1e12));
  f.write("ints/u8", ramp<uint8_t>(7, 30));
  f.write("ints/u16", ramp<uint16_t>(3, 20000));
  f.write("ints/u32", ramp<uint32_t>(3, 1e9));
  f.write("ints/u64", ramp<uint64_t>(3, 1e18));
  f.write("empty", std::vector<int32_t>{});
  f.set_attribute("/", "name", "sample");
  f.set_attribute("/", "version", int64_t{3});
  f.set_attribute("floats/a", "scale", 0.125);
  f.set_attribute("ints", "note", "");
}

}  // namespace

TEST_CASE("hdf5_file: datasets and attributes read back as written") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/sample.h5";
  write_sample(path);
  Hdf5File f = Hdf5File::open(path);
  CHECK(f.shape("floats/a") == std::vector<int64_t>{2, 3});
  CHECK(f.read<float>("floats/a") == ramp<float>(6, 0.25));
  CHECK(f.read<double>("floats/b") == ramp<double>(5, -1.5));
  CHECK(f.read<int32_t>("ints/i32") == ramp<int32_t>(4, -7));
  CHECK(f.read<int64_t>("ints/i64") == ramp<int64_t>(4, 1e12));
  CHECK(f.read<uint8_t>("ints/u8") == ramp<uint8_t>(7, 30));
  CHECK(f.read<uint16_t>("ints/u16") == ramp<uint16_t>(3, 20000));
  CHECK(f.read<uint32_t>("ints/u32") == ramp<uint32_t>(3, 1e9));
  CHECK(f.read<uint64_t>("ints/u64") == ramp<uint64_t>(3, 1e18));
  CHECK(f.read<int32_t>("empty").empty());
  CHECK(f.string_attribute("/", "name") == "sample");
  CHECK(f.int_attribute("/", "version") == 3);
  CHECK(f.double_attribute("floats/a", "scale") == 0.125);
  CHECK(f.string_attribute("ints", "note").empty());
  CHECK(f.children("/") == std::vector<std::string>{"empty", "floats", "ints"});
  CHECK(f.children("ints") == std::vector<std::string>{"i32", "i64", "u16", "u32", "u64", "u8"});
  CHECK(f.has("ints/u8"));
  CHECK_FALSE(f.has("ints/nothing"));
  CHECK_FALSE(f.has("nowhere/deep/down"));
  CHECK(f.has_attribute("/", "name"));
  CHECK_FALSE(f.has_attribute("/", "other"));
}

TEST_CASE("hdf5_file: writing the same content twice gives the same bytes") {
  testing::TempDir dir;
  write_sample(dir.path() + "/one.h5");
  write_sample(dir.path() + "/two.h5");
  const std::string one = file_bytes(dir.path() + "/one.h5");
  CHECK(one.size() > 0);
  CHECK(one == file_bytes(dir.path() + "/two.h5"));
}

TEST_CASE("hdf5_file: errors name the file and the object") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/sample.h5";
  write_sample(path);
  {
    Hdf5File f = Hdf5File::open(path);
    CHECK_THROWS_WITH_AS(f.read<int64_t>("floats/a"), doctest::Contains("'floats/a' holds float32, expected int64"),
                         Error);
    CHECK_THROWS_WITH_AS(f.read<float>("floats/zzz"), doctest::Contains("no dataset 'floats/zzz'"), Error);
    std::vector<float> small(2);
    CHECK_THROWS_WITH_AS(f.read_into("floats/a", small.data(), small.size()),
                         doctest::Contains("has 6 elements, expected 2"), Error);
    CHECK_THROWS_WITH_AS(f.int_attribute("/", "name"), doctest::Contains("is not an integer"), Error);
    CHECK_THROWS_WITH_AS(f.string_attribute("/", "missing"), doctest::Contains("has no attribute 'missing'"), Error);
  }
  CHECK_THROWS_WITH_AS(Hdf5File::open(dir.path() + "/absent.h5"), doctest::Contains("absent.h5: no such file"), Error);

  const std::string bytes = file_bytes(path);
  std::ofstream(dir.path() + "/truncated.h5", std::ios::binary) << bytes.substr(0, bytes.size() / 3);
  auto read_everything = [&] {
    Hdf5File f = Hdf5File::open(dir.path() + "/truncated.h5");
    for (const std::string& group : {"floats", "ints"})
      for (const std::string& name : f.children(group)) f.read<uint8_t>(group + "/" + name);
  };
  CHECK_THROWS_WITH_AS(read_everything(), doctest::Contains("truncated.h5"), Error);
  std::ofstream(dir.path() + "/text.h5") << "not hdf5 at all";
  CHECK_THROWS_WITH_AS(Hdf5File::open(dir.path() + "/text.h5"), doctest::Contains("not an HDF5 file"), Error);
}
