// Loading cuDNN and the descriptor wrapper of cudnn_backend.h. dlopen rather than a link-time
// dependency: flashtrain_core is linked into every binary, and a NEEDED entry for libcudnn.so.9
// would stop all of them from starting on a machine where cuDNN is not on the loader's path.
#include "kernels/cudnn_attention/cudnn_backend.h"

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>

#include "framework/error.h"

#ifndef FLASHTRAIN_CUDNN_LIBRARY
#define FLASHTRAIN_CUDNN_LIBRARY ""
#endif

namespace ft::kernels::cudnn {
namespace {

// cuDNN 9 keeps its backend enumerations' values from release to release; 8.x had others.
constexpr size_t kOldestVersion = 90000;

void* open_library(std::string& path, std::string& tried) {
  for (const char* candidate : {"libcudnn.so.9", FLASHTRAIN_CUDNN_LIBRARY}) {
    if (*candidate == '\0') continue;
    if (void* library = dlopen(candidate, RTLD_NOW | RTLD_LOCAL)) {
      path = candidate;
      return library;
    }
    const char* why = dlerror();
    tried += str(tried.empty() ? "" : "; ", candidate, ": ", why ? why : "not found");
  }
  return nullptr;
}

template <class F>
void resolve(void* library, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(library, name));
  FT_CHECK(f, "cuDNN: ", name, " is missing from the loaded library");
}

Api load() {
  Api a{};
  std::string tried;
  void* library = open_library(a.path, tried);
  FT_CHECK(library, "cuDNN 9 could not be loaded (", tried,
           "); put the folder holding libcudnn.so.9 on LD_LIBRARY_PATH (or use attention: flash or math)");
  resolve(library, "cudnnGetVersion", a.get_version);
  resolve(library, "cudnnGetErrorString", a.get_error_string);
  resolve(library, "cudnnGetLastErrorString", a.get_last_error_string);
  resolve(library, "cudnnCreate", a.create);
  resolve(library, "cudnnSetStream", a.set_stream);
  resolve(library, "cudnnBackendCreateDescriptor", a.create_descriptor);
  resolve(library, "cudnnBackendDestroyDescriptor", a.destroy_descriptor);
  resolve(library, "cudnnBackendSetAttribute", a.set_attribute);
  resolve(library, "cudnnBackendGetAttribute", a.get_attribute);
  resolve(library, "cudnnBackendFinalize", a.finalize);
  resolve(library, "cudnnBackendExecute", a.execute);
  FT_CHECK(a.get_version() >= kOldestVersion, "cuDNN ", a.get_version(), " at ", a.path,
           " is older than 9.0, which the attention graphs need");
  return a;
}

}  // namespace

const Api& api() {
  // Retried after a failure (std::call_once does not mark a throwing call done), so the error
  // comes back on every use rather than once.
  static std::once_flag once;
  static std::unique_ptr<Api> loaded;
  std::call_once(once, [] { loaded = std::make_unique<Api>(load()); });
  return *loaded;
}

void throw_error(cudnnStatus_t status, const std::string& what) {
  const Api& a = api();
  char last[1024] = {};
  a.get_last_error_string(last, sizeof last);
  throw Error(str("cuDNN error ", a.get_error_string(status), " (", static_cast<int>(status), ") in ", what,
                  *last ? ": " : "", last));
}

cudnnHandle_t handle(int device) {
  static std::mutex mutex;
  static auto* handles = new std::map<int, cudnnHandle_t>();  // never freed, as the contexts are not
  std::lock_guard<std::mutex> lock(mutex);
  auto found = handles->find(device);
  if (found != handles->end()) return found->second;
  cudnnHandle_t h = nullptr;
  if (const cudnnStatus_t s = api().create(&h); s != CUDNN_STATUS_SUCCESS) throw_error(s, "cudnnCreate");
  return handles->emplace(device, h).first->second;
}

Descriptor::Descriptor(cudnnBackendDescriptorType_t type) : type_(type) {
  if (const cudnnStatus_t s = api().create_descriptor(type, &descriptor_); s != CUDNN_STATUS_SUCCESS)
    throw_error(s, str("cudnnBackendCreateDescriptor(descriptor type ", static_cast<int>(type), ")"));
}

Descriptor::~Descriptor() {
  if (descriptor_) api().destroy_descriptor(descriptor_);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                            const void* values) {
  if (const cudnnStatus_t s = api().set_attribute(descriptor_, name, type, count, values); s != CUDNN_STATUS_SUCCESS)
    throw_error(s, str("cudnnBackendSetAttribute(descriptor type ", static_cast<int>(type_), ", attribute ",
                       static_cast<int>(name), ")"));
  return *this;
}

Descriptor& Descriptor::set_int(cudnnBackendAttributeName_t name, int64_t value) {
  return set(name, CUDNN_TYPE_INT64, 1, &value);
}

Descriptor& Descriptor::set_ints(cudnnBackendAttributeName_t name, const std::vector<int64_t>& values) {
  return set(name, CUDNN_TYPE_INT64, static_cast<int64_t>(values.size()), values.data());
}

Descriptor& Descriptor::set_bool(cudnnBackendAttributeName_t name, bool value) {
  return set(name, CUDNN_TYPE_BOOLEAN, 1, &value);
}

Descriptor& Descriptor::set_pointer(cudnnBackendAttributeName_t name, void* value) {
  return set(name, CUDNN_TYPE_VOID_PTR, 1, &value);
}

Descriptor& Descriptor::set_pointers(cudnnBackendAttributeName_t name, const std::vector<void*>& values) {
  return set(name, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(values.size()), values.data());
}

Descriptor& Descriptor::set_descriptor(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value) {
  return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
}

Descriptor& Descriptor::set_descriptors(cudnnBackendAttributeName_t name,
                                        const std::vector<cudnnBackendDescriptor_t>& values) {
  return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(values.size()), values.data());
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnDataType_t value) {
  return set(name, CUDNN_TYPE_DATA_TYPE, 1, &value);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnPointwiseMode_t value) {
  return set(name, CUDNN_TYPE_POINTWISE_MODE, 1, &value);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnReduceTensorOp_t value) {
  return set(name, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &value);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendHeurMode_t value) {
  return set(name, CUDNN_TYPE_HEUR_MODE, 1, &value);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnHandle_t value) {
  return set(name, CUDNN_TYPE_HANDLE, 1, &value);
}

Descriptor& Descriptor::finalize() {
  if (const cudnnStatus_t s = try_finalize(); s != CUDNN_STATUS_SUCCESS)
    throw_error(s, str("cudnnBackendFinalize(descriptor type ", static_cast<int>(type_), ")"));
  return *this;
}

cudnnStatus_t Descriptor::try_finalize() { return api().finalize(descriptor_); }

}  // namespace ft::kernels::cudnn
