// The data of a training run: the recipe's source tokenised into train and validation splits.
// The first run prepares the HDF5 dataset (data/prepare.h) into data.cache (default
// <run dir>/dataset.h5); later runs, and resumed ones, read it back, after checking that it
// was made from the same source with the same tokenizer.
#pragma once

#include <memory>
#include <string>

#include "data/token_corpus.h"
#include "data/tokenizer.h"
#include "framework/train/recipe.h"

namespace ft::train {

struct TrainingData {
  data::TokenCorpus train;
  data::TokenCorpus validation;
  std::unique_ptr<data::Tokenizer> tokenizer;
  int32_t eot_id = -1;  // appended after every document by the loader (GPT-2's <|endoftext|>)
  int32_t pad_id = 0;
};

TrainingData load_training_data(const Recipe& recipe, const std::string& run_dir);

}  // namespace ft::train
