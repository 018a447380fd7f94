#include "data/data_dir.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "framework/error.h"

namespace ft::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kEnvVar = "FLASHTRAIN_DATA";

const char* const kCanonicalDownloads =
    "It should hold (canonical downloads):\n"
    "  wikitext-2-raw/, wikitext-103-raw/      WikiText raw (wiki.{train,valid,test}.raw): Hugging Face dataset\n"
    "                                          Salesforce/wikitext, configs wikitext-2-raw-v1, wikitext-103-raw-v1\n"
    "  gpt2-tokenizer/encoder.json, vocab.bpe  https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/\n"
    "                                          (or the Hugging Face gpt2 repo's vocab.json, merges.txt, renamed)\n"
    "  bert-base-uncased/vocab.txt             the Hugging Face bert-base-uncased repo";

bool relative_to_data_dir(const std::string& path) {
  return !fs::path(path).is_absolute() && path.rfind("./", 0) != 0 && path.rfind("../", 0) != 0 && path != "." &&
         path != "..";
}

// The deepest folder on the way to `path` that exists, or empty if none does.
fs::path nearest_existing_folder(const fs::path& path) {
  std::error_code error;
  for (fs::path folder = path.parent_path(); !folder.empty(); folder = folder.parent_path()) {
    if (fs::is_directory(folder, error)) return folder;
    if (folder == folder.parent_path()) break;
  }
  return {};
}

}  // namespace

std::string resolve_data_dir(const DataDirSetting& setting) {
  std::string dir = setting.dir, origin = setting.origin;
  if (dir.empty()) {
    const char* env = std::getenv(kEnvVar);
    FT_CHECK(env != nullptr && *env != '\0', "no data directory: set ", kEnvVar,
             "=/path/to/data (or the recipe key data.dir, or --data-dir). ", kCanonicalDownloads);
    dir = env;
    origin = str("$", kEnvVar);
  }
  std::error_code error;
  FT_CHECK(fs::exists(dir, error), "data directory ", dir, " (from ", origin, ") does not exist");
  FT_CHECK(fs::is_directory(dir, error), "data directory ", dir, " (from ", origin, ") is not a directory");
  return dir;
}

std::string resolve_data_path(const std::string& path, const DataDirSetting& setting, const std::string& what) {
  FT_CHECK(!path.empty(), what, ": no path given");
  std::error_code error;
  if (!relative_to_data_dir(path)) {
    if (fs::exists(path, error)) return path;
    const fs::path folder = nearest_existing_folder(fs::absolute(path, error));
    throw Error(str(
        path, " (", what, ") not found",
        folder.empty() ? std::string() : str("; ", folder.string(), " contains: ", folder_listing(folder.string()))));
  }
  const std::string dir = resolve_data_dir(setting);
  const fs::path full = fs::path(dir) / path;
  if (fs::exists(full, error)) return full.string();
  const fs::path folder = nearest_existing_folder(full);
  throw Error(str(what, " '", path, "' not found in the data directory ", dir, " (from ",
                  setting.dir.empty() ? str("$", kEnvVar) : setting.origin, "); ", folder.string(),
                  " contains: ", folder_listing(folder.string())));
}

std::string folder_listing(const std::string& folder) {
  std::vector<std::string> names;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder, error)) {
    names.push_back(entry.path().filename().string() + (entry.is_directory(error) ? "/" : ""));
  }
  if (error) return "(cannot be listed: " + error.message() + ")";
  if (names.empty()) return "nothing (it is empty)";
  std::sort(names.begin(), names.end());
  constexpr size_t kMaxNamed = 40;
  std::string text;
  for (size_t i = 0; i < std::min(names.size(), kMaxNamed); ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > kMaxNamed) text += str(" and ", names.size() - kMaxNamed, " more");
  return text;
}

std::string default_vocab_folder(TokenizerKind kind) {
  return kind == TokenizerKind::gpt2 ? "gpt2-tokenizer" : "bert-base-uncased";
}

}  // namespace ft::data
