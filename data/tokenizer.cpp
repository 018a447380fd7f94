#include "data/tokenizer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

#include "data/gpt2_tokenizer.h"
#include "data/utf8.h"
#include "data/wordpiece_tokenizer.h"
#include "framework/error.h"

namespace ft::data {

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  const int64_t bad = utf8::find_invalid(text);
  if (bad >= 0) {
    const int byte = static_cast<unsigned char>(text[bad]);
    throw Error(str(name_, ": invalid UTF-8 at byte offset ", bad, " (byte 0x", std::hex, byte, std::dec,
                    "); expected UTF-8 text"));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  if (!allow_special) {
    encode_ordinary(text, ids);
    return ids;
  }
  // Cut at the leftmost special token (the longest one where several start at the same byte).
  size_t start = 0;
  for (;;) {
    const SpecialToken* next = nullptr;
    size_t next_at = text.size();
    for (const SpecialToken& special : special_tokens()) {
      const size_t at = text.find(special.text, start);
      if (at == std::string_view::npos) continue;
      if (at < next_at || (at == next_at && special.text.size() > next->text.size())) {
        next_at = at;
        next = &special;
      }
    }
    encode_ordinary(text.substr(start, next_at - start), ids);
    if (!next) break;
    ids.push_back(next->id);
    start = next_at + next->text.size();
  }
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string_view>& documents,
                                                          bool allow_special, int threads) const {
  const int64_t n = static_cast<int64_t>(documents.size());
  std::vector<std::vector<int32_t>> ids(n);
  // Errors are caught inside the parallel region (an exception must not leave it) and the first
  // failing document's is thrown after it.
  int64_t first_failure = n;
  std::string failure;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads > 0 ? threads : omp_get_max_threads()) if (n > 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      ids[i] = encode(documents[i], allow_special);
    } catch (const std::exception& e) {
#pragma omp critical(ft_tokenizer_batch_error)
      if (i < first_failure) {
        first_failure = i;
        failure = e.what();
      }
    }
  }
  FT_CHECK(first_failure == n, "document ", first_failure, ": ", failure);
  return ids;
}

TokenizerKind parse_tokenizer_kind(std::string_view name) {
  if (name == "gpt2") return TokenizerKind::gpt2;
  if (name == "bert") return TokenizerKind::bert;
  throw Error(str("unknown tokenizer '", name, "': expected gpt2 or bert"));
}

std::unique_ptr<Tokenizer> load_tokenizer(TokenizerKind kind, const std::string& directory) {
  if (kind == TokenizerKind::gpt2) return std::make_unique<Gpt2Tokenizer>(directory);
  return std::make_unique<WordPieceTokenizer>(directory);
}

TokenizerThroughput measure_throughput(const Tokenizer& tokenizer, std::string_view text) {
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    lines.push_back(text.substr(start, end + 1 - start));  // each line keeps its newline
    start = end + 1;
  }
  TokenizerThroughput result;
  result.bytes = static_cast<int64_t>(text.size());
  result.documents = static_cast<int64_t>(lines.size());
  result.threads = omp_get_max_threads();
  // The fastest of at least three passes over a second or more, after a warm-up pass: the word
  // caches are per thread, and with several threads each one meets new words for a few passes.
  const auto mb_per_s = [&](int threads) {
    tokenizer.encode_batch(lines, false, threads);
    double best = 0, total = 0;
    for (int pass = 0; pass < 3 || total < 1.0; ++pass) {
      const auto start = std::chrono::steady_clock::now();
      const std::vector<std::vector<int32_t>> ids = tokenizer.encode_batch(lines, false, threads);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      total += seconds;
      best = std::max(best, static_cast<double>(text.size()) / 1e6 / seconds);
      result.tokens = 0;
      for (const auto& doc : ids) result.tokens += static_cast<int64_t>(doc.size());
    }
    return best;
  };
  result.single_thread_mb_per_s = mb_per_s(1);
  result.all_threads_mb_per_s = mb_per_s(result.threads);
  return result;
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  FT_CHECK(in, path, ": cannot open (expected ", what, ")");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  FT_CHECK(!in.bad(), path, ": read failed (expected ", what, ")");
  return bytes.str();
}

uint64_t fnv1a_64(std::string_view bytes, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace ft::data
