// A tokenised corpus in memory: every document's token ids back to back, and where each
// document starts. This is what `flashtrain prepare` writes to HDF5 (data/prepare.h) and
// what the loader (data/loader.h) cuts into batches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ft::data {

struct TokenCorpus {
  std::vector<int32_t> tokens;
  // Document d is tokens[doc_offsets[d] .. doc_offsets[d + 1]); doc_offsets has one entry more
  // than there are documents, starts at 0 and ends at tokens.size().
  std::vector<int64_t> doc_offsets{0};

  int64_t document_count() const { return static_cast<int64_t>(doc_offsets.size()) - 1; }
  int64_t document_length(int64_t d) const { return doc_offsets[d + 1] - doc_offsets[d]; }
  const int32_t* document(int64_t d) const { return tokens.data() + doc_offsets[d]; }
  void add_document(const std::vector<int32_t>& ids) {
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    doc_offsets.push_back(static_cast<int64_t>(tokens.size()));
  }
};

}  // namespace ft::data
