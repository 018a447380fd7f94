// The data directory: where corpora and tokenizer vocabularies live. An explicit setting (the
// recipe key data.dir, or --data-dir) wins over $FLASHTRAIN_DATA. Data paths are resolved
// against it unless they are absolute or start with ./ or ../ (then they are taken as written,
// relative to the working directory), so the data directory is only needed, and only looked
// up, when a path is relative to it.
#pragma once

#include <string>

#include "data/tokenizer.h"

namespace ft::data {

struct DataDirSetting {
  std::string dir;                             // empty: $FLASHTRAIN_DATA
  std::string origin = "recipe key data.dir";  // where `dir` came from, for messages
};

// The data directory's path. Errors: none set (the message says how to set one and names the
// canonical downloads), or the one set does not exist or is not a directory (naming it and its
// origin).
std::string resolve_data_dir(const DataDirSetting& setting);

// The path of a data file or folder; `what` names it in messages ("the corpus source"). A path
// that does not exist is an ft::Error that lists what its nearest existing folder contains.
std::string resolve_data_path(const std::string& path, const DataDirSetting& setting, const std::string& what);

// "a, b/, c": the sorted entries of a folder (folders end in /), at most 40 named, for messages.
std::string folder_listing(const std::string& folder);

// The vocabulary's folder in the data directory's canonical layout: gpt2-tokenizer (encoder.json,
// vocab.bpe) or bert-base-uncased (vocab.txt).
std::string default_vocab_folder(TokenizerKind kind);

}  // namespace ft::data
