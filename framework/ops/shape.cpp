// reshape, transpose, slice, concat, contiguous. Views share storage with their input; only
// concat (and reshape or contiguous of a non-contiguous tensor, through Tensor's strided copy)
// copies. All of them work on any device: concat places each input with one pitched copy
// (rows of bytes at a stride), memcpy on the CPU and cudaMemcpy2DAsync on a GPU.
#include <cstring>

#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#endif

namespace ft {
namespace {

int64_t normalize_dim(const char* op, int64_t dim, int64_t ndim) {
  FT_CHECK(dim >= -ndim && dim < ndim, op, ": dimension ", dim, " out of range for a tensor with ", ndim,
           " dimensions");
  return dim < 0 ? dim + ndim : dim;
}

// Copies `rows` rows of `row_bytes` bytes from src (rows src_pitch bytes apart) to dst (rows
// dst_pitch apart), on `device`: queued on its stream for a GPU.
void copy_rows(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes, int64_t rows,
               Device device) {
  if (rows == 0 || row_bytes == 0) return;
  if (device.is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    cuda::DeviceGuard guard(device.index);
    FT_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, static_cast<size_t>(rows),
                                    cudaMemcpyDeviceToDevice, cuda::context(device.index).stream));
#endif
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch, row_bytes);
}

}  // namespace

Tensor reshape(const Tensor& x, Shape shape) {
  check_defined("reshape", "x", x);
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      FT_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      FT_CHECK(shape[i] >= 0, "reshape: negative size in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    FT_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape ", shape_str(x.shape()), " into ",
             shape_str(shape));
    shape[infer] = x.numel() / known;
  }
  FT_CHECK(shape_numel(shape) == x.numel(), "reshape: cannot reshape ", shape_str(x.shape()), " (", x.numel(),
           " elements) into ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor base = x.contiguous();
  Tensor out = base.as_strided(shape, contiguous_strides(shape), base.storage_offset());
  return record(out, "reshape", {x}, [in_shape = x.shape()](const Tensor& g, const GradNeeds&) {
    return std::vector<Tensor>{reshape(g, in_shape)};
  });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  check_defined("transpose", "x", x);
  int64_t d0 = normalize_dim("transpose", dim0, x.dim()), d1 = normalize_dim("transpose", dim1, x.dim());
  Shape shape = x.shape(), strides = x.strides();
  std::swap(shape[d0], shape[d1]);
  std::swap(strides[d0], strides[d1]);
  Tensor out = x.as_strided(shape, strides, x.storage_offset());
  return record(out, "transpose", {x},
                [d0, d1](const Tensor& g, const GradNeeds&) { return std::vector<Tensor>{transpose(g, d0, d1)}; });
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  check_defined("slice", "x", x);
  int64_t d = normalize_dim("slice", dim, x.dim());
  FT_CHECK(0 <= start && start <= end && end <= x.size(d), "slice: range [", start, ", ", end,
           ") out of bounds for dimension ", d, " of ", shape_str(x.shape()));
  Shape shape = x.shape();
  shape[d] = end - start;
  Tensor out = x.as_strided(shape, x.strides(), x.storage_offset() + start * x.strides()[d]);
  // The gradient is g placed between zeros: concat(zeros before, g, zeros after).
  return record(out, "slice", {x}, [d, start, end, full = x.shape()](const Tensor& g, const GradNeeds&) {
    std::vector<Tensor> parts;
    Shape before = full, after = full;
    before[d] = start;
    after[d] = full[d] - end;
    if (start > 0) parts.push_back(Tensor::zeros(before, g.dtype(), g.device()));
    parts.push_back(g);
    if (after[d] > 0) parts.push_back(Tensor::zeros(after, g.dtype(), g.device()));
    return std::vector<Tensor>{parts.size() == 1 ? g : concat(parts, d)};
  });
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  FT_CHECK(!xs.empty(), "concat: no tensors");
  for (const Tensor& x : xs) check_defined("concat", "input", x);
  const Tensor& first = xs[0];
  int64_t d = normalize_dim("concat", dim, first.dim());
  Shape shape = first.shape();
  shape[d] = 0;
  for (const Tensor& x : xs) {
    check_same_dtype_device("concat", {first, x});
    Shape a = first.shape(), b = x.shape();
    FT_CHECK(a.size() == b.size(), "concat: ", shape_str(a), " and ", shape_str(b), " differ in rank");
    a[d] = b[d] = 0;
    FT_CHECK(a == b, "concat: ", shape_str(first.shape()), " and ", shape_str(x.shape()), " differ outside dimension ",
             d);
    shape[d] += x.size(d);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  // Each input is `outer` chunks of (size(d) * inner) elements, placed side by side in out.
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= shape[i];
  for (int64_t i = d + 1; i < static_cast<int64_t>(shape.size()); ++i) inner *= shape[i];
  const size_t elem = dtype_bits(first.dtype()) / 8;
  auto* dst = static_cast<char*>(out.raw_data());
  int64_t placed = 0;
  for (const Tensor& x : xs) {
    Tensor xc = x.contiguous();
    const size_t chunk_bytes = x.size(d) * inner * elem;
    copy_rows(dst + placed * inner * elem, shape[d] * inner * elem, xc.raw_data(), chunk_bytes, chunk_bytes, outer,
              out.device());
    placed += x.size(d);
  }
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) sizes.push_back(x.size(d));
  return record(out, "concat", xs, [d, sizes](const Tensor& g, const GradNeeds& needs) {
    std::vector<Tensor> grads;
    int64_t start = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      grads.push_back(needs[i] ? slice(g, d, start, start + sizes[i]).contiguous() : Tensor());
      start += sizes[i];
    }
    return grads;
  });
}

Tensor contiguous(const Tensor& x) {
  check_defined("contiguous", "x", x);
  if (x.is_contiguous()) return x;
  Tensor out = x.clone();
  return record(out, "contiguous", {x}, [](const Tensor& g, const GradNeeds&) { return std::vector<Tensor>{g}; });
}

}  // namespace ft
