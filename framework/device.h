// Where a tensor's memory lives. The CPU is always there; CUDA devices exist only in builds
// with CUDA (FLASHTRAIN_HAS_CUDA) and on machines with a GPU.
#pragma once

#include <string>

namespace ft {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  // "cpu" or "cuda:0".
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// Parses "cpu", "cuda" or "cuda:N"; throws ft::Error otherwise.
Device parse_device(const std::string& name);

// True when this build has CUDA and at least one GPU answers.
bool cuda_available();
int cuda_device_count();

}  // namespace ft
