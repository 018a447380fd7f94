#include "models/distilbert/distilbert.h"

#include "models/common/parameter_init.h"

namespace ft::models {

namespace {

constexpr double kInitStd = 0.02;  // transformers' initializer_range

// [B, T, H * D] -> [B, H, T, D] and back.
Tensor split_heads(const Tensor& x, int64_t heads) {
  return transpose(reshape(x, {x.size(0), x.size(1), heads, x.size(2) / heads}), 1, 2);
}
Tensor merge_heads(const Tensor& x) {
  return reshape(transpose(x, 1, 2), {x.size(0), x.size(2), x.size(1) * x.size(3)});
}

}  // namespace

DistilBertConfig distilbert_config(const std::string& name) {
  if (name == "distilbert-base") return DistilBertConfig{};
  if (name == "tiny") {
    DistilBertConfig c;
    c.max_positions = 128;
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.hidden_dim = 256;
    return c;
  }
  throw Error(str("unknown DistilBERT size '", name, "' (expected distilbert-base or tiny)"));
}

DistilBert::DistilBert(const DistilBertConfig& config, Generator& init, DType dtype, Device device) : config_(config) {
  FT_CHECK(config.vocab_size > 0 && config.max_positions > 0 && config.dim > 0 && config.n_layers > 0 &&
               config.n_heads > 0 && config.hidden_dim > 0 && config.num_labels >= 0,
           "distilbert: every size must be positive (num_labels >= 0)");
  FT_CHECK(config.dim % config.n_heads == 0, "distilbert: dim ", config.dim, " is not divisible by n_heads ",
           config.n_heads);
  FT_CHECK(config.dropout >= 0 && config.dropout < 1 && config.classifier_dropout >= 0 && config.classifier_dropout < 1,
           "distilbert: dropout rates must be in [0, 1), got ", config.dropout, " and ", config.classifier_dropout);
  FT_CHECK(config.pad_token_id >= 0 && config.pad_token_id < config.vocab_size, "distilbert: pad_token_id ",
           config.pad_token_id, " is outside the vocabulary [0, ", config.vocab_size, ")");
  const int64_t d = config.dim;
  ParameterInit make(parameters_, init, dtype, device);
  auto dense = [&](const std::string& name, int64_t out, int64_t in, Tensor& weight, Tensor& bias) {
    weight = make.normal(name + ".weight", {out, in}, kInitStd, true);
    bias = make.zeros(name + ".bias", out);
  };
  auto norm = [&](const std::string& name, Tensor& weight, Tensor& bias) {
    weight = make.ones(name + ".weight", d);
    bias = make.zeros(name + ".bias", d);
  };
  word_embeddings_ = make.normal("embeddings.word_embeddings.weight", {config.vocab_size, d}, kInitStd, false);
  position_embeddings_ =
      make.normal("embeddings.position_embeddings.weight", {config.max_positions, d}, kInitStd, false);
  norm("embeddings.LayerNorm", embeddings_ln_weight_, embeddings_ln_bias_);
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const std::string p = "transformer.layer." + std::to_string(l) + ".";
    Block b;
    dense(p + "attention.q_lin", d, d, b.q_weight, b.q_bias);
    dense(p + "attention.k_lin", d, d, b.k_weight, b.k_bias);
    dense(p + "attention.v_lin", d, d, b.v_weight, b.v_bias);
    dense(p + "attention.out_lin", d, d, b.out_weight, b.out_bias);
    norm(p + "sa_layer_norm", b.sa_ln_weight, b.sa_ln_bias);
    dense(p + "ffn.lin1", config.hidden_dim, d, b.lin1_weight, b.lin1_bias);
    dense(p + "ffn.lin2", d, config.hidden_dim, b.lin2_weight, b.lin2_bias);
    norm(p + "output_layer_norm", b.output_ln_weight, b.output_ln_bias);
    blocks_.push_back(b);
  }
  if (config.num_labels == 0) {
    dense("vocab_transform", d, d, vocab_transform_weight_, vocab_transform_bias_);
    norm("vocab_layer_norm", vocab_ln_weight_, vocab_ln_bias_);
    vocab_projector_bias_ = make.zeros("vocab_projector.bias", config.vocab_size);
  } else {
    dense("pre_classifier", d, d, pre_classifier_weight_, pre_classifier_bias_);
    dense("classifier", config.num_labels, d, classifier_weight_, classifier_bias_);
  }
  // transformers zeroes the padding token's embedding at initialisation.
  slice(word_embeddings_, 0, config.pad_token_id, config.pad_token_id + 1).copy_(Tensor::zeros({1, d}, dtype, device));
}

int64_t DistilBert::parameter_count() const {
  int64_t n = 0;
  for (const NamedParameter& p : parameters_) n += p.tensor.numel();
  return n;
}

Tensor DistilBert::maybe_dropout(const Tensor& x, double p, Generator* dropout_gen) const {
  return dropout_gen && p > 0 ? dropout(x, p, *dropout_gen) : x;
}

// out_lin(attention(q_lin(x), k_lin(x), v_lin(x))), bidirectional, within each segment.
Tensor DistilBert::attention_branch(const Block& b, const Tensor& x, const DistilBertBatch& batch) const {
  const int64_t h = config_.n_heads;
  AttentionOptions options;
  options.causal = false;
  options.segment_ids = batch.segment_ids;
  options.kernel = config_.attention;
  Tensor y = attention(split_heads(linear(x, b.q_weight, b.q_bias), h), split_heads(linear(x, b.k_weight, b.k_bias), h),
                       split_heads(linear(x, b.v_weight, b.v_bias), h), options);
  return linear(merge_heads(y), b.out_weight, b.out_bias);
}

// x = sa_layer_norm(x + attention(x)); x = output_layer_norm(x + lin2(gelu(lin1(x)))).
Tensor DistilBert::block_forward(const Block& b, const Tensor& x, const DistilBertBatch& batch,
                                 Generator* dropout_gen) const {
  const double eps = config_.layer_norm_eps;
  const Tensor a = add_layer_norm(x, attention_branch(b, x, batch), b.sa_ln_weight, b.sa_ln_bias, eps).normed;
  Tensor f = linear(gelu(linear(a, b.lin1_weight, b.lin1_bias), GeluForm::erf), b.lin2_weight, b.lin2_bias);
  f = maybe_dropout(f, config_.dropout, dropout_gen);
  return add_layer_norm(a, f, b.output_ln_weight, b.output_ln_bias, eps).normed;
}

Tensor DistilBert::hidden(const DistilBertBatch& batch, Generator* dropout_gen) const {
  const Tensor& ids = batch.ids;
  FT_CHECK(ids.defined() && ids.dim() == 2, "distilbert: ids must be [batch, time], got ",
           ids.defined() ? shape_str(ids.shape()) : "undefined");
  const int64_t t = ids.size(1);
  FT_CHECK(t <= config_.max_positions, "distilbert: sequence length ", t, " exceeds max_positions ",
           config_.max_positions);
  const Tensor positions = batch.positions.defined() ? embedding(batch.positions, position_embeddings_)
                                                     : slice(position_embeddings_, 0, 0, t);
  Tensor x = add(embedding(ids, word_embeddings_), positions);
  x = layer_norm(x, embeddings_ln_weight_, embeddings_ln_bias_, config_.layer_norm_eps);
  x = maybe_dropout(x, config_.dropout, dropout_gen);
  for (const Block& b : blocks_) x = block_forward(b, x, batch, dropout_gen);
  return x;
}

Tensor DistilBert::mlm_logits(const DistilBertBatch& batch, Generator* dropout_gen) const {
  FT_CHECK(config_.num_labels == 0, "distilbert: this model has a classification head (num_labels ", config_.num_labels,
           "), not the masked-LM head");
  Tensor x = gelu(linear(hidden(batch, dropout_gen), vocab_transform_weight_, vocab_transform_bias_), GeluForm::erf);
  x = layer_norm(x, vocab_ln_weight_, vocab_ln_bias_, config_.layer_norm_eps);
  return linear(x, word_embeddings_, vocab_projector_bias_);
}

Tensor DistilBert::mlm_loss(const DistilBertBatch& batch, const Tensor& labels, Generator* dropout_gen,
                            int ignore_index) const {
  FT_CHECK(labels.defined() && labels.shape() == batch.ids.shape(), "distilbert: labels must have the ids' shape ",
           shape_str(batch.ids.shape()), ", got ", labels.defined() ? shape_str(labels.shape()) : "undefined");
  const Tensor logits = mlm_logits(batch, dropout_gen);
  return cross_entropy(reshape(logits, {-1, config_.vocab_size}), reshape(labels, {-1}), ignore_index);
}

Tensor DistilBert::classify(const DistilBertBatch& batch, Generator* dropout_gen) const {
  FT_CHECK(config_.num_labels > 0, "distilbert: this model has the masked-LM head, not a classification head ",
           "(num_labels is 0)");
  const Tensor h = hidden(batch, dropout_gen);
  Tensor cls = reshape(slice(h, 1, 0, 1), {h.size(0), config_.dim});
  cls = relu(linear(cls, pre_classifier_weight_, pre_classifier_bias_));
  cls = maybe_dropout(cls, config_.classifier_dropout, dropout_gen);
  return linear(cls, classifier_weight_, classifier_bias_);
}

}  // namespace ft::models
