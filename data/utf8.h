// UTF-8 helpers for the tokenizers. Validation follows the strict rules that PCRE2's UTF mode and
// Python's decoder apply (no overlong forms, no surrogates, nothing above U+10FFFF), so text that
// passes here is exactly the text the reference tokenizers accept; decoding then trusts its input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ft::data::utf8 {

// The byte offset of the first byte that does not begin a valid UTF-8 sequence, or -1.
int64_t find_invalid(std::string_view text);

// Decodes the code point at text[pos] of valid UTF-8 and moves pos past it.
inline char32_t next(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return text[pos++];
  const int length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  char32_t cp = lead & (0x7F >> length);
  for (int i = 1; i < length; ++i) cp = (cp << 6) | (byte(pos + i) & 0x3F);
  pos += length;
  return cp;
}

void append(std::string& out, char32_t cp);

}  // namespace ft::data::utf8
