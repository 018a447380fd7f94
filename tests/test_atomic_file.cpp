// framework/io/atomic_file.h: the target is replaced only by a complete write; a failed write
// leaves the old file and no temporary behind.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/error.h"
#include "framework/io/atomic_file.h"
#include "tests/support/temp_dir.h"

using namespace ft;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t file_count(const std::string& dir) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) n += entry.is_regular_file() ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("atomic file: a complete write replaces the target through a temporary beside it") {
  testing::TempDir dir;
  const std::string target = dir.path() + "/weights.bin";
  write_text(target, "old");
  std::string seen_temp;
  io::write_file_atomically(target, [&](const std::string& temp) {
    seen_temp = temp;
    write_text(temp, "new contents");
    CHECK(read_text(target) == "old");  // not visible until renamed
  });
  CHECK(seen_temp == target + ".tmp-" + std::to_string(::getpid()));
  CHECK(read_text(target) == "new contents");
  CHECK(file_count(dir.path()) == 1);
}

TEST_CASE("atomic file: a write that throws leaves the old file and removes the temporary") {
  testing::TempDir dir;
  const std::string target = dir.path() + "/config.json";
  write_text(target, "old");
  CHECK_THROWS_WITH(io::write_file_atomically(target,
                                              [&](const std::string& temp) {
                                                write_text(temp, "half a fi");
                                                throw Error("disk on fire");
                                              }),
                    "disk on fire");
  CHECK(read_text(target) == "old");
  CHECK(file_count(dir.path()) == 1);
}

TEST_CASE("atomic file: a writer that creates nothing, or a missing directory, is an error naming the file") {
  testing::TempDir dir;
  const std::string target = dir.path() + "/out.bin";
  CHECK_THROWS_WITH(io::write_file_atomically(target, [](const std::string&) {}),
                    doctest::Contains((target + ".tmp-").c_str()));
  CHECK_FALSE(std::filesystem::exists(target));
  const std::string nowhere = dir.path() + "/no/such/dir/out.bin";
  CHECK_THROWS_AS(io::write_file_atomically(nowhere, [](const std::string& temp) { write_text(temp, "x"); }), Error);
  CHECK(file_count(dir.path()) == 0);
}

TEST_CASE("atomic file: a text file replaces the target whole, bytes unchanged, no temporary left") {
  testing::TempDir dir;
  const std::string target = dir.path() + "/summary.md";
  write_text(target, "an older, longer content than the new one");
  const std::string text = "| a | b |\n| 1 | 2 |\n\r\nno trailing newline";
  io::write_text_file_atomically(target, text);
  CHECK(read_text(target) == text);
  CHECK(file_count(dir.path()) == 1);
  CHECK_THROWS_AS(io::write_text_file_atomically(dir.path() + "/missing/summary.md", text), Error);
}
