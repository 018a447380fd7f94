// A training recipe: everything a run needs, read from YAML (framework/train/recipe.cpp) with
// every key checked against one schema table there (recipe_keys()), which also drives --set
// overrides, recipe_to_yaml and docs/recipes.md. The defaults below are a small CPU run; a
// recipe file names only what it changes. Paths are kept as written: relative data paths are
// resolved against data.dir (or $FLASHTRAIN_DATA), relative run paths against the working
// directory.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ft::train {

struct ModelRecipe {
  std::string arch = "gpt2";  // gpt2 | distilbert
  std::string size = "tiny";  // a named size (gpt2_config, or distilbert_config for distilbert)
  int64_t n_layer = 0;        // 0: take from size
  int64_t n_head = 0;
  int64_t n_embd = 0;
  int64_t block_size = 0;             // 0: take from size (at least data.seq_len)
  std::string positions = "learned";  // learned | rotary
  std::string mlp = "plain";          // plain (blockwise later)
  bool recompute_gelu = false;        // trade an elementwise pass for one [tokens, 4C] tensor per block
  double dropout = 0.0;
  std::string init_from;  // a Hugging Face checkpoint directory to start from, or empty
};

struct DataRecipe {
  std::string dir;                           // empty: $FLASHTRAIN_DATA
  std::string source = "wikitext-2-tokens";  // a WikiText directory, text or JSONL file, under dir
  std::string format = "wikitext";           // wikitext | text | jsonl
  std::string text_field = "text";           // for jsonl
  std::string tokenizer = "gpt2";            // gpt2 | bert
  std::string vocab;                         // empty: the tokenizer's folder under dir
  std::string cache;                         // the prepared HDF5 dataset; empty: <run dir>/dataset.h5
  double val_fraction = 0.05;                // single-file sources only
  int64_t seq_len = 128;
  std::string packing = "concat";  // concat | packed | padded
  double mlm_probability = 0.15;   // distilbert: the share of tokens selected for prediction
};

struct OptimRecipe {
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t steps = 200;  // optimizer steps; 0 with epochs > 0: derived from epochs
  double epochs = 0;
  double lr = 1e-3;
  double min_lr = 1e-4;
  std::string schedule = "cosine";  // cosine | linear | constant
  int64_t warmup_steps = 20;
  double grad_clip = 1.0;  // 0: no clipping
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
};

struct CheckpointRecipe {
  std::string dir;      // empty: <run dir>/checkpoints
  int64_t every = 100;  // steps; 0: only at the end
  int64_t keep = 3;     // newest K kept
};

struct LoggingRecipe {
  int64_t every = 10;      // progress line and metrics interval, steps
  int64_t val_every = 50;  // 0: only at the end
  int64_t val_batches = 20;
  int64_t sample_every = 0;  // 0: never
  std::string sample_prompt = "The";
  int64_t sample_tokens = 32;
  int64_t top_k = 40;
  double temperature = 1.0;
};

struct Recipe {
  std::string name = "tiny-cpu";   // the run's name: runs/<name>/ unless run_dir is set
  std::string run_dir;             // empty: runs/<name>
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  std::string precision = "fp32";  // fp32 | bf16 | fp16
  std::string attention = "auto";  // auto | math | flash | cudnn (auto: flash where it runs, else math)
  bool tf32 = true;                // f32 matmuls on GPUs use TF32 tensor cores
  uint64_t seed = 1;
  bool deterministic = true;
  std::string resume = "never";  // never (start afresh; refuse to overwrite checkpoints) | auto (newest valid one)
  ModelRecipe model;
  DataRecipe data;
  OptimRecipe optim;
  CheckpointRecipe checkpoint;
  LoggingRecipe logging;

  std::string source_path;  // the file it was read from (for messages)
  std::string text;         // the effective recipe, recipe_to_yaml(*this) (saved in checkpoints)
};

// The kinds of value a key takes. A choice is one of RecipeKey::choices, where "cuda:N" stands
// for "cuda:" followed by a device number; a path is a string that names a file or folder.
enum class KeyType { integer, number, boolean, string, choice, path };

// One key of the schema.
struct RecipeKey {
  std::string path;  // "optim.lr"
  KeyType type = KeyType::string;
  double min = -std::numeric_limits<double>::infinity();  // integer and number: the allowed range
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;        // "> min" rather than ">= min"
  bool max_exclusive = false;        // "< max" rather than "<= max"
  bool non_empty = false;            // string and path: "" is refused
  std::vector<std::string> choices;  // choice
  std::string default_value;         // as recipe_to_yaml writes it
  std::string help;                  // one line (Markdown)

  // What a value must look like, as error messages and the docs say it: "a number > 0",
  // "a number in [0, 1)", "an integer >= 1", "one of cosine, linear, constant".
  std::string expected() const;
};

// Every key, in the order recipe_to_yaml writes them.
std::vector<RecipeKey> recipe_keys();
// The keys as a Markdown table (the one in docs/recipes.md, which a test holds to this).
std::string recipe_keys_markdown();

// Reads and validates a recipe file, applies overrides "key.path=value" in order (the value read
// as a YAML scalar, by the same rules), then checks the keys against each other. Every error is
// an ft::Error naming the file, the line (or the override) and the key, with the expected form:
//   recipes/x.yaml:12: optim.lr: expected a number > 0, got 'fast'
//   --set optim.lr=fast: optim.lr: expected a number > 0, got 'fast'
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from YAML text (`origin` names it in messages).
Recipe parse_recipe(const std::string& yaml, const std::string& origin, const std::vector<std::string>& overrides = {});
// "key.path=value" for an override, the value quoted for YAML when it must be, so any string
// (a folder name with ': ' or '#') reads back as itself.
std::string string_assignment(const std::string& key, const std::string& value);
// Checks one "key.path=value" against the schema alone (the key exists, the value fits its form),
// as an override would be read; errors begin with `where` ("--vary attention=math,fast").
void check_assignment(const std::string& assignment, const std::string& where);
// The recipe as YAML, every key written (so a run's effective settings can be read back).
std::string recipe_to_yaml(const Recipe& recipe);

}  // namespace ft::train
