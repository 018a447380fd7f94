// `flashtrain convert hf-check` on a DistilBERT directory: config.json's model_type picks the
// importer, and the printed sizes and logits are those of the exported model.
#include <doctest/doctest.h>

#include <cstdio>

#include "framework/autograd.h"
#include "models/distilbert/distilbert_hf.h"
#include "tests/support/run_tool.h"
#include "tests/support/small_distilbert.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using testing::run_tool;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("convert: hf-check imports a DistilBERT directory by its model_type") {
  testing::TempDir tmp;
  const models::DistilBert mlm = testing::random_distilbert(testing::small_distilbert(), 1, DType::f32);
  models::export_hf_distilbert(mlm, tmp.path() + "/mlm");
  const testing::ToolResult r = run_tool("convert hf-check " + tmp.path() + "/mlm --ids 3,4");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(contains(r.output, tmp.path() + "/mlm: DistilBERT n_layers 2, n_heads 2, dim 8, hidden_dim 16"));
  CHECK(contains(r.output, "masked-LM head"));
  CHECK(contains(r.output, "logits [1, 2, 30]"));
  NoGradGuard no_grad;
  const double first = mlm.mlm_logits({Tensor::from_ints({3, 4}, {1, 2}), Tensor(), Tensor()}).to_double_vector()[0];
  char printed[32];
  std::snprintf(printed, sizeof printed, "| %.6f", first);
  CHECK(contains(r.output, printed));

  const models::DistilBert classifier = testing::random_distilbert(testing::small_distilbert(3), 2, DType::f32);
  models::export_hf_distilbert(classifier, tmp.path() + "/cls");
  const testing::ToolResult c = run_tool("convert hf-check " + tmp.path() + "/cls");
  REQUIRE_MESSAGE(c.exit_code == 0, c.output);
  CHECK(contains(c.output, "classifier of 3 labels"));
  CHECK(contains(c.output, "logits [1, 1, 3]"));
}
