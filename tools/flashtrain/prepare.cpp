// `flashtrain prepare`: tokenises a corpus once into an HDF5 dataset (data/prepare.h) for the
// trainer, and prints what it holds and how fast it went. Paths that are not absolute and do not
// start with ./ or ../ are found in the data directory (--data-dir, else $FLASHTRAIN_DATA).
#include "data/prepare.h"

#include <cstdio>
#include <memory>
#include <string>

#include "data/data_dir.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {

namespace {

struct PrepareArgs {
  std::string source, format = "wikitext", text_field = "text", tokenizer = "gpt2", vocab, data_dir, out;
  double val_fraction = 0.05;
};

void print_split(const char* name, const data::SplitSummary& split) {
  std::printf("%-11s %8lld documents %12lld tokens\n", name, static_cast<long long>(split.documents),
              static_cast<long long>(split.tokens));
}

void run_prepare(const PrepareArgs& args) {
  const data::DataDirSetting data_dir{args.data_dir, "--data-dir"};
  const data::TokenizerKind kind = data::parse_tokenizer_kind(args.tokenizer);
  const std::string vocab = data::resolve_data_path(args.vocab.empty() ? data::default_vocab_folder(kind) : args.vocab,
                                                    data_dir, "the tokenizer vocabulary");
  const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(kind, vocab);

  data::PrepareOptions options;
  options.corpus.source = data::resolve_data_path(args.source, data_dir, "the corpus source");
  options.corpus.format = data::parse_corpus_format(args.format);
  options.corpus.text_field = args.text_field;
  options.corpus.val_fraction = args.val_fraction;
  options.source_as_given = args.source;
  options.out = args.out;
  const data::PrepareSummary summary = data::prepare_dataset(options, *tokenizer);

  std::printf("%s -> %s\n", options.corpus.source.c_str(), args.out.c_str());
  std::printf("tokenizer   %s\n", tokenizer->identity().c_str());
  print_split("train", summary.train);
  print_split("validation", summary.validation);
  std::printf("%.2f MB of text in %.2f s: %.1f MB/s; wrote %.2f MB\n", summary.source_bytes / 1e6, summary.seconds,
              summary.source_bytes / 1e6 / summary.seconds, summary.file_bytes / 1e6);
}

}  // namespace

void add_prepare_command(CLI::App& app) {
  auto args = std::make_shared<PrepareArgs>();
  CLI::App* cmd = app.add_subcommand("prepare", "Tokenise a corpus into an HDF5 dataset (train and validation)");
  cmd->add_option("--source", args->source,
                  "Corpus: a WikiText directory (wiki.train.*, wiki.valid.*) or a file; relative paths are in the "
                  "data directory unless they start with ./ or ../")
      ->required();
  cmd->add_option("--format", args->format, "wikitext (articles), text (blank-line separated) or jsonl")
      ->capture_default_str()
      ->check(CLI::IsMember({"wikitext", "text", "jsonl"}));
  cmd->add_option("--text-field", args->text_field, "jsonl: the field that holds the text")->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer, "gpt2 (byte-level BPE) or bert (WordPiece, uncased)")
      ->capture_default_str()
      ->check(CLI::IsMember({"gpt2", "bert"}));
  cmd->add_option("--vocab", args->vocab,
                  "Vocabulary directory (default: gpt2-tokenizer or bert-base-uncased in the data directory)");
  cmd->add_option("--data-dir", args->data_dir, "The data directory (default: $FLASHTRAIN_DATA)");
  cmd->add_option("--val-fraction", args->val_fraction,
                  "Single-file sources: the share of documents held out for validation")
      ->capture_default_str();
  cmd->add_option("--out", args->out, "The HDF5 file to write")->required();
  cmd->callback([args] { run_prepare(*args); });
}

}  // namespace ft::tools
