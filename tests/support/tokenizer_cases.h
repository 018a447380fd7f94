// Shared by the tokenizer tests: the real vocabularies and corpora (under $FLASHTRAIN_DATA, which
// ctest sets to ../shared/data beside the checkout), the test strings of tests/data/tokenizer_cases.txt
// and the reference tokenizers' ids for them (tests/data/*_expected.jsonl, from
// tools/tokenizer_parity.py). The files are found from this header's own path, so the tests run
// from any directory.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/utf8.h"
#include "tests/support/temp_dir.h"

namespace ft::testing {

inline std::string data_dir() {
  const char* dir = std::getenv("FLASHTRAIN_DATA");
  REQUIRE_MESSAGE(dir != nullptr, "set FLASHTRAIN_DATA to the shared data directory (ctest does)");
  return dir;
}

inline std::string tests_data_path(const std::string& name) {
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "data" / name).string();
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open ", path);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The escapes of tokenizer_cases.txt: \n \r \t \\ and \u{HEX}.
inline std::string unescape_case(const std::string& line) {
  std::string out;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\') {
      out += line[i];
      continue;
    }
    const char e = line.at(++i);
    if (e == 'u') {
      const size_t end = line.find('}', i);
      data::utf8::append(out, static_cast<char32_t>(std::stoul(line.substr(i + 2, end - i - 2), nullptr, 16)));
      i = end;
    } else {
      out += e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
    }
  }
  return out;
}

inline std::vector<std::string> read_cases() {
  std::istringstream in(read_text(tests_data_path("tokenizer_cases.txt")));
  std::vector<std::string> cases;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') cases.push_back(unescape_case(line));
  return cases;
}

struct ExpectedIds {
  std::vector<int32_t> ordinary, special;
};

// The integer array after the last occurrence of "key": (the key follows the case's text).
inline std::vector<int32_t> json_int_array(const std::string& line, const std::string& key) {
  const size_t at = line.rfind("\"" + key + "\": [");
  REQUIRE_MESSAGE(at != std::string::npos, "no \"", key, "\" in ", line);
  std::istringstream in(line.substr(line.find('[', at) + 1));
  std::vector<int32_t> ids;
  for (int32_t id; in >> id;) {
    ids.push_back(id);
    in.ignore(1, ',');
  }
  return ids;
}

// One entry per case, in order; the file must exist and cover every case.
inline std::vector<ExpectedIds> read_expected(const std::string& name, size_t case_count) {
  std::istringstream in(read_text(tests_data_path(name)));
  std::vector<ExpectedIds> expected;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) expected.push_back({json_int_array(line, "ordinary"), json_int_array(line, "special")});
  REQUIRE_MESSAGE(expected.size() == case_count, name, " has ", expected.size(), " entries for ", case_count,
                  " cases: regenerate it with tools/tokenizer_parity.py");
  return expected;
}

}  // namespace ft::testing
