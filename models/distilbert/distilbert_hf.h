// Hugging Face DistilBERT directories: config.json plus model.safetensors (or shards), as
// transformers' DistilBertForMaskedLM and DistilBertForSequenceClassification save them. Import
// builds a DistilBert with the head config.json's `architectures` names; export writes one that
// from_pretrained loads.
//
// The base model's tensors carry a "distilbert." prefix in the file (optional on import), the
// heads' none; both store nn.Linear weights [out, in] as we do, so nothing is transposed. The
// masked-LM projection is tied to the word embeddings: export writes vocab_projector.weight as
// their copy (transformers expects it), and import accepts one only if it equals them.
#pragma once

#include <string>

#include "models/distilbert/distilbert.h"

namespace ft::models {

// Reads dir/config.json; absent keys take transformers' DistilBertConfig defaults. The head is
// masked-LM for DistilBertForMaskedLM and classification for DistilBertForSequenceClassification,
// with as many labels as id2label has (else num_labels, else 2). Throws ft::Error naming the file
// and key for what our model cannot be: another architecture or model_type, an activation other
// than "gelu", sinusoidal positions, untied embeddings. attention_dropout is not imported (our
// attention has no dropout).
DistilBertConfig read_hf_distilbert_config(const std::string& dir);

// Builds the model of dir/config.json and fills every parameter from the safetensors weights,
// converted to `dtype`, on `device`. Missing, unexpected or wrongly shaped tensors are reported
// together, by name, in one ft::Error; so is a vocab_projector.weight unequal to the embeddings.
DistilBert import_hf_distilbert(const std::string& dir, DType dtype = DType::f32, Device device = Device::cpu());
// The same model built with `config`: dir's own (read_hf_distilbert_config) with the training
// choices set by the caller (dropout, the attention kernel). Its shapes and head must be dir's,
// else the weights are reported as above.
DistilBert import_hf_distilbert(const std::string& dir, const DistilBertConfig& config, DType dtype = DType::f32,
                                Device device = Device::cpu());

// Writes dir/config.json and dir/model.safetensors (in the model's dtype), each atomically;
// creates dir if needed. A layer_norm_eps other than transformers' fixed 1e-12 is refused.
void export_hf_distilbert(const DistilBert& model, const std::string& dir);

}  // namespace ft::models
