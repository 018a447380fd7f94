#include "framework/train/training_data.h"

#include <cstdio>
#include <filesystem>

#include "data/data_dir.h"
#include "data/prepare.h"
#include "framework/error.h"
#include "framework/train/run_setup.h"

namespace ft::train {
namespace {

data::CorpusOptions corpus_options(const Recipe& r, const data::DataDirSetting& data_dir) {
  data::CorpusOptions o;
  o.source = data::resolve_data_path(r.data.source, data_dir, "the corpus source (data.source)");
  o.format = data::parse_corpus_format(r.data.format);
  o.text_field = r.data.text_field;
  o.val_fraction = r.data.val_fraction;
  return o;
}

// The prepared dataset at `cache`, remade first when it is missing, damaged, or made from
// another source or by another tokenizer.
data::Dataset cached_dataset(const Recipe& r, const data::CorpusOptions& corpus, const data::Tokenizer& tokenizer,
                             const std::string& cache) {
  if (std::filesystem::exists(cache)) {
    const data::DatasetCheck check = data::check_dataset(cache, corpus, tokenizer.identity());
    if (check.matches) return data::load_dataset(cache);
    std::printf("remaking the dataset %s: %s\n", cache.c_str(), check.reason.c_str());
  }
  data::PrepareOptions options;
  options.corpus = corpus;
  options.source_as_given = r.data.source;
  options.out = cache;
  const data::PrepareSummary s = data::prepare_dataset(options, tokenizer);
  std::printf("prepared %s: train %lld documents, %lld tokens; validation %lld documents, %lld tokens (%.1f s)\n",
              cache.c_str(), static_cast<long long>(s.train.documents), static_cast<long long>(s.train.tokens),
              static_cast<long long>(s.validation.documents), static_cast<long long>(s.validation.tokens), s.seconds);
  return data::load_dataset(cache);
}

}  // namespace

TrainingData load_training_data(const Recipe& r, const std::string& run_dir) {
  TrainingData d;
  d.tokenizer = recipe_tokenizer(r);
  const std::string cache =
      r.data.cache.empty() ? (std::filesystem::path(run_dir) / "dataset.h5").string() : r.data.cache;
  data::Dataset dataset = cached_dataset(r, corpus_options(r, data_dir_setting(r)), *d.tokenizer, cache);
  FT_CHECK(dataset.validation.document_count() > 0, cache,
           ": the validation split is empty (set data.val_fraction > 0 for a single-file source)");
  d.train = std::move(dataset.train);
  d.validation = std::move(dataset.validation);
  d.eot_id = end_of_text_id(*d.tokenizer);
  d.pad_id = padding_id(*d.tokenizer);
  return d;
}

}  // namespace ft::train
