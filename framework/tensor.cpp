#include "framework/tensor.h"

#include <cstring>

#include "framework/allocator.h"
#include "framework/autograd.h"
#include "kernels/copy/copy_cpu.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/copy.h"
#endif

namespace ft {

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return str(dtype_name(t.dtype()), shape_str(t.shape()), " on ", t.device().str());
}

Storage::Storage(void* data, size_t bytes, Device device, Allocator* owner)
    : data(data), bytes(bytes), device(device), owner(owner) {}

Storage::~Storage() {
  if (owner) owner->deallocate(data, bytes);
}

// ---- factories -------------------------------------------------------------------------

static void check_shape(const Shape& shape) {
  for (int64_t s : shape) FT_CHECK(s >= 0, "tensor shape ", shape_str(shape), " has a negative size");
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape);
  auto impl = std::make_shared<TensorImpl>();
  size_t bytes = dtype_bytes(dtype, shape_numel(shape));
  Allocator& allocator = allocator_for(device);
  impl->storage = std::make_shared<Storage>(allocator.allocate(bytes), bytes, device, &allocator);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  FT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor host = empty(shape, dtype);
  kernels::convert_cpu(host.raw_data(), dtype, values.data(), DType::f64, shape_numel(shape));
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::from_ints(const std::vector<int32_t>& values, const Shape& shape, Device device) {
  FT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_ints: ", values.size(),
           " values for shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor host = empty(shape, DType::i32);
  std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(int32_t));
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device) {
  check_shape(shape);
  auto impl = std::make_shared<TensorImpl>();
  size_t bytes = dtype_bytes(dtype, shape_numel(shape));
  impl->storage = std::make_shared<Storage>(data, bytes, device, nullptr);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---- metadata --------------------------------------------------------------------------

const TensorImpl& Tensor::checked() const {
  FT_CHECK(impl_, "use of an undefined tensor");
  return *impl_;
}

const Shape& Tensor::shape() const { return checked().shape; }
const Shape& Tensor::strides() const { return checked().strides; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return checked().dtype; }
Device Tensor::device() const { return checked().storage->device; }
int64_t Tensor::storage_offset() const { return checked().offset; }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked().storage; }

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  FT_CHECK(d >= -n && d < n, "size(", d, ") of a tensor with shape ", shape_str(shape()));
  return shape()[d < 0 ? d + n : d];
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked();
  int64_t expected = 1;
  for (int64_t d = static_cast<int64_t>(t.shape.size()) - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != expected) return false;
    expected *= t.shape[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  const TensorImpl& t = checked();
  FT_CHECK(t.dtype != DType::nf4 || t.offset % 2 == 0, "nf4 tensor view starts inside a byte");
  return static_cast<char*>(t.storage->data) + dtype_bytes(t.dtype, t.offset);
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t storage_offset) const {
  const TensorImpl& t = checked();
  FT_CHECK(shape.size() == strides.size(), "as_strided: shape ", shape_str(shape), " and strides ",
           shape_str(strides), " differ in length");
  check_shape(shape);
  int64_t last = storage_offset;
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] > 0) last += (shape[d] - 1) * strides[d];
  FT_CHECK(storage_offset >= 0 && (shape_numel(shape) == 0 ||
                                   dtype_bytes(t.dtype, last + 1) <= t.storage->bytes),
           "as_strided: view ", shape_str(shape), " with strides ", shape_str(strides), " at offset ",
           storage_offset, " reaches past the storage of ", t.storage->bytes, " bytes");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage;
  impl->offset = storage_offset;
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = t.dtype;
  return Tensor(std::move(impl));
}

// ---- data movement ---------------------------------------------------------------------

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = empty(shape(), dtype(), target);
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  out.copy_(*this);
  return out;
}

// Gathers a strided tensor into out: contiguous, of its shape and dtype, on its device.
static void gather_into(const Tensor& out, const Tensor& src) {
  FT_CHECK(src.dtype() != DType::nf4, "nf4 tensors cannot be strided views");
  int elem_bytes = dtype_bits(src.dtype()) / 8;
  if (src.device().is_cpu()) {
    kernels::gather_strided_cpu(out.raw_data(), src.raw_data(), elem_bytes, src.shape(), src.strides());
  } else {
#ifdef FLASHTRAIN_HAS_CUDA
    cuda::gather_strided(out.raw_data(), src.raw_data(), elem_bytes, src.shape(), src.strides(),
                         src.device().index);
#endif
  }
}

// A strided tensor gathered into new contiguous memory on its own device, same dtype.
static Tensor gather_contiguous(const Tensor& src) {
  if (src.is_contiguous()) return src;
  Tensor out = Tensor::empty(src.shape(), src.dtype(), src.device());
  gather_into(out, src);
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  FT_CHECK(shape() == src.shape(), "copy_: destination ", describe(*this), " and source ", describe(src),
           " differ in shape");
  FT_CHECK(is_contiguous(), "copy_: destination ", describe(*this), " must be contiguous");
  // A strided view of the same dtype and device, from other memory, is gathered straight into
  // this tensor: one pass instead of a gather and a copy of its result (contiguous(), which
  // attention's math path and rotary positions call, moved its bytes twice).
  if (!src.is_contiguous() && src.dtype() == dtype() && src.device() == device() && src.storage() != storage()) {
    gather_into(*this, src);
    return;
  }
  // Otherwise gather and convert on the source's device, then move bytes.
  Tensor s = gather_contiguous(src);
  if (s.dtype() != dtype()) {
    Tensor converted = empty(shape(), dtype(), s.device());
    if (s.device().is_cpu()) {
      kernels::convert_cpu(converted.raw_data(), dtype(), s.raw_data(), s.dtype(), numel());
    } else {
#ifdef FLASHTRAIN_HAS_CUDA
      cuda::convert(converted.raw_data(), dtype(), s.raw_data(), s.dtype(), numel(), s.device().index);
#endif
    }
    s = converted;
  }
  if (device().is_cpu() && s.device().is_cpu()) {
    std::memcpy(raw_data(), s.raw_data(), nbytes());
    return;
  }
#ifdef FLASHTRAIN_HAS_CUDA
  cuda::copy_bytes(raw_data(), device(), s.raw_data(), s.device(), nbytes());
#else
  throw Error(str("copy_: ", describe(*this), " <- ", describe(src), " needs CUDA, and this build has none"));
#endif
}

void Tensor::fill_(double value) const {
  FT_CHECK(is_contiguous(), "fill_: tensor ", describe(*this), " must be contiguous");
  if (device().is_cpu()) {
    kernels::fill_cpu(raw_data(), dtype(), numel(), value);
    return;
  }
#ifdef FLASHTRAIN_HAS_CUDA
  cuda::fill(raw_data(), dtype(), numel(), value, device().index);
#endif
}

std::vector<double> Tensor::to_double_vector() const {
  Tensor host = to(Device::cpu()).to(DType::f64).contiguous();
  const double* p = host.data<double>();
  return std::vector<double>(p, p + numel());
}

std::vector<int32_t> Tensor::to_int_vector() const {
  Tensor host = to(Device::cpu()).to(DType::i32).contiguous();
  const int32_t* p = host.data<int32_t>();
  return std::vector<int32_t>(p, p + numel());
}

double Tensor::item() const {
  FT_CHECK(numel() == 1, "item() on a tensor of shape ", shape_str(shape()), " (expected one element)");
  return to_double_vector()[0];
}

// ---- autograd --------------------------------------------------------------------------

bool Tensor::requires_grad() const { return checked().requires_grad; }
bool Tensor::is_leaf() const { return checked().grad_fn == nullptr; }

Tensor& Tensor::set_requires_grad(bool requires) {
  FT_CHECK(is_leaf(), "set_requires_grad: only leaves (parameters) can be frozen or unfrozen");
  FT_CHECK(!requires || is_floating(dtype()), "set_requires_grad: ", describe(*this),
           " is not floating point and cannot have a gradient");
  impl_->requires_grad = requires;
  return *this;
}

Tensor Tensor::grad() const { return checked().grad; }
void Tensor::set_grad(const Tensor& g) const { impl_->grad = g; }
void Tensor::zero_grad() const { impl_->grad = Tensor(); }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked().grad_fn; }

void Tensor::set_grad_fn(std::shared_ptr<Node> node) const {
  impl_->grad_fn = std::move(node);
  impl_->requires_grad = impl_->grad_fn != nullptr;
}

void Tensor::backward() const { run_backward(*this); }

void Tensor::backward(const Tensor& upstream) const {
  FT_CHECK(upstream.defined(), "backward: the upstream gradient is undefined");
  run_backward(*this, upstream);
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(checked());
  impl->requires_grad = false;
  impl->grad_fn = nullptr;
  impl->grad = Tensor();
  return Tensor(std::move(impl));
}

const std::string& Tensor::name() const { return checked().name; }

Tensor& Tensor::set_name(const std::string& name) {
  impl_->name = name;
  return *this;
}

}  // namespace ft
