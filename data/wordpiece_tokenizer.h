// BERT's WordPiece tokenizer for uncased vocabularies (bert-base-uncased, DistilBERT), matching
// Hugging Face's BertTokenizer: drop control characters, split on whitespace, isolate punctuation
// and CJK ideographs, strip accents and lower-case, then cut each word greedily into the longest
// vocabulary pieces, "##" marking pieces that continue a word; a word with no such cut, or longer
// than 100 characters, is [UNK]. The non-obvious part: control characters and nonspacing marks
// vanish without splitting a word ("ab\u0301c" is one word, "abc").
//
// Coverage: character classes (control, punctuation, marks, whitespace) come from PCRE2's Unicode
// tables; accent stripping and lower-casing from data/wordpiece_fold_table.inc, generated from
// Python's unicodedata (tools/gen_wordpiece_fold_table.py), which covers every character of
// Unicode 14 (Latin, Greek, Cyrillic, ... and Hangul by formula) except the CJK compatibility
// ideographs, kept as they are where Hugging Face maps them to the unified ones. Like Hugging
// Face's Rust tokenizer (transformers 5), a final capital sigma lower-cases to σ, not ς.
#pragma once

#include <unordered_map>

#include "data/tokenizer.h"
#include "data/unicode_regex.h"

namespace ft::data {

struct BertSpecialIds {
  int32_t pad, unk, cls, sep, mask;
};

class WordPieceTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kMaxWordChars = 100;

  // Reads vocab.txt (one token per line, the line number is the id) from `directory`; a missing
  // file, a blank or repeated token, or a missing special token is an ft::Error naming the file.
  explicit WordPieceTokenizer(const std::string& directory);

  // The tokens separated by spaces, with "##" continuations joined to the piece before them.
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  std::string identity() const override { return identity_; }
  const std::vector<SpecialToken>& special_tokens() const override { return specials_; }
  const BertSpecialIds& special_ids() const { return special_ids_; }

 protected:
  void encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const override;

 private:
  // Greedy longest-match-first pieces of one normalised word.
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  UnicodeRegex pretokenizer_;
  std::vector<std::string> tokens_;                                 // id -> token
  std::unordered_map<std::string_view, int32_t> token_ids_;         // every token
  std::unordered_map<std::string_view, int32_t> continuation_ids_;  // "##x" tokens, keyed by "x"
  size_t longest_token_bytes_ = 0;
  BertSpecialIds special_ids_{};
  std::vector<SpecialToken> specials_;
  std::string identity_;
};

}  // namespace ft::data
