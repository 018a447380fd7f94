// Corpus readers: a source on disk to documents of UTF-8 text, split into train and validation.
//   wikitext  WikiText files, raw (wiki.*.raw) or tokenized (wiki.*.tokens): one document per
//             article, an article starting at its top-level heading line " = Title = " (section
//             headings " = = Section = = " stay inside it). A directory source takes train from
//             its wiki.train.* file and validation from its wiki.valid.* file.
//   text      plain text: documents are separated by one or more blank (whitespace-only) lines.
//   jsonl     one JSON object per line, the document in a string field (default "text"), as in
//             a Wikisource or Hugging Face dump; blank lines are skipped.
// Documents keep their text as written, newlines included; whitespace-only documents are
// dropped. What is not obvious: a single-file source is split by a fraction of its documents,
// spread evenly through the file (so validation is not just the file's tail), which is
// deterministic: the same file and fraction give the same split everywhere.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ft::data {

enum class CorpusFormat { wikitext, text, jsonl };
// "wikitext", "text" or "jsonl"; anything else is an ft::Error listing them.
CorpusFormat parse_corpus_format(std::string_view name);
std::string corpus_format_name(CorpusFormat format);

struct CorpusOptions {
  std::string source;  // a file, or (wikitext only) a directory; already resolved (data/data_dir.h)
  CorpusFormat format = CorpusFormat::wikitext;
  std::string text_field = "text";  // jsonl
  double val_fraction = 0.05;       // single-file sources: the share of documents for validation
};

struct Corpus {
  std::vector<std::string> train, validation;
  int64_t source_bytes = 0;
  std::string source_sha256;  // see source_sha256()
};

// Reads and splits the source. Errors name the file (and line, for JSONL); a source without
// training or validation documents is an error.
Corpus read_corpus(const CorpusOptions& options);

// The checksum of the files read_corpus reads, in its order, as `sha256sum` prints them: one
// "<64 hex digits>  <file name>\n" line per file. read_corpus computes the same while reading.
std::string source_sha256(const CorpusOptions& options);

// The pieces, for tests and other readers. `origin` names the text in messages (a file path).
std::vector<std::string> split_wikitext_articles(std::string_view text);
std::vector<std::string> split_text_documents(std::string_view text);
std::vector<std::string> read_jsonl_documents(std::string_view text, const std::string& text_field,
                                              const std::string& origin);

struct DocumentSplit {
  std::vector<std::string> train, validation;
};
// round(n * val_fraction) documents (at least one when val_fraction > 0) go to validation,
// spread evenly; train keeps at least one. val_fraction must be in [0, 1).
DocumentSplit split_documents(std::vector<std::string> documents, double val_fraction, const std::string& origin);

}  // namespace ft::data
