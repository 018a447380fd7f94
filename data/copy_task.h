// A synthetic task with a known answer, for tests and the first `flashtrain train`: each row
// is k random tokens followed by the same k tokens again. Only the second half is
// predictable, so the targets of the first half are ignored; a model that learns to attend k
// positions back drives the loss towards zero, from ln(vocab) at the start.
#pragma once

#include "framework/random.h"
#include "framework/tensor.h"

namespace ft::data {

struct TokenBatch {
  Tensor inputs;   // i32 [B, T]
  Tensor targets;  // i32 [B, T]: the next token, or -100 where it cannot be predicted
};

// seq_len = T must be even; rows hold T+1 tokens of which the first T are inputs.
TokenBatch copy_task_batch(int64_t batch, int64_t seq_len, int64_t vocab, Generator& gen);

}  // namespace ft::data
