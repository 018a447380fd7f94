// For suites that train: a corpus small enough to prepare in a moment (the first ~600 lines of
// WikiText-2's validation text as plain text, its " " lines made blank so paragraphs are
// documents) and a recipe that trains a one-block GPT-2 on it in a few seconds.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"

namespace ft::testing {

inline std::string small_corpus(const TempDir& dir) {
  const char* data = std::getenv("FLASHTRAIN_DATA");
  REQUIRE_MESSAGE(data != nullptr, "FLASHTRAIN_DATA must name the data directory");
  std::ifstream in(std::filesystem::path(data) / "wikitext-2-raw" / "wiki.valid.raw", std::ios::binary);
  const std::string path = dir.path() + "/corpus.txt";
  std::ofstream out(path, std::ios::binary);
  int lines = 0;
  for (std::string line; lines < 600 && std::getline(in, line); ++lines)
    out << (line.find_first_not_of(' ') == std::string::npos ? "" : line) << '\n';
  REQUIRE(lines == 600);
  return path;
}

// A one-block GPT-2 on small_corpus: 8 steps of 2 x 16 tokens on the CPU, every step logged,
// validation every 4 steps, checkpoints only at the end. Returns the recipe's path.
inline std::string tiny_recipe(const TempDir& dir) {
  const std::string path = dir.path() + "/tiny.yaml";
  std::ofstream(path) << "name: tiny\n"
                      << "device: cpu\n"
                      << "seed: 5\n"
                      << "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
                      << "data: {source: " << small_corpus(dir) << ", format: text, val_fraction: 0.1, seq_len: 16}\n"
                      << "optim: {batch_size: 2, steps: 8, warmup_steps: 1, lr: 2.0e-3}\n"
                      << "checkpoint: {every: 0, keep: 1}\n"
                      << "logging: {every: 1, val_every: 4, val_batches: 2, sample_every: 0}\n";
  return path;
}

}  // namespace ft::testing
