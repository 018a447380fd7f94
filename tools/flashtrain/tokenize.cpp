// `flashtrain tokenize`: UTF-8 text on stdin to token ids on stdout, one line of space-separated
// ids per input line (the newline itself is not encoded): a debugging tool and the hook for
// parity checks against the reference tokenizers. --bench FILE measures encoding speed instead.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "framework/error.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {

namespace {

struct TokenizeOptions {
  std::string tokenizer = "gpt2";
  std::string vocab;
  std::string bench;
  bool allow_special = false;
};

void print_ids_per_line(const data::Tokenizer& tokenizer, bool allow_special) {
  std::string line, out;
  for (int64_t number = 1; std::getline(std::cin, line); ++number) {
    std::vector<int32_t> ids;
    try {
      ids = tokenizer.encode(line, allow_special);
    } catch (const Error& e) {
      throw Error(str("stdin line ", number, ": ", e.what()));
    }
    out.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

void print_throughput(const data::Tokenizer& tokenizer, const std::string& path) {
  const std::string text = data::read_file(path, "UTF-8 text to tokenize");
  const data::TokenizerThroughput t = data::measure_throughput(tokenizer, text);
  std::printf("%s\n", tokenizer.identity().c_str());
  std::printf("%s: %.2f MB, %lld lines, %lld tokens\n", path.c_str(), t.bytes / 1e6,
              static_cast<long long>(t.documents), static_cast<long long>(t.tokens));
  std::printf("1 thread:   %.1f MB/s\n", t.single_thread_mb_per_s);
  std::printf("%d threads: %.1f MB/s\n", t.threads, t.all_threads_mb_per_s);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of each line of UTF-8 text read from stdin");
  cmd->add_option("--tokenizer", options->tokenizer, "gpt2 (byte-level BPE) or bert (WordPiece, uncased)")
      ->capture_default_str()
      ->check(CLI::IsMember({"gpt2", "bert"}));
  cmd->add_option("--vocab", options->vocab,
                  "Directory of the vocabulary: encoder.json + vocab.bpe (gpt2), vocab.txt (bert)")
      ->required();
  cmd->add_flag("--allow-special", options->allow_special,
                "Read special tokens spelled in the text (<|endoftext|>, [SEP], ...) as those tokens");
  cmd->add_option("--bench", options->bench, "Instead: measure encoding speed on this file, one thread and all");
  cmd->callback([options] {
    const std::unique_ptr<data::Tokenizer> tokenizer =
        data::load_tokenizer(data::parse_tokenizer_kind(options->tokenizer), options->vocab);
    if (options->bench.empty()) {
      print_ids_per_line(*tokenizer, options->allow_special);
    } else {
      print_throughput(*tokenizer, options->bench);
    }
  });
}

}  // namespace ft::tools
