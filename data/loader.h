// Batches of token ids from a TokenCorpus, in one of three packing modes:
//   concat  documents joined by an end-of-text id, the stream cut into non-overlapping windows
//           (T + 1 tokens for causal LM: inputs are the first T, targets the last T);
//           plain causal attention, no segment ids;
//   packed  documents packed greedily (next fit) into rows of T positions, each row's documents
//           told apart by segment ids 0, 1, 2, ... (-1 on the padding at the row's end), so
//           attention stays inside a document and positions restart at each one;
//   padded  one document per row, padded to T (segment id -1 is the padding mask).
// In every mode a document is its tokens followed by the end-of-text id (when one is given),
// and packed and padded split a document longer than T into pieces of T; a piece is then
// treated as a document of its own (positions restart, no target crosses into the next piece).
//
// What is not obvious: everything the loader produces is a pure function of (corpus, options,
// epoch, row). Each epoch has a global row order, fixed by the seed and the epoch number
// (Fisher–Yates over Philox, identical on every machine); a step takes the next
// batch_size x world_size rows of it, rank r the r-th block of batch_size. So the loader's
// position is a handful of integers (LoaderState), rank-independent, and a fresh loader given
// that state produces the identical next batch. Rows left at the end of an epoch that do not
// fill a whole step are dropped; the next epoch is reshuffled and starts at row 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/token_corpus.h"
#include "framework/tensor.h"

namespace ft::data {

enum class PackingMode { concat, packed, padded };
// "concat", "packed", "padded"; parse throws ft::Error listing these for any other name.
PackingMode parse_packing_mode(const std::string& name);
std::string packing_mode_name(PackingMode mode);

// causal_lm: targets are the next token (GPT-2). masked_lm: rows hold the tokens themselves,
// targets stay undefined, and data/mlm.h makes the masked inputs and their labels (DistilBERT).
enum class Objective { causal_lm, masked_lm };

inline constexpr int32_t kIgnoreTarget = -100;  // cross_entropy's ignore_index

struct LoaderOptions {
  PackingMode mode = PackingMode::packed;
  Objective objective = Objective::causal_lm;
  int64_t batch_size = 8;  // rows per rank and step
  int64_t seq_len = 1024;  // T
  int32_t eot_id = -1;     // appended after every document (50256 for GPT-2); -1: none
  int32_t pad_id = 0;      // the input id at padding positions (packed, padded)
  uint64_t seed = 0;
  bool shuffle = true;  // false: corpus order in every epoch (for evaluation)
  int64_t rank = 0;
  int64_t world_size = 1;
};

// One rank's rows for one step; all tensors i32 [B, T] on the CPU.
struct Batch {
  Tensor inputs;
  // Causal LM: the next token of the same document, kIgnoreTarget at the last position of each
  // document (piece) and on padding. Masked LM: undefined until data/mlm.h fills it.
  Tensor targets;
  // packed, padded: index of the document within its row, -1 on padding
  // (AttentionOptions::segment_ids). concat: undefined (plain causal attention).
  Tensor segment_ids;
  // packed, padded: 0, 1, ... restarting at each document (0 on padding). concat: undefined,
  // meaning 0..T-1 in every row (as rotary_embedding reads it).
  Tensor positions;
  int64_t real_tokens = 0;
  int64_t padding_tokens = 0;
  int64_t epoch = 0;
  double padding_fraction() const;
};

// The loader's position, to save in a checkpoint. Every rank holds the same state.
struct LoaderState {
  int64_t epoch = 0;
  int64_t next_row = 0;  // the first row of the next step in the epoch's global row order
  // Real and padding tokens in all rows of all ranks so far: the cumulative padding fraction.
  int64_t real_tokens = 0;
  int64_t padding_tokens = 0;
  // A hash of what fixes the row order: the corpus's document and token counts and document
  // offsets (not the token values) and the mode, objective, seq_len, eot_id, seed and shuffle.
  // batch_size, world_size, rank and pad_id may differ between the saving and restoring run.
  uint64_t fingerprint = 0;
  bool operator==(const LoaderState& o) const {
    return epoch == o.epoch && next_row == o.next_row && real_tokens == o.real_tokens &&
           padding_tokens == o.padding_tokens && fingerprint == o.fingerprint;
  }
};

class Loader {
 public:
  // The corpus must outlive the loader. Throws ft::Error on invalid options, an empty or
  // malformed corpus, or one too small for a single step.
  Loader(const TokenCorpus& corpus, const LoaderOptions& options);
  Loader(TokenCorpus&& temporary, const LoaderOptions& options) = delete;  // it would dangle

  // This rank's next batch_size rows. When the epoch has fewer rows left than a step takes,
  // they are dropped and the state moves on to row 0 of the next epoch.
  Batch next();

  LoaderState state() const { return state_; }
  // Throws ft::Error when the state was saved over another corpus or other options, or does
  // not lie inside its epoch (then the loader stays as it was).
  void set_state(const LoaderState& state);

  // Rows in the current epoch's global order (for packed it can vary from epoch to epoch).
  int64_t rows_in_epoch() const { return plan_.rows(); }
  // Full steps of batch_size x world_size rows in the current epoch.
  int64_t steps_in_epoch() const;
  // Padding over everything read so far, by all ranks.
  double padding_fraction() const;
  const LoaderOptions& options() const { return options_; }

 private:
  // Tokens [begin, begin + length) of a document followed by its end-of-text id.
  struct Piece {
    int64_t document;
    int64_t begin;
    int64_t length;
  };
  // One epoch's global row order. concat: row r is window windows[r]. packed and padded: row r
  // is pieces[row_begin[r] .. row_begin[r + 1]) (one piece a row for padded).
  struct EpochPlan {
    std::vector<int64_t> windows;
    std::vector<Piece> pieces;
    std::vector<int64_t> row_begin;
    int64_t rows() const;
  };

  EpochPlan plan_epoch(int64_t epoch) const;
  void skip_exhausted_epoch();
  std::vector<int64_t> unit_order(int64_t units, int64_t epoch) const;
  int64_t step_rows() const { return options_.batch_size * options_.world_size; }
  int64_t window_length() const;
  int64_t extended_length(int64_t document) const;  // with its end-of-text id
  int32_t extended_token(int64_t document, int64_t index) const;
  int64_t row_real_tokens(int64_t row) const;
  void write_window(int64_t row, int64_t b, Batch& batch) const;
  void write_pieces(int64_t row, int64_t b, Batch& batch) const;
  uint64_t fingerprint() const;

  const TokenCorpus& corpus_;
  LoaderOptions options_;
  LoaderState state_;
  EpochPlan plan_;  // of state_.epoch
};

}  // namespace ft::data
