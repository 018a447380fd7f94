// Corpus readers and the data directory: WikiText articles cut at the top-level headings
// (counted independently by tests/support/wikitext_reference.h) in the raw and tokens variants,
// a WikiText directory's train/validation files checked against the published SHA-256 sums of
// the shared data's README, blank-line text, JSONL and its errors, the deterministic validation
// split, and the data directory's resolution and its error messages.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>

#include "data/corpus.h"
#include "data/data_dir.h"
#include "framework/io/sha256.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tokenizer_cases.h"
#include "tests/support/wikitext_reference.h"

using namespace ft;
using namespace ft::data;
using testing::error_message;
using Docs = std::vector<std::string>;

namespace {

std::string shared(const std::string& name) { return testing::data_dir() + "/" + name; }

std::string joined(const Docs& documents) {
  std::string text;
  for (const std::string& document : documents) text += document;
  return text;
}

// Sets or clears an environment variable for one scope.
class EnvOverride {
 public:
  EnvOverride(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~EnvOverride() {
    if (old_.empty()) {
      unsetenv(name_);
    } else {
      setenv(name_, old_.c_str(), 1);
    }
  }

 private:
  const char* name_;
  std::string old_;
};

}  // namespace

TEST_CASE("sha256: the FIPS 180-2 test vectors, whole and in pieces") {
  CHECK(io::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(io::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(io::Sha256().update(two_blocks.substr(0, 5)).update(two_blocks.substr(5)).hex_digest() ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("wikitext: articles start at ' = Title = ', not at section headings") {
  const std::string text =
      " \n = First = \n \n Body one . \n \n = = Section = = \n \n More . \n"
      " = = = Sub = = = \n \n = Second = \n \n Body two . \n";
  const Docs articles = split_wikitext_articles(text);
  REQUIRE(articles.size() == 2);
  CHECK(articles[0] == " = First = \n \n Body one . \n \n = = Section = = \n \n More . \n = = = Sub = = = \n \n");
  CHECK(articles[1] == " = Second = \n \n Body two . \n");
  // Text before the first heading is an article only when it is not blank; CRLF headings count.
  CHECK(split_wikitext_articles("Preamble .\n = A = \nx\n") == Docs{"Preamble .\n", " = A = \nx\n"});
  CHECK(split_wikitext_articles(" = A = \r\nx\r\n = B = \r\ny\r\n") == Docs{" = A = \r\nx\r\n", " = B = \r\ny\r\n"});
  // Not headings: no space before the closing '=', an empty title, '=' inside a line.
  CHECK(split_wikitext_articles(" = A =\n = = \n a = b = \n").size() == 1);
  CHECK(split_wikitext_articles(" \n \n").empty());
}

TEST_CASE("wikitext: the shared files' articles, raw and tokens") {
  for (const char* name :
       {"wikitext-2-raw/wiki.valid.raw", "wikitext-2-raw/wiki.test.raw", "wikitext-2-tokens/wiki.valid.tokens",
        "wikitext-2-tokens/wiki.test.tokens", "wikitext-2-tokens/wiki.train.tokens.shuffled"}) {
    CAPTURE(name);
    const std::string text = testing::read_text(shared(name));
    const std::vector<size_t> headings = testing::article_heading_offsets(text);
    const Docs articles = split_wikitext_articles(text);
    REQUIRE(!headings.empty());
    CHECK(articles.size() == headings.size());
    // Each file opens with one blank line, dropped; after it the articles are the text itself.
    CHECK(text.substr(0, headings[0]) == " \n");
    CHECK(joined(articles) == text.substr(headings[0]));
    for (size_t i = 0; i < std::min(articles.size(), headings.size()); ++i) {
      CHECK(articles[i].rfind(text.substr(headings[i], text.find('\n', headings[i]) - headings[i]), 0) == 0);
    }
  }
  // The raw and tokens variants of a split are the same articles.
  CHECK(split_wikitext_articles(testing::read_text(shared("wikitext-2-raw/wiki.valid.raw"))).size() ==
        split_wikitext_articles(testing::read_text(shared("wikitext-2-tokens/wiki.valid.tokens"))).size());
}

TEST_CASE("wikitext: a directory gives train from wiki.train.*, validation from wiki.valid.*") {
  CorpusOptions options;
  options.source = shared("wikitext-2-tokens");
  const Corpus corpus = read_corpus(options);
  const std::string train = testing::read_text(shared("wikitext-2-tokens/wiki.train.tokens.shuffled"));
  const std::string valid = testing::read_text(shared("wikitext-2-tokens/wiki.valid.tokens"));
  CHECK(corpus.train.size() == testing::article_heading_offsets(train).size());
  CHECK(corpus.validation.size() == testing::article_heading_offsets(valid).size());
  CHECK(corpus.source_bytes == static_cast<int64_t>(train.size() + valid.size()));
  // The sums published in the shared data's README.
  const std::string sums =
      "728c77e87e176af4730f9a80fc6008bcaff421a7202c1c048877c0eec3685f89  wiki.train.tokens.shuffled\n"
      "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8  wiki.valid.tokens\n";
  CHECK(corpus.source_sha256 == sums);
  CHECK(source_sha256(options) == sums);
}

TEST_CASE("wikitext: directory errors list what is there") {
  testing::TempDir dir;
  dir.write("wiki.valid.raw", " = A = \n");
  CorpusOptions options;
  options.source = dir.path();
  std::string message = error_message([&] { read_corpus(options); });
  CHECK(message.find("no wiki.train.* file") != std::string::npos);
  CHECK(message.find("it contains: wiki.valid.raw") != std::string::npos);
  dir.write("wiki.train.raw", " = B = \n");
  dir.write("wiki.train.tokens", " = B = \n");
  message = error_message([&] { read_corpus(options); });
  CHECK(message.find("several wiki.train.* files (wiki.train.raw, wiki.train.tokens)") != std::string::npos);
  options.format = CorpusFormat::jsonl;
  CHECK(error_message([&] { read_corpus(options); }).find("only a wikitext source may be") != std::string::npos);
  options.source = dir.path() + "/missing.txt";
  CHECK(error_message([&] { read_corpus(options); }).find("missing.txt: corpus source not found") != std::string::npos);
}

TEST_CASE("text: documents are separated by blank lines") {
  CHECK(split_text_documents("a\nb\n\n \t\n\nc\n") == Docs{"a\nb\n", "c\n"});
  CHECK(split_text_documents("\n\none\ntwo") == Docs{"one\ntwo"});
  CHECK(split_text_documents(" \n\n").empty());
}

TEST_CASE("jsonl: the text field of each object; errors name the file, the line and the field") {
  const std::string good =
      "{\"title\": \"A\", \"text\": \"first\\ndoc\"}\n\n{\"text\": \"  \"}\n{\"text\": \"second\"}\n";
  CHECK(read_jsonl_documents(good, "text", "x.jsonl") == Docs{"first\ndoc", "second"});
  CHECK(read_jsonl_documents("{\"body\": \"b\"}", "body", "x.jsonl") == Docs{"b"});

  std::string message =
      error_message([] { read_jsonl_documents("{\"text\": \"a\"}\n{\"text\": \"b\",\n", "text", "w.jsonl"); });
  CHECK(message.find("w.jsonl:2: invalid JSON") != std::string::npos);
  message = error_message([] { read_jsonl_documents("{\"title\": \"t\", \"id\": 3}\n", "text", "w.jsonl"); });
  CHECK(message.find("w.jsonl:1: no field 'text'") != std::string::npos);
  CHECK(message.find("id, title") != std::string::npos);
  CHECK(error_message([] {
          read_jsonl_documents("{\"text\": 5}", "text", "w.jsonl");
        }).find("w.jsonl:1: field 'text' is a number, expected a string") != std::string::npos);
  CHECK(error_message([] {
          read_jsonl_documents("[\"text\"]", "text", "w.jsonl");
        }).find("w.jsonl:1: expected a JSON object") != std::string::npos);
}

TEST_CASE("files: a jsonl file through read_corpus, invalid UTF-8 and empty corpora") {
  testing::TempDir dir;
  CorpusOptions options;
  options.format = CorpusFormat::jsonl;
  options.text_field = "content";
  options.val_fraction = 0.5;
  options.source = dir.path() + "/pages.jsonl";
  dir.write("pages.jsonl", "{\"content\": \"one\"}\n{\"content\": \"two\"}\n{\"content\": \"three\"}\n");
  const Corpus corpus = read_corpus(options);
  CHECK(corpus.train.size() + corpus.validation.size() == 3);
  CHECK(corpus.source_sha256 == io::sha256_hex(testing::read_text(options.source)) + "  pages.jsonl\n");

  options.format = CorpusFormat::text;
  options.source = dir.path() + "/bad.txt";
  dir.write("bad.txt", "fine\nline two \xff here\n");
  CHECK(error_message([&] { read_corpus(options); }).find("bad.txt:2: invalid UTF-8 at byte offset 14") !=
        std::string::npos);

  options.source = dir.path() + "/empty.txt";
  dir.write("empty.txt", "\n  \n\n");
  CHECK(error_message([&] { read_corpus(options); }).find("empty.txt: no documents") != std::string::npos);
}

TEST_CASE("split: round(n * fraction) validation documents, spread evenly, deterministic") {
  Docs documents;
  for (int i = 0; i < 60; ++i) documents.push_back(std::to_string(i));
  const DocumentSplit split = split_documents(documents, 0.1, "x");
  REQUIRE(split.validation.size() == 6);
  CHECK(split.train.size() == 54);
  // One validation document in each tenth of the corpus, and train keeps the corpus order.
  for (int tenth = 0; tenth < 6; ++tenth) {
    const int index = std::stoi(split.validation[tenth]);
    CHECK(index / 10 == tenth);
  }
  CHECK(std::is_sorted(split.train.begin(), split.train.end(),
                       [](const std::string& a, const std::string& b) { return std::stoi(a) < std::stoi(b); }));
  CHECK(split_documents(documents, 0.1, "x").validation == split.validation);
  CHECK(split_documents(documents, 0.001, "x").validation.size() == 1);
  CHECK(split_documents(documents, 0.0, "x").train.size() == 60);
  CHECK(error_message([&] { split_documents(documents, 1.0, "x"); }).find("val_fraction must be in [0, 1)") !=
        std::string::npos);
  CHECK(error_message([] {
          split_documents({"only"}, 0.05, "one.txt");
        }).find("one.txt: 1 document(s) cannot be split") != std::string::npos);
}

TEST_CASE("data dir: explicit setting, then $FLASHTRAIN_DATA, else an error that says how") {
  testing::TempDir dir;
  dir.write("corpus.txt", "x\n");
  std::filesystem::create_directories(dir.path() + "/gpt2-tokenizer");
  {
    EnvOverride env("FLASHTRAIN_DATA", nullptr);
    const std::string message = error_message([] { resolve_data_dir({}); });
    for (const char* part :
         {"set FLASHTRAIN_DATA", "data.dir", "Salesforce/wikitext", "wikitext-103-raw-v1",
          "openaipublic.blob.core.windows.net/gpt-2/encodings/main", "bert-base-uncased/vocab.txt"}) {
      CHECK_MESSAGE(message.find(part) != std::string::npos, part);
    }
    CHECK(resolve_data_dir({dir.path(), "--data-dir"}) == dir.path());
    // Absolute paths need no data directory.
    CHECK(resolve_data_path(dir.path() + "/corpus.txt", {}, "the source") == dir.path() + "/corpus.txt");
  }
  {
    EnvOverride env("FLASHTRAIN_DATA", "/nonexistent/flashtrain-data");
    CHECK(error_message([] { resolve_data_dir({}); }) ==
          "data directory /nonexistent/flashtrain-data (from $FLASHTRAIN_DATA) does not exist");
    CHECK(resolve_data_dir({dir.path()}) == dir.path());  // the explicit setting wins
    CHECK(error_message([] { resolve_data_dir({"/nonexistent/other"}); }) ==
          "data directory /nonexistent/other (from recipe key data.dir) does not exist");
    CHECK(error_message([&] {
            resolve_data_dir({dir.path() + "/corpus.txt", "--data-dir"});
          }).find("(from --data-dir) is not a directory") != std::string::npos);
  }
  {
    EnvOverride env("FLASHTRAIN_DATA", dir.path().c_str());
    CHECK(resolve_data_path("corpus.txt", {}, "the source") == dir.path() + "/corpus.txt");
    std::string message = error_message([] { resolve_data_path("wikitext-103-raw", {}, "the corpus source"); });
    CHECK(message.find("the corpus source 'wikitext-103-raw' not found in the data directory") != std::string::npos);
    CHECK(message.find("(from $FLASHTRAIN_DATA)") != std::string::npos);
    CHECK(message.find("contains: corpus.txt, gpt2-tokenizer/") != std::string::npos);
    message = error_message([] { resolve_data_path("gpt2-tokenizer/vocab.bpe", {}, "the vocabulary"); });
    CHECK(message.find("gpt2-tokenizer contains: nothing (it is empty)") != std::string::npos);
    // ./ and ../ paths are taken from the working directory, not the data directory.
    CHECK(error_message([] {
            resolve_data_path("./corpus.txt", {}, "the source");
          }).find("./corpus.txt (the source) not found") != std::string::npos);
  }
  CHECK(default_vocab_folder(TokenizerKind::gpt2) == "gpt2-tokenizer");
  CHECK(default_vocab_folder(TokenizerKind::bert) == "bert-base-uncased");
  CHECK(parse_corpus_format("jsonl") == CorpusFormat::jsonl);
  CHECK(error_message([] { parse_corpus_format("csv"); }) ==
        "unknown corpus format 'csv': expected wikitext, text or jsonl");
}
