// Tensor: a strided view of a block of memory on one device, plus what autograd needs.
//
// A Tensor is a cheap handle (a shared pointer); copies share the same tensor. Views
// (transpose, slice, reshape of contiguous data) share storage and differ only in offset,
// shape and strides. Element access from C++ goes through data<T>(), which checks the dtype
// and returns the address of element [0, 0, ...]; kernels take raw pointers and sizes.
//
// Autograd fields: a tensor that requires_grad and has no grad_fn is a leaf (a parameter);
// its gradient accumulates in grad(). A tensor made by an op while gradients are on carries
// the op's Node (framework/autograd.h). Frozen parameters are leaves with requires_grad off.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/device.h"
#include "framework/dtype.h"
#include "framework/error.h"

namespace ft {

using Shape = std::vector<int64_t>;
// "[2, 3, 4]"
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);
// Row-major strides of a contiguous tensor of this shape.
Shape contiguous_strides(const Shape& shape);

class Allocator;
struct Node;
struct TensorImpl;

// A block of device memory. Owned blocks return to their allocator when the last view dies.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Allocator* owner = nullptr;  // null: memory borrowed from elsewhere (from_blob)
  Storage(void* data, size_t bytes, Device device, Allocator* owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor {
 public:
  Tensor() = default;

  // Factories. Memory from empty() is uninitialised.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  // Copies host values into a new tensor of the given dtype (converted) and device.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32,
                            Device device = Device::cpu());
  static Tensor from_ints(const std::vector<int32_t>& values, const Shape& shape, Device device = Device::cpu());
  // Wraps memory owned elsewhere, without copying; the caller keeps it alive.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  // Size of one dimension; negative counts from the end.
  int64_t size(int64_t d) const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  int64_t storage_offset() const;
  bool is_contiguous() const;
  size_t nbytes() const { return dtype_bytes(dtype(), numel()); }
  const std::shared_ptr<Storage>& storage() const;

  // Address of the first element. data<T>() checks that T matches the dtype.
  void* raw_data() const;
  template <class T>
  T* data() const {
    FT_CHECK(dtype() == dtype_of<T>(), "data<", dtype_name(dtype_of<T>()), ">() on a tensor of dtype ",
             dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }

  // Data movement, outside autograd (the results require no grad).
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor clone() const;        // contiguous copy on the same device
  Tensor contiguous() const;   // this tensor if already contiguous, else a copy
  void copy_(const Tensor& src) const;  // same shape; converts dtype and device
  void fill_(double value) const;
  void zero_() const { fill_(0.0); }
  // All elements, in row-major order, converted to double (integers too); on any device.
  std::vector<double> to_double_vector() const;
  std::vector<int32_t> to_int_vector() const;
  double item() const;  // the one element of a one-element tensor

  // A view with new shape and strides over the same storage (no checks beyond bounds).
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t storage_offset) const;

  // Autograd.
  bool requires_grad() const;
  // Marks a leaf as a trainable parameter (true) or frozen (false). Throws on a non-leaf.
  Tensor& set_requires_grad(bool requires);
  bool is_leaf() const;
  Tensor grad() const;           // undefined until a backward pass reaches this leaf
  void set_grad(const Tensor& g) const;
  void zero_grad() const;        // drops the gradient
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> node) const;
  // Reverse-mode pass from this scalar: accumulates d(this)/d(leaf) into every leaf's grad().
  void backward() const;
  // The same from a tensor, given upstream = dL/d(this) for some scalar L (PyTorch's
  // backward(gradient)): accumulates dL/d(leaf).
  void backward(const Tensor& upstream) const;
  // The same data, cut off from the graph.
  Tensor detach() const;
  const std::string& name() const;
  Tensor& set_name(const std::string& name);

  // Identity of the underlying tensor (two handles to one tensor compare equal).
  const TensorImpl* impl() const { return impl_.get(); }

 private:
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  const TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::f32;
  // Autograd.
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;
  Tensor grad;
  std::string name;
};

// "f32[2, 3] on cpu", for error messages.
std::string describe(const Tensor& t);

}  // namespace ft
