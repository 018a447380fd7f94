#include "data/loader.h"

#include <algorithm>
#include <numeric>

#include "data/random_index.h"

namespace ft::data {
namespace {

// Mixed into the seed so that the shuffle draws different numbers from a Generator (weight
// init, dropout, MLM) that was given the same seed.
constexpr uint64_t kShuffleStream = 0x53687566666C6531ull;  // "Shuffle1"

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// FNV-1a over 64-bit words.
struct Fnv1a {
  uint64_t hash = 0xCBF29CE484222325ull;
  void add(uint64_t word) {
    for (int byte = 0; byte < 8; ++byte) {
      hash ^= (word >> (8 * byte)) & 0xFF;
      hash *= 0x100000001B3ull;
    }
  }
};

void check_corpus(const TokenCorpus& corpus) {
  const std::vector<int64_t>& offsets = corpus.doc_offsets;
  FT_CHECK(!offsets.empty() && offsets.front() == 0 && offsets.back() == static_cast<int64_t>(corpus.tokens.size()) &&
               std::is_sorted(offsets.begin(), offsets.end()),
           "loader: malformed corpus: doc_offsets must rise from 0 to the token count ", corpus.tokens.size());
  FT_CHECK(corpus.document_count() > 0 && !corpus.tokens.empty(), "loader: the corpus is empty (",
           corpus.document_count(), " documents, ", corpus.tokens.size(), " tokens)");
}

void check_options(const LoaderOptions& o) {
  FT_CHECK(o.seq_len >= 2, "loader: seq_len must be at least 2, got ", o.seq_len);
  FT_CHECK(o.batch_size >= 1, "loader: batch_size must be at least 1, got ", o.batch_size);
  FT_CHECK(o.world_size >= 1, "loader: world_size must be at least 1, got ", o.world_size);
  FT_CHECK(o.rank >= 0 && o.rank < o.world_size, "loader: rank ", o.rank, " is outside [0, world_size) = [0, ",
           o.world_size, ")");
  FT_CHECK(o.eot_id >= -1, "loader: eot_id must be a token id or -1 (none), got ", o.eot_id);
}

}  // namespace

PackingMode parse_packing_mode(const std::string& name) {
  for (PackingMode mode : {PackingMode::concat, PackingMode::packed, PackingMode::padded})
    if (name == packing_mode_name(mode)) return mode;
  throw Error(str("unknown packing mode '", name, "': expected concat, packed or padded"));
}

std::string packing_mode_name(PackingMode mode) {
  switch (mode) {
    case PackingMode::concat:
      return "concat";
    case PackingMode::packed:
      return "packed";
    case PackingMode::padded:
      return "padded";
  }
  return "unknown";
}

double Batch::padding_fraction() const {
  const int64_t all = real_tokens + padding_tokens;
  return all == 0 ? 0.0 : static_cast<double>(padding_tokens) / all;
}

int64_t Loader::EpochPlan::rows() const {
  return row_begin.empty() ? static_cast<int64_t>(windows.size()) : static_cast<int64_t>(row_begin.size()) - 1;
}

Loader::Loader(const TokenCorpus& corpus, const LoaderOptions& options) : corpus_(corpus), options_(options) {
  check_options(options_);
  check_corpus(corpus_);
  const int64_t T = options_.seq_len, documents = corpus_.document_count();
  const std::string mode = packing_mode_name(options_.mode);
  const std::string step = str(step_rows(), " rows of one step (batch_size ", options_.batch_size, " x world_size ",
                               options_.world_size, ")");
  if (options_.mode == PackingMode::concat) {
    const int64_t windows = (corpus_.doc_offsets.back() + documents * (options_.eot_id >= 0)) / window_length();
    FT_CHECK(windows >= step_rows(), "loader (concat): the corpus makes ", windows, " windows of ", window_length(),
             " tokens, fewer than the ", step);
  } else {
    // padded needs a row per piece whatever the order; packed at least ceil(tokens / T) rows.
    int64_t rows = 0, tokens = 0;
    for (int64_t d = 0; d < documents; ++d) {
      rows += ceil_div(extended_length(d), T);
      tokens += extended_length(d);
    }
    if (options_.mode == PackingMode::packed) rows = ceil_div(tokens, T);
    const bool packed = options_.mode == PackingMode::packed;
    FT_CHECK(rows >= step_rows(), "loader (", mode, "): the corpus's ", tokens, " tokens (end-of-text ids included) ",
             packed ? "are sure to fill only " : "fill ", rows, " rows of ", T, ", fewer than the ", step);
  }
  state_.fingerprint = fingerprint();
  plan_ = plan_epoch(0);
}

int64_t Loader::window_length() const {
  return options_.seq_len + (options_.objective == Objective::causal_lm ? 1 : 0);
}

int64_t Loader::extended_length(int64_t document) const {
  return corpus_.document_length(document) + (options_.eot_id >= 0 ? 1 : 0);
}

int32_t Loader::extended_token(int64_t document, int64_t index) const {
  return index < corpus_.document_length(document) ? corpus_.document(document)[index] : options_.eot_id;
}

// Fisher–Yates: step i swaps unit i with one drawn from [0, i] by Philox counter i under a key
// drawn from (seed, epoch), so every epoch has its own permutation, the same everywhere.
std::vector<int64_t> Loader::unit_order(int64_t units, int64_t epoch) const {
  std::vector<int64_t> order(units);
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!options_.shuffle) return order;
  const uint64_t key = philox_bits64(options_.seed ^ kShuffleStream, static_cast<uint64_t>(epoch));
  for (int64_t i = units - 1; i > 0; --i) {
    const uint64_t j = scale_below(philox_bits64(key, static_cast<uint64_t>(i)), static_cast<uint64_t>(i) + 1);
    std::swap(order[i], order[j]);
  }
  return order;
}

Loader::EpochPlan Loader::plan_epoch(int64_t epoch) const {
  EpochPlan plan;
  const int64_t T = options_.seq_len;
  if (options_.mode == PackingMode::concat) {
    const int64_t stream = corpus_.doc_offsets.back() + corpus_.document_count() * (options_.eot_id >= 0);
    plan.windows = unit_order(stream / window_length(), epoch);
    return plan;
  }
  int64_t row_used = T;  // no row open yet
  for (int64_t d : unit_order(corpus_.document_count(), epoch)) {
    const int64_t length = extended_length(d);
    for (int64_t begin = 0; begin < length; begin += T) {
      const Piece piece{d, begin, std::min(T, length - begin)};
      if (options_.mode == PackingMode::padded || row_used + piece.length > T) {
        plan.row_begin.push_back(static_cast<int64_t>(plan.pieces.size()));
        row_used = 0;
      }
      plan.pieces.push_back(piece);
      row_used += piece.length;
    }
  }
  plan.row_begin.push_back(static_cast<int64_t>(plan.pieces.size()));
  return plan;
}

int64_t Loader::row_real_tokens(int64_t row) const {
  if (options_.mode == PackingMode::concat) return options_.seq_len;
  int64_t real = 0;
  for (int64_t p = plan_.row_begin[row]; p < plan_.row_begin[row + 1]; ++p) real += plan_.pieces[p].length;
  return real;
}

void Loader::skip_exhausted_epoch() {
  if (state_.next_row + step_rows() <= plan_.rows()) return;
  plan_ = plan_epoch(state_.epoch + 1);
  ++state_.epoch;
  state_.next_row = 0;
}

Batch Loader::next() {
  const int64_t B = options_.batch_size, T = options_.seq_len;
  const bool concat = options_.mode == PackingMode::concat;
  Batch batch;
  batch.epoch = state_.epoch;
  batch.inputs = Tensor::empty({B, T}, DType::i32);
  if (options_.objective == Objective::causal_lm) batch.targets = Tensor::empty({B, T}, DType::i32);
  if (!concat) {
    batch.segment_ids = Tensor::empty({B, T}, DType::i32);
    batch.positions = Tensor::empty({B, T}, DType::i32);
  }
  const int64_t first = state_.next_row + options_.rank * B;
  for (int64_t b = 0; b < B; ++b) {
    concat ? write_window(first + b, b, batch) : write_pieces(first + b, b, batch);
    batch.real_tokens += row_real_tokens(first + b);
  }
  batch.padding_tokens = B * T - batch.real_tokens;
  for (int64_t row = state_.next_row; row < state_.next_row + step_rows(); ++row) {
    const int64_t real = row_real_tokens(row);
    state_.real_tokens += real;
    state_.padding_tokens += T - real;
  }
  state_.next_row += step_rows();
  skip_exhausted_epoch();
  return batch;
}

// Window w is tokens [w * L, (w + 1) * L) of the stream of extended documents, L = T + 1 for
// causal LM (inputs the first T, targets the last T) and T for masked LM.
void Loader::write_window(int64_t row, int64_t b, Batch& batch) const {
  const int64_t T = options_.seq_len, L = window_length();
  const int64_t has_eot = options_.eot_id >= 0;
  // Document d starts at stream position doc_offsets[d] + d * has_eot; find the one holding
  // the window's first token.
  const int64_t start = plan_.windows[row] * L;
  int64_t lo = 0, hi = corpus_.document_count() - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (corpus_.doc_offsets[mid] + mid * has_eot <= start)
      lo = mid;
    else
      hi = mid - 1;
  }
  int64_t d = lo, index = start - (corpus_.doc_offsets[d] + d * has_eot);
  std::vector<int32_t> window(L);
  for (int64_t i = 0; i < L; ++i) {
    while (index == extended_length(d)) {
      ++d;
      index = 0;
    }
    window[i] = extended_token(d, index++);
  }
  int32_t* inputs = batch.inputs.data<int32_t>() + b * T;
  std::copy(window.begin(), window.begin() + T, inputs);
  if (batch.targets.defined()) std::copy(window.begin() + 1, window.end(), batch.targets.data<int32_t>() + b * T);
}

void Loader::write_pieces(int64_t row, int64_t b, Batch& batch) const {
  const int64_t T = options_.seq_len;
  int32_t* inputs = batch.inputs.data<int32_t>() + b * T;
  int32_t* segments = batch.segment_ids.data<int32_t>() + b * T;
  int32_t* positions = batch.positions.data<int32_t>() + b * T;
  int32_t* targets = batch.targets.defined() ? batch.targets.data<int32_t>() + b * T : nullptr;
  int64_t column = 0;
  for (int64_t p = plan_.row_begin[row]; p < plan_.row_begin[row + 1]; ++p) {
    const Piece& piece = plan_.pieces[p];
    const int32_t segment = static_cast<int32_t>(p - plan_.row_begin[row]);
    for (int64_t i = 0; i < piece.length; ++i, ++column) {
      inputs[column] = extended_token(piece.document, piece.begin + i);
      segments[column] = segment;
      positions[column] = static_cast<int32_t>(i);
      if (targets)
        targets[column] = i + 1 < piece.length ? extended_token(piece.document, piece.begin + i + 1) : kIgnoreTarget;
    }
  }
  for (; column < T; ++column) {
    inputs[column] = options_.pad_id;
    segments[column] = -1;
    positions[column] = 0;
    if (targets) targets[column] = kIgnoreTarget;
  }
}

uint64_t Loader::fingerprint() const {
  Fnv1a h;
  for (int64_t word : {static_cast<int64_t>(options_.mode), static_cast<int64_t>(options_.objective), options_.seq_len,
                       static_cast<int64_t>(options_.eot_id), static_cast<int64_t>(options_.shuffle),
                       corpus_.document_count(), static_cast<int64_t>(corpus_.tokens.size())})
    h.add(static_cast<uint64_t>(word));
  h.add(options_.seed);
  for (int64_t offset : corpus_.doc_offsets) h.add(static_cast<uint64_t>(offset));
  return h.hash;
}

void Loader::set_state(const LoaderState& state) {
  FT_CHECK(state.fingerprint == fingerprint(), "loader: the state was saved over another corpus or other options ",
           "(fingerprint ", state.fingerprint, ", this loader's ", fingerprint(),
           "; it covers the document offsets, mode, objective, seq_len, eot_id, seed and shuffle)");
  FT_CHECK(state.epoch >= 0 && state.real_tokens >= 0 && state.padding_tokens >= 0, "loader: invalid state: epoch ",
           state.epoch, ", real_tokens ", state.real_tokens, ", padding_tokens ", state.padding_tokens,
           " (none may be negative)");
  EpochPlan plan = plan_epoch(state.epoch);
  FT_CHECK(state.next_row >= 0 && state.next_row <= plan.rows(), "loader: invalid state: next_row ", state.next_row,
           " lies outside epoch ", state.epoch, "'s ", plan.rows(), " rows");
  plan_ = std::move(plan);
  state_ = state;
  skip_exhausted_epoch();  // a state saved with a larger batch_size x world_size may end an epoch
}

int64_t Loader::steps_in_epoch() const { return plan_.rows() / step_rows(); }

double Loader::padding_fraction() const {
  const int64_t all = state_.real_tokens + state_.padding_tokens;
  return all == 0 ? 0.0 : static_cast<double>(state_.padding_tokens) / all;
}

}  // namespace ft::data
