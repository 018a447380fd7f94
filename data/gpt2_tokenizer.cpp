#include "data/gpt2_tokenizer.h"

#include <atomic>
#include <deque>
#include <filesystem>
#include <queue>

#include "data/utf8.h"
#include "framework/error.h"

namespace ft::data {

namespace {

constexpr const char* kName = "gpt2 tokenizer";
constexpr const char* kEndOfTextText = "<|endoftext|>";

// GPT-2 maps each byte to a printable character so that tokens are readable strings: the
// printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the other 68 bytes for
// U+0100 onwards, in byte order. Tokens in encoder.json and vocab.bpe are written with it.
std::array<char32_t, 256> byte_to_unicode() {
  std::array<char32_t, 256> table{};
  char32_t next_unprintable = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : next_unprintable++;
  }
  return table;
}

// ---- encoder.json: a flat JSON object of token strings to ids ---------------------------

class TokenIdsJsonParser {
 public:
  TokenIdsJsonParser(const std::string& text, const std::string& path) : text_(text), path_(path) {}

  std::vector<std::pair<std::string, int64_t>> parse() {
    std::vector<std::pair<std::string, int64_t>> entries;
    expect('{');
    if (peek() == '}') {
      ++pos_;
    } else {
      for (;;) {
        std::string key = parse_string();
        expect(':');
        entries.emplace_back(std::move(key), parse_id());
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}');
        break;
      }
    }
    FT_CHECK(peek() == '\0', path_, ": expected the end of the JSON object at byte ", pos_);
    return entries;
  }

 private:
  // The next non-blank character ('\0' at the end), not consumed.
  char peek() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' || text_[pos_] == '\t'))
      ++pos_;
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }
  void expect(char c) {
    FT_CHECK(peek() == c, path_, ": expected '", c, "' at byte ", pos_, " (a JSON object of token strings to ids)");
    ++pos_;
  }
  uint32_t parse_hex4() {
    FT_CHECK(pos_ + 4 <= text_.size(), path_, ": expected 4 hex digits after \\u at byte ", pos_);
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_++];
      const int digit = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
      FT_CHECK(digit >= 0, path_, ": expected a hex digit at byte ", pos_ - 1);
      value = value * 16 + digit;
    }
    return value;
  }
  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      FT_CHECK(pos_ < text_.size(), path_, ": expected the closing '\"' of a string before the end of the file");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      FT_CHECK(pos_ < text_.size(), path_, ": expected an escaped character before the end of the file");
      const char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          char32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            FT_CHECK(text_.compare(pos_, 2, "\\u") == 0, path_, ": expected a low surrogate at byte ", pos_);
            pos_ += 2;
            const uint32_t low = parse_hex4();
            FT_CHECK(low >= 0xDC00 && low <= 0xDFFF, path_, ": expected a low surrogate at byte ", pos_ - 6);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          FT_CHECK(cp < 0xD800 || cp > 0xDFFF, path_, ": unpaired surrogate before byte ", pos_);
          utf8::append(out, cp);
          break;
        }
        default:
          throw Error(str(path_, ": unknown escape '\\", e, "' at byte ", pos_ - 2));
      }
    }
  }
  int64_t parse_id() {
    peek();
    const size_t start = pos_;
    int64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9' && value < (int64_t{1} << 40))
      value = value * 10 + (text_[pos_++] - '0');
    FT_CHECK(pos_ > start, path_, ": expected a token id (a non-negative integer) at byte ", start);
    return value;
  }

  const std::string& text_;
  const std::string& path_;
  size_t pos_ = 0;
};

// ---- the per-thread word cache ------------------------------------------------------------

// Most words of a corpus repeat, so their merges are worth remembering. Each thread keeps its own
// cache (no locks); it belongs to one tokenizer at a time and is emptied when another one uses
// the thread, or when it is full.
constexpr size_t kMaxCachedWords = size_t{1} << 17;
constexpr size_t kMaxCachedWordBytes = 64;  // longer words (long runs of spaces, say) are not kept

struct WordCache {
  uint64_t owner = 0;
  std::deque<std::string> words;  // stable storage for the keys
  std::unordered_map<std::string_view, std::vector<int32_t>> ids;

  void reset(uint64_t new_owner) {
    owner = new_owner;
    ids.clear();
    words.clear();
  }
};

WordCache& word_cache(uint64_t owner) {
  thread_local WordCache cache;
  if (cache.owner != owner) cache.reset(owner);
  return cache;
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
}

int32_t id_in(const std::unordered_map<std::string_view, int32_t>& index, std::string_view token) {
  const auto it = index.find(token);
  return it == index.end() ? -1 : it->second;
}

uint64_t next_cache_owner() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

// GPT-2's pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ with
// \s written out as White_Space. Every character matches some branch, so the words tile the text.
std::string gpt2_pattern() {
  const std::string space =
      R"(\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" + space + R"(\p{L}\p{N}]+|[)" + space + "]+(?![^" + space +
         "])|[" + space + "]+";
}

}  // namespace

// ---- loading ----------------------------------------------------------------------------------

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& directory)
    : Tokenizer(kName),
      pretokenizer_(gpt2_pattern(), UnicodeRegex::Mode::tile, kName),
      cache_owner_(next_cache_owner()) {
  namespace fs = std::filesystem;
  const bool openai_names = fs::exists(fs::path(directory) / "encoder.json");
  FT_CHECK(openai_names || fs::exists(fs::path(directory) / "vocab.json"), kName, ": no vocabulary in '", directory,
           "': expected encoder.json and vocab.bpe (OpenAI's names) or vocab.json and merges.txt (Hugging Face's)");
  const std::string encoder_path = (fs::path(directory) / (openai_names ? "encoder.json" : "vocab.json")).string();
  const std::string merges_path = (fs::path(directory) / (openai_names ? "vocab.bpe" : "merges.txt")).string();
  const std::string encoder_text = read_file(encoder_path, "GPT-2's token-to-id JSON object");
  const std::string merges_text = read_file(merges_path, "GPT-2's BPE merge rules");

  const std::vector<std::pair<std::string, int64_t>> tokens = TokenIdsJsonParser(encoder_text, encoder_path).parse();
  const TokenIndex index = read_tokens(tokens, encoder_path);
  read_merges(merges_text, merges_path, index);
  identity_ = str("gpt2-bpe tokens=", tokens.size(), " merges=", merges_.size(), " fnv1a64=", std::hex,
                  fnv1a_64(merges_text, fnv1a_64(encoder_text)));
}

// Tokens: ids 0..n-1, each spelled in the byte alphabet; the 256 one-byte tokens and the end of
// text must be there.
Gpt2Tokenizer::TokenIndex Gpt2Tokenizer::read_tokens(const std::vector<std::pair<std::string, int64_t>>& tokens,
                                                     const std::string& path) {
  const std::array<char32_t, 256> byte_unicode = byte_to_unicode();
  std::array<int, 0x144> unicode_to_byte;  // the alphabet ends at U+0143
  unicode_to_byte.fill(-1);
  for (int b = 0; b < 256; ++b) unicode_to_byte[byte_unicode[b]] = b;

  FT_CHECK(!tokens.empty(), path, ": expected at least the 256 byte tokens, got an empty object");
  const int64_t count = static_cast<int64_t>(tokens.size());
  token_bytes_.assign(count, std::string());
  std::vector<bool> seen(count, false);
  TokenIndex index;
  index.reserve(count);
  for (const auto& [token, id] : tokens) {
    FT_CHECK(id < count && !seen[id], path, ": token ids must be 0 to ", count - 1, " each once; '", token, "' has id ",
             id);
    seen[id] = true;
    FT_CHECK(utf8::find_invalid(token) < 0, path, ": token ", id, " is not valid UTF-8");
    for (size_t pos = 0; pos < token.size();) {
      const char32_t cp = utf8::next(token, pos);
      const int byte = cp < unicode_to_byte.size() ? unicode_to_byte[cp] : -1;
      FT_CHECK(byte >= 0, path, ": token ", id, " ('", token, "') has U+", std::hex, static_cast<uint32_t>(cp),
               std::dec, ", which is outside GPT-2's byte alphabet");
      token_bytes_[id] += static_cast<char>(byte);
    }
    index.emplace(token, static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    std::string token;
    utf8::append(token, byte_unicode[b]);
    byte_token_[b] = id_in(index, token);
    FT_CHECK(byte_token_[b] >= 0, path, ": expected a token for byte ", b, " ('", token, "')");
  }
  const int32_t end_of_text = id_in(index, kEndOfTextText);
  FT_CHECK(end_of_text >= 0, path, ": expected the special token ", kEndOfTextText);
  specials_.push_back({kEndOfTextText, end_of_text});
  return index;
}

// Merge rules: "left right" per line, in priority order, after a "#version" line.
void Gpt2Tokenizer::read_merges(std::string_view text, const std::string& path, const TokenIndex& index) {
  for (int64_t line_number = 1; !text.empty(); ++line_number) {
    const size_t end = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    if (line_number == 1 && line.substr(0, 8) == "#version") continue;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t space = line.find(' ');
    FT_CHECK(space != std::string_view::npos && space > 0 && space + 1 < line.size() &&
                 line.find(' ', space + 1) == std::string_view::npos,
             path, " line ", line_number, ": expected two tokens separated by one space, got '", line, "'");
    const std::string_view left = line.substr(0, space), right = line.substr(space + 1);
    const int32_t left_id = id_in(index, left), right_id = id_in(index, right);
    const int32_t merged_id = id_in(index, std::string(left) + std::string(right));
    FT_CHECK(left_id >= 0 && right_id >= 0 && merged_id >= 0, path, " line ", line_number, ": '", line,
             "' names a token not in the vocabulary");
    // A repeated rule keeps its first rank.
    merges_.emplace(pair_key(left_id, right_id), Merge{static_cast<int32_t>(merges_.size()), merged_id});
  }
  FT_CHECK(!merges_.empty(), path, ": expected BPE merge rules, found none");
}

// ---- encoding -----------------------------------------------------------------------------------

const Gpt2Tokenizer::Merge* Gpt2Tokenizer::find_merge(int32_t left, int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

// The word's tokens form a linked list; candidate merges wait in a heap ordered by (rank,
// position), so each step merges the lowest-ranked pair, leftmost first, in O(log n). That is
// the order of encoder.py, which merges every occurrence of the best pair left to right before
// looking again: a pair that a merge creates always has a higher rank than the merge that made
// it, so it cannot jump ahead of the remaining occurrences. Entries made stale by an earlier
// merge are recognised by their token ids and skipped.
void Gpt2Tokenizer::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id, prev, next;  // id -1: merged into its left neighbour
  };
  struct Candidate {
    int32_t rank, left, left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  const int32_t n = static_cast<int32_t>(word.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i)
    symbols[i] = {byte_token_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const int32_t left_id = symbols[left].id, right_id = symbols[symbols[left].next].id;
    if (const Merge* merge = find_merge(left_id, right_id)) queue.push({merge->rank, left, left_id, right_id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    if (left.id != c.left_id || left.next < 0 || symbols[left.next].id != c.right_id) continue;  // stale
    Symbol& right = symbols[left.next];
    left.id = find_merge(c.left_id, c.right_id)->merged;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = -1;
    consider(left.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

void Gpt2Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const {
  WordCache& cache = word_cache(cache_owner_);
  pretokenizer_.for_each_match(text, [&](const UnicodeRegex::Match& match) {
    const std::string_view word = text.substr(match.begin, match.end - match.begin);
    if (word.size() > kMaxCachedWordBytes) {
      merge_word(word, ids);
      return;
    }
    if (const auto hit = cache.ids.find(word); hit != cache.ids.end()) {
      ids.insert(ids.end(), hit->second.begin(), hit->second.end());
      return;
    }
    const size_t first = ids.size();
    merge_word(word, ids);
    if (cache.ids.size() >= kMaxCachedWords) cache.reset(cache_owner_);
    const std::string& key = cache.words.emplace_back(word);
    cache.ids.emplace(key, std::vector<int32_t>(ids.begin() + first, ids.end()));
  });
}

std::string Gpt2Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (const int32_t id : ids) {
    FT_CHECK(id >= 0 && id < vocab_size(), kName, ": cannot decode id ", id, ", expected 0 to ", vocab_size() - 1);
    text += token_bytes_[id];
  }
  return text;
}

}  // namespace ft::data
