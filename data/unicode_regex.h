// A compiled PCRE2 pattern over UTF-8 text with Unicode properties (UTF + UCP, JIT-compiled
// when the library supports it), for the tokenizers' pre-tokenisation. The text must have been
// validated (utf8::find_invalid) before: matching skips PCRE2's own UTF check, which would
// rescan the rest of the text at every match and make a long text quadratic.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace ft::data {

class UnicodeRegex {
 public:
  struct Match {
    size_t begin, end;  // byte offsets in the text
    int group;          // the first capture group that took part (1, 2, ...), 0 when none did
  };
  enum class Mode {
    search,  // each match is searched for from the end of the last one; unmatched text is skipped
    tile,    // each match must start where the last one ended: the matches cover the text
  };

  // owner names the user in error messages ("gpt2 tokenizer").
  UnicodeRegex(const std::string& pattern, Mode mode, std::string owner);
  ~UnicodeRegex();
  UnicodeRegex(const UnicodeRegex&) = delete;
  UnicodeRegex& operator=(const UnicodeRegex&) = delete;

  // Calls visit for each match, in order. In tile mode, text that no match covers is an ft::Error.
  void for_each_match(std::string_view text, const std::function<void(const Match&)>& visit) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
  Mode mode_;
  std::string owner_;
};

}  // namespace ft::data
