#include "data/corpus.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/data_dir.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "framework/error.h"
#include "framework/io/sha256.h"

namespace ft::data {

namespace fs = std::filesystem;

namespace {

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos; }

// Calls visit(line, begin, next) for each line of `text`: `line` without its "\n", `begin` its
// offset, `next` the offset after its "\n".
template <class Visit>
void for_each_line(std::string_view text, Visit&& visit) {
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    const size_t next = std::min(end + 1, text.size());
    visit(text.substr(begin, end - begin), begin, next);
    begin = next;
  }
}

// " = Title = " (with an optional "\r"), but not a section heading " = = Section = = ".
bool is_article_heading(std::string_view line) {
  if (ends_with(line, "\r")) line.remove_suffix(1);
  return line.size() >= 7 && starts_with(line, " = ") && line[3] != '=' && ends_with(line, " = ");
}

void add_unless_blank(std::vector<std::string>& documents, std::string_view text) {
  if (!is_blank(text)) documents.emplace_back(text);
}

// The one file in `dir` whose name starts with `prefix` ("wiki.train.").
std::string wikitext_split_file(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> found;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (starts_with(name, prefix) && entry.is_regular_file()) found.push_back(name);
  }
  std::sort(found.begin(), found.end());
  FT_CHECK(!found.empty(), dir, ": no ", prefix, "* file (a WikiText directory holds wiki.train.* and wiki.valid.*",
           " files, raw or tokens); it contains: ", folder_listing(dir));
  FT_CHECK(found.size() == 1, dir, ": several ", prefix, "* files (", found[0], ", ", found[1],
           (found.size() > 2 ? ", ..." : ""), "); keep one per split");
  return (fs::path(dir) / found[0]).string();
}

// The files read_corpus reads: a WikiText directory's train and validation files, or the one file.
std::vector<std::string> source_files(const CorpusOptions& options) {
  std::error_code error;
  FT_CHECK(fs::exists(options.source, error), options.source, ": corpus source not found");
  if (!fs::is_directory(options.source, error)) return {options.source};
  FT_CHECK(options.format == CorpusFormat::wikitext, options.source, ": is a directory; only a wikitext source may be ",
           "one (train from wiki.train.*, validation from wiki.valid.*); a ", corpus_format_name(options.format),
           " source is a file");
  return {wikitext_split_file(options.source, "wiki.train."), wikitext_split_file(options.source, "wiki.valid.")};
}

std::string checksum_line(const std::string& hex, const std::string& path) {
  return hex + "  " + fs::path(path).filename().string() + "\n";
}

const char* format_description(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::wikitext:
      return "wikitext: articles that start at a ' = Title = ' line";
    case CorpusFormat::text:
      return "text: documents separated by blank lines";
    case CorpusFormat::jsonl:
      return "jsonl: one JSON object per line with a non-empty text field";
  }
  return "";
}

// Invalid UTF-8 is caught here, where the file and line can be named, not later by the tokenizer.
void check_utf8(std::string_view text, const std::string& path) {
  const int64_t bad = utf8::find_invalid(text);
  if (bad < 0) return;
  const int64_t line = 1 + std::count(text.begin(), text.begin() + bad, '\n');
  throw Error(str(path, ":", line, ": invalid UTF-8 at byte offset ", bad, " of the file (byte 0x", std::hex,
                  static_cast<int>(static_cast<unsigned char>(text[bad])), std::dec, "); expected UTF-8 text"));
}

std::vector<std::string> documents_of(const std::string& text, const CorpusOptions& options, const std::string& path) {
  check_utf8(text, path);
  std::vector<std::string> documents;
  switch (options.format) {
    case CorpusFormat::wikitext:
      documents = split_wikitext_articles(text);
      break;
    case CorpusFormat::text:
      documents = split_text_documents(text);
      break;
    case CorpusFormat::jsonl:
      documents = read_jsonl_documents(text, options.text_field, path);
      break;
  }
  FT_CHECK(!documents.empty(), path, ": no documents (expected ", format_description(options.format), ")");
  return documents;
}

}  // namespace

CorpusFormat parse_corpus_format(std::string_view name) {
  if (name == "wikitext") return CorpusFormat::wikitext;
  if (name == "text") return CorpusFormat::text;
  if (name == "jsonl") return CorpusFormat::jsonl;
  throw Error(str("unknown corpus format '", name, "': expected wikitext, text or jsonl"));
}

std::string corpus_format_name(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::wikitext:
      return "wikitext";
    case CorpusFormat::text:
      return "text";
    case CorpusFormat::jsonl:
      return "jsonl";
  }
  return "";
}

std::vector<std::string> split_wikitext_articles(std::string_view text) {
  std::vector<std::string> articles;
  size_t article_begin = 0;  // text before the first heading is kept only when it is not blank
  for_each_line(text, [&](std::string_view line, size_t begin, size_t) {
    if (!is_article_heading(line) || begin == article_begin) return;
    add_unless_blank(articles, text.substr(article_begin, begin - article_begin));
    article_begin = begin;
  });
  add_unless_blank(articles, text.substr(article_begin));
  return articles;
}

std::vector<std::string> split_text_documents(std::string_view text) {
  std::vector<std::string> documents;
  size_t document_begin = std::string_view::npos, document_end = 0;
  for_each_line(text, [&](std::string_view line, size_t begin, size_t next) {
    if (is_blank(line)) {
      if (document_begin != std::string_view::npos)
        documents.emplace_back(text.substr(document_begin, document_end - document_begin));
      document_begin = std::string_view::npos;
      return;
    }
    if (document_begin == std::string_view::npos) document_begin = begin;
    document_end = next;
  });
  if (document_begin != std::string_view::npos)
    documents.emplace_back(text.substr(document_begin, document_end - document_begin));
  return documents;
}

std::vector<std::string> read_jsonl_documents(std::string_view text, const std::string& text_field,
                                              const std::string& origin) {
  std::vector<std::string> documents;
  int64_t number = 0;
  for_each_line(text, [&](std::string_view line, size_t, size_t) {
    ++number;
    if (is_blank(line)) return;
    const std::string where = str(origin, ":", number, ": ");
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(where, "invalid JSON (", e.what(), ")"));
    }
    FT_CHECK(object.is_object(), where, "expected a JSON object with a string field '", text_field, "', got ",
             object.type_name());
    const auto field = object.find(text_field);
    if (field == object.end()) {
      std::string present;
      for (const auto& item : object.items()) present += (present.empty() ? "" : ", ") + item.key();
      throw Error(str(where, "no field '", text_field, "' (the text field, set by --text-field or data.text_field); ",
                      "the object has: ", present.empty() ? "no fields" : present));
    }
    FT_CHECK(field->is_string(), where, "field '", text_field, "' is a ", field->type_name(), ", expected a string");
    add_unless_blank(documents, field->get_ref<const std::string&>());
  });
  return documents;
}

DocumentSplit split_documents(std::vector<std::string> documents, double val_fraction, const std::string& origin) {
  FT_CHECK(val_fraction >= 0 && val_fraction < 1, origin, ": val_fraction must be in [0, 1), got ", val_fraction);
  const int64_t n = static_cast<int64_t>(documents.size());
  DocumentSplit split;
  if (val_fraction == 0) {
    split.train = std::move(documents);
    return split;
  }
  const int64_t k = std::max<int64_t>(1, std::llround(n * val_fraction));
  FT_CHECK(n - k >= 1, origin, ": ", n, " document(s) cannot be split into train and validation with val_fraction ",
           val_fraction, "; give more documents or val_fraction 0");
  // Among the first i documents, floor(i * k / n) are validation: k in all, evenly spread.
  for (int64_t i = 0; i < n; ++i) {
    const bool validation = (i + 1) * k / n > i * k / n;
    (validation ? split.validation : split.train).push_back(std::move(documents[i]));
  }
  return split;
}

Corpus read_corpus(const CorpusOptions& options) {
  const std::vector<std::string> files = source_files(options);
  Corpus corpus;
  std::vector<std::vector<std::string>> parts;
  for (const std::string& path : files) {
    const std::string text = read_file(path, str("a ", corpus_format_name(options.format), " corpus"));
    corpus.source_bytes += static_cast<int64_t>(text.size());
    corpus.source_sha256 += checksum_line(io::sha256_hex(text), path);
    parts.push_back(documents_of(text, options, path));
  }
  if (parts.size() == 2) {
    corpus.train = std::move(parts[0]);
    corpus.validation = std::move(parts[1]);
    return corpus;
  }
  DocumentSplit split = split_documents(std::move(parts[0]), options.val_fraction, files[0]);
  corpus.train = std::move(split.train);
  corpus.validation = std::move(split.validation);
  return corpus;
}

std::string source_sha256(const CorpusOptions& options) {
  std::string lines;
  for (const std::string& path : source_files(options)) {
    std::ifstream in(path, std::ios::binary);
    FT_CHECK(in, path, ": cannot open (a corpus file)");
    io::Sha256 hash;
    std::vector<char> buffer(1 << 20);
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
      hash.update(buffer.data(), static_cast<size_t>(in.gcount()));
    }
    FT_CHECK(!in.bad(), path, ": read failed (a corpus file)");
    lines += checksum_line(hash.hex_digest(), path);
  }
  return lines;
}

}  // namespace ft::data
