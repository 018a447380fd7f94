#include "models/distilbert/distilbert_hf.h"

#include "models/common/hf_files.h"

namespace ft::models {

namespace {

using hf::json;

const std::string kPrefix = "distilbert.";
const char* const kModel = "flashtrain's DistilBERT";
const char* const kMaskedLm = "DistilBertForMaskedLM";
const char* const kClassification = "DistilBertForSequenceClassification";
const double kLayerNormEps = 1e-12;  // transformers' DistilBERT fixes it
const std::string kTiedCopy = "vocab_projector.weight";
const std::string kWordEmbeddings = "embeddings.word_embeddings.weight";

// The base model's parameters; the heads' names have no prefix in transformers' files.
bool in_base_model(const std::string& name) {
  return name.rfind("embeddings.", 0) == 0 || name.rfind("transformer.", 0) == 0;
}

double rate(const hf::ConfigFile& config, const char* key, double fallback) {
  const json v = config.get(key, fallback);
  FT_CHECK(v.is_number() && v.get<double>() >= 0 && v.get<double>() < 1, config.path(), ": '", key,
           "' must be a rate in [0, 1), got ", v.dump());
  return v.get<double>();
}

// 0 for the masked-LM head, else the classifier's label count.
int64_t num_labels(const hf::ConfigFile& config) {
  const json architectures = config.get("architectures", nullptr);
  const bool known = architectures == json::array({kMaskedLm}) || architectures == json::array({kClassification});
  FT_CHECK(known, config.path(), ": 'architectures' is ", architectures.dump(), ", but ", kModel, " supports only [\"",
           kMaskedLm, "\"] or [\"", kClassification, "\"]");
  if (architectures[0] == kMaskedLm) return 0;
  const json id2label = config.get("id2label", nullptr);
  if (id2label.is_object()) {
    FT_CHECK(!id2label.empty(), config.path(), ": 'id2label' is empty; a classifier needs at least one label");
    return static_cast<int64_t>(id2label.size());
  }
  return config.positive_int("num_labels", 2);  // transformers' default label count
}

json id2label_json(int64_t num_labels) {
  json labels = json::object();
  for (int64_t i = 0; i < num_labels; ++i) labels[std::to_string(i)] = "LABEL_" + std::to_string(i);
  return labels;
}

json label2id_json(int64_t num_labels) {
  json ids = json::object();
  for (int64_t i = 0; i < num_labels; ++i) ids["LABEL_" + std::to_string(i)] = i;
  return ids;
}

// What DistilBertConfig needs to rebuild our model. Our attention has no dropout.
json hf_config_json(const DistilBertConfig& c, DType dtype) {
  json config = {{"activation", "gelu"},
                 {"architectures", json::array({c.num_labels == 0 ? kMaskedLm : kClassification})},
                 {"attention_dropout", 0.0},
                 {"dim", c.dim},
                 {"dropout", c.dropout},
                 {"hidden_dim", c.hidden_dim},
                 {"max_position_embeddings", c.max_positions},
                 {"model_type", "distilbert"},
                 {"n_heads", c.n_heads},
                 {"n_layers", c.n_layers},
                 {"pad_token_id", c.pad_token_id},
                 {"seq_classif_dropout", c.classifier_dropout},
                 {"sinusoidal_pos_embds", false},
                 {"tie_weights_", true},
                 {"torch_dtype", hf::torch_dtype_name(dtype)},
                 {"vocab_size", c.vocab_size}};
  if (c.num_labels > 0) {
    config["id2label"] = id2label_json(c.num_labels);
    config["label2id"] = label2id_json(c.num_labels);
  }
  return config;
}

std::string model_description(const DistilBertConfig& c) {
  return str("the DistilBERT of config.json (n_layers ", c.n_layers, ", dim ", c.dim, ", hidden_dim ", c.hidden_dim,
             ", vocab_size ", c.vocab_size, ", max_position_embeddings ", c.max_positions,
             c.num_labels == 0 ? std::string(", masked-LM head)") : str(", ", c.num_labels, " labels)"));
}

void check_weights(const DistilBert& model, const hf::WeightFiles& weights, const std::string& dir) {
  const bool masked_lm = model.config().num_labels == 0;
  std::vector<hf::ExpectedTensor> expected;
  for (const NamedParameter& p : model.parameters()) expected.push_back({p.name, p.tensor.shape()});
  // position_ids is a buffer older transformers saved; the tied copy is checked below.
  auto ignored = [&](const std::string& name) {
    return name == "embeddings.position_ids" || (masked_lm && name == kTiedCopy);
  };
  hf::check_weights_match(expected, weights, ignored, dir, model_description(model.config()), kPrefix);
  if (masked_lm) hf::check_tied_copy(weights, kTiedCopy, kWordEmbeddings, dir, kModel);
}

}  // namespace

DistilBertConfig read_hf_distilbert_config(const std::string& dir) {
  const hf::ConfigFile config(dir, kModel);
  config.require("model_type", "distilbert", "distilbert", "this reader knows DistilBERT only");
  DistilBertConfig c;
  c.num_labels = num_labels(config);
  c.vocab_size = config.positive_int("vocab_size", 30522);
  c.max_positions = config.positive_int("max_position_embeddings", 512);
  c.dim = config.positive_int("dim", 768);
  c.n_layers = config.positive_int("n_layers", 6);
  c.n_heads = config.positive_int("n_heads", 12);
  c.hidden_dim = config.positive_int("hidden_dim", 3072);
  FT_CHECK(c.dim % c.n_heads == 0, config.path(), ": dim ", c.dim, " is not divisible by n_heads ", c.n_heads);
  c.dropout = rate(config, "dropout", 0.1);
  c.classifier_dropout = rate(config, "seq_classif_dropout", 0.2);
  const json pad = config.get("pad_token_id", 0);
  FT_CHECK(pad.is_number_integer() && pad.get<int64_t>() >= 0 && pad.get<int64_t>() < c.vocab_size, config.path(),
           ": 'pad_token_id' must be a token id in [0, vocab_size ", c.vocab_size, "), got ", pad.dump());
  c.pad_token_id = pad.get<int32_t>();
  c.layer_norm_eps = kLayerNormEps;
  config.require("activation", "gelu", "gelu", "the exact erf GELU");
  config.require("sinusoidal_pos_embds", false, false, "learned position embeddings");
  if (c.num_labels == 0) config.require("tie_word_embeddings", true, true, "vocab_projector is the word embeddings");
  return c;
}

DistilBert import_hf_distilbert(const std::string& dir, DType dtype, Device device) {
  return import_hf_distilbert(dir, read_hf_distilbert_config(dir), dtype, device);
}

DistilBert import_hf_distilbert(const std::string& dir, const DistilBertConfig& config, DType dtype, Device device) {
  const hf::WeightFiles weights = hf::open_weight_files(dir, kPrefix);
  Generator unused(0);  // the initial values are all overwritten below
  DistilBert model(config, unused, dtype, device);
  check_weights(model, weights, dir);
  for (const NamedParameter& p : model.parameters()) p.tensor.copy_(weights.tensors.at(p.name).read(dtype, device));
  return model;
}

void export_hf_distilbert(const DistilBert& model, const std::string& dir) {
  const DistilBertConfig& c = model.config();
  FT_CHECK(c.layer_norm_eps == kLayerNormEps, "export_hf_distilbert: ", dir, ": layer_norm_eps ", c.layer_norm_eps,
           " has no Hugging Face DistilBERT equivalent (transformers fixes it at 1e-12)");
  std::map<std::string, Tensor> tensors;
  for (const NamedParameter& p : model.parameters())
    tensors[in_base_model(p.name) ? kPrefix + p.name : p.name] = p.tensor.detach();
  if (c.num_labels == 0) tensors[kTiedCopy] = tensors.at(kPrefix + kWordEmbeddings);
  hf::write_model_dir(dir, tensors, hf_config_json(c, model.dtype()));
}

}  // namespace ft::models
