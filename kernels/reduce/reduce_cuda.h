// Sums on the GPU: the whole-tensor sum and sum_to_shape (the backward of broadcasting), the
// launcher of kernels/reduce/reduce.cu. A SumPlan, made on the host from the shapes alone,
// fixes how the work is split, and with it the order of every addition: results are the same
// bits run after run. Accumulation is in fp32; the result is rounded once to T.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace ft::kernels {

// Neighbouring dimensions of one kind are merged, so 8 covers every input of up to 8 dimensions.
constexpr int kMaxSumDims = 8;

// The kept (summed into) or the reduced (summed over) dimensions of a contiguous input,
// outermost first, strides in elements.
struct SumDims {
  int ndim = 0;
  int64_t shape[kMaxSumDims] = {};
  int64_t strides[kMaxSumDims] = {};
  int64_t numel = 1;
};

struct SumPlan {
  SumDims kept, reduced;
  // The contiguous dimension is summed over: a block per output reads along it (else threads
  // take neighbouring outputs, reading neighbouring elements).
  bool along_rows = false;
  // The reduced range is cut into `chunks` pieces of `chunk_length` to keep the GPU busy; their
  // partial sums meet in a second pass.
  int64_t chunks = 1;
  int64_t chunk_length = 0;
  // Floats of scratch the launch needs (0 with one chunk).
  int64_t workspace_floats() const { return chunks > 1 ? chunks * kept.numel : 0; }
};

// The sum of all n elements, into one.
SumPlan plan_sum(int64_t n);
// x (contiguous, shape x_shape) summed over the dimensions in which out_shape (of x's rank) is
// 1 and x_shape is not; every other size must agree (sum_to_shape checks it).
SumPlan plan_sum_to_shape(const std::vector<int64_t>& x_shape, const std::vector<int64_t>& out_shape);

// out (plan.kept.numel elements, contiguous) = the sums of x as planned. `workspace` holds
// plan.workspace_floats() floats (may be null when that is 0).
template <class T>
void sum_cuda(T* out, const T* x, const SumPlan& plan, float* workspace, cudaStream_t stream);

}  // namespace ft::kernels
