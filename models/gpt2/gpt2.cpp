#include "models/gpt2/gpt2.h"

#include <cmath>

#include "models/common/parameter_init.h"

namespace ft::models {

Gpt2Config gpt2_config(const std::string& name) {
  if (name == "gpt2-124m") return {50257, 1024, 12, 12, 768};
  if (name == "gpt2-350m") return {50257, 1024, 24, 16, 1024};
  if (name == "gpt2-774m") return {50257, 1024, 36, 20, 1280};
  if (name == "gpt2-1558m") return {50257, 1024, 48, 25, 1600};
  if (name == "tiny") return {50257, 256, 2, 4, 64};
  throw Error(str("unknown GPT-2 size '", name, "' (expected gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m or tiny)"));
}

Gpt2::Gpt2(const Gpt2Config& config, Generator& init, DType dtype, Device device) : config_(config) {
  FT_CHECK(
      config.n_layer > 0 && config.n_head > 0 && config.n_embd > 0 && config.vocab_size > 0 && config.block_size > 0,
      "gpt2: every size must be positive");
  FT_CHECK(config.n_embd % config.n_head == 0, "gpt2: n_embd ", config.n_embd, " is not divisible by n_head ",
           config.n_head);
  FT_CHECK(config.dropout >= 0 && config.dropout < 1, "gpt2: dropout must be in [0, 1), got ", config.dropout);
  FT_CHECK(!config.rotary || (config.n_embd / config.n_head) % 2 == 0,
           "gpt2: rotary positions need an even head "
           "dimension, got ",
           config.n_embd / config.n_head);
  const int64_t c = config.n_embd;
  const double residual_std = 0.02 / std::sqrt(2.0 * config.n_layer);
  ParameterInit make(parameters_, init, dtype, device);
  auto param = [&](const std::string& name, Shape shape, double std, bool decay) {
    return make.normal(name, shape, std, decay);
  };
  auto ones = [&](const std::string& name, int64_t n) { return make.ones(name, n); };
  wte_ = param("wte.weight", {config.vocab_size, c}, 0.02, false);
  if (!config.rotary) wpe_ = param("wpe.weight", {config.block_size, c}, 0.02, false);
  for (int64_t l = 0; l < config.n_layer; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    Block b;
    b.ln_1_weight = ones(p + "ln_1.weight", c);
    b.ln_1_bias = param(p + "ln_1.bias", {c}, 0, false);
    b.c_attn_weight = param(p + "attn.c_attn.weight", {3 * c, c}, 0.02, true);
    b.c_attn_bias = param(p + "attn.c_attn.bias", {3 * c}, 0, false);
    b.attn_proj_weight = param(p + "attn.c_proj.weight", {c, c}, residual_std, true);
    b.attn_proj_bias = param(p + "attn.c_proj.bias", {c}, 0, false);
    b.ln_2_weight = ones(p + "ln_2.weight", c);
    b.ln_2_bias = param(p + "ln_2.bias", {c}, 0, false);
    b.c_fc_weight = param(p + "mlp.c_fc.weight", {4 * c, c}, 0.02, true);
    b.c_fc_bias = param(p + "mlp.c_fc.bias", {4 * c}, 0, false);
    b.mlp_proj_weight = param(p + "mlp.c_proj.weight", {c, 4 * c}, residual_std, true);
    b.mlp_proj_bias = param(p + "mlp.c_proj.bias", {c}, 0, false);
    blocks_.push_back(b);
  }
  ln_f_weight_ = ones("ln_f.weight", c);
  ln_f_bias_ = param("ln_f.bias", {c}, 0, false);
}

int64_t Gpt2::parameter_count() const {
  int64_t n = 0;
  for (const NamedParameter& p : parameters_) n += p.tensor.numel();
  return n;
}

Tensor Gpt2::maybe_dropout(const Tensor& x, Generator* dropout_gen) const {
  return dropout_gen && config_.dropout > 0 ? dropout(x, config_.dropout, *dropout_gen) : x;
}

// ln_1(x): [B, T, C] -> proj(attention(split_heads(c_attn(ln_1(x))))), the attention branch.
// Without rotary positions q, k and v go to attention_packed_qkv as c_attn left them, which the
// fused kernels read in place (and whose gradient they write in one piece); rotary positions
// rotate q and k first, so they are split off as [B, H, T, D] tensors.
Tensor Gpt2::attention_branch(const Block& b, const Tensor& normed, const Gpt2Batch& batch,
                              Generator* dropout_gen) const {
  const int64_t n = normed.size(0), t = normed.size(1), c = config_.n_embd, h = config_.n_head;
  Tensor qkv = linear(normed, b.c_attn_weight, b.c_attn_bias);
  AttentionOptions options;
  options.segment_ids = batch.segment_ids;
  options.kernel = config_.attention;
  Tensor y;
  if (!config_.rotary) {
    y = attention_packed_qkv(qkv, h, options);
  } else {
    auto heads = [&](int64_t part) {  // [B, T, C] slice -> [B, H, T, D]
      return transpose(reshape(slice(qkv, 2, part * c, (part + 1) * c), {n, t, h, c / h}), 1, 2);
    };
    const Tensor q = rotary_embedding(heads(0), batch.positions, config_.rope_base);
    const Tensor k = rotary_embedding(heads(1), batch.positions, config_.rope_base);
    y = reshape(transpose(attention(q, k, heads(2), options), 1, 2), {n, t, c});
  }
  return maybe_dropout(linear(y, b.attn_proj_weight, b.attn_proj_bias), dropout_gen);
}

// Each block is x += attention_branch(ln_1(x)); x += mlp(ln_2(x)). Every residual add is fused
// with the layer norm that reads its result (ln_2, the next block's ln_1, or ln_f), so the
// loop carries both the residual stream x and its normalised form.
Tensor Gpt2::hidden(const Gpt2Batch& batch, Generator* dropout_gen) const {
  const Tensor& ids = batch.ids;
  FT_CHECK(ids.defined() && ids.dim() == 2, "gpt2: ids must be [batch, time], got ",
           ids.defined() ? shape_str(ids.shape()) : "undefined");
  const int64_t t = ids.size(1);
  FT_CHECK(t <= config_.block_size, "gpt2: sequence length ", t, " exceeds block_size ", config_.block_size);
  Tensor x = embedding(ids, wte_);
  if (!config_.rotary) x = add(x, batch.positions.defined() ? embedding(batch.positions, wpe_) : slice(wpe_, 0, 0, t));
  x = maybe_dropout(x, dropout_gen);
  Tensor normed = layer_norm(x, blocks_.front().ln_1_weight, blocks_.front().ln_1_bias);
  const MlpOptions mlp_options{config_.recompute_gelu};
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    ResidualNorm r = add_layer_norm(x, attention_branch(b, normed, batch, dropout_gen), b.ln_2_weight, b.ln_2_bias);
    Tensor m = maybe_dropout(mlp(r.normed, b.c_fc_weight, b.c_fc_bias, b.mlp_proj_weight, b.mlp_proj_bias, mlp_options),
                             dropout_gen);
    const bool last = l + 1 == blocks_.size();
    r = add_layer_norm(r.sum, m, last ? ln_f_weight_ : blocks_[l + 1].ln_1_weight,
                       last ? ln_f_bias_ : blocks_[l + 1].ln_1_bias);
    x = r.sum;
    normed = r.normed;
  }
  return normed;
}

Tensor Gpt2::forward(const Gpt2Batch& batch, Generator* dropout_gen) const {
  return linear(hidden(batch, dropout_gen), wte_, Tensor());
}

Tensor Gpt2::loss(const Gpt2Batch& batch, const Tensor& targets, Generator* dropout_gen, int ignore_index) const {
  FT_CHECK(targets.defined() && targets.shape() == batch.ids.shape(), "gpt2: targets must have the ids' shape ",
           shape_str(batch.ids.shape()), ", got ", targets.defined() ? shape_str(targets.shape()) : "undefined");
  Tensor h = hidden(batch, dropout_gen);
  return lm_head_cross_entropy(reshape(h, {-1, config_.n_embd}), wte_, reshape(targets, {-1}), ignore_index);
}

}  // namespace ft::models
