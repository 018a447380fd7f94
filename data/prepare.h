// `flashtrain prepare` as a library: a corpus (data/corpus.h) tokenised on all threads and saved
// as one HDF5 file that the trainer loads in a blink. Layout:
//   /                 attributes: format_version, tokenizer (Tokenizer::identity()), vocab_size,
//                     source (the path as given), source_format, text_field, val_fraction,
//                     source_sha256 (sha256sum lines of the source files), content_sha256
//   /train/tokens     uint16 when every id fits (vocab_size <= 65536), else int32
//   /train/doc_offsets int64, one more than there are documents (data/token_corpus.h)
//   /validation/...   the same
// What is not obvious: the file is a pure function of its inputs (documents are tokenised in
// parallel but stored in order; HDF5 writes no timestamps), so a rerun is byte-identical, and
// content_sha256 covers the metadata and every token and offset, so a flipped byte is caught
// on load rather than trained on.
#pragma once

#include <cstdint>
#include <string>

#include "data/corpus.h"
#include "data/token_corpus.h"
#include "data/tokenizer.h"

namespace ft::data {

inline constexpr int64_t kDatasetFormatVersion = 1;

struct DatasetInfo {
  int64_t format_version = kDatasetFormatVersion;
  std::string tokenizer;  // Tokenizer::identity()
  int64_t vocab_size = 0;
  std::string source;  // as the user gave it (recipe or --source)
  std::string source_format;
  std::string text_field;
  double val_fraction = 0;
  std::string source_sha256;  // data/corpus.h source_sha256()
};

struct Dataset {
  TokenCorpus train, validation;
  DatasetInfo info;
};

struct PrepareOptions {
  CorpusOptions corpus;         // corpus.source is the resolved path
  std::string source_as_given;  // recorded in the file; empty: corpus.source
  std::string out;              // the .h5 file; its folder is created when missing
  int threads = 0;              // 0: all OpenMP threads; the file does not depend on it
};

struct SplitSummary {
  int64_t documents = 0, tokens = 0;
};

struct PrepareSummary {
  SplitSummary train, validation;
  int64_t source_bytes = 0;
  int64_t file_bytes = 0;
  double seconds = 0;  // reading, tokenising and writing
};

// Reads, tokenises and writes options.out (through a temporary file renamed over it).
PrepareSummary prepare_dataset(const PrepareOptions& options, const Tokenizer& tokenizer);

// Writes a dataset file as prepare_dataset does (atomically), computing content_sha256.
void write_dataset(const std::string& path, const Dataset& dataset);

// Loads and verifies a dataset file. Errors (ft::Error naming the file): missing, not HDF5 or
// truncated, not a flashtrain dataset or another format version, a missing group or dataset,
// a content checksum mismatch, malformed doc_offsets, a token id outside [0, vocab_size).
Dataset load_dataset(const std::string& path);

// Whether a cached dataset can stand for `source` tokenised by `tokenizer_identity`: it loads
// and verifies, and it was made from the same source bytes, format, text field and validation
// fraction by the same tokenizer. `reason` says why not (for a "remaking the cache: ..." note).
// A damaged cache does not match; a missing source is an ft::Error (nothing could be remade).
struct DatasetCheck {
  bool matches = false;
  std::string reason;
};
DatasetCheck check_dataset(const std::string& path, const CorpusOptions& source, const std::string& tokenizer_identity);

}  // namespace ft::data
