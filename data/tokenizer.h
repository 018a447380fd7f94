// The common face of the tokenizers (GPT-2 byte-level BPE, BERT WordPiece): text in, token ids
// out, and back. encode() validates UTF-8 and, when asked, cuts out the special tokens spelled in
// the text before the tokenizer proper sees the pieces between them; by default a special
// token's spelling is ordinary text, as in OpenAI's GPT-2 encoder, so untrusted text cannot
// inject an end-of-text. Encoding is const and thread-safe: one Tokenizer serves many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ft::data {

struct SpecialToken {
  std::string text;  // its spelling, e.g. "<|endoftext|>" or "[SEP]"
  int32_t id;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of UTF-8 text. Invalid UTF-8 is an ft::Error naming the byte offset.
  // allow_special: a special token's spelling in the text becomes that token's id.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;

  // encode() of each document, on `threads` OpenMP threads (0: all of them). An error names the
  // first failing document.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string_view>& documents,
                                                 bool allow_special = false, int threads = 0) const;

  // The text of the ids; an id outside [0, vocab_size()) is an ft::Error.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // Names the tokenizer and fingerprints its vocabulary files, for datasets to record.
  virtual std::string identity() const = 0;
  virtual const std::vector<SpecialToken>& special_tokens() const = 0;

 protected:
  explicit Tokenizer(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  // Appends the ids of valid UTF-8 text in which no special token is to be recognised.
  virtual void encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const = 0;

 private:
  std::string name_;  // "gpt2 tokenizer", used in error messages
};

enum class TokenizerKind { gpt2, bert };

// "gpt2" or "bert"; anything else is an ft::Error listing those two.
TokenizerKind parse_tokenizer_kind(std::string_view name);

// Loads the vocabulary files of `kind` from `directory` (see Gpt2Tokenizer, WordPieceTokenizer).
std::unique_ptr<Tokenizer> load_tokenizer(TokenizerKind kind, const std::string& directory);

// Encoding speed over `text` cut into lines (one document each), on one thread and on all: the
// fastest of several passes after a warm-up one, as on a long corpus where the word caches are warm.
struct TokenizerThroughput {
  int64_t bytes = 0, tokens = 0, documents = 0;
  int threads = 0;                    // used by the all-threads measurement
  double single_thread_mb_per_s = 0;  // 1 MB = 1e6 bytes
  double all_threads_mb_per_s = 0;
};
TokenizerThroughput measure_throughput(const Tokenizer& tokenizer, std::string_view text);

// Small file helpers shared by the tokenizers' loaders.
std::string read_file(const std::string& path, const std::string& what);  // what: "the vocabulary"
uint64_t fnv1a_64(std::string_view bytes, uint64_t seed = 0xcbf29ce484222325ull);

}  // namespace ft::data
