// Checkpoints of GPU tensors: parameters and AdamW moments that live on the GPU are saved through
// the host and restored onto the GPU bit for bit, and the file holds the same bytes as a CPU save.
#include <doctest/doctest.h>

#include <cstring>

#include "framework/io/hdf5_file.h"
#include "framework/train/checkpoint.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using namespace ft::train;

namespace {

// "w" f32 [64, 32] that trains and "scale" bf16 [16] that is frozen, on `device`.
std::vector<NamedParameter> make_params(uint64_t seed, Device device) {
  Generator gen(seed);
  return {{"w", randn({64, 32}, gen, DType::f32, device).set_requires_grad(true), true},
          {"scale", randn({16}, gen, DType::bf16, device), false}};
}

// An AdamW over the trainable ones, its moments filled from `seed` as if it had stepped.
AdamW make_optimizer(const std::vector<NamedParameter>& params, uint64_t seed) {
  AdamW optimizer(std::vector<ParamGroup>{{{params[0].tensor, params[1].tensor}, 0.1}});
  Generator gen(seed);
  for (AdamWState& s : optimizer.states()) {
    s.exp_avg.copy_(randn(s.exp_avg.shape(), gen));
    s.exp_avg_sq.copy_(rand(s.exp_avg_sq.shape(), gen));
    s.step = 5;
  }
  optimizer.set_step_count(5);
  return optimizer;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor x = a.to(Device::cpu()), y = b.to(Device::cpu());
  return x.dtype() == y.dtype() && x.shape() == y.shape() && std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

}  // namespace

TEST_CASE("checkpoint: GPU parameters and moments round trip through the host, bit for bit") {
  testing::TempDir dir;
  const Device gpu = Device::cuda(0);
  const std::vector<NamedParameter> params = make_params(1, gpu);
  AdamW optimizer = make_optimizer(params, 2);
  const std::string path = save_checkpoint(dir.path() + "/gpu", 5, params, optimizer, {}, 1);

  // The same values saved from the CPU give the same file.
  const std::vector<NamedParameter> cpu_params = make_params(1, Device::cpu());
  AdamW cpu_optimizer = make_optimizer(cpu_params, 2);
  const std::string cpu_path = save_checkpoint(dir.path() + "/cpu", 5, cpu_params, cpu_optimizer, {}, 1);
  const std::vector<float> from_gpu = io::Hdf5File::open(path).read<float>("adam/m/w");
  CHECK(from_gpu == io::Hdf5File::open(cpu_path).read<float>("adam/m/w"));
  CHECK(io::Hdf5File::open(path).read<uint16_t>("params/scale") ==
        io::Hdf5File::open(cpu_path).read<uint16_t>("params/scale"));

  const std::vector<NamedParameter> restored = make_params(3, gpu);
  AdamW restored_optimizer = make_optimizer(restored, 4);
  CheckpointState state;
  CHECK(load_checkpoint(path, restored, restored_optimizer, state) == 5);
  for (size_t i = 0; i < params.size(); ++i) {
    CAPTURE(params[i].name);
    CHECK(restored[i].tensor.device() == gpu);
    CHECK(same_bits(params[i].tensor, restored[i].tensor));
  }
  CHECK(restored_optimizer.states()[0].exp_avg.device() == gpu);
  CHECK(same_bits(optimizer.states()[0].exp_avg, restored_optimizer.states()[0].exp_avg));
  CHECK(same_bits(optimizer.states()[0].exp_avg_sq, restored_optimizer.states()[0].exp_avg_sq));
}
