// Device contexts, made lazily under std::call_once: a context whose creation failed (say, out
// of memory for the workspace) is retried by the next call rather than left half made.
#include "framework/cuda/context.h"

#include <memory>
#include <mutex>
#include <vector>

#include "framework/cuda/check.h"
#include "framework/error.h"

namespace ft::cuda {
namespace {

// cuBLASLt picks faster algorithms with scratch space; 32 MiB covers the large GEMMs on Hopper.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct DeviceSlot {
  std::once_flag properties_once;
  cudaDeviceProp properties{};
  std::once_flag context_once;
  std::unique_ptr<Context> context;
};

// One slot per device, never freed (see context.h).
std::vector<DeviceSlot>& slots() {
  static auto* all = new std::vector<DeviceSlot>(device_count());
  return *all;
}

std::unique_ptr<Context> create_context(int device) {
  DeviceGuard guard(device);
  auto ctx = std::make_unique<Context>();
  ctx->device = device;
  ctx->properties = device_properties(device);
  FT_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
  FT_CUDA_CHECK(cudaMalloc(&ctx->workspace, kWorkspaceBytes));
  ctx->workspace_bytes = kWorkspaceBytes;
  FT_CUBLAS_CHECK(cublasCreate(&ctx->cublas));
  FT_CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
  // cublasSetStream resets cuBLAS to its own workspace pool, so ours is set after it.
  FT_CUBLAS_CHECK(cublasSetWorkspace(ctx->cublas, ctx->workspace, ctx->workspace_bytes));
  FT_CUBLAS_CHECK(cublasLtCreate(&ctx->cublaslt));
  return ctx;
}

}  // namespace

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // no driver or no device: not an error worth keeping
      return 0;
    }
    return n;
  }();
  return count;
}

void check_device(int device) {
  const int count = device_count();
  if (device >= 0 && device < count) return;
  if (count == 0) throw Error(str("cuda:", device, " requested but no CUDA device is present"));
  throw Error(str("cuda:", device, " requested but only ", count, count == 1 ? " CUDA device is" : " CUDA devices are",
                  " present"));
}

const cudaDeviceProp& device_properties(int device) {
  check_device(device);
  DeviceSlot& slot = slots()[device];
  std::call_once(slot.properties_once, [&] { FT_CUDA_CHECK(cudaGetDeviceProperties(&slot.properties, device)); });
  return slot.properties;
}

Context& context(int device) {
  check_device(device);
  DeviceSlot& slot = slots()[device];
  std::call_once(slot.context_once, [&] { slot.context = create_context(device); });
  return *slot.context;
}

void set_device(int device) {
  check_device(device);
  FT_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::DeviceGuard(int device) {
  check_device(device);
  int current = 0;
  FT_CUDA_CHECK(cudaGetDevice(&current));
  if (current == device) return;
  FT_CUDA_CHECK(cudaSetDevice(device));
  previous_ = current;
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // a destructor must not throw; this cannot fail for a valid index
}

void synchronize(int device) { FT_CUDA_CHECK(cudaStreamSynchronize(context(device).stream)); }

}  // namespace ft::cuda
