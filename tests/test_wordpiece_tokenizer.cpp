// BERT's WordPiece tokenizer (bert-base-uncased): ids looked up in vocab.txt for cases whose
// tokens are certain, parity with Hugging Face's BertTokenizer on tests/data/tokenizer_cases.txt
// (expected ids in tests/data/bert_expected.jsonl, from tools/tokenizer_parity.py), the
// normalisation rules one by one, and the errors for invalid UTF-8 and bad vocabulary files.
#include <doctest/doctest.h>

#include <sstream>

#include "data/wordpiece_tokenizer.h"
#include "framework/error.h"
#include "tests/support/tokenizer_cases.h"

using namespace ft;
using data::WordPieceTokenizer;
using Ids = std::vector<int32_t>;

namespace {

std::string vocab_dir() { return testing::data_dir() + "/bert-base-uncased"; }

const WordPieceTokenizer& bert() {
  static const WordPieceTokenizer tokenizer(vocab_dir());
  return tokenizer;
}

// The id of a token by its line in vocab.txt, found independently of the tokenizer (-1: absent).
int32_t vocab_id(const std::string& token) {
  std::istringstream in(testing::read_text(vocab_dir() + "/vocab.txt"));
  int32_t id = 0;
  for (std::string line; std::getline(in, line); ++id)
    if (line == token) return id;
  return -1;
}

Ids vocab_ids(const std::vector<std::string>& tokens) {
  Ids ids;
  for (const std::string& token : tokens) {
    ids.push_back(vocab_id(token));
    REQUIRE_MESSAGE(ids.back() >= 0, token, " is not in vocab.txt");
  }
  return ids;
}

}  // namespace

TEST_CASE("bert: special tokens and ids looked up in vocab.txt") {
  const WordPieceTokenizer& t = bert();
  CHECK(t.vocab_size() == 30522);
  const data::BertSpecialIds& s = t.special_ids();
  CHECK((s.pad == 0 && s.unk == 100 && s.cls == 101 && s.sep == 102 && s.mask == 103));
  CHECK(t.encode("Hello, World!") == vocab_ids({"hello", ",", "world", "!"}));
  CHECK(t.encode("") == Ids{});
  CHECK(t.encode("[CLS] Hello [SEP]", true) == Ids{101, vocab_id("hello"), 102});
  CHECK(t.encode("[MASK][PAD]", true) == Ids{103, 0});
  // Without allow_special, and in lower case, a special token's spelling is text.
  CHECK(t.encode("[CLS]") == vocab_ids({"[", "cl", "##s", "]"}));
  CHECK(t.encode("[mask]", true) == vocab_ids({"[", "mask", "]"}));
  CHECK(t.identity().find("bert-wordpiece-uncased tokens=30522 fnv1a64=") == 0);
}

TEST_CASE("bert: normalisation: case, accents, punctuation, CJK, control characters") {
  const WordPieceTokenizer& t = bert();
  CHECK(t.encode("café") == vocab_ids({"cafe"}));
  CHECK(t.encode("CAFÉ") == vocab_ids({"cafe"}));
  CHECK(t.encode("Ångström") == t.encode("angstrom"));
  CHECK(t.encode("ÀÉÎÕÜ àéîõü") == t.encode("aeiou aeiou"));
  CHECK(t.encode("e\u0301cole") == t.encode("ecole"));  // a combining mark vanishes
  CHECK(t.encode("ab\x01"
                 "cd\xe2\x80\x8b"
                 "ef") == t.encode("abcdef"));  // so do control and format characters
  CHECK(t.encode("a.b") == vocab_ids({"a", ".", "b"}));
  CHECK(t.encode("don't") == vocab_ids({"don", "'", "t"}));
  CHECK(t.encode("中日") == vocab_ids({"中", "日"}));
  CHECK(t.encode("a\t\n\r b\xc2\xa0"
                 "c") == vocab_ids({"a", "b", "c"}));                    // all whitespace separates
  CHECK(t.encode("unaffable") == vocab_ids({"una", "##ffa", "##ble"}));  // greedy longest match first
}

TEST_CASE("bert: unknown words and words over 100 characters are [UNK]") {
  const WordPieceTokenizer& t = bert();
  REQUIRE(vocab_id("\xe2\x98\x83") < 0);  // U+2603 SNOWMAN is not in the vocabulary
  CHECK(t.encode("snow\xe2\x98\x83man") == Ids{100});
  CHECK(t.encode("a \xe2\x98\x83 b") == Ids{vocab_id("a"), 100, vocab_id("b")});
  CHECK(t.encode(std::string(101, 'a')) == Ids{100});
  const Ids hundred = t.encode(std::string(100, 'a'));
  CHECK(hundred.size() > 1);
  CHECK(hundred[0] != 100);
}

TEST_CASE("bert: the reference tokenizer's ids on every test string") {
  const std::vector<std::string> cases = testing::read_cases();
  const std::vector<testing::ExpectedIds> expected = testing::read_expected("bert_expected.jsonl", cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(i);
    CAPTURE(cases[i]);
    CHECK(bert().encode(cases[i]) == expected[i].ordinary);
    CHECK(bert().encode(cases[i], true) == expected[i].special);
  }
}

TEST_CASE("bert: decode joins ## pieces; WikiText-2 encodes the same on threads") {
  CHECK(bert().decode(bert().encode("Hello, unaffable World!")) == "hello , unaffable world !");
  const std::string text = testing::read_text(testing::data_dir() + "/wikitext-2-raw/wiki.valid.raw");
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    lines.push_back(std::string_view(text).substr(start, end - start));
    start = end + 1;
  }
  const std::vector<Ids> batch = bert().encode_batch(lines, false, 2);
  size_t tokens = 0, unknown = 0, mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    mismatches += batch[i] != bert().encode(lines[i]);
    tokens += batch[i].size();
    for (const int32_t id : batch[i]) unknown += id == 100;
  }
  CHECK(mismatches == 0);
  CHECK(tokens > 200000);
  CHECK(unknown * 1000 < tokens);  // WikiText is almost all in the vocabulary
}

TEST_CASE("bert: invalid UTF-8 and bad vocabulary files are errors naming the offset or the file") {
  CHECK_THROWS_WITH(bert().encode("ok\xc3"), doctest::Contains("bert tokenizer: invalid UTF-8 at byte offset 2"));
  CHECK_THROWS_WITH(bert().decode({30522}), doctest::Contains("cannot decode id 30522"));
  CHECK_THROWS_WITH(WordPieceTokenizer("/nonexistent/dir"),
                    doctest::Contains("/nonexistent/dir/vocab.txt: cannot open (expected the WordPiece vocabulary"));
  {
    testing::TempDir dir;
    dir.write("vocab.txt", "[PAD]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
    CHECK_THROWS_WITH(WordPieceTokenizer(dir.path()), doctest::Contains("vocab.txt: expected the special token [UNK]"));
  }
  {
    testing::TempDir dir;
    dir.write("vocab.txt", "[PAD]\n[UNK]\nhello\n[CLS]\nhello\n");
    CHECK_THROWS_WITH(WordPieceTokenizer(dir.path()),
                      doctest::Contains("vocab.txt line 5: token 'hello' repeats line 3"));
  }
  {
    testing::TempDir dir;
    dir.write("vocab.txt", "[PAD]\n\n[UNK]\n");
    CHECK_THROWS_WITH(WordPieceTokenizer(dir.path()),
                      doctest::Contains("vocab.txt line 2: expected one token per line"));
  }
}
