#include "framework/device.h"

#include "framework/error.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#endif

namespace ft {

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "cuda") return Device::cuda(0);
  if (name.rfind("cuda:", 0) == 0) {
    std::string index = name.substr(5);
    bool digits = !index.empty() && index.size() < 4 && index.find_first_not_of("0123456789") == std::string::npos;
    if (digits) return Device::cuda(std::stoi(index));
  }
  throw Error(str("unknown device '", name, "' (expected cpu, cuda or cuda:N)"));
}

int cuda_device_count() {
#ifdef FLASHTRAIN_HAS_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace ft
