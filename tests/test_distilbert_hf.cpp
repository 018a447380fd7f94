// models/distilbert/distilbert_hf.h: small random DistilBERTs (masked-LM and classification)
// survive export and import bit for bit (tensors, loss, logits, config); the files have Hugging
// Face's names with vocab_projector.weight equal to the embeddings; the hub's layout imports;
// missing and misshapen tensors, an untied projector and unsupported config.json settings are
// errors naming the tensor or key and the file.
#include <doctest/doctest.h>

#include "framework/autograd.h"
#include "models/distilbert/distilbert_hf.h"
#include "tests/support/error_message.h"
#include "tests/support/hf_dir.h"
#include "tests/support/small_distilbert.h"

using namespace ft;
using models::DistilBert;
using models::DistilBertBatch;
using models::DistilBertConfig;
using nlohmann::json;
using testing::make_hf_dir;
using testing::read_all;
using testing::read_json;
using testing::write_json;

namespace {

// The tests' small model, with rates and a padding id that differ from the defaults so that the
// config round trip shows them.
DistilBertConfig small(int64_t num_labels) {
  DistilBertConfig c = testing::small_distilbert(num_labels);
  c.dropout = 0.05;
  c.classifier_dropout = 0.3;
  c.pad_token_id = 1;
  return c;
}

DistilBert random_model(int64_t num_labels, uint64_t seed) {
  return testing::random_distilbert(small(num_labels), seed, DType::f32);
}

const DistilBertBatch kBatch{Tensor::from_ints({2, 14, 15, 9, 26, 5, 29, 8}, {2, 4}), Tensor(), Tensor()};

double mlm_loss_of(const DistilBert& model) {
  NoGradGuard no_grad;
  return model.mlm_loss(kBatch, Tensor::from_ints({-100, 3, -100, 7, 1, -100, 0, 12}, {2, 4})).item();
}

std::vector<double> class_logits_of(const DistilBert& model) {
  NoGradGuard no_grad;
  return model.classify(kBatch).to_double_vector();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

void check_same_parameters(const DistilBert& a, const DistilBert& b) {
  REQUIRE(a.parameters().size() == b.parameters().size());
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    INFO("parameter ", a.parameters()[i].name);
    CHECK(b.parameters()[i].name == a.parameters()[i].name);
    CHECK(b.parameters()[i].tensor.requires_grad());
    CHECK(b.parameters()[i].tensor.to_double_vector() == a.parameters()[i].tensor.to_double_vector());
  }
}

void check_same_config(const DistilBertConfig& a, const DistilBertConfig& b) {
  CHECK(b.vocab_size == a.vocab_size);
  CHECK(b.max_positions == a.max_positions);
  CHECK(b.dim == a.dim);
  CHECK(b.n_layers == a.n_layers);
  CHECK(b.n_heads == a.n_heads);
  CHECK(b.hidden_dim == a.hidden_dim);
  CHECK(b.dropout == a.dropout);
  CHECK(b.classifier_dropout == a.classifier_dropout);
  CHECK(b.pad_token_id == a.pad_token_id);
  CHECK(b.layer_norm_eps == a.layer_norm_eps);
  CHECK(b.num_labels == a.num_labels);
}

}  // namespace

TEST_CASE("distilbert hf: a masked-LM model exports and imports bit for bit") {
  testing::TempDir tmp;
  const DistilBert model = random_model(0, 1);
  models::export_hf_distilbert(model, tmp.path() + "/mlm");
  const DistilBert back = models::import_hf_distilbert(tmp.path() + "/mlm");
  check_same_config(model.config(), back.config());
  check_same_parameters(model, back);
  CHECK(mlm_loss_of(back) == mlm_loss_of(model));

  const std::map<std::string, Tensor> file = read_all(tmp.path() + "/mlm");
  CHECK(file.size() == model.parameters().size() + 1);  // and the tied vocab_projector.weight
  for (const char* name :
       {"distilbert.embeddings.word_embeddings.weight", "distilbert.embeddings.LayerNorm.bias",
        "distilbert.transformer.layer.1.attention.q_lin.weight", "distilbert.transformer.layer.0.ffn.lin2.bias",
        "vocab_transform.weight", "vocab_layer_norm.bias", "vocab_projector.bias"})
    CHECK_MESSAGE(file.count(name) == 1, name);
  CHECK(file.at("vocab_projector.weight").to_double_vector() ==
        file.at("distilbert.embeddings.word_embeddings.weight").to_double_vector());
  CHECK(file.at("distilbert.transformer.layer.0.ffn.lin1.weight").shape() == Shape{16, 8});  // [out, in]
  CHECK(io::SafetensorsReader(tmp.path() + "/mlm/model.safetensors").metadata().at("format") == "pt");

  const json config = read_json(tmp.path() + "/mlm/config.json");
  CHECK(config.at("model_type") == "distilbert");
  CHECK(config.at("architectures") == json::array({"DistilBertForMaskedLM"}));
  CHECK(config.at("activation") == "gelu");
  CHECK(config.at("max_position_embeddings") == 12);
  CHECK(config.at("seq_classif_dropout") == 0.3);
  CHECK(config.at("torch_dtype") == "float32");
}

TEST_CASE("distilbert hf: a classification model exports and imports bit for bit") {
  testing::TempDir tmp;
  const DistilBert model = random_model(3, 2);
  models::export_hf_distilbert(model, tmp.path() + "/cls");
  const DistilBert back = models::import_hf_distilbert(tmp.path() + "/cls");
  check_same_config(model.config(), back.config());
  check_same_parameters(model, back);
  CHECK(class_logits_of(back) == class_logits_of(model));

  const std::map<std::string, Tensor> file = read_all(tmp.path() + "/cls");
  CHECK(file.size() == model.parameters().size());
  CHECK(file.at("classifier.weight").shape() == Shape{3, 8});
  CHECK(file.count("pre_classifier.bias") == 1);
  CHECK(file.count("vocab_projector.weight") == 0);
  const json config = read_json(tmp.path() + "/cls/config.json");
  CHECK(config.at("architectures") == json::array({"DistilBertForSequenceClassification"}));
  CHECK(config.at("id2label").size() == 3);
}

TEST_CASE("distilbert hf: the hub's layout imports: no prefix, no projector copy, a position_ids buffer") {
  testing::TempDir tmp;
  const DistilBert model = random_model(0, 3);
  models::export_hf_distilbert(model, tmp.path() + "/model");
  std::map<std::string, Tensor> hub;
  for (const auto& [name, t] : read_all(tmp.path() + "/model"))
    if (name != "vocab_projector.weight")
      hub[name.rfind("distilbert.", 0) == 0 ? name.substr(std::string("distilbert.").size()) : name] = t;
  hub["embeddings.position_ids"] = Tensor::zeros({1, 12});
  const std::string dir = make_hf_dir(tmp, "hub", read_json(tmp.path() + "/model/config.json"), hub);
  CHECK(mlm_loss_of(models::import_hf_distilbert(dir)) == mlm_loss_of(model));
}

TEST_CASE("distilbert hf: a missing or misshapen tensor and an untied projector are errors naming them") {
  testing::TempDir tmp;
  models::export_hf_distilbert(random_model(0, 4), tmp.path() + "/model");
  const json config = read_json(tmp.path() + "/model/config.json");
  const std::map<std::string, Tensor> good = read_all(tmp.path() + "/model");

  std::map<std::string, Tensor> tensors = good;
  tensors.erase("distilbert.transformer.layer.1.attention.k_lin.bias");
  const std::string missing = make_hf_dir(tmp, "missing", config, tensors);
  const std::string e1 = testing::error_message([&] { models::import_hf_distilbert(missing); });
  CHECK(contains(e1, missing + ": the weights do not match the DistilBERT of config.json (n_layers 2, dim 8"));
  CHECK(contains(e1, "missing: transformer.layer.1.attention.k_lin.bias (\"distilbert.\" prefix optional)"));

  tensors = good;
  tensors["vocab_transform.weight"] = Tensor::zeros({8, 9});
  const std::string misshapen = make_hf_dir(tmp, "misshapen", config, tensors);
  const std::string e2 = testing::error_message([&] { models::import_hf_distilbert(misshapen); });
  CHECK(contains(e2, misshapen + ": the weights do not match the DistilBERT of config.json"));
  CHECK(contains(e2, "wrong shape: vocab_transform.weight is [8, 9], expected [8, 8]"));

  tensors = good;
  tensors["vocab_projector.weight"] = Tensor::zeros({30, 8});
  const std::string untied = make_hf_dir(tmp, "untied", config, tensors);
  CHECK(testing::error_message([&] { models::import_hf_distilbert(untied); }) ==
        untied +
            ": vocab_projector.weight differs from distilbert.embeddings.word_embeddings.weight; flashtrain's "
            "DistilBERT ties them and cannot hold an untied head");

  // A masked-LM model's files read as a classifier: the head's tensors are missing and unexpected.
  json as_classifier = config;
  as_classifier["architectures"] = json::array({"DistilBertForSequenceClassification"});
  const std::string wrong_head = make_hf_dir(tmp, "wrong_head", as_classifier, good);
  const std::string e3 = testing::error_message([&] { models::import_hf_distilbert(wrong_head); });
  CHECK(contains(e3, "missing: pre_classifier.weight, pre_classifier.bias, classifier.weight, classifier.bias"));
  CHECK(contains(e3, "unexpected: vocab_layer_norm.bias, vocab_layer_norm.weight, vocab_projector.bias"));
}

TEST_CASE("distilbert hf: config.json defaults as transformers does and refuses what the model cannot be") {
  testing::TempDir tmp;
  const std::string dir = tmp.path() + "/config";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/config.json";

  write_json(path, {{"architectures", {"DistilBertForMaskedLM"}}});  // otherwise distilbert-base-uncased
  check_same_config(models::distilbert_config("distilbert-base"), models::read_hf_distilbert_config(dir));
  write_json(path, {{"architectures", {"DistilBertForSequenceClassification"}}});
  CHECK(models::read_hf_distilbert_config(dir).num_labels == 2);  // transformers' default
  write_json(path, {{"architectures", {"DistilBertForSequenceClassification"}}, {"num_labels", 5}});
  CHECK(models::read_hf_distilbert_config(dir).num_labels == 5);

  auto error_with = [&](const char* key, const json& value) {
    json config = {{"architectures", {"DistilBertForMaskedLM"}}};
    config[key] = value;
    write_json(path, config);
    return testing::error_message([&] { models::read_hf_distilbert_config(dir); });
  };
  CHECK(error_with("activation", "relu") ==
        path + ": 'activation' is \"relu\", but flashtrain's DistilBERT supports only \"gelu\" (the exact erf GELU)");
  CHECK(contains(error_with("sinusoidal_pos_embds", true), path + ": 'sinusoidal_pos_embds' is true"));
  CHECK(error_with("architectures", json::array({"DistilBertModel"})) ==
        path +
            ": 'architectures' is [\"DistilBertModel\"], but flashtrain's DistilBERT supports only "
            "[\"DistilBertForMaskedLM\"] or [\"DistilBertForSequenceClassification\"]");
  CHECK(contains(error_with("model_type", "bert"), path + ": 'model_type' is \"bert\""));
  CHECK(error_with("dim", 10) == path + ": dim 10 is not divisible by n_heads 12");
  CHECK(error_with("dropout", 1.5) == path + ": 'dropout' must be a rate in [0, 1), got 1.5");
  CHECK(contains(error_with("pad_token_id", -1), path + ": 'pad_token_id' must be a token id"));
  CHECK(contains(error_with("tie_word_embeddings", false), path + ": 'tie_word_embeddings' is false"));
}
