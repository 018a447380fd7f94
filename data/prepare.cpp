#include "data/prepare.h"


#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>

#include "framework/error.h"
#include "framework/io/atomic_file.h"
#include "framework/io/hdf5_file.h"
#include "framework/io/sha256.h"

namespace ft::data {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kLargestUint16Vocab = 65536;
// Documents tokenised per parallel batch: enough to keep every thread busy, few enough that the
// per-document id vectors stay small next to the corpus.
constexpr size_t kDocumentsPerBatch = 4096;

bool tokens_as_uint16(int64_t vocab_size) { return vocab_size <= kLargestUint16Vocab; }

TokenCorpus tokenize(const std::vector<std::string>& documents, const Tokenizer& tokenizer, int threads,
                     const char* split) {
  TokenCorpus corpus;
  corpus.doc_offsets.reserve(documents.size() + 1);
  for (size_t first = 0; first < documents.size(); first += kDocumentsPerBatch) {
    const size_t end = std::min(documents.size(), first + kDocumentsPerBatch);
    const std::vector<std::string_view> batch(documents.begin() + first, documents.begin() + end);
    std::vector<std::vector<int32_t>> ids;
    try {
      ids = tokenizer.encode_batch(batch, /*allow_special=*/false, threads);
    } catch (const Error& e) {
      throw Error(str(split, " documents from ", first, ", ", e.what()));
    }
    for (const std::vector<int32_t>& document : ids) corpus.add_document(document);
  }
  return corpus;
}

// SHA-256 of the metadata (as "key=value" lines) and of every split's token ids (as int32,
// whatever the stored width) and offsets, in this order.
std::string content_sha256(const Dataset& dataset) {
  const DatasetInfo& info = dataset.info;
  io::Sha256 hash;
  hash.update(str(std::setprecision(17), "format_version=", info.format_version, "\ntokenizer=", info.tokenizer,
                  "\nvocab_size=", info.vocab_size, "\nsource=", info.source, "\nsource_format=", info.source_format,
                  "\ntext_field=", info.text_field, "\nval_fraction=", info.val_fraction,
                  "\nsource_sha256=", info.source_sha256, "\n"));
  for (const TokenCorpus* corpus : {&dataset.train, &dataset.validation}) {
    hash.update(corpus->tokens.data(), corpus->tokens.size() * sizeof(int32_t));
    hash.update(corpus->doc_offsets.data(), corpus->doc_offsets.size() * sizeof(int64_t));
  }
  return hash.hex_digest();
}

void write_split(io::Hdf5File& file, const std::string& split, const TokenCorpus& corpus, int64_t vocab_size) {
  if (tokens_as_uint16(vocab_size)) {
    const std::vector<uint16_t> narrow(corpus.tokens.begin(), corpus.tokens.end());
    file.write(split + "/tokens", narrow);
  } else {
    file.write(split + "/tokens", corpus.tokens);
  }
  file.write(split + "/doc_offsets", corpus.doc_offsets);
}

TokenCorpus read_split(const io::Hdf5File& file, const std::string& split, int64_t vocab_size) {
  FT_CHECK(file.has(split), file.path(), ": no group '", split,
           "' (a dataset holds train/ and validation/, each with tokens and doc_offsets); remake it with flashtrain "
           "prepare");
  TokenCorpus corpus;
  if (tokens_as_uint16(vocab_size)) {
    const std::vector<uint16_t> narrow = file.read<uint16_t>(split + "/tokens");
    corpus.tokens.assign(narrow.begin(), narrow.end());
  } else {
    corpus.tokens = file.read<int32_t>(split + "/tokens");
  }
  corpus.doc_offsets = file.read<int64_t>(split + "/doc_offsets");
  return corpus;
}

// After the checksum has passed, so these catch a writer's mistakes rather than disk damage.
void check_split(const TokenCorpus& corpus, const std::string& path, const std::string& split, int64_t vocab_size) {
  const std::vector<int64_t>& offsets = corpus.doc_offsets;
  FT_CHECK(!offsets.empty() && offsets.front() == 0 && offsets.back() == static_cast<int64_t>(corpus.tokens.size()) &&
               std::is_sorted(offsets.begin(), offsets.end()),
           path, ": ", split, "/doc_offsets must rise from 0 to the token count ", corpus.tokens.size());
  const auto bad =
      std::find_if(corpus.tokens.begin(), corpus.tokens.end(), [&](int32_t id) { return id < 0 || id >= vocab_size; });
  FT_CHECK(bad == corpus.tokens.end(), path, ": ", split, " token ", bad - corpus.tokens.begin(), " is id ", *bad,
           ", outside the vocabulary [0, ", vocab_size, ")");
}

}  // namespace

void write_dataset(const std::string& path, const Dataset& dataset) {
  const DatasetInfo& info = dataset.info;
  const std::string checksum = content_sha256(dataset);
  io::write_file_atomically(path, [&](const std::string& temp) {
    io::Hdf5File file = io::Hdf5File::create(temp);
    file.set_attribute("/", "format_version", info.format_version);
    file.set_attribute("/", "tokenizer", info.tokenizer);
    file.set_attribute("/", "vocab_size", info.vocab_size);
    file.set_attribute("/", "source", info.source);
    file.set_attribute("/", "source_format", info.source_format);
    file.set_attribute("/", "text_field", info.text_field);
    file.set_attribute("/", "val_fraction", info.val_fraction);
    file.set_attribute("/", "source_sha256", info.source_sha256);
    file.set_attribute("/", "content_sha256", checksum);
    write_split(file, "train", dataset.train, info.vocab_size);
    write_split(file, "validation", dataset.validation, info.vocab_size);
    file.flush();
  });
}

Dataset load_dataset(const std::string& path) {
  const io::Hdf5File file = io::Hdf5File::open(path);
  FT_CHECK(file.has_attribute("/", "format_version"), path,
           ": not a flashtrain dataset (no format_version attribute); make one with flashtrain prepare");
  Dataset dataset;
  DatasetInfo& info = dataset.info;
  info.format_version = file.int_attribute("/", "format_version");
  FT_CHECK(info.format_version == kDatasetFormatVersion, path, ": dataset format version ", info.format_version,
           ", this build reads version ", kDatasetFormatVersion, "; remake it with flashtrain prepare");
  info.tokenizer = file.string_attribute("/", "tokenizer");
  info.vocab_size = file.int_attribute("/", "vocab_size");
  info.source = file.string_attribute("/", "source");
  info.source_format = file.string_attribute("/", "source_format");
  info.text_field = file.string_attribute("/", "text_field");
  info.val_fraction = file.double_attribute("/", "val_fraction");
  info.source_sha256 = file.string_attribute("/", "source_sha256");
  FT_CHECK(info.vocab_size > 0, path, ": vocab_size ", info.vocab_size, " must be positive");
  dataset.train = read_split(file, "train", info.vocab_size);
  dataset.validation = read_split(file, "validation", info.vocab_size);
  const std::string stored = file.string_attribute("/", "content_sha256"), computed = content_sha256(dataset);
  FT_CHECK(stored == computed, path, ": content checksum mismatch (stored ", stored, ", computed ", computed,
           "): the file is corrupt; remake it with flashtrain prepare");
  check_split(dataset.train, path, "train", info.vocab_size);
  check_split(dataset.validation, path, "validation", info.vocab_size);
  return dataset;
}

PrepareSummary prepare_dataset(const PrepareOptions& options, const Tokenizer& tokenizer) {
  FT_CHECK(!options.out.empty(), "prepare: no output file given");
  const auto start = std::chrono::steady_clock::now();
  const Corpus corpus = read_corpus(options.corpus);
  Dataset dataset;
  DatasetInfo& info = dataset.info;
  info.tokenizer = tokenizer.identity();
  info.vocab_size = tokenizer.vocab_size();
  info.source = options.source_as_given.empty() ? options.corpus.source : options.source_as_given;
  info.source_format = corpus_format_name(options.corpus.format);
  info.text_field = options.corpus.text_field;
  info.val_fraction = options.corpus.val_fraction;
  info.source_sha256 = corpus.source_sha256;
  dataset.train = tokenize(corpus.train, tokenizer, options.threads, "train");
  dataset.validation = tokenize(corpus.validation, tokenizer, options.threads, "validation");

  const fs::path parent = fs::path(options.out).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  write_dataset(options.out, dataset);

  PrepareSummary summary;
  summary.train = {dataset.train.document_count(), static_cast<int64_t>(dataset.train.tokens.size())};
  summary.validation = {dataset.validation.document_count(), static_cast<int64_t>(dataset.validation.tokens.size())};
  summary.source_bytes = corpus.source_bytes;
  summary.file_bytes = static_cast<int64_t>(fs::file_size(options.out));
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

DatasetCheck check_dataset(const std::string& path, const CorpusOptions& source,
                           const std::string& tokenizer_identity) {
  if (!fs::exists(path)) return {false, path + ": no such file"};
  DatasetInfo info;
  try {
    info = load_dataset(path).info;
  } catch (const Error& e) {
    return {false, e.what()};
  }
  const auto differs = [&](const char* what, const auto& cached, const auto& wanted) -> DatasetCheck {
    return {false, str(path, ": made with ", what, " ", cached, ", wanted ", wanted)};
  };
  if (info.tokenizer != tokenizer_identity) return differs("tokenizer", info.tokenizer, tokenizer_identity);
  if (info.source_format != corpus_format_name(source.format))
    return differs("format", info.source_format, corpus_format_name(source.format));
  if (info.text_field != source.text_field) return differs("text field", info.text_field, source.text_field);
  if (info.val_fraction != source.val_fraction) return differs("val_fraction", info.val_fraction, source.val_fraction);
  if (info.source_sha256 != source_sha256(source))
    return {false, str(path, ": the source files differ from those it was made from (", source.source, ")")};
  return {true, ""};
}

}  // namespace ft::data
