// The part of cuDNN's backend API (cudnn_graph.h) that the attention graphs use, with the library
// loaded on first use, errors thrown as ft::Error, and descriptors owned by RAII objects. The
// backend is one generic call, cudnnBackendSetAttribute(descriptor, name, type, count, values),
// for everything: Descriptor's typed setters pair each C++ value with its cuDNN type tag, which
// is where a mismatch would otherwise go unnoticed until finalize.
#pragma once

#include <cudnn_graph.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ft::kernels::cudnn {

// The functions used, resolved with dlsym from libcudnn.so.9 (cuDNN 9's front library, which
// loads its engine libraries itself).
struct Api {
  size_t (*get_version)();
  const char* (*get_error_string)(cudnnStatus_t);
  void (*get_last_error_string)(char*, size_t);
  cudnnStatus_t (*create)(cudnnHandle_t*);
  cudnnStatus_t (*set_stream)(cudnnHandle_t, cudaStream_t);
  cudnnStatus_t (*create_descriptor)(cudnnBackendDescriptorType_t, cudnnBackendDescriptor_t*);
  cudnnStatus_t (*destroy_descriptor)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*set_attribute)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t, cudnnBackendAttributeType_t,
                                 int64_t, const void*);
  cudnnStatus_t (*get_attribute)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t, cudnnBackendAttributeType_t,
                                 int64_t, int64_t*, void*);
  cudnnStatus_t (*finalize)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*execute)(cudnnHandle_t, cudnnBackendDescriptor_t, cudnnBackendDescriptor_t);
  std::string path;  // the file dlopen found
};

// Loads cuDNN once (thread-safe): "libcudnn.so.9" through the loader's search path, then the file
// the build found (FLASHTRAIN_CUDNN_LIBRARY). Throws ft::Error naming both tries, or a cuDNN
// older than 9.0.
const Api& api();

// Throws ft::Error: "cuDNN error CUDNN_STATUS_... (its text) in <what>: <cuDNN's last message>".
[[noreturn]] void throw_error(cudnnStatus_t status, const std::string& what);

// The cuDNN handle of a device, made on first use (with that device current) and kept for the
// process, like the device's Context.
cudnnHandle_t handle(int device);

// A backend descriptor, destroyed with this object.
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type);
  ~Descriptor();
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return descriptor_; }

  // count values of cuDNN type `type`; throws naming the descriptor type and the attribute.
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                  const void* values);
  Descriptor& set_int(cudnnBackendAttributeName_t name, int64_t value);
  Descriptor& set_ints(cudnnBackendAttributeName_t name, const std::vector<int64_t>& values);
  Descriptor& set_bool(cudnnBackendAttributeName_t name, bool value);
  Descriptor& set_pointer(cudnnBackendAttributeName_t name, void* value);
  Descriptor& set_pointers(cudnnBackendAttributeName_t name, const std::vector<void*>& values);
  Descriptor& set_descriptor(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value);
  Descriptor& set_descriptors(cudnnBackendAttributeName_t name, const std::vector<cudnnBackendDescriptor_t>& values);
  // The enumerations, each with its own type tag.
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnDataType_t value);
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnPointwiseMode_t value);
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnReduceTensorOp_t value);
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendHeurMode_t value);
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnHandle_t value);

  // Throws like set; try_finalize returns the status instead (an engine that declines a graph).
  Descriptor& finalize();
  cudnnStatus_t try_finalize();

 private:
  cudnnBackendDescriptorType_t type_;
  cudnnBackendDescriptor_t descriptor_ = nullptr;
};

}  // namespace ft::kernels::cudnn
