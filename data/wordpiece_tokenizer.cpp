#include "data/wordpiece_tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "data/utf8.h"
#include "framework/error.h"

namespace ft::data {

namespace {

constexpr const char* kName = "bert tokenizer";

enum FoldKind : uint8_t { same, shift };
struct FoldRun {
  char32_t first, last, to;
  FoldKind kind;
};
struct FoldExpansion {
  char32_t from, to[3];
};
#include "data/wordpiece_fold_table.inc"

// Appends the accent-stripped, lower-cased form of one character (U+00C0 'À' -> "a").
void append_folded(char32_t c, std::string& out) {
  // Hangul syllables decompose into their two or three conjoining jamo (Unicode's formula).
  constexpr char32_t kSyllables = 0xAC00, kLeads = 0x1100, kVowels = 0x1161, kTrails = 0x11A7;
  constexpr char32_t kVowelCount = 21, kTrailCount = 28, kSyllableCount = 19 * kVowelCount * kTrailCount;
  if (c >= kSyllables && c < kSyllables + kSyllableCount) {
    const char32_t s = c - kSyllables;
    utf8::append(out, kLeads + s / (kVowelCount * kTrailCount));
    utf8::append(out, kVowels + s % (kVowelCount * kTrailCount) / kTrailCount);
    if (s % kTrailCount != 0) utf8::append(out, kTrails + s % kTrailCount);
    return;
  }
  const auto expansion = std::lower_bound(std::begin(kFoldExpansions), std::end(kFoldExpansions), c,
                                          [](const FoldExpansion& e, char32_t x) { return e.from < x; });
  if (expansion != std::end(kFoldExpansions) && expansion->from == c) {
    for (const char32_t to : expansion->to)
      if (to != 0) utf8::append(out, to);
    return;
  }
  const auto after = std::upper_bound(std::begin(kFoldRuns), std::end(kFoldRuns), c,
                                      [](char32_t x, const FoldRun& run) { return x < run.first; });
  if (after != std::begin(kFoldRuns) && c <= (after - 1)->last) {
    const FoldRun& run = *(after - 1);
    utf8::append(out, run.kind == shift ? run.to + (c - run.first) : run.to);
    return;
  }
  utf8::append(out, c);
}

void append_folded(std::string_view text, std::string& out) {
  for (size_t pos = 0; pos < text.size();) {
    const char c = text[pos];
    if (static_cast<unsigned char>(c) < 0x80) {  // ASCII, the common case
      out += c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
      ++pos;
    } else {
      append_folded(utf8::next(text, pos), out);
    }
  }
}

// The pattern's three capture groups; whitespace is what lies between the matches.
enum class Group { dropped = 1, single, word };

std::string bert_pattern() {
  // Control, format, private-use and unassigned characters, U+FFFD and nonspacing marks.
  const std::string dropped_chars =
      R"(\x{0}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Mn}\x{FFFD})";
  // Punctuation (BERT counts all of ASCII's non-alphanumeric symbols) and CJK ideographs.
  const std::string single_chars =
      R"(\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}\p{P})" + std::string(kFoldsToPunctuation) +
      R"(\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F})"
      R"(\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F})";
  const std::string space_chars = R"(\t\n\r\p{Zs}\x{2028}\x{2029})";
  return "([" + dropped_chars + "]+)|([" + single_chars + "])|([^" + dropped_chars + single_chars + space_chars + "]+)";
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(const std::string& directory)
    : Tokenizer(kName), pretokenizer_(bert_pattern(), UnicodeRegex::Mode::search, kName) {
  const std::string path = (std::filesystem::path(directory) / "vocab.txt").string();
  const std::string text = read_file(path, "the WordPiece vocabulary vocab.txt, one token per line");
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t end = std::min(rest.find('\n'), rest.size());
    tokens_.emplace_back(rest.substr(0, end));
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& token = tokens_[id];
    const size_t line = id + 1;
    FT_CHECK(!token.empty() && token.find_first_of(" \t\r") == std::string::npos, path, " line ", line,
             ": expected one token per line, got '", token, "'");
    FT_CHECK(utf8::find_invalid(token) < 0, path, " line ", line, ": expected UTF-8 text");
    const auto [it, added] = token_ids_.emplace(token, static_cast<int32_t>(id));
    FT_CHECK(added, path, " line ", line, ": token '", token, "' repeats line ", it->second + 1);
    if (token.size() > 2 && token.compare(0, 2, "##") == 0)
      continuation_ids_.emplace(std::string_view(token).substr(2), static_cast<int32_t>(id));
    longest_token_bytes_ = std::max(longest_token_bytes_, token.size());
  }
  const auto special = [&](const char* name) {
    const auto it = token_ids_.find(name);
    FT_CHECK(it != token_ids_.end(), path, ": expected the special token ", name, " in the vocabulary");
    specials_.push_back({name, it->second});
    return it->second;
  };
  special_ids_.pad = special("[PAD]");
  special_ids_.unk = special("[UNK]");
  special_ids_.cls = special("[CLS]");
  special_ids_.sep = special("[SEP]");
  special_ids_.mask = special("[MASK]");
  identity_ = str("bert-wordpiece-uncased tokens=", tokens_.size(), " fnv1a64=", std::hex, fnv1a_64(text));
}

void WordPieceTokenizer::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  int64_t chars = 0;
  for (const char c : word) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  if (chars > kMaxWordChars) {
    ids.push_back(special_ids_.unk);
    return;
  }
  const size_t first_piece = ids.size();
  for (size_t start = 0; start < word.size();) {
    const auto& pieces = start == 0 ? token_ids_ : continuation_ids_;
    size_t end = std::min(word.size(), start + longest_token_bytes_);
    int32_t found = -1;
    for (; end > start; --end) {
      if (end < word.size() && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80) continue;  // mid-character
      if (const auto it = pieces.find(word.substr(start, end - start)); it != pieces.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // no piece fits: the whole word is unknown
      ids.resize(first_piece);
      ids.push_back(special_ids_.unk);
      return;
    }
    ids.push_back(found);
    start = end;
  }
}

void WordPieceTokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const {
  std::string word;                          // the folded word being gathered
  size_t word_end = std::string_view::npos;  // where its text ended: a match starting there continues it
  const auto finish_word = [&] {
    if (!word.empty()) encode_word(word, ids);
    word.clear();
  };
  pretokenizer_.for_each_match(text, [&](const UnicodeRegex::Match& match) {
    const bool continues_word = match.begin == word_end;
    const std::string_view matched = text.substr(match.begin, match.end - match.begin);
    switch (static_cast<Group>(match.group)) {
      case Group::dropped:  // vanishes; a word goes on across it
        if (continues_word) word_end = match.end;
        break;
      case Group::single:
        finish_word();
        append_folded(matched, word);
        finish_word();
        word_end = std::string_view::npos;
        break;
      case Group::word:
        if (!continues_word) finish_word();
        append_folded(matched, word);
        word_end = match.end;
        break;
    }
  });
  finish_word();
}

std::string WordPieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (const int32_t id : ids) {
    FT_CHECK(id >= 0 && id < vocab_size(), kName, ": cannot decode id ", id, ", expected 0 to ", vocab_size() - 1);
    const std::string& token = tokens_[id];
    const bool continuation = token.size() > 2 && token.compare(0, 2, "##") == 0;
    if (continuation && !text.empty()) {
      text.append(token, 2);
    } else {
      if (!text.empty()) text += ' ';
      text += token;
    }
  }
  return text;
}

}  // namespace ft::data
