#include "framework/train/run_setup.h"

#include <algorithm>
#include <filesystem>

#include "framework/error.h"
#include "framework/train/checkpoint.h"
#include "models/distilbert/distilbert_hf.h"
#include "models/gpt2/gpt2_hf.h"

namespace ft::train {
namespace {

// The id of the first of `names` that the tokenizer has as a special token.
int32_t special_id(const data::Tokenizer& tokenizer, std::initializer_list<const char*> names) {
  for (const char* name : names)
    for (const data::SpecialToken& t : tokenizer.special_tokens())
      if (t.text == name) return t.id;
  throw Error(str("the tokenizer ", tokenizer.identity(), " has none of the special tokens ", *names.begin()));
}

#ifdef FLASHTRAIN_HAS_CUDNN
constexpr bool kCudnnBuilt = true;
#else
constexpr bool kCudnnBuilt = false;
#endif

// The recipe's attention kernel for a model `width` wide in `heads` heads. recipe.cpp checks
// the fused kernels' head size for the shapes a recipe sets; a pretrained model's config.json is
// checked here (resolve_device has checked the device and the precision). auto is flash where
// flash runs: 16-bit precision (hence a GPU) and a head size its kernels take.
AttentionKernel attention_kernel(const Recipe& r, int64_t width, int64_t heads) {
  if (r.attention == "auto")
    return r.precision != "fp32" && flash_attention_takes_head_dim(width / heads) ? AttentionKernel::flash
                                                                                  : AttentionKernel::math;
  if (r.attention == "math") return AttentionKernel::math;
  FT_CHECK(flash_attention_takes_head_dim(width / heads), r.source_path, ": attention: ", r.attention,
           " needs a head size of 64 or 128, got ", width, " / ", heads, " = ", width / heads,
           " (the model's width / heads; or use attention: math)");
  return r.attention == "flash" ? AttentionKernel::flash : AttentionKernel::cudnn;
}

}  // namespace

Device resolve_device(const Recipe& r) {
  FT_CHECK(r.attention != "cudnn" || kCudnnBuilt, r.source_path,
           ": attention: cudnn is not in this build (cuDNN 9's headers were not found when it was configured; use "
           "attention: flash or math)");
  Device device = Device::cpu();
  if (r.device == "auto") {
    if (cuda_available()) device = Device::cuda(0);
  } else {
    device = parse_device(r.device);
    FT_CHECK(device.is_cpu() || device.index < cuda_device_count(), r.source_path, ": device: ", r.device,
             " requested, but ",
             cuda_available() ? str("this machine has ", cuda_device_count(), " GPU(s)")
                              : std::string("this build or machine has no CUDA GPU"),
             " (use device: cpu or auto)");
  }
  FT_CHECK(r.precision == "fp32" || device.is_cuda(), r.source_path, ": precision: ", r.precision,
           " needs a GPU (the CPU kernels compute in f32 or f64); use precision: fp32 on ", device.str());
  FT_CHECK(r.attention == "math" || r.attention == "auto" || r.precision != "fp32", r.source_path, ": attention: ", r.attention,
           " needs a GPU and precision bf16 or fp16 (its kernels take 16-bit inputs), got precision fp32 on ",
           device.str(), " (use attention: math)");
  return device;
}

std::string run_folder(const Recipe& r) {
  return r.run_dir.empty() ? (std::filesystem::path("runs") / r.name).string() : r.run_dir;
}

std::string checkpoint_folder(const Recipe& r) {
  return r.checkpoint.dir.empty() ? (std::filesystem::path(run_folder(r)) / "checkpoints").string() : r.checkpoint.dir;
}

std::optional<std::string> checkpoint_to_resume(const Recipe& r) {
  const std::string folder = checkpoint_folder(r);
  const std::optional<std::string> newest = find_latest_checkpoint(folder);
  FT_CHECK(!newest || r.resume == "auto", folder, " holds checkpoints of an earlier run (newest: ", *newest,
           "): pass --resume (resume: auto) to continue it, or choose another run_dir or checkpoint.dir");
  return newest;
}

DType compute_dtype(const Recipe& r) {
  if (r.precision == "bf16") return DType::bf16;
  if (r.precision == "fp16") return DType::f16;
  return DType::f32;
}

std::string pretrained_dir(const Recipe& r) {
  return data::resolve_data_path(r.model.init_from, data_dir_setting(r), "the pretrained model (model.init_from)");
}

models::Gpt2Config model_config(const Recipe& r, int64_t vocab_size) {
  if (!r.model.init_from.empty()) {
    models::Gpt2Config c = models::read_hf_gpt2_config(pretrained_dir(r));
    FT_CHECK(c.vocab_size == vocab_size, r.source_path, ": model.init_from: the model's vocabulary has ", c.vocab_size,
             " tokens, the tokenizer's ", vocab_size);
    c.dropout = r.model.dropout;
    c.recompute_gelu = r.model.recompute_gelu;
    c.attention = attention_kernel(r, c.n_embd, c.n_head);
    return c;
  }
  models::Gpt2Config c = models::gpt2_config(r.model.size);
  c.vocab_size = vocab_size;
  if (r.model.n_layer > 0) c.n_layer = r.model.n_layer;
  if (r.model.n_head > 0) c.n_head = r.model.n_head;
  if (r.model.n_embd > 0) c.n_embd = r.model.n_embd;
  if (r.model.block_size > 0) c.block_size = r.model.block_size;
  c.block_size = std::max(c.block_size, r.data.seq_len);
  c.rotary = r.model.positions == "rotary";
  c.dropout = r.model.dropout;
  c.recompute_gelu = r.model.recompute_gelu;
  c.attention = attention_kernel(r, c.n_embd, c.n_head);
  return c;
}

models::DistilBertConfig distilbert_model_config(const Recipe& r, int64_t vocab_size) {
  models::DistilBertConfig c = r.model.init_from.empty() ? models::distilbert_config(r.model.size)
                                                         : models::read_hf_distilbert_config(pretrained_dir(r));
  FT_CHECK(r.model.init_from.empty() || c.vocab_size == vocab_size, r.source_path,
           ": model.init_from: the model's vocabulary has ", c.vocab_size, " tokens, the tokenizer's ", vocab_size);
  c.vocab_size = vocab_size;
  if (r.model.n_layer > 0) c.n_layers = r.model.n_layer;
  if (r.model.n_head > 0) c.n_heads = r.model.n_head;
  if (r.model.n_embd > 0) c.dim = r.model.n_embd, c.hidden_dim = 4 * r.model.n_embd;
  if (r.model.block_size > 0) c.max_positions = r.model.block_size;
  c.max_positions = std::max(c.max_positions, r.data.seq_len);
  c.dropout = r.model.dropout;
  c.attention = attention_kernel(r, c.dim, c.n_heads);
  return c;
}

data::MlmOptions mlm_options(const Recipe& r, const data::Tokenizer& tokenizer) {
  data::MlmOptions o;
  o.mask_id = special_id(tokenizer, {"[MASK]"});
  o.vocab_size = tokenizer.vocab_size();
  o.special_ids = {padding_id(tokenizer), special_id(tokenizer, {"[CLS]"}), end_of_text_id(tokenizer), o.mask_id};
  o.select_probability = r.data.mlm_probability;
  return o;
}

data::DataDirSetting data_dir_setting(const Recipe& r) { return {r.data.dir, str(r.source_path, ": data.dir")}; }

std::unique_ptr<data::Tokenizer> recipe_tokenizer(const Recipe& r) {
  const data::TokenizerKind kind = data::parse_tokenizer_kind(r.data.tokenizer);
  const std::string folder = r.data.vocab.empty() ? data::default_vocab_folder(kind) : r.data.vocab;
  return data::load_tokenizer(
      kind, data::resolve_data_path(folder, data_dir_setting(r), "the tokenizer vocabulary (data.vocab)"));
}

int32_t end_of_text_id(const data::Tokenizer& tokenizer) { return special_id(tokenizer, {"<|endoftext|>", "[SEP]"}); }

// GPT-2 pads with <|endoftext|> (padding targets are ignored anyway); BERT with [PAD].
int32_t padding_id(const data::Tokenizer& tokenizer) { return special_id(tokenizer, {"[PAD]", "<|endoftext|>"}); }

}  // namespace ft::train
