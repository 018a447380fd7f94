// The loader over a synthetic corpus whose token ids name their place (document d, index i is
// id d * 1000 + i), so every batch can be traced back to the corpus: over whole epochs each
// token appears exactly once, rows and segments are laid out as documented, shuffling is
// deterministic, a restored state gives the identical next batch, and ranks split the rows.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>

#include "data/loader.h"

using namespace ft;
using namespace ft::data;

namespace {

constexpr int32_t kEot = 999999;
constexpr int64_t kT = 16;

int32_t token_id(int64_t document, int64_t index) { return static_cast<int32_t>(document * 1000 + index); }
int64_t document_of(int32_t token) { return token / 1000; }
int64_t index_of(int32_t token) { return token % 1000; }

// 60 documents of lengths 1 to 49, among them several of length 1 and several longer than T,
// exactly T and T - 1.
TokenCorpus synthetic_corpus(int64_t documents = 60) {
  TokenCorpus corpus;
  for (int64_t d = 0; d < documents; ++d) {
    const int64_t length = d % 7 == 0 ? 1 : d % 11 == 0 ? kT : d % 13 == 0 ? kT - 1 : 1 + (d * 37) % 49;
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < length; ++i) ids.push_back(token_id(d, i));
    corpus.add_document(ids);
  }
  return corpus;
}

LoaderOptions options_for(PackingMode mode, int32_t eot = kEot, int64_t batch_size = 1) {
  LoaderOptions o;
  o.mode = mode;
  o.seq_len = kT;
  o.batch_size = batch_size;
  o.eot_id = eot;
  o.pad_id = 0;
  o.seed = 1234;
  return o;
}

std::vector<int32_t> row_of(const Tensor& t, int64_t b) {
  std::vector<int32_t> all = t.to_int_vector();
  return {all.begin() + b * kT, all.begin() + (b + 1) * kT};
}

// What the rows of packed and padded batches must satisfy, and the (document, index) pairs
// and end-of-text ids they hold, counted.
struct Coverage {
  std::map<std::pair<int64_t, int64_t>, int> tokens;
  int64_t eots = 0;
  int64_t real = 0;
  int64_t padding = 0;
};

// One row: segments 0, 1, ... then -1 padding to the end; positions restart at each segment;
// each segment is a piece of one document, starting at a multiple of T, ending with the
// document's end-of-text id when it holds it; targets are the next id within the segment.
// Returns the segments' lengths.
std::vector<int64_t> check_row(const Batch& batch, int64_t b, int32_t eot, Coverage& coverage) {
  const std::vector<int32_t> inputs = row_of(batch.inputs, b), targets = row_of(batch.targets, b),
                             segments = row_of(batch.segment_ids, b), positions = row_of(batch.positions, b);
  std::vector<int64_t> lengths;
  int64_t t = 0;
  while (t < kT && segments[t] >= 0) {
    REQUIRE(segments[t] == static_cast<int32_t>(lengths.size()));
    const int64_t start = t;
    int64_t document = -1;
    for (; t < kT && segments[t] == segments[start]; ++t) {
      INFO("row ", b, " column ", t);
      CHECK(positions[t] == t - start);
      const bool last = t + 1 == kT || segments[t + 1] != segments[start];
      CHECK(targets[t] == (last ? kIgnoreTarget : inputs[t + 1]));
      if (inputs[t] == eot) {
        CHECK(last);  // the end-of-text id closes its document
        ++coverage.eots;
        continue;
      }
      if (document < 0) {
        document = document_of(inputs[t]);
        CHECK(index_of(inputs[t]) % kT == 0);  // pieces of a long document are cut every T
      }
      CHECK(document_of(inputs[t]) == document);
      CHECK(index_of(inputs[t]) == index_of(inputs[start]) + (t - start));
      ++coverage.tokens[{document, index_of(inputs[t])}];
    }
    lengths.push_back(t - start);
  }
  for (int64_t p = t; p < kT; ++p) {
    CHECK(segments[p] == -1);
    CHECK(positions[p] == 0);
    CHECK(targets[p] == kIgnoreTarget);
    CHECK(inputs[p] == 0);
  }
  coverage.real += t;
  coverage.padding += kT - t;
  return lengths;
}

void check_covers_corpus_once(const Coverage& coverage, const TokenCorpus& corpus, int32_t eot) {
  int64_t expected = 0;
  for (int64_t d = 0; d < corpus.document_count(); ++d)
    for (int64_t i = 0; i < corpus.document_length(d); ++i, ++expected) {
      auto it = coverage.tokens.find({d, i});
      INFO("document ", d, " token ", i);
      REQUIRE(it != coverage.tokens.end());
      CHECK(it->second == 1);
    }
  CHECK(static_cast<int64_t>(coverage.tokens.size()) == expected);
  CHECK(coverage.eots == (eot >= 0 ? corpus.document_count() : 0));
}

// Every batch of the current epoch (batch_size 1: nothing is dropped), checked row by row.
Coverage read_epoch(Loader& loader, const TokenCorpus& corpus, int32_t eot) {
  Coverage coverage;
  const int64_t epoch = loader.state().epoch, steps = loader.steps_in_epoch();
  REQUIRE(steps == loader.rows_in_epoch());
  int64_t previous_padding = -1;
  for (int64_t s = 0; s < steps; ++s) {
    Batch batch = loader.next();
    REQUIRE(batch.epoch == epoch);
    const int64_t padding_before = coverage.padding;
    std::vector<int64_t> lengths = check_row(batch, 0, eot, coverage);
    CHECK(batch.padding_tokens == coverage.padding - padding_before);
    CHECK(batch.real_tokens + batch.padding_tokens == kT);
    if (loader.options().mode == PackingMode::padded) CHECK(lengths.size() == 1);
    // Next fit: a row is closed only when the next piece does not fit in its padding.
    if (loader.options().mode == PackingMode::packed && previous_padding >= 0) CHECK(lengths[0] > previous_padding);
    previous_padding = batch.padding_tokens;
  }
  check_covers_corpus_once(coverage, corpus, eot);
  return coverage;
}

// The concatenated stream and its windows of `length` ids, in corpus order.
std::vector<std::vector<int32_t>> reference_windows(const TokenCorpus& corpus, int32_t eot, int64_t length) {
  std::vector<int32_t> stream;
  for (int64_t d = 0; d < corpus.document_count(); ++d) {
    stream.insert(stream.end(), corpus.document(d), corpus.document(d) + corpus.document_length(d));
    if (eot >= 0) stream.push_back(eot);
  }
  std::vector<std::vector<int32_t>> windows;
  for (size_t w = 0; (w + 1) * length <= stream.size(); ++w)
    windows.emplace_back(stream.begin() + w * length, stream.begin() + (w + 1) * length);
  return windows;
}

void check_same_batch(const Batch& a, const Batch& b) {
  CHECK(a.epoch == b.epoch);
  CHECK(a.real_tokens == b.real_tokens);
  CHECK(a.padding_tokens == b.padding_tokens);
  CHECK(a.inputs.to_int_vector() == b.inputs.to_int_vector());
  for (auto field : {&Batch::targets, &Batch::segment_ids, &Batch::positions}) {
    REQUIRE((a.*field).defined() == (b.*field).defined());
    if ((a.*field).defined()) CHECK((a.*field).to_int_vector() == (b.*field).to_int_vector());
  }
}

// The inputs of every row this loader reads in its current epoch, one entry per row.
std::vector<std::vector<int32_t>> rows_of_epoch(Loader& loader) {
  std::vector<std::vector<int32_t>> rows;
  for (int64_t s = loader.steps_in_epoch(); s > 0; --s) {
    Batch batch = loader.next();
    for (int64_t b = 0; b < batch.inputs.size(0); ++b) rows.push_back(row_of(batch.inputs, b));
  }
  return rows;
}

}  // namespace

TEST_CASE("packing modes parse from their names; an unknown name lists the choices") {
  for (PackingMode mode : {PackingMode::concat, PackingMode::packed, PackingMode::padded})
    CHECK(parse_packing_mode(packing_mode_name(mode)) == mode);
  CHECK_THROWS_WITH(parse_packing_mode("pack"), doctest::Contains("'pack': expected concat, packed or padded"));
}

TEST_CASE("packed: two epochs cover every token once, with correct segments, positions and targets") {
  const TokenCorpus corpus = synthetic_corpus();
  for (int32_t eot : {kEot, -1}) {
    INFO("eot ", eot);
    Loader loader(corpus, options_for(PackingMode::packed, eot));
    Coverage first = read_epoch(loader, corpus, eot);
    Coverage second = read_epoch(loader, corpus, eot);
    CHECK(loader.state().epoch == 2);  // the next batch starts epoch 2
    // Rows hold several documents, so packing leaves less padding than a row a document.
    Loader padded(corpus, options_for(PackingMode::padded, eot));
    CHECK(first.padding < read_epoch(padded, corpus, eot).padding);
    CHECK(loader.padding_fraction() == doctest::Approx(double(first.padding + second.padding) /
                                                       (first.real + first.padding + second.real + second.padding)));
  }
}

TEST_CASE("padded: one document piece a row, the rest padding; the epoch covers every token once") {
  const TokenCorpus corpus = synthetic_corpus();
  for (int32_t eot : {kEot, -1}) {
    INFO("eot ", eot);
    Loader loader(corpus, options_for(PackingMode::padded, eot));
    Coverage coverage = read_epoch(loader, corpus, eot);
    CHECK(loader.padding_fraction() == doctest::Approx(double(coverage.padding) / (coverage.real + coverage.padding)));
    CHECK(loader.padding_fraction() > 0.25);
  }
}

TEST_CASE("concat: rows are the stream's non-overlapping windows of T + 1, targets shifted by one") {
  const TokenCorpus corpus = synthetic_corpus();
  LoaderOptions options = options_for(PackingMode::concat);
  options.shuffle = false;
  Loader loader(corpus, options);
  const auto windows = reference_windows(corpus, kEot, kT + 1);
  REQUIRE(loader.rows_in_epoch() == static_cast<int64_t>(windows.size()));
  for (const auto& window : windows) {
    Batch batch = loader.next();
    CHECK(row_of(batch.inputs, 0) == std::vector<int32_t>(window.begin(), window.end() - 1));
    CHECK(row_of(batch.targets, 0) == std::vector<int32_t>(window.begin() + 1, window.end()));
    CHECK_FALSE(batch.segment_ids.defined());
    CHECK_FALSE(batch.positions.defined());
    CHECK(batch.padding_tokens == 0);
  }
  CHECK(loader.padding_fraction() == 0.0);
}

TEST_CASE("concat for masked LM: windows of T, no targets") {
  const TokenCorpus corpus = synthetic_corpus();
  LoaderOptions options = options_for(PackingMode::concat, -1);
  options.objective = Objective::masked_lm;
  options.shuffle = false;
  Loader loader(corpus, options);
  const auto windows = reference_windows(corpus, -1, kT);
  REQUIRE(loader.rows_in_epoch() == static_cast<int64_t>(windows.size()));
  Batch batch = loader.next();
  CHECK(row_of(batch.inputs, 0) == windows[0]);
  CHECK_FALSE(batch.targets.defined());
}

TEST_CASE("packed and padded for masked LM: the rows hold the tokens themselves, no targets") {
  const TokenCorpus corpus = synthetic_corpus();
  for (PackingMode mode : {PackingMode::packed, PackingMode::padded}) {
    LoaderOptions options = options_for(mode, -1);
    options.objective = Objective::masked_lm;
    options.shuffle = false;
    options.pad_id = 7777;  // no token of the synthetic corpus
    Batch batch = Loader(corpus, options).next();
    CHECK_FALSE(batch.targets.defined());
    const std::vector<int32_t> inputs = row_of(batch.inputs, 0), segments = row_of(batch.segment_ids, 0);
    CHECK(inputs[0] == token_id(0, 0));  // document 0, unshuffled and unshifted
    for (int64_t t = 0; t < kT; ++t) CHECK((segments[t] >= 0) == (inputs[t] != 7777));
  }
}

TEST_CASE("shuffling: the same seed gives the same order, another seed or epoch another; each a permutation") {
  const TokenCorpus corpus = synthetic_corpus();
  // A window is known by its first T ids (the inputs); they are unique in this corpus.
  const auto windows = reference_windows(corpus, kEot, kT + 1);
  std::map<std::vector<int32_t>, int64_t> window_index;
  for (size_t w = 0; w < windows.size(); ++w)
    window_index[std::vector<int32_t>(windows[w].begin(), windows[w].end() - 1)] = static_cast<int64_t>(w);
  REQUIRE(window_index.size() == windows.size());

  auto epoch_order = [&](Loader& loader) {
    std::vector<int64_t> order;
    for (const auto& row : rows_of_epoch(loader)) {
      REQUIRE(window_index.count(row) == 1);
      order.push_back(window_index[row]);
    }
    return order;
  };
  LoaderOptions options = options_for(PackingMode::concat);
  Loader a(corpus, options), b(corpus, options);
  options.seed = 4321;
  Loader c(corpus, options);
  const std::vector<int64_t> a0 = epoch_order(a), a1 = epoch_order(a), b0 = epoch_order(b), c0 = epoch_order(c);
  CHECK(a0 == b0);
  CHECK(a0 != c0);
  CHECK(a0 != a1);
  for (const auto& order : {a0, a1, c0}) {
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> identity(windows.size());
    for (size_t w = 0; w < identity.size(); ++w) identity[w] = static_cast<int64_t>(w);
    CHECK(sorted == identity);
    CHECK(order != identity);
  }

  // Documents are the units of packed and padded: the same seed, the same rows.
  for (PackingMode mode : {PackingMode::packed, PackingMode::padded}) {
    Loader p(corpus, options_for(mode)), q(corpus, options_for(mode));
    CHECK(rows_of_epoch(p) == rows_of_epoch(q));
    LoaderOptions unshuffled = options_for(mode);
    unshuffled.shuffle = false;
    Loader u(corpus, unshuffled);
    CHECK(rows_of_epoch(u) != rows_of_epoch(p));
  }
}

TEST_CASE("a restored state gives the identical next batches, also across an epoch boundary") {
  const TokenCorpus corpus = synthetic_corpus();
  for (PackingMode mode : {PackingMode::concat, PackingMode::packed, PackingMode::padded}) {
    INFO(packing_mode_name(mode));
    const LoaderOptions options = options_for(mode, kEot, 3);
    Loader original(corpus, options);
    const int64_t steps = original.steps_in_epoch();
    REQUIRE(steps >= 3);
    // Save mid-epoch, at the last step of epoch 0 (the next batch starts epoch 1), and in epoch 1.
    for (int64_t save_at : {int64_t{2}, steps, steps + 2}) {
      Loader reader(corpus, options);
      for (int64_t s = 0; s < save_at; ++s) reader.next();
      const LoaderState saved = reader.state();
      Loader restored(corpus, options);
      restored.set_state(saved);
      CHECK(restored.state() == saved);
      CHECK(restored.padding_fraction() == reader.padding_fraction());
      for (int step = 0; step < 3; ++step) check_same_batch(reader.next(), restored.next());
      CHECK(restored.state() == reader.state());
    }
  }
}

TEST_CASE("a state that does not fit the corpus or options is refused") {
  const TokenCorpus corpus = synthetic_corpus();
  const LoaderOptions options = options_for(PackingMode::packed);
  Loader loader(corpus, options);
  loader.next();
  const LoaderState saved = loader.state();

  LoaderOptions other_seed = options;
  other_seed.seed = 99;
  Loader reseeded(corpus, other_seed);
  CHECK_THROWS_WITH(reseeded.set_state(saved), doctest::Contains("saved over another corpus or other options"));
  const TokenCorpus fewer_documents = synthetic_corpus(59);
  Loader smaller(fewer_documents, options);
  CHECK_THROWS_WITH(smaller.set_state(saved), doctest::Contains("saved over another corpus or other options"));

  LoaderState past_end = saved;
  past_end.next_row = loader.rows_in_epoch() + 1;
  CHECK_THROWS_WITH(loader.set_state(past_end), doctest::Contains("next_row"));
  LoaderState negative = saved;
  negative.epoch = -1;
  CHECK_THROWS_WITH(loader.set_state(negative), doctest::Contains("epoch -1"));
  CHECK(loader.state() == saved);  // a refused state leaves the loader as it was
}

TEST_CASE("ranks read disjoint rows that together cover the epoch; the remainder is dropped") {
  const TokenCorpus corpus = synthetic_corpus();
  const int64_t world = 3, batch_size = 2;
  for (PackingMode mode : {PackingMode::concat, PackingMode::packed, PackingMode::padded}) {
    INFO(packing_mode_name(mode));
    Loader single(corpus, options_for(mode));
    std::vector<std::vector<int32_t>> all_rows = rows_of_epoch(single);

    std::vector<std::vector<int32_t>> union_rows;
    std::vector<LoaderState> states;
    for (int64_t rank = 0; rank < world; ++rank) {
      LoaderOptions options = options_for(mode, kEot, batch_size);
      options.world_size = world;
      options.rank = rank;
      Loader loader(corpus, options);
      CHECK(loader.rows_in_epoch() == static_cast<int64_t>(all_rows.size()));
      const int64_t steps = loader.steps_in_epoch();
      CHECK(steps == loader.rows_in_epoch() / (world * batch_size));
      for (int64_t s = 0; s < steps; ++s) {
        Batch batch = loader.next();
        // Rank r holds rows s * 6 + 2r and s * 6 + 2r + 1 of the global order.
        for (int64_t b = 0; b < batch_size; ++b)
          CHECK(row_of(batch.inputs, b) == all_rows[s * world * batch_size + rank * batch_size + b]);
        for (int64_t b = 0; b < batch_size; ++b) union_rows.push_back(row_of(batch.inputs, b));
      }
      states.push_back(loader.state());
    }
    CHECK(states[0] == states[1]);  // the state is the same on every rank
    CHECK(states[1] == states[2]);
    const int64_t kept = static_cast<int64_t>(all_rows.size()) / (world * batch_size) * (world * batch_size);
    all_rows.resize(kept);
    std::sort(all_rows.begin(), all_rows.end());
    std::sort(union_rows.begin(), union_rows.end());
    CHECK(union_rows == all_rows);
  }
}

TEST_CASE("invalid options and corpora are refused with the expected value named") {
  const TokenCorpus corpus = synthetic_corpus();
  auto with = [](auto change) {
    LoaderOptions o = options_for(PackingMode::packed);
    change(o);
    return o;
  };
  CHECK_THROWS_WITH(Loader(corpus, with([](LoaderOptions& o) { o.seq_len = 1; })),
                    doctest::Contains("seq_len must be at least 2, got 1"));
  CHECK_THROWS_WITH(Loader(corpus, with([](LoaderOptions& o) { o.batch_size = 0; })),
                    doctest::Contains("batch_size must be at least 1, got 0"));
  CHECK_THROWS_WITH(Loader(corpus, with([](LoaderOptions& o) { o.world_size = 0; })),
                    doctest::Contains("world_size must be at least 1, got 0"));
  CHECK_THROWS_WITH(Loader(corpus, with([](LoaderOptions& o) {
                             o.world_size = 2;
                             o.rank = 2;
                           })),
                    doctest::Contains("rank 2 is outside [0, world_size) = [0, 2)"));
  CHECK_THROWS_WITH(Loader(corpus, with([](LoaderOptions& o) { o.rank = -1; })), doctest::Contains("rank -1"));

  TokenCorpus empty;
  CHECK_THROWS_WITH(Loader(empty, options_for(PackingMode::packed)),
                    doctest::Contains("the corpus is empty (0 documents, 0 tokens)"));
  TokenCorpus empty_documents;
  empty_documents.add_document({});
  CHECK_THROWS_WITH(Loader(empty_documents, options_for(PackingMode::concat)),
                    doctest::Contains("the corpus is empty (1 documents, 0 tokens)"));
  TokenCorpus malformed = synthetic_corpus(3);
  malformed.doc_offsets.back() += 1;
  CHECK_THROWS_WITH(Loader(malformed, options_for(PackingMode::packed)), doctest::Contains("malformed corpus"));

  // 3 documents of 1, 38 and 26 tokens, 68 with their end-of-text ids.
  const TokenCorpus tiny = synthetic_corpus(3);
  CHECK_THROWS_WITH(Loader(tiny, options_for(PackingMode::concat, kEot, 5)),
                    doctest::Contains("makes 4 windows of 17 tokens, fewer than the 5 rows of one step"));
  CHECK_THROWS_WITH(
      Loader(tiny, options_for(PackingMode::packed, kEot, 6)),
      doctest::Contains(
          "68 tokens (end-of-text ids included) are sure to fill only 5 rows of 16, fewer than the 6 rows"));
  CHECK_THROWS_WITH(
      Loader(tiny, options_for(PackingMode::padded, kEot, 7)),
      doctest::Contains("fill 6 rows of 16, fewer than the 7 rows of one step (batch_size 7 x world_size 1)"));
}
