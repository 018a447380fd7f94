// An independent reading of WikiText's article structure for the corpus and prepare tests: the
// byte offsets of the top-level heading lines " = Title = ", found line by line with a regular
// expression (section headings " = = Section = = " do not match).
#pragma once

#include <regex>
#include <string>
#include <vector>

namespace ft::testing {

inline std::vector<size_t> article_heading_offsets(const std::string& text) {
  static const std::regex heading(" = [^=].* = ");
  std::vector<size_t> offsets;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    const std::string line = text.substr(begin, end - begin);
    // Only short candidates go to the regex: libstdc++'s matcher recurses per character.
    if (line.rfind(" = ", 0) == 0 && line.size() < 300 && std::regex_match(line, heading)) offsets.push_back(begin);
    begin = end + 1;
  }
  return offsets;
}

}  // namespace ft::testing
