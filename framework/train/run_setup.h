// What a recipe fixes before any data is read, shared by the trainer, by the tools that load
// a finished run (flashtrain generate) and by comparisons, which check every variant before the
// first one trains: the device, the run's folders, the model's shape and the tokenizer.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "data/data_dir.h"
#include "data/mlm.h"
#include "data/tokenizer.h"
#include "framework/device.h"
#include "framework/train/recipe.h"
#include "models/distilbert/distilbert.h"
#include "models/gpt2/gpt2.h"

namespace ft::train {

// The device to train on: device: auto takes the first GPU when there is one. A GPU that is
// not there, a 16-bit precision on the CPU, attention: flash or cudnn in fp32 (so on the CPU
// too) and attention: cudnn in a build without cuDNN are errors naming the recipe key.
Device resolve_device(const Recipe& r);

// The run's folder (run_dir, or runs/<name>) and its checkpoints' (checkpoint.dir, or
// <run folder>/checkpoints).
std::string run_folder(const Recipe& r);
std::string checkpoint_folder(const Recipe& r);

// The checkpoint a run starts from: with resume: auto the newest valid one (none for a first
// run). With resume: never, checkpoints of an earlier run are an error (nothing is overwritten).
std::optional<std::string> checkpoint_to_resume(const Recipe& r);

// The dtype the model computes in: f32, bf16 or f16 by `precision` (masters stay f32).
DType compute_dtype(const Recipe& r);

// model.size with the recipe's overrides; block_size is at least data.seq_len. With
// model.init_from, the pretrained model's own config.json (its vocabulary must be the tokenizer's).
// Either way the recipe sets the training choices: dropout, recomputed GELU and the attention
// kernel (flash and cudnn need a head size of 64 or 128).
models::Gpt2Config model_config(const Recipe& r, int64_t vocab_size);

// The same for model.arch: distilbert: n_layer, n_head and n_embd set its layers, heads and
// width (the feed-forward 4x the width), block_size its max_positions; the recipe sets dropout
// and the attention kernel.
models::DistilBertConfig distilbert_model_config(const Recipe& r, int64_t vocab_size);

// Masking for DistilBERT: the tokenizer's [MASK], [PAD], [CLS] and [SEP], data.mlm_probability.
data::MlmOptions mlm_options(const Recipe& r, const data::Tokenizer& tokenizer);

// model.init_from resolved: absolute, ./ or ../ paths as written, others in the data directory.
std::string pretrained_dir(const Recipe& r);

// data.dir (or $FLASHTRAIN_DATA), named after the recipe file in messages.
data::DataDirSetting data_dir_setting(const Recipe& r);

// data.tokenizer with its vocabulary (data.vocab, or the canonical folder in the data directory).
std::unique_ptr<data::Tokenizer> recipe_tokenizer(const Recipe& r);

// The id that ends every document (GPT-2's <|endoftext|>, BERT's [SEP]) and the padding id.
int32_t end_of_text_id(const data::Tokenizer& tokenizer);
int32_t padding_id(const data::Tokenizer& tokenizer);

}  // namespace ft::train
