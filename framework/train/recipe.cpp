// The recipe parser: one table (schema() below) binds each key path to its Recipe field, its
// type and range and its help line, and everything else walks that table: reading YAML,
// --set overrides, recipe_to_yaml, the defaults and the docs. The non-obvious part is the
// error locations: each key remembers where its value came from ("file:line" or "--set k=v"),
// so that checks across keys, made after every override is in, still point at a line.
#include "framework/train/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <variant>

#include "framework/error.h"
#include "framework/ops.h"
#include "models/distilbert/distilbert.h"
#include "models/gpt2/gpt2.h"

namespace ft::train {
namespace {

using FieldRef = std::variant<int64_t*, uint64_t*, double*, bool*, std::string*>;
using FieldOf = FieldRef (*)(Recipe&);

struct KeySpec {
  RecipeKey key;
  FieldOf field;
};

// ---- the forms a value can take ------------------------------------------------------------

RecipeKey integer(double min) {
  RecipeKey k;
  k.type = KeyType::integer;
  k.min = min;
  return k;
}

RecipeKey number_above(double min) {
  RecipeKey k;
  k.type = KeyType::number;
  k.min = min;
  k.min_exclusive = true;
  return k;
}

RecipeKey number_from(double min) {
  RecipeKey k = number_above(min);
  k.min_exclusive = false;
  return k;
}

RecipeKey fraction() {  // [0, 1): probabilities that must leave something (dropout, betas, held-out share)
  RecipeKey k = number_from(0);
  k.max = 1;
  k.max_exclusive = true;
  return k;
}

RecipeKey open_fraction() {  // (0, 1): a share that must select something and leave something
  RecipeKey k = fraction();
  k.min_exclusive = true;
  return k;
}

RecipeKey of_type(KeyType type, bool non_empty = false) {
  RecipeKey k;
  k.type = type;
  k.non_empty = non_empty;
  return k;
}

RecipeKey choice(std::vector<std::string> choices) {
  RecipeKey k = of_type(KeyType::choice);
  k.choices = std::move(choices);
  return k;
}

// ---- formatting values ---------------------------------------------------------------------

// The shortest text that reads back to the same double ("0.001", "1e-8"), so recipe_to_yaml
// round-trips exactly.
std::string format_number(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, result.ptr);
  const size_t e = text.find('e');
  if (e != std::string::npos) {  // to_chars writes "1e-08": drop the exponent's sign "+" and leading zeros
    size_t digits = e + 1;
    if (text[digits] == '+') text.erase(digits, 1);
    if (text[digits] == '-') ++digits;
    while (digits + 1 < text.size() && text[digits] == '0') text.erase(digits, 1);
  }
  return text;
}

bool is_plain_safe(const std::string& s) {
  if (s.empty() || s == "null" || s == "Null" || s == "NULL") return false;
  if (!std::isalnum(static_cast<unsigned char>(s[0])) && s[0] != '_' && s[0] != '.' && s[0] != '/') return false;
  if (s.back() == ':') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' || c == '-' || c == ':';
  });
}

// Plain when YAML reads it back as the same string, double-quoted (with escapes) otherwise.
std::string format_string(const std::string& s) {
  if (is_plain_safe(s)) return s;
  YAML::Emitter quoted;
  quoted << YAML::DoubleQuoted << s;
  return quoted.c_str();
}

std::string format_field(FieldRef field) {
  return std::visit(
      [](auto* value) -> std::string {
        using T = std::remove_pointer_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::string>) return format_string(*value);
        if constexpr (std::is_same_v<T, bool>) return *value ? "true" : "false";
        if constexpr (std::is_same_v<T, double>) return format_number(*value);
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return std::to_string(*value);
      },
      field);
}

bool field_fits_type(FieldRef field, KeyType type) {
  switch (type) {
    case KeyType::integer:
      return std::holds_alternative<int64_t*>(field) || std::holds_alternative<uint64_t*>(field);
    case KeyType::number:
      return std::holds_alternative<double*>(field);
    case KeyType::boolean:
      return std::holds_alternative<bool*>(field);
    default:
      return std::holds_alternative<std::string*>(field);
  }
}

KeySpec make_key(const char* path, FieldOf field, RecipeKey form, const char* help) {
  Recipe defaults;
  if (!field_fits_type(field(defaults), form.type))
    throw std::logic_error(str("recipe schema: ", path, " is bound to a field of another type"));
  form.path = path;
  form.help = help;
  form.default_value = format_field(field(defaults));
  return {form, field};
}

// KEY(optim.lr, ...) binds the key "optim.lr" to the field recipe.optim.lr: the key's path is the
// member's own spelling, so the two cannot drift apart.
#define KEY(member, form, help) \
  make_key(                     \
      #member, [](Recipe& r) -> FieldRef { return &r.member; }, form, help)

// The schema, in the order recipe_to_yaml writes it (a section's keys stay together).
const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> keys = {
      KEY(name, of_type(KeyType::string, true), "the run's name: it runs in `runs/<name>/` unless `run_dir` is set"),
      KEY(run_dir, of_type(KeyType::path), "the run's folder (metrics, checkpoints); empty: `runs/<name>`"),
      KEY(device, choice({"auto", "cpu", "cuda", "cuda:N"}), "where to train; auto: the first GPU if there is one"),
      KEY(precision, choice({"fp32", "bf16", "fp16"}), "compute precision (the master weights stay fp32)"),
      KEY(attention, choice({"auto", "math", "flash", "cudnn"}),
          "the attention kernel; flash (ours) and cudnn (cuDNN's fused attention): on a GPU in bf16 or fp16, head "
          "size 64 or 128; cudnn with `data.packing: concat` only; auto: flash where it can run, else math"),
      KEY(tf32, of_type(KeyType::boolean),
          "fp32 matrix products on a GPU use TF32 tensor cores (about 8x faster, ~1e-3 relative error)"),
      KEY(seed, integer(0), "seeds initialisation, data order and dropout"),
      KEY(deterministic, of_type(KeyType::boolean),
          "the same numbers on every run with the same seed; every kernel is deterministic today, so false changes "
          "nothing yet (it is kept for kernels that would trade exactness for speed)"),
      KEY(resume, choice({"never", "auto"}),
          "never: start afresh (an error if checkpoints exist); auto: continue from the newest valid one (--resume)"),

      KEY(model.arch, choice({"gpt2", "distilbert"}),
          "the architecture: GPT-2 (causal LM) or DistilBERT (masked LM, `bert` tokenizer, packed or padded rows)"),
      KEY(model.size, choice({"tiny", "gpt2-124m", "gpt2-350m", "gpt2-774m", "gpt2-1558m", "distilbert-base"}),
          "a named size of the architecture (tiny fits both); the four keys below override its parts"),
      KEY(model.n_layer, integer(0), "transformer blocks; 0: from `model.size`"),
      KEY(model.n_head, integer(0), "attention heads; 0: from `model.size`"),
      KEY(model.n_embd, integer(0), "embedding width, a multiple of the head count; 0: from `model.size`"),
      KEY(model.block_size, integer(0),
          "the longest sequence; 0: from `model.size`, raised to `data.seq_len` when shorter"),
      KEY(model.positions, choice({"learned", "rotary"}), "learned position embeddings or rotary q/k"),
      KEY(model.mlp, choice({"plain"}), "the MLP block"),
      KEY(model.recompute_gelu, of_type(KeyType::boolean),
          "keep only the MLP's pre-activation and recompute GELU in the backward (less memory, a little more time)"),
      KEY(model.dropout, fraction(), "dropout on the embeddings and each residual branch"),
      KEY(model.init_from, of_type(KeyType::path),
          "a Hugging Face GPT-2 folder (`config.json`, `model.safetensors`) to start from, which fixes the shape; "
          "empty: random initialisation"),

      KEY(data.dir, of_type(KeyType::path), "the data folder; empty: `$FLASHTRAIN_DATA`"),
      KEY(data.source, of_type(KeyType::path, true), "a WikiText folder, or a text or JSONL file, under `data.dir`"),
      KEY(data.format, choice({"wikitext", "text", "jsonl"}), "how `data.source` is laid out"),
      KEY(data.text_field, of_type(KeyType::string, true), "jsonl: the field that holds each document's text"),
      KEY(data.tokenizer, choice({"gpt2", "bert"}), "GPT-2 byte-level BPE or BERT WordPiece"),
      KEY(data.vocab, of_type(KeyType::path), "the tokenizer's files; empty: its usual folder under `data.dir`"),
      KEY(data.cache, of_type(KeyType::path), "the prepared HDF5 dataset; empty: `<run_dir>/dataset.h5`"),
      KEY(data.val_fraction, fraction(), "share of a single-file source held out for validation"),
      KEY(data.seq_len, integer(1), "tokens per training row"),
      KEY(data.packing, choice({"concat", "packed", "padded"}),
          "concat: one token stream; packed: documents packed into rows, attention kept inside each; "
          "padded: one document per row"),
      KEY(data.mlm_probability, open_fraction(), "distilbert: the share of tokens selected for masked-LM prediction"),

      KEY(optim.batch_size, integer(1), "rows per micro-batch"),
      KEY(optim.grad_accum, integer(1), "micro-batches per optimizer step"),
      KEY(optim.steps, integer(0), "optimizer steps; 0: derived from `optim.epochs`"),
      KEY(optim.epochs, number_from(0), "passes over the training set, used when `optim.steps` is 0"),
      KEY(optim.lr, number_above(0), "peak learning rate"),
      KEY(optim.min_lr, number_from(0), "learning rate at the end of the decay, at most `optim.lr`"),
      KEY(optim.schedule, choice({"cosine", "linear", "constant"}), "decay after the warmup"),
      KEY(optim.warmup_steps, integer(0), "steps of linear warmup from 0, at most `optim.steps`"),
      KEY(optim.grad_clip, number_from(0), "clip the global gradient norm to this; 0: no clipping"),
      KEY(optim.weight_decay, number_from(0), "AdamW decoupled weight decay (matrices only)"),
      KEY(optim.beta1, fraction(), "AdamW first-moment decay"),
      KEY(optim.beta2, fraction(), "AdamW second-moment decay"),
      KEY(optim.eps, number_above(0), "AdamW denominator epsilon"),

      KEY(checkpoint.dir, of_type(KeyType::path), "where checkpoints go; empty: `<run_dir>/checkpoints`"),
      KEY(checkpoint.every, integer(0), "steps between checkpoints; 0: only at the end"),
      KEY(checkpoint.keep, integer(1), "how many of the newest checkpoints are kept"),

      KEY(logging.every, integer(1), "steps between progress lines and metrics rows"),
      KEY(logging.val_every, integer(0), "steps between validation passes; 0: only at the end"),
      KEY(logging.val_batches, integer(1), "batches per validation pass"),
      KEY(logging.sample_every, integer(0), "steps between text samples; 0: never"),
      KEY(logging.sample_prompt, of_type(KeyType::string), "the text a sample continues"),
      KEY(logging.sample_tokens, integer(1), "tokens per sample"),
      KEY(logging.top_k, integer(0), "sample from the k likeliest tokens; 0: from all"),
      KEY(logging.temperature, number_above(0), "sampling temperature"),
  };
  return keys;
}

#undef KEY

// ---- finding keys --------------------------------------------------------------------------

const KeySpec* find_key(const std::string& path) {
  for (const KeySpec& spec : schema())
    if (spec.key.path == path) return &spec;
  return nullptr;
}

// The first key under a section ("optim" -> "optim.batch_size"), or "" for a path that is no
// section.
std::string first_key_under(const std::string& section) {
  for (const KeySpec& spec : schema())
    if (spec.key.path.rfind(section + ".", 0) == 0) return spec.key.path;
  return "";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string last_part(const std::string& path) { return path.substr(path.rfind('.') + 1); }

// " (did you mean optim.lr?)" for the closest candidate, compared whole and by last part (so a
// bare "lr" finds optim.lr); "" when nothing is close.
std::string did_you_mean(const std::string& given, const std::vector<std::string>& candidates) {
  const std::string* best = nullptr;
  size_t best_distance = std::max<size_t>(2, given.size() / 2) + 1;
  for (const std::string& candidate : candidates) {
    const size_t distance =
        std::min(edit_distance(given, candidate), edit_distance(last_part(given), last_part(candidate)) + 1);
    if (distance < best_distance) best = &candidate, best_distance = distance;
  }
  return best ? str(" (did you mean ", *best, "?)") : "";
}

// The keys (or, for a mapping, the sections) that an unknown key could have meant.
std::vector<std::string> candidates_for(bool section) {
  std::vector<std::string> paths;
  for (const KeySpec& spec : schema()) {
    const std::string& p = spec.key.path;
    if (!section) paths.push_back(p);
    for (size_t dot = p.find('.'); section && dot != std::string::npos; dot = p.find('.', dot + 1))
      if (std::find(paths.begin(), paths.end(), p.substr(0, dot)) == paths.end()) paths.push_back(p.substr(0, dot));
  }
  return paths;
}

[[noreturn]] void unknown_key(const std::string& where, const std::string& path, bool section) {
  throw Error(str(where, ": unknown key ", path, did_you_mean(path, candidates_for(section))));
}

// ---- reading values --------------------------------------------------------------------------

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return str("'", node.Scalar(), "'");
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "nothing";
}

bool in_range(const RecipeKey& key, double v) {
  const bool above_min = key.min_exclusive ? v > key.min : v >= key.min;
  const bool below_max = key.max_exclusive ? v < key.max : v <= key.max;
  return above_min && below_max;
}

// "cuda:N" matches "cuda:" followed by digits; every other choice matches itself.
bool matches_choice(const std::string& choice, const std::string& value) {
  if (choice.size() < 2 || choice.compare(choice.size() - 2, 2, ":N") != 0) return value == choice;
  const std::string prefix = choice.substr(0, choice.size() - 1);
  return value.size() > prefix.size() && value.compare(0, prefix.size(), prefix) == 0 &&
         std::all_of(value.begin() + prefix.size(), value.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
}

template <class T>
bool parse_number(const std::string& text, T* out) {
  const auto result = std::from_chars(text.data(), text.data() + text.size(), *out);
  return result.ec == std::errc() && result.ptr == text.data() + text.size();
}

// The value of `node` as a T, or nothing when it does not fit the key's form.
template <class T>
std::optional<T> read_value(const RecipeKey& key, const YAML::Node& node) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (!node.IsScalar() && !node.IsNull()) return std::nullopt;  // a bare `key:` (null) is ""
    const std::string text = node.IsScalar() ? node.Scalar() : "";
    if (key.non_empty && text.empty()) return std::nullopt;
    const bool listed = std::any_of(key.choices.begin(), key.choices.end(),
                                    [&](const std::string& choice) { return matches_choice(choice, text); });
    if (key.type == KeyType::choice && !listed) return std::nullopt;
    return text;
  } else {
    if (!node.IsScalar()) return std::nullopt;
    const std::string& text = node.Scalar();
    if constexpr (std::is_same_v<T, bool>) {
      if (text != "true" && text != "false") return std::nullopt;
      return text == "true";
    } else {
      using Parsed = std::conditional_t<std::is_same_v<T, double>, double, int64_t>;
      Parsed value;
      if (!parse_number(text, &value) || !std::isfinite(static_cast<double>(value)) ||
          !in_range(key, static_cast<double>(value)))
        return std::nullopt;
      return static_cast<T>(value);
    }
  }
}

void set_field(const KeySpec& spec, Recipe& recipe, const YAML::Node& node, const std::string& where) {
  std::visit(
      [&](auto* field) {
        using T = std::remove_pointer_t<decltype(field)>;
        const std::optional<T> value = read_value<T>(spec.key, node);
        if (!value) {
          const bool near_choice = spec.key.type == KeyType::choice && node.IsScalar();
          throw Error(str(where, ": ", spec.key.path, ": expected ", spec.key.expected(), ", got ", describe(node),
                          near_choice ? did_you_mean(node.Scalar(), spec.key.choices) : ""));
        }
        *field = *value;
      },
      spec.field(recipe));
}

// ---- reading a recipe ------------------------------------------------------------------------

// A recipe being read, with where each key was set: checks across keys point at the latest of
// the keys involved.
struct Reading {
  Recipe recipe;
  struct Origin {
    std::string where;
    int order;
  };
  std::map<std::string, Origin> origins;
  int sets = 0;

  void set(const KeySpec& spec, const YAML::Node& node, const std::string& where) {
    set_field(spec, recipe, node, where);
    origins[spec.key.path] = {where, sets++};
  }
};

std::string at_line(const std::string& origin, const YAML::Mark& mark) {
  return mark.is_null() ? origin : str(origin, ":", mark.line + 1);
}

void read_mapping(const YAML::Node& mapping, const std::string& prefix, const std::string& origin, Reading& reading) {
  std::map<std::string, int> seen;  // key -> line, to refuse duplicates (which yaml-cpp keeps)
  for (const auto& entry : mapping) {
    const std::string where = at_line(origin, entry.first.Mark());
    if (!entry.first.IsScalar())
      throw Error(str(where, ": expected a key name",
                      prefix.empty() ? "" : " under " + prefix.substr(0, prefix.size() - 1), ", got ",
                      describe(entry.first)));
    const std::string path = prefix + entry.first.Scalar();
    const auto [first, inserted] = seen.emplace(path, entry.first.Mark().line + 1);
    if (!inserted) throw Error(str(where, ": ", path, ": duplicate key (first given at line ", first->second, ")"));

    if (const KeySpec* spec = find_key(path)) {
      reading.set(*spec, entry.second, where);
    } else if (!first_key_under(path).empty()) {
      if (!entry.second.IsMap())
        throw Error(str(where, ": ", path, ": expected a mapping of ", path, ".* keys, got ", describe(entry.second)));
      read_mapping(entry.second, path + ".", origin, reading);
    } else {
      unknown_key(where, path, entry.second.IsMap());
    }
  }
}

YAML::Node load_document(const std::string& yaml, const std::string& origin) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(yaml);
  } catch (const YAML::ParserException& e) {
    throw Error(str(at_line(origin, e.mark), ": malformed YAML: ", e.msg, " (column ", e.mark.column + 1, ")"));
  }
  if (documents.empty()) return YAML::Node();  // empty or comments only: every default
  if (documents.size() > 1)
    throw Error(str(at_line(origin, documents[1].Mark()), ": expected one YAML document, got ", documents.size()));
  return documents[0];
}

struct Assignment {
  const KeySpec* spec;
  YAML::Node value;
};

// "key.path=value" split and its key found; errors begin with `where`.
Assignment parse_assignment(const std::string& assignment, const std::string& where) {
  const size_t equals = assignment.find('=');
  if (equals == std::string::npos) throw Error(str(where, ": expected key.path=value, e.g. optim.lr=1e-4"));
  const std::string path = assignment.substr(0, equals);
  const KeySpec* spec = find_key(path);
  if (!spec && !first_key_under(path).empty())
    throw Error(str(where, ": ", path, " is a section: set one of its keys, e.g. ", first_key_under(path)));
  if (!spec) unknown_key(where, path, false);
  try {
    return {spec, YAML::Load(assignment.substr(equals + 1))};
  } catch (const YAML::ParserException& e) {
    throw Error(str(where, ": ", path, ": malformed value: ", e.msg));
  }
}

void apply_override(const std::string& assignment, Reading& reading) {
  const std::string where = "--set " + assignment;
  const Assignment a = parse_assignment(assignment, where);
  reading.set(*a.spec, a.value, where);
}

// ---- checks across keys --------------------------------------------------------------------

// Throws "<where>: <key>: <message>" at the most recently set of `keys` (the file itself when
// none was set: the defaults disagree with each other only through the keys a recipe sets).
void require(bool ok, const Reading& reading, std::initializer_list<const char*> keys, const std::string& message) {
  if (ok) return;
  const char* culprit = *keys.begin();
  std::string where = reading.recipe.source_path;
  int latest = -1;
  for (const char* key : keys) {
    const auto origin = reading.origins.find(key);
    if (origin != reading.origins.end() && origin->second.order > latest)
      culprit = key, where = origin->second.where, latest = origin->second.order;
  }
  throw Error(str(where, ": ", culprit, ": ", message));
}

// What DistilBERT's masked LM does not fit: another tokenizer, one token stream (its attention
// needs each document's segment), rotary positions, recomputed GELU, samples, the GPT-2 sizes.
void check_distilbert(const Reading& reading) {
  const Recipe& r = reading.recipe;
  require(r.model.size == "tiny" || r.model.size == "distilbert-base", reading, {"model.size", "model.arch"},
          str("model.arch: distilbert takes the sizes tiny and distilbert-base, got ", r.model.size));
  require(r.data.tokenizer == "bert", reading, {"data.tokenizer", "model.arch"},
          "model.arch: distilbert needs the bert (WordPiece) tokenizer");
  require(r.data.packing != "concat", reading, {"data.packing", "model.arch"},
          "model.arch: distilbert needs packed or padded rows (concat has no document boundaries for its "
          "bidirectional attention)");
  require(r.model.positions == "learned", reading, {"model.positions", "model.arch"},
          "model.arch: distilbert has learned positions only");
  require(!r.model.recompute_gelu, reading, {"model.recompute_gelu", "model.arch"},
          "model.arch: distilbert does not recompute GELU");
  require(r.logging.sample_every == 0, reading, {"logging.sample_every", "model.arch"},
          "model.arch: distilbert does not sample text; set logging.sample_every: 0");
}

void check_model(const Reading& reading) {
  const ModelRecipe& m = reading.recipe.model;
  if (m.arch == "distilbert") check_distilbert(reading);
  require(m.arch == "distilbert" || m.size != "distilbert-base", reading, {"model.size", "model.arch"},
          "distilbert-base is a size of model.arch: distilbert");
  if (!m.init_from.empty()) {  // the checkpoint's config.json fixes the shape
    require(m.n_layer == 0, reading, {"model.n_layer", "model.init_from"}, "must stay 0 with model.init_from set");
    require(m.n_head == 0, reading, {"model.n_head", "model.init_from"}, "must stay 0 with model.init_from set");
    require(m.n_embd == 0, reading, {"model.n_embd", "model.init_from"}, "must stay 0 with model.init_from set");
    require(m.positions == "learned", reading, {"model.positions", "model.init_from"},
            "a Hugging Face checkpoint has learned positions");
    return;
  }
  int64_t n_head = 0, n_embd = 0;
  if (m.arch == "distilbert") {
    const models::DistilBertConfig sized = models::distilbert_config(m.size);
    n_head = m.n_head > 0 ? m.n_head : sized.n_heads;
    n_embd = m.n_embd > 0 ? m.n_embd : sized.dim;
  } else {
    const models::Gpt2Config sized = models::gpt2_config(m.size);
    n_head = m.n_head > 0 ? m.n_head : sized.n_head;
    n_embd = m.n_embd > 0 ? m.n_embd : sized.n_embd;
  }
  require(n_embd % n_head == 0, reading, {"model.n_embd", "model.n_head", "model.size"},
          str("model.n_embd (", n_embd, ") must be a multiple of model.n_head (", n_head, ")"));
  require(m.positions != "rotary" || (n_embd / n_head) % 2 == 0, reading,
          {"model.positions", "model.n_embd", "model.n_head", "model.size"},
          str("rotary positions need an even head width, got model.n_embd / model.n_head = ", n_embd / n_head));
  const std::string& kernel = reading.recipe.attention;
  require(kernel == "math" || kernel == "auto" || flash_attention_takes_head_dim(n_embd / n_head), reading,
          {"attention", "model.n_embd", "model.n_head", "model.size"},
          str("the ", reading.recipe.attention,
              " attention kernel needs a head size of 64 or 128, got model.n_embd / model.n_head = ", n_embd, " / ",
              n_head, " = ", n_embd / n_head, " (or use attention: math)"));
}

void check_across_keys(const Reading& reading) {
  const Recipe& r = reading.recipe;
  check_model(reading);
  require(r.model.block_size == 0 || r.data.seq_len <= r.model.block_size, reading,
          {"data.seq_len", "model.block_size"},
          str("data.seq_len (", r.data.seq_len, ") must be at most model.block_size (", r.model.block_size, ")"));
  require(r.optim.steps > 0 || r.optim.epochs > 0, reading, {"optim.steps", "optim.epochs"},
          "one of optim.steps and optim.epochs must be > 0");
  require(r.optim.steps == 0 || r.optim.epochs == 0, reading, {"optim.epochs", "optim.steps"},
          "optim.steps and optim.epochs are both > 0: set optim.steps to 0 to train by epochs");
  require(r.optim.steps == 0 || r.optim.warmup_steps <= r.optim.steps, reading, {"optim.warmup_steps", "optim.steps"},
          str("optim.warmup_steps (", r.optim.warmup_steps, ") must be at most optim.steps (", r.optim.steps, ")"));
  require(r.optim.min_lr <= r.optim.lr, reading, {"optim.min_lr", "optim.lr"},
          str("optim.min_lr (", format_number(r.optim.min_lr), ") must be at most optim.lr (",
              format_number(r.optim.lr), ")"));
  require(r.logging.sample_every == 0 || !r.logging.sample_prompt.empty(), reading,
          {"logging.sample_prompt", "logging.sample_every"}, "samples need a non-empty prompt");
  require(r.attention != "cudnn" || r.data.packing == "concat", reading, {"attention", "data.packing"},
          str("the cudnn kernel takes no document boundaries, and data.packing: ", r.data.packing,
              " gives its rows some (use attention: flash or math, or data.packing: concat)"));
}

}  // namespace

// ---- the public side -------------------------------------------------------------------------

std::string RecipeKey::expected() const {
  const bool bounded_below = min > -std::numeric_limits<double>::infinity();
  const bool bounded_above = max < std::numeric_limits<double>::infinity();
  std::string range;
  if (bounded_below && bounded_above)
    range =
        str(" in ", min_exclusive ? "(" : "[", format_number(min), ", ", format_number(max), max_exclusive ? ")" : "]");
  else if (bounded_below)
    range = str(min_exclusive ? " > " : " >= ", format_number(min));
  else if (bounded_above)
    range = str(max_exclusive ? " < " : " <= ", format_number(max));
  const char* maybe_non_empty = non_empty ? "non-empty " : "";
  switch (type) {
    case KeyType::integer:
      return "an integer" + range;
    case KeyType::number:
      return "a number" + range;
    case KeyType::boolean:
      return "true or false";
    case KeyType::string:
      return str("a ", maybe_non_empty, "string");
    case KeyType::path:
      return str("a ", maybe_non_empty, "path");
    case KeyType::choice: {
      std::string list;
      for (const std::string& c : choices) list += (list.empty() ? "" : ", ") + c;
      return "one of " + list;
    }
  }
  return "";
}

std::vector<RecipeKey> recipe_keys() {
  std::vector<RecipeKey> keys;
  for (const KeySpec& spec : schema()) keys.push_back(spec.key);
  return keys;
}

std::string recipe_keys_markdown() {
  static const char* type_names[] = {"integer", "number", "boolean", "string", "choice", "path"};
  std::ostringstream out;
  out << "| key | type | default | accepts | what it sets |\n| --- | --- | --- | --- | --- |\n";
  for (const RecipeKey& k : recipe_keys())
    out << "| `" << k.path << "` | " << type_names[static_cast<int>(k.type)] << " | `" << k.default_value << "` | "
        << k.expected() << " | " << k.help << " |\n";
  return out.str();
}

Recipe parse_recipe(const std::string& yaml, const std::string& origin, const std::vector<std::string>& overrides) {
  Reading reading;
  reading.recipe.source_path = origin;
  const YAML::Node root = load_document(yaml, origin);
  if (root.IsMap())
    read_mapping(root, "", origin, reading);
  else if (!root.IsNull())
    throw Error(str(at_line(origin, root.Mark()),
                    ": expected a mapping of recipe keys (key: value) at the top level, got ", describe(root)));
  for (const std::string& assignment : overrides) apply_override(assignment, reading);
  check_across_keys(reading);
  reading.recipe.text = recipe_to_yaml(reading.recipe);
  return reading.recipe;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code error;
  FT_CHECK(std::filesystem::is_regular_file(path, error), path,
           ": cannot read the recipe: ", std::filesystem::exists(path, error) ? "not a regular file" : "no such file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  FT_CHECK(in, path, ": cannot read the recipe");
  return parse_recipe(text.str(), path, overrides);
}

std::string string_assignment(const std::string& key, const std::string& value) {
  return key + "=" + format_string(value);
}

void check_assignment(const std::string& assignment, const std::string& where) {
  const Assignment a = parse_assignment(assignment, where);
  Recipe scratch;
  set_field(*a.spec, scratch, a.value, where);
}

std::string recipe_to_yaml(const Recipe& recipe) {
  Recipe fields = recipe;  // a KeySpec reaches fields through a non-const Recipe
  std::ostringstream out;
  std::vector<std::string> open_sections;
  for (const KeySpec& spec : schema()) {
    std::vector<std::string> parts;
    std::istringstream path(spec.key.path);
    for (std::string part; std::getline(path, part, '.');) parts.push_back(part);
    const std::vector<std::string> sections(parts.begin(), parts.end() - 1);
    size_t shared = 0;
    while (shared < sections.size() && shared < open_sections.size() && sections[shared] == open_sections[shared])
      ++shared;
    for (size_t depth = shared; depth < sections.size(); ++depth)
      out << std::string(2 * depth, ' ') << sections[depth] << ":\n";
    open_sections = sections;
    out << std::string(2 * sections.size(), ' ') << parts.back() << ": " << format_field(spec.field(fields)) << "\n";
  }
  return out.str();
}

}  // namespace ft::train
