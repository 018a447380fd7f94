// Prepared datasets: WikiText-2 (tokens variant) through GPT-2 holds exactly the ids of each
// article encoded on its own (articles cut independently at the heading lines), reruns are
// byte-identical whatever the thread count, and load_dataset catches each kind of damage:
// a missing file, a non-HDF5 or truncated one, a flipped byte in the token data or in the
// metadata, a missing group, another format, malformed offsets, ids outside the vocabulary.
// check_dataset tells a reusable cache from a stale one.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "data/gpt2_tokenizer.h"
#include "data/prepare.h"
#include "framework/io/hdf5_file.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tokenizer_cases.h"
#include "tests/support/wikitext_reference.h"

using namespace ft;
using namespace ft::data;
using testing::error_message;

namespace {

std::string shared(const std::string& name) { return testing::data_dir() + "/" + name; }

const Tokenizer& gpt2() {
  static const Gpt2Tokenizer tokenizer(shared("gpt2-tokenizer"));
  return tokenizer;
}

std::vector<int32_t> ids_of(const TokenCorpus& corpus, int64_t d) {
  return {corpus.document(d), corpus.document(d) + corpus.document_length(d)};
}

// The file's articles, cut at the independently found headings (the text before the first is blank).
std::vector<std::string> reference_articles(const std::string& path) {
  const std::string text = testing::read_text(path);
  const std::vector<size_t> starts = testing::article_heading_offsets(text);
  std::vector<std::string> articles;
  for (size_t i = 0; i < starts.size(); ++i) {
    const size_t end = i + 1 < starts.size() ? starts[i + 1] : text.size();
    articles.push_back(text.substr(starts[i], end - starts[i]));
  }
  return articles;
}

void check_holds_articles(const TokenCorpus& corpus, const std::vector<std::string>& articles) {
  REQUIRE(corpus.document_count() == static_cast<int64_t>(articles.size()));
  int64_t tokens = 0;
  for (size_t d = 0; d < articles.size(); ++d) {
    const std::vector<int32_t> expected = gpt2().encode(articles[d]);
    tokens += static_cast<int64_t>(expected.size());
    CHECK_MESSAGE(ids_of(corpus, d) == expected, "document ", d);
  }
  CHECK(static_cast<int64_t>(corpus.tokens.size()) == tokens);
}

std::string file_bytes(const std::string& path) { return testing::read_text(path); }

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A dataset of recognisable ids: document d of split s holds 20 + d + 5s ids (s * 100 + d * 7 + i) % vocab.
Dataset synthetic_dataset(int64_t vocab_size = 1000) {
  Dataset dataset;
  dataset.info.tokenizer = "test-tokenizer v1";
  dataset.info.vocab_size = vocab_size;
  dataset.info.source = "synthetic-source-name";
  dataset.info.source_format = "text";
  dataset.info.text_field = "text";
  dataset.info.val_fraction = 0.25;
  dataset.info.source_sha256 = "00  synthetic.txt\n";
  for (int split = 0; split < 2; ++split) {
    TokenCorpus& corpus = split == 0 ? dataset.train : dataset.validation;
    for (int d = 0; d < (split == 0 ? 30 : 8); ++d) {
      std::vector<int32_t> ids;
      for (int i = 0; i < 20 + d + 5 * split; ++i)
        ids.push_back(static_cast<int32_t>((split * 100 + d * 7 + i) % vocab_size));
      corpus.add_document(ids);
    }
  }
  return dataset;
}

void check_same(const Dataset& a, const Dataset& b) {
  CHECK(a.train.tokens == b.train.tokens);
  CHECK(a.train.doc_offsets == b.train.doc_offsets);
  CHECK(a.validation.tokens == b.validation.tokens);
  CHECK(a.validation.doc_offsets == b.validation.doc_offsets);
  CHECK(a.info.tokenizer == b.info.tokenizer);
  CHECK(a.info.vocab_size == b.info.vocab_size);
  CHECK(a.info.source == b.info.source);
  CHECK(a.info.source_sha256 == b.info.source_sha256);
  CHECK(a.info.val_fraction == b.info.val_fraction);
}

// Flips one bit of the byte at `offset` of a copy of `path`, returning the copy's path.
std::string flipped_copy(const std::string& path, size_t offset, const std::string& copy) {
  std::string bytes = file_bytes(path);
  REQUIRE(offset < bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x10);
  write_bytes(copy, bytes);
  return copy;
}

size_t offset_of(const std::string& path, const std::string& pattern) {
  const std::string bytes = file_bytes(path);
  const size_t at = bytes.find(pattern);
  REQUIRE_MESSAGE(at != std::string::npos, "pattern not found in ", path);
  REQUIRE_MESSAGE(bytes.find(pattern, at + 1) == std::string::npos, "pattern not unique in ", path);
  return at;
}

}  // namespace

TEST_CASE("prepare: WikiText-2 through GPT-2 holds each article's ids; reruns are byte-identical") {
  testing::TempDir dir;
  PrepareOptions options;
  options.corpus.source = shared("wikitext-2-tokens");
  options.source_as_given = "wikitext-2-tokens";
  options.out = dir.path() + "/sub/wt2.h5";
  const PrepareSummary summary = prepare_dataset(options, gpt2());

  const Dataset dataset = load_dataset(options.out);
  check_holds_articles(dataset.train, reference_articles(shared("wikitext-2-tokens/wiki.train.tokens.shuffled")));
  check_holds_articles(dataset.validation, reference_articles(shared("wikitext-2-tokens/wiki.valid.tokens")));
  CHECK(summary.train.documents == dataset.train.document_count());
  CHECK(summary.train.tokens == static_cast<int64_t>(dataset.train.tokens.size()));
  CHECK(summary.validation.documents == dataset.validation.document_count());
  CHECK(summary.validation.tokens == static_cast<int64_t>(dataset.validation.tokens.size()));
  CHECK(summary.source_bytes == 10797148 + 1121681);  // the README's file sizes
  CHECK(summary.file_bytes == static_cast<int64_t>(std::filesystem::file_size(options.out)));
  MESSAGE("WikiText-2 tokens, gpt2: train ", summary.train.documents, " documents ", summary.train.tokens,
          " tokens; validation ", summary.validation.documents, " documents ", summary.validation.tokens, " tokens; ",
          summary.seconds, " s");

  CHECK(dataset.info.format_version == kDatasetFormatVersion);
  CHECK(dataset.info.tokenizer == gpt2().identity());
  CHECK(dataset.info.vocab_size == 50257);
  CHECK(dataset.info.source == "wikitext-2-tokens");
  CHECK(dataset.info.source_format == "wikitext");
  CHECK(dataset.info.source_sha256.find("728c77e87e176af4730f9a80fc6008bcaff421a7202c1c048877c0eec3685f89") == 0);
  CHECK(io::Hdf5File::open(options.out).read<uint16_t>("train/tokens").size() == dataset.train.tokens.size());

  // The same file from one thread, written through a temporary that is gone afterwards.
  const std::string first = file_bytes(options.out);
  options.threads = 1;
  prepare_dataset(options, gpt2());
  CHECK(file_bytes(options.out) == first);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path() + "/sub"), {}) == 1);

  CHECK(check_dataset(options.out, options.corpus, gpt2().identity()).matches);
}

TEST_CASE("prepare: a text file split by val_fraction; the empty corpus is an error") {
  testing::TempDir dir;
  dir.write("docs.txt", "alpha beta\n\ngamma\n\ndelta epsilon\nzeta\n\neta\n");
  PrepareOptions options;
  options.corpus.source = dir.path() + "/docs.txt";
  options.corpus.format = CorpusFormat::text;
  options.corpus.val_fraction = 0.25;
  options.out = dir.path() + "/docs.h5";
  const PrepareSummary summary = prepare_dataset(options, gpt2());
  CHECK(summary.train.documents == 3);
  CHECK(summary.validation.documents == 1);
  const Dataset dataset = load_dataset(options.out);
  CHECK(dataset.info.source == options.corpus.source);  // no source_as_given: the path itself
  CHECK(ids_of(dataset.validation, 0) == gpt2().encode("eta\n"));
  CHECK(ids_of(dataset.train, 1) == gpt2().encode("gamma\n"));

  // val_fraction 0: an empty validation split round-trips.
  options.corpus.val_fraction = 0;
  prepare_dataset(options, gpt2());
  CHECK(load_dataset(options.out).validation.document_count() == 0);

  dir.write("blank.txt", "\n \n\n");
  options.corpus.source = dir.path() + "/blank.txt";
  CHECK(error_message([&] { prepare_dataset(options, gpt2()); }).find("blank.txt: no documents") != std::string::npos);
}

TEST_CASE("dataset files: token width follows the vocabulary; round trips") {
  testing::TempDir dir;
  const Dataset narrow = synthetic_dataset(1000);
  write_dataset(dir.path() + "/narrow.h5", narrow);
  check_same(load_dataset(dir.path() + "/narrow.h5"), narrow);
  CHECK(io::Hdf5File::open(dir.path() + "/narrow.h5").read<uint16_t>("validation/tokens") ==
        [&] { return std::vector<uint16_t>(narrow.validation.tokens.begin(), narrow.validation.tokens.end()); }());

  Dataset wide = synthetic_dataset(70000);
  wide.train.add_document({69999, 65536});
  write_dataset(dir.path() + "/wide.h5", wide);
  check_same(load_dataset(dir.path() + "/wide.h5"), wide);
  CHECK(io::Hdf5File::open(dir.path() + "/wide.h5").read<int32_t>("train/tokens") == wide.train.tokens);
}

TEST_CASE("load_dataset: each kind of damage is a clear error") {
  testing::TempDir dir;
  const std::string good = dir.path() + "/good.h5";
  const Dataset dataset = synthetic_dataset();
  write_dataset(good, dataset);
  const std::string bytes = file_bytes(good);

  CHECK(error_message([&] { load_dataset(dir.path() + "/absent.h5"); }) == dir.path() + "/absent.h5: no such file");
  dir.write("text.h5", "this is not HDF5\n");
  CHECK(error_message([&] { load_dataset(dir.path() + "/text.h5"); }).find("not an HDF5 file") != std::string::npos);
  write_bytes(dir.path() + "/truncated.h5", bytes.substr(0, bytes.size() / 2));
  CHECK(error_message([&] { load_dataset(dir.path() + "/truncated.h5"); }).find("truncated") != std::string::npos);

  // A flipped bit in the train tokens (found by their bytes), in the offsets, in an attribute.
  const std::vector<uint16_t> tokens(dataset.train.tokens.begin() + 40, dataset.train.tokens.begin() + 72);
  const std::string token_bytes(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(uint16_t));
  const std::string offset_bytes(reinterpret_cast<const char*>(dataset.validation.doc_offsets.data() + 1),
                                 4 * sizeof(int64_t));
  for (const auto& [what, offset] : {std::pair<std::string, size_t>{"tokens", offset_of(good, token_bytes) + 9},
                                     {"offsets", offset_of(good, offset_bytes) + 8},
                                     {"source attribute", offset_of(good, "synthetic-source-name") + 3}}) {
    CAPTURE(what);
    const std::string copy = flipped_copy(good, offset, dir.path() + "/flipped.h5");
    const std::string message = error_message([&] { load_dataset(copy); });
    CHECK(message.find("content checksum mismatch") != std::string::npos);
    CHECK(message.find("remake it with flashtrain prepare") != std::string::npos);
  }

  // A file with the right attributes but no validation group.
  {
    io::Hdf5File file = io::Hdf5File::create(dir.path() + "/no_validation.h5");
    file.set_attribute("/", "format_version", kDatasetFormatVersion);
    for (const char* key : {"tokenizer", "source", "source_format", "text_field", "source_sha256", "content_sha256"})
      file.set_attribute("/", key, io::Hdf5File::open(good).string_attribute("/", key));
    file.set_attribute("/", "vocab_size", dataset.info.vocab_size);
    file.set_attribute("/", "val_fraction", dataset.info.val_fraction);
    file.write("train/tokens", std::vector<uint16_t>(dataset.train.tokens.begin(), dataset.train.tokens.end()));
    file.write("train/doc_offsets", dataset.train.doc_offsets);
  }
  CHECK(error_message([&] { load_dataset(dir.path() + "/no_validation.h5"); }).find("no group 'validation'") !=
        std::string::npos);

  // An HDF5 file that is not a dataset, and one from another format version.
  io::Hdf5File::create(dir.path() + "/other.h5").write("x", std::vector<float>{1});
  CHECK(error_message([&] { load_dataset(dir.path() + "/other.h5"); }).find("not a flashtrain dataset") !=
        std::string::npos);
  Dataset future = dataset;
  future.info.format_version = kDatasetFormatVersion + 1;
  write_dataset(dir.path() + "/future.h5", future);
  CHECK(error_message([&] {
          load_dataset(dir.path() + "/future.h5");
        }).find(str("dataset format version ", kDatasetFormatVersion + 1)) != std::string::npos);

  // Written with a valid checksum but wrong content: an id beyond the vocabulary, bad offsets.
  Dataset big_id = dataset;
  big_id.validation.tokens[5] = 1000;
  write_dataset(dir.path() + "/big_id.h5", big_id);
  CHECK(error_message([&] { load_dataset(dir.path() + "/big_id.h5"); }) ==
        dir.path() + "/big_id.h5: validation token 5 is id 1000, outside the vocabulary [0, 1000)");
  Dataset bad_offsets = dataset;
  bad_offsets.train.doc_offsets.back() -= 1;
  write_dataset(dir.path() + "/bad_offsets.h5", bad_offsets);
  CHECK(error_message([&] {
          load_dataset(dir.path() + "/bad_offsets.h5");
        }).find("train/doc_offsets must rise from 0 to the token count") != std::string::npos);
}

TEST_CASE("check_dataset: reuse only for the same source bytes, settings and tokenizer") {
  testing::TempDir dir;
  dir.write("corpus.txt", "one two\n\nthree\n\nfour five six\n\nseven\n");
  PrepareOptions options;
  options.corpus.source = dir.path() + "/corpus.txt";
  options.corpus.format = CorpusFormat::text;
  options.corpus.val_fraction = 0.25;
  options.out = dir.path() + "/cache.h5";

  CHECK(check_dataset(options.out, options.corpus, gpt2().identity()).reason == options.out + ": no such file");
  prepare_dataset(options, gpt2());
  const DatasetCheck same = check_dataset(options.out, options.corpus, gpt2().identity());
  CHECK(same.matches);
  CHECK(same.reason.empty());

  const DatasetCheck other_tokenizer = check_dataset(options.out, options.corpus, "bert-wordpiece something");
  CHECK(!other_tokenizer.matches);
  CHECK(other_tokenizer.reason.find("made with tokenizer gpt2-bpe") != std::string::npos);
  CorpusOptions other_split = options.corpus;
  other_split.val_fraction = 0.5;
  CHECK(check_dataset(options.out, other_split, gpt2().identity()).reason.find("val_fraction") != std::string::npos);
  CorpusOptions other_format = options.corpus;
  other_format.format = CorpusFormat::wikitext;
  CHECK(!check_dataset(options.out, other_format, gpt2().identity()).matches);

  dir.write("corpus.txt", "one two\n\nthree\n\nfour five six\n\nseven!\n");
  const DatasetCheck changed = check_dataset(options.out, options.corpus, gpt2().identity());
  CHECK(!changed.matches);
  CHECK(changed.reason.find("source files differ") != std::string::npos);

  write_bytes(options.out, file_bytes(options.out).substr(0, 1000));
  const DatasetCheck damaged = check_dataset(options.out, options.corpus, gpt2().identity());
  CHECK(!damaged.matches);
  CHECK(damaged.reason.find("truncated") != std::string::npos);
}
