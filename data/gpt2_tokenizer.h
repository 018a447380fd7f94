// GPT-2's byte-level BPE tokenizer, token for token the same as OpenAI's encoder.py. Text is cut
// into words by GPT-2's regex (run through PCRE2), each word's UTF-8 bytes start as one token
// each, and adjacent tokens merge by the rank of their merge rule in vocab.bpe, lowest first,
// until no rule applies. The one subtlety: the regex's \s is spelled out as Unicode White_Space,
// which is what Python's `regex` module (and tiktoken's Rust regex) mean by it; PCRE2's own \s
// omits U+0085. Letters and numbers (\p{L}, \p{N}) follow PCRE2's Unicode tables (Unicode 14 in
// PCRE2 10.42), so code points assigned later may be grouped differently than by a newer Python.
#pragma once

#include <array>
#include <unordered_map>

#include "data/tokenizer.h"
#include "data/unicode_regex.h"

namespace ft::data {

class Gpt2Tokenizer : public Tokenizer {
 public:
  static constexpr int32_t kEndOfText = 50256;

  // Reads encoder.json + vocab.bpe (OpenAI's names) or else vocab.json + merges.txt (Hugging
  // Face's names, the same contents) from `directory`. A missing or malformed file is an
  // ft::Error naming the file and what was expected.
  explicit Gpt2Tokenizer(const std::string& directory);

  // Decoding concatenates the tokens' bytes; ids that cut a character in two give bytes that are
  // not valid UTF-8, returned as they are.
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(token_bytes_.size()); }
  std::string identity() const override { return identity_; }
  const std::vector<SpecialToken>& special_tokens() const override { return specials_; }
  int32_t end_of_text() const { return specials_.front().id; }

 protected:
  void encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const override;

 private:
  struct Merge {
    int32_t rank;    // line of the rule in vocab.bpe: lower merges first
    int32_t merged;  // id of the token the two become
  };
  using TokenIndex = std::unordered_map<std::string_view, int32_t>;  // token (byte alphabet) -> id
  TokenIndex read_tokens(const std::vector<std::pair<std::string, int64_t>>& tokens, const std::string& path);
  void read_merges(std::string_view text, const std::string& path, const TokenIndex& index);
  // Byte-pair merges of one word's bytes, without the cache.
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;
  const Merge* find_merge(int32_t left, int32_t right) const;

  UnicodeRegex pretokenizer_;
  std::vector<std::string> token_bytes_;        // id -> raw bytes
  std::array<int32_t, 256> byte_token_{};       // byte -> id of its one-byte token
  std::unordered_map<uint64_t, Merge> merges_;  // pair_key(left id, right id) -> merge
  std::vector<SpecialToken> specials_;
  std::string identity_;
  uint64_t cache_owner_;  // tells this tokenizer's entries in the per-thread word caches apart
};

}  // namespace ft::data
