// Hugging Face GPT-2 directories: config.json plus model.safetensors (or shards listed in
// model.safetensors.index.json), as transformers' GPT2LMHeadModel.save_pretrained writes them.
// Import builds a Gpt2 from one; export writes one that from_pretrained loads.
//
// Two things differ from our model's own naming. Hugging Face's Conv1D stores the four block
// projections (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) as [in, out] where ours are
// [out, in], so both directions transpose them. And tensor names carry a "transformer." prefix
// when saved from GPT2LMHeadModel but none in the hub's original gpt2 files; import accepts
// either, export writes the prefix. The output projection is tied to wte in both.
#pragma once

#include <string>

#include "models/gpt2/gpt2.h"

namespace ft::models {

// Reads dir/config.json. Keys that are absent take transformers' GPT2Config defaults, as
// from_pretrained does. Throws ft::Error naming the file and key for what our model cannot
// represent: an activation other than gelu_new (tanh GELU), layer_norm_epsilon other than
// 1e-5, n_inner other than 4 n_embd, untied embeddings, unscaled or layer-scaled attention,
// cross-attention. Dropout rates are training choices and are not imported (dropout = 0).
Gpt2Config read_hf_gpt2_config(const std::string& dir);

// Builds the model of dir/config.json and fills every parameter from the safetensors weights,
// converted to `dtype`, on `device`. The attention mask buffers (h.N.attn.bias,
// h.N.attn.masked_bias) are ignored; an lm_head.weight must equal wte. Missing, unexpected or
// wrongly shaped tensors are reported together, by name, in one ft::Error.
Gpt2 import_hf_gpt2(const std::string& dir, DType dtype = DType::f32, Device device = Device::cpu());
// The same model built with `config`: dir's own (read_hf_gpt2_config) with the training
// choices set by the caller (dropout, recomputed GELU, the attention kernel). Its shapes must be
// dir's, else the weights are reported as above.
Gpt2 import_hf_gpt2(const std::string& dir, const Gpt2Config& config, DType dtype = DType::f32,
                    Device device = Device::cpu());

// Writes dir/config.json and dir/model.safetensors (in the model's dtype, "transformer."
// names, metadata format=pt as transformers requires), each atomically; creates dir if needed.
// Rotary models have no GPT-2 equivalent and are refused.
void export_hf_gpt2(const Gpt2& model, const std::string& dir);

}  // namespace ft::models
