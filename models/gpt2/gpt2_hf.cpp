#include "models/gpt2/gpt2_hf.h"

#include <cctype>
#include <cstring>

#include "models/common/hf_files.h"

namespace ft::models {

namespace {

using hf::json;

const std::string kPrefix = "transformer.";
const char* const kModel = "flashtrain's GPT-2";
const double kLayerNormEps = 1e-5;  // what Gpt2's layer_norm calls use

// Hugging Face's Conv1D modules store their weights [in, out]; ours are [out, in].
bool is_conv1d_weight(const std::string& name) {
  for (const char* module : {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"}) {
    const size_t n = std::strlen(module);
    if (name.size() > n && name.compare(name.size() - n, n, module) == 0) return true;
  }
  return false;
}

// "h.N.attn.bias" and "h.N.attn.masked_bias": the causal mask buffers older transformers saved.
bool is_attention_buffer(const std::string& name) {
  if (name.rfind("h.", 0) != 0) return false;
  size_t i = 2;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) ++i;
  const std::string rest = name.substr(i);
  return i > 2 && (rest == ".attn.bias" || rest == ".attn.masked_bias");
}

Shape hf_shape(const NamedParameter& p) {
  Shape shape = p.tensor.shape();
  if (is_conv1d_weight(p.name)) std::swap(shape[0], shape[1]);
  return shape;
}

// What GPT2Config needs to rebuild our model. Our dropout is on the embeddings and residual
// branches only, hence attn_pdrop 0.
json hf_config_json(const Gpt2Config& c, DType dtype) {
  return {{"activation_function", "gelu_new"},
          {"architectures", json::array({"GPT2LMHeadModel"})},
          {"attn_pdrop", 0.0},
          {"embd_pdrop", c.dropout},
          {"layer_norm_epsilon", kLayerNormEps},
          {"model_type", "gpt2"},
          {"n_embd", c.n_embd},
          {"n_head", c.n_head},
          {"n_layer", c.n_layer},
          {"n_positions", c.block_size},
          {"resid_pdrop", c.dropout},
          {"tie_word_embeddings", true},
          {"torch_dtype", hf::torch_dtype_name(dtype)},
          {"vocab_size", c.vocab_size}};
}

}  // namespace

Gpt2Config read_hf_gpt2_config(const std::string& dir) {
  const hf::ConfigFile config(dir, kModel);
  config.require("model_type", "gpt2", "gpt2", "this reader knows GPT-2 only");
  Gpt2Config c;
  c.vocab_size = config.positive_int("vocab_size", 50257);
  c.block_size = config.positive_int("n_positions", 1024);
  c.n_embd = config.positive_int("n_embd", 768);
  c.n_layer = config.positive_int("n_layer", 12);
  c.n_head = config.positive_int("n_head", 12);
  const std::string& path = config.path();
  FT_CHECK(c.n_embd % c.n_head == 0, path, ": n_embd ", c.n_embd, " is not divisible by n_head ", c.n_head);
  const json activation = config.get("activation_function", "gelu_new");
  // gelu_pytorch_tanh is the same tanh approximation under another name.
  FT_CHECK(activation == "gelu_new" || activation == "gelu_pytorch_tanh", path, ": 'activation_function' is ",
           activation.dump(), ", but flashtrain's GPT-2 supports only \"gelu_new\" (the tanh GELU)");
  config.require("layer_norm_epsilon", kLayerNormEps, kLayerNormEps, "the LayerNorm epsilon");
  const json n_inner = config.get("n_inner", nullptr);
  FT_CHECK(n_inner.is_null() || n_inner == 4 * c.n_embd, path, ": 'n_inner' is ", n_inner.dump(),
           ", but flashtrain's GPT-2 supports only null or 4 n_embd = ", 4 * c.n_embd);
  config.require("tie_word_embeddings", true, true, "the output projection is wte");
  config.require("scale_attn_weights", true, true, "scores are scaled by 1/sqrt(head_dim)");
  config.require("scale_attn_by_inverse_layer_idx", false, false, "no per-layer score scaling");
  config.require("add_cross_attention", false, false, "a decoder without cross-attention");
  return c;
}

Gpt2 import_hf_gpt2(const std::string& dir, DType dtype, Device device) {
  return import_hf_gpt2(dir, read_hf_gpt2_config(dir), dtype, device);
}

Gpt2 import_hf_gpt2(const std::string& dir, const Gpt2Config& config, DType dtype, Device device) {
  const hf::WeightFiles weights = hf::open_weight_files(dir, kPrefix);
  Generator unused(0);  // the initial values are all overwritten below
  Gpt2 model(config, unused, dtype, device);
  std::vector<hf::ExpectedTensor> expected;
  for (const NamedParameter& p : model.parameters()) expected.push_back({p.name, hf_shape(p)});
  auto ignored = [](const std::string& name) { return is_attention_buffer(name) || name == "lm_head.weight"; };
  hf::check_weights_match(expected, weights, ignored, dir,
                          str("the GPT-2 of config.json (n_layer ", config.n_layer, ", n_embd ", config.n_embd,
                              ", vocab_size ", config.vocab_size, ", n_positions ", config.block_size, ")"),
                          kPrefix);
  // Some conversions save the tied output projection too.
  hf::check_tied_copy(weights, "lm_head.weight", "wte.weight", dir, kModel);
  for (const NamedParameter& p : model.parameters()) {
    const Tensor stored = weights.tensors.at(p.name).read(dtype, device);
    p.tensor.copy_(is_conv1d_weight(p.name) ? transpose(stored, 0, 1) : stored);
  }
  return model;
}

void export_hf_gpt2(const Gpt2& model, const std::string& dir) {
  FT_CHECK(!model.config().rotary, "export_hf_gpt2: ", dir,
           ": rotary positions have no Hugging Face GPT-2 equivalent (it learns position embeddings)");
  std::map<std::string, Tensor> tensors;
  for (const NamedParameter& p : model.parameters()) {
    const Tensor t = p.tensor.detach();
    tensors[kPrefix + p.name] = is_conv1d_weight(p.name) ? transpose(t, 0, 1) : t;
  }
  const DType dtype = model.parameters().front().tensor.dtype();
  hf::write_model_dir(dir, tensors, hf_config_json(model.config(), dtype));
}

}  // namespace ft::models
