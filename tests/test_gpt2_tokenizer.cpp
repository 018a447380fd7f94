// GPT-2's byte-level BPE tokenizer: ids known by heart, parity with the reference tokenizers on
// tests/data/tokenizer_cases.txt (expected ids in tests/data/gpt2_expected.jsonl, written by
// tools/tokenizer_parity.py), round trips over WikiText-2, threads, and the errors for invalid
// UTF-8 and for missing or malformed vocabulary files.
#include <doctest/doctest.h>

#include <filesystem>

#include "data/gpt2_tokenizer.h"
#include "framework/error.h"
#include "tests/support/tokenizer_cases.h"

using namespace ft;
using data::Gpt2Tokenizer;
using Ids = std::vector<int32_t>;

namespace {

std::string vocab_dir() { return testing::data_dir() + "/gpt2-tokenizer"; }

const Gpt2Tokenizer& gpt2() {
  static const Gpt2Tokenizer tokenizer(vocab_dir());
  return tokenizer;
}

std::vector<std::string_view> lines_of(const std::string& text) {
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    lines.push_back(std::string_view(text).substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace

TEST_CASE("gpt2: encodings known by heart") {
  const Gpt2Tokenizer& t = gpt2();
  CHECK(t.vocab_size() == 50257);
  CHECK(t.end_of_text() == 50256);
  CHECK(t.encode("Hello world") == Ids{15496, 995});
  CHECK(t.encode(" Hello world") == Ids{18435, 995});
  CHECK(t.encode("hello world") == Ids{31373, 995});
  CHECK(t.encode("") == Ids{});
  CHECK(t.encode("<|endoftext|>", true) == Ids{50256});
  // Without allow_special the spelling is text, as in OpenAI's encoder.
  CHECK(t.encode("<|endoftext|>") == Ids{27, 91, 437, 1659, 5239, 91, 29});
  CHECK(t.encode("a<|endoftext|>b", true) == Ids{t.encode("a")[0], 50256, t.encode("b")[0]});
  CHECK(t.decode({15496, 995}) == "Hello world");
  CHECK(t.decode({50256}) == "<|endoftext|>");
  CHECK(t.identity().find("gpt2-bpe tokens=50257 merges=50000 fnv1a64=") == 0);
}

TEST_CASE("gpt2: the reference tokenizer's ids on every test string, and round trips") {
  const std::vector<std::string> cases = testing::read_cases();
  const std::vector<testing::ExpectedIds> expected = testing::read_expected("gpt2_expected.jsonl", cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(i);
    CAPTURE(cases[i]);
    CHECK(gpt2().encode(cases[i]) == expected[i].ordinary);
    CHECK(gpt2().encode(cases[i], true) == expected[i].special);
    CHECK(gpt2().decode(gpt2().encode(cases[i])) == cases[i]);
  }
}

TEST_CASE("gpt2: decode(encode(x)) == x over WikiText-2 raw, and threads agree with one") {
  for (const char* split : {"wiki.valid.raw", "wiki.test.raw"}) {
    CAPTURE(split);
    const std::string text = testing::read_text(testing::data_dir() + "/wikitext-2-raw/" + split);
    const Ids ids = gpt2().encode(text);
    CHECK(gpt2().decode(ids) == text);
    CHECK(ids.size() * 3 < text.size());  // about 4.6 bytes a token on WikiText

    const std::vector<std::string_view> lines = lines_of(text);
    const std::vector<Ids> batch = gpt2().encode_batch(lines, false, 2);
    REQUIRE(batch.size() == lines.size());
    size_t mismatches = 0;
    for (size_t i = 0; i < lines.size(); ++i) mismatches += batch[i] != gpt2().encode(lines[i]);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("gpt2: very long words and whitespace runs") {
  // Each text is one or two regex words, merged by the BPE heap rather than the cache; the ids
  // are those of OpenAI's encoder.py (through tools/tokenizer_parity.py's copy of it).
  const auto repeat = [](size_t n, int32_t id) { return Ids(n, id); };
  const auto join = [](std::initializer_list<Ids> parts) {
    Ids all;
    for (const Ids& part : parts) all.insert(all.end(), part.begin(), part.end());
    return all;
  };
  const std::vector<std::pair<std::string, Ids>> cases = {
      {std::string(100000, ' ') + "x", join({repeat(99999, 220), {2124}})},  // GPT-2 never merges spaces
      {std::string(200000, 'a'), repeat(50000, 24794)},                      // "aaaa"
      {"a" + std::string(5000, '\n') + "b", join({{64}, repeat(2499, 628), {198, 198, 65}})},
      {std::string(30000, '!'), repeat(3750, 34635)},  // eight '!'
  };
  for (const auto& [text, expected] : cases) {
    const Ids ids = gpt2().encode(text);
    CHECK(ids == expected);
    CHECK(gpt2().decode(ids) == text);
  }
  // A word merged once and then taken from the cache gives the same ids.
  const Ids once = gpt2().encode(" tokenization");
  CHECK(gpt2().encode(" tokenization tokenization") == join({once, once}));
}

TEST_CASE("gpt2: invalid UTF-8 is an error naming the byte offset") {
  CHECK_THROWS_WITH(gpt2().encode("abc\xff"), doctest::Contains("invalid UTF-8 at byte offset 3 (byte 0xff)"));
  CHECK_THROWS_WITH(gpt2().encode("\xc0\xaf"), doctest::Contains("byte offset 0"));          // overlong '/'
  CHECK_THROWS_WITH(gpt2().encode("ok \xed\xa0\x80"), doctest::Contains("byte offset 3"));   // a surrogate
  CHECK_THROWS_WITH(gpt2().encode("\xf4\x90\x80\x80"), doctest::Contains("byte offset 0"));  // above U+10FFFF
  CHECK_THROWS_WITH(gpt2().encode("truncated \xe4\xbd"), doctest::Contains("byte offset 10"));
  CHECK_THROWS_WITH(gpt2().encode_batch({"fine", "bad \x80"}),
                    doctest::Contains("document 1: gpt2 tokenizer: invalid UTF-8 at byte offset 4"));
  CHECK_THROWS_WITH(gpt2().decode({50257}), doctest::Contains("cannot decode id 50257, expected 0 to 50256"));
  CHECK_THROWS_WITH(gpt2().decode({-1}), doctest::Contains("cannot decode id -1"));
}

TEST_CASE("gpt2: Hugging Face's file names load the same vocabulary") {
  testing::TempDir dir;
  dir.write("vocab.json", testing::read_text(vocab_dir() + "/encoder.json"));
  dir.write("merges.txt", testing::read_text(vocab_dir() + "/vocab.bpe"));
  const Gpt2Tokenizer hf(dir.path());
  const std::string text = "Hugging Face names the same files vocab.json and merges.txt.";
  CHECK(hf.encode(text) == gpt2().encode(text));
  CHECK(hf.identity() == gpt2().identity());
}

TEST_CASE("gpt2: missing or malformed vocabulary files are errors naming the file") {
  CHECK_THROWS_WITH(Gpt2Tokenizer("/nonexistent/dir"),
                    doctest::Contains("no vocabulary in '/nonexistent/dir': expected encoder.json and vocab.bpe"));
  const std::string merges = testing::read_text(vocab_dir() + "/vocab.bpe");
  const std::string encoder = testing::read_text(vocab_dir() + "/encoder.json");
  {
    testing::TempDir dir;
    dir.write("encoder.json", encoder);
    CHECK_THROWS_WITH(Gpt2Tokenizer(dir.path()),
                      doctest::Contains("vocab.bpe: cannot open (expected GPT-2's BPE merge rules)"));
  }
  {
    testing::TempDir dir;
    dir.write("vocab.bpe", merges);
    dir.write("encoder.json", encoder.substr(0, encoder.size() / 2));
    CHECK_THROWS_WITH(Gpt2Tokenizer(dir.path()), doctest::Contains("encoder.json: expected"));
    dir.write("encoder.json", R"({"a" 1})");
    CHECK_THROWS_WITH(Gpt2Tokenizer(dir.path()), doctest::Contains("encoder.json: expected ':' at byte 5"));
  }
  {
    testing::TempDir dir;
    dir.write("encoder.json", R"({"a": 0, "b": 0})");
    dir.write("vocab.bpe", merges);
    CHECK_THROWS_WITH(Gpt2Tokenizer(dir.path()), doctest::Contains("token ids must be 0 to 1 each once; 'b' has id 0"));
  }
  {
    testing::TempDir dir;
    dir.write("encoder.json", encoder);
    dir.write("vocab.bpe", "#version: 0.2\nĠ t\nnot-a-merge-line\n");
    CHECK_THROWS_WITH(
        Gpt2Tokenizer(dir.path()),
        doctest::Contains("vocab.bpe line 3: expected two tokens separated by one space, got 'not-a-merge-line'"));
  }
  {
    testing::TempDir dir;
    dir.write("encoder.json", encoder);
    dir.write("vocab.bpe", "#version: 0.2\nĠ t\nqqq zzz\n");
    CHECK_THROWS_WITH(Gpt2Tokenizer(dir.path()),
                      doctest::Contains("vocab.bpe line 3: 'qqq zzz' names a token not in the vocabulary"));
  }
}
