// Matrix products on CUDA: plain (and batched) ones through cuBLAS, products with a bias or a
// GELU through cuBLASLt's epilogues, the kernels those fall back on, and the column sums that
// make bias gradients.
//
// flashtrain is row-major and cuBLAS column-major. A row-major M x N matrix is, byte for byte,
// the column-major N x M matrix of its transpose, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T: cuBLAS's A is our B, its B is our A, its m and n are our n and m, and
// each transpose flag passes through unchanged (a row-major B read as column-major is already
// B^T, which is what C^T = B^T A^T wants). In that view the bias epilogue adds a vector along
// cuBLAS's rows, which are our columns (one bias per output feature).
//
// Why two libraries: cublasGemmStridedBatchedEx takes any shape, stride (0 for a shared B) and
// alignment and picks its algorithm internally, which is all a plain product needs. Only
// cuBLASLt fuses the bias and the GELU, but its heuristic must be told the alignment the
// pointers really have (it assumes 256 bytes, and a slice or a batch's later matrices may have
// less), costs about as much as a small product (so its answer is cached per problem), and may
// offer nothing for some shapes and dtypes (PyTorch avoids it for matrices with a dimension of
// 1): then the product runs through cuBLAS and a small kernel adds the bias.
//
// The GELU MLP's products (framework/ops/mlp.cpp) add two epilogues that carry an "aux" matrix
// of the product's shape: GELU_AUX_BIAS writes h = gelu(C + bias) to D and the pre-activation
// C + bias to aux; DGELU reads aux = pre and writes D = C * gelu'(pre). cuBLASLt's GELU is the tanh form (the one GPT-2
// and our gelu use): the cuBLAS docs say only "x := GELU(x)", but PyTorch computes gelu(approximate="tanh") on every
// CUDA path of _addmm_activation because its cuBLASLt epilogue is that form (pytorch PR #104061), and the GPU suite
// holds the epilogue to our tanh GELU in f32 at 1e-5, which the erf form (4.7e-4 apart) would fail. The aux leading
// dimension must be a multiple of 8.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>

#include "framework/cuda/check.h"
#include "framework/cuda/matmul_settings.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/common/programmatic_launch.cuh"
#include "kernels/elementwise/elementwise_cuda.h"
#include "kernels/matmul/matmul_cuda.h"

namespace ft::kernels {
namespace {

// cuBLASLt's default (and largest) alignment assumption, in bytes.
constexpr uint32_t kMaxAlignment = 256;
// The GELU epilogues' aux leading dimension must be a multiple of this (cublasLt.h,
// CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD).
constexpr int64_t kAuxLdMultiple = 8;

// The test hooks of matmul_cuda.h.
std::atomic<bool> epilogues_enabled{true};
std::atomic<int64_t> epilogue_fallbacks{0};

template <class T>
cudaDataType_t data_type();
template <>
cudaDataType_t data_type<float>() {
  return CUDA_R_32F;
}
template <>
cudaDataType_t data_type<bfloat16>() {
  return CUDA_R_16BF;
}
template <>
cudaDataType_t data_type<half>() {
  return CUDA_R_16F;
}

template <class T>
cublasComputeType_t compute_type() {
  return std::is_same_v<T, float> && cuda::allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

cublasOperation_t operation(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }

std::string shape_text(const GemmShape& s) {
  return str("m=", s.m, " n=", s.n, " k=", s.k, (s.transpose_a ? " A^T" : ""), (s.transpose_b ? " B^T" : ""),
             " lda=", s.lda, " ldb=", s.ldb, " ldc=", s.ldc);
}

// ---- one cuBLASLt product with an epilogue, in the column-major view --------------------------

struct LtMatrix {
  const void* data;
  cudaDataType_t type;
  cublasOperation_t op;
  uint64_t rows, cols;  // as stored, column-major
  int64_t ld;
};

struct LtProduct {
  LtMatrix a, b, d;
  cublasComputeType_t compute;
  cublasLtEpilogue_t epilogue;
  const void* bias;           // the bias (BIAS, GELU_AUX_BIAS)
  const void* aux = nullptr;  // GELU's input: written by GELU_AUX_BIAS, read by DGELU
  int64_t aux_ld = 0;         // in elements, as D's
};

// Our row-major operand op(X) of shape [rows, cols], stored [rows, cols] (or [cols, rows] when
// transposed), as cuBLASLt's column-major matrix: the same bytes, rows and columns swapped.
template <class T>
LtMatrix lt_matrix(const T* data, bool transposed, int64_t rows, int64_t cols, int64_t ld) {
  return {data,
          data_type<T>(),
          operation(transposed),
          static_cast<uint64_t>(transposed ? rows : cols),
          static_cast<uint64_t>(transposed ? cols : rows),
          ld};
}

// aux, when given, is an [m, n] matrix laid out as C (row stride s.ldc).
template <class T>
LtProduct epilogue_product(const GemmShape& s, const T* a, const T* b, T* c, cublasLtEpilogue_t epilogue, const T* bias,
                           const T* aux = nullptr) {
  // C^T = op(B)^T op(A)^T: cuBLASLt's A is our B, its B our A.
  return {lt_matrix(b, s.transpose_b, s.k, s.n, s.ldb),
          lt_matrix(a, s.transpose_a, s.m, s.k, s.lda),
          lt_matrix<T>(c, false, s.m, s.n, s.ldc),
          compute_type<T>(),
          epilogue,
          bias,
          aux,
          aux ? s.ldc : 0};
}

using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, decltype(&cublasLtMatmulDescDestroy)>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, decltype(&cublasLtMatrixLayoutDestroy)>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)>;

template <class Value>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const Value& value) {
  FT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value));
}
template <class Value>
void set_attribute(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attribute,
                   const Value& value) {
  FT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof value));
}

MatmulDesc matmul_desc(const LtProduct& p) {
  cublasLtMatmulDesc_t raw = nullptr;
  FT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw, p.compute, CUDA_R_32F));
  MatmulDesc desc(raw, &cublasLtMatmulDescDestroy);
  set_attribute(raw, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<int32_t>(p.a.op));
  set_attribute(raw, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<int32_t>(p.b.op));
  set_attribute(raw, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<uint32_t>(p.epilogue));
  set_attribute(raw, CUBLASLT_MATMUL_DESC_BIAS_POINTER, p.bias);
  if (p.aux) {
    set_attribute(raw, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, p.aux);
    set_attribute(raw, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, p.aux_ld);
  }
  return desc;
}

Layout layout(const LtMatrix& m) {
  cublasLtMatrixLayout_t raw = nullptr;
  FT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, m.type, m.rows, m.cols, m.ld));
  return Layout(raw, &cublasLtMatrixLayoutDestroy);
}

// The largest power of two, up to kMaxAlignment, that divides the address.
uint32_t alignment(const void* data) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(data);
  uint32_t a = 1;
  while (a < kMaxAlignment && address % (2 * a) == 0) a *= 2;
  return a;
}

// What the heuristic's answer depends on: everything but the addresses, except their alignment.
std::vector<int64_t> problem_key(int device, const LtProduct& p) {
  std::vector<int64_t> key{device, p.compute, p.epilogue, alignment(p.bias), alignment(p.aux), p.aux_ld};
  for (const LtMatrix* m : {&p.a, &p.b, &p.d})
    key.insert(key.end(), {m->type, m->op, static_cast<int64_t>(m->rows), static_cast<int64_t>(m->cols), m->ld,
                           alignment(m->data)});
  return key;
}

// The heuristic's best algorithm, or nothing when it offers none (an unsupported epilogue,
// shape or dtype; cuBLASLt reports some of those as errors).
std::optional<cublasLtMatmulAlgo_t> ask_heuristic(const cuda::Context& ctx, const LtProduct& p,
                                                  cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                                  cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t d) {
  cublasLtMatmulPreference_t raw = nullptr;
  FT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw));
  Preference pref(raw, &cublasLtMatmulPreferenceDestroy);
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(ctx.workspace_bytes));
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(p.a.data));
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(p.b.data));
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(p.d.data));
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(p.d.data));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(ctx.cublaslt, desc, a, b, d, d, raw, 1, &result, &found);
  if (status != CUBLAS_STATUS_SUCCESS || found == 0) return std::nullopt;
  return result.algo;
}

// Runs one epilogue product on the context's stream; false when cuBLASLt has no algorithm for it
// (or the epilogues are switched off, or the aux leading dimension breaks cuBLASLt's rule).
bool run_epilogue_product(const cuda::Context& ctx, const LtProduct& p) {
  if (!epilogues_enabled || (p.aux && p.aux_ld % kAuxLdMultiple != 0)) {
    ++epilogue_fallbacks;
    return false;
  }
  MatmulDesc desc = matmul_desc(p);
  Layout a = layout(p.a), b = layout(p.b), d = layout(p.d);
  static std::mutex mutex;
  static auto* algorithms = new std::map<std::vector<int64_t>, std::optional<cublasLtMatmulAlgo_t>>();  // never freed
  std::optional<cublasLtMatmulAlgo_t> algo;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const std::vector<int64_t> key = problem_key(ctx.device, p);
    auto it = algorithms->find(key);
    if (it == algorithms->end())
      it = algorithms->emplace(key, ask_heuristic(ctx, p, desc.get(), a.get(), b.get(), d.get())).first;
    algo = it->second;
  }
  if (!algo) {
    ++epilogue_fallbacks;
    return false;
  }
  const float alpha = 1.0f, beta = 0.0f;  // beta = 0: C is not read, D overwrites it
  void* out = const_cast<void*>(p.d.data);
  FT_CUBLAS_CHECK(cublasLtMatmul(ctx.cublaslt, desc.get(), &alpha, p.a.data, a.get(), p.b.data, b.get(), &beta, out,
                                 d.get(), out, d.get(), &*algo, ctx.workspace, ctx.workspace_bytes, ctx.stream));
  return true;
}

// ---- fallback kernels ---------------------------------------------------------------------------

// c[i, j] += bias[j] over an [m, n] matrix with row stride ldc.
template <class T>
__global__ void add_bias_kernel(T* c, const T* bias, int64_t m, int64_t n, int64_t ldc) {
  for (int64_t e = global_index(); e < m * n; e += grid_stride()) {
    const int64_t i = e / n, j = e % n;
    c[i * ldc + j] = from_float<T>(to_float(c[i * ldc + j]) + to_float(bias[j]));
  }
}

// Column sums (bias gradients: the sum over rows of an output gradient) in two passes, with no
// atomics, so the sums are the same on every run. Pass 1: block (tile, chunk) adds the rows of
// its chunk in its tile of kSumLanes * V columns, a thread V columns (one 16-byte load a row
// where the pointer and width allow) in every kSumRowLanes-th row, then the row lanes add up in
// shared memory into one fp32 partial per (chunk, column). Pass 2 adds each column's partials
// in chunk order. (cuBLASLt's BGRADB epilogue ran a separate kernel of its own, 1.26 ms of a
// GPT-2 124M step on the H200, about 2.2 TB/s; with these sums instead, `bench kernels`' mlp
// fwd+bwd ran 2% faster and linear c_attn bwd 5%.)
constexpr int kSumLanes = 32, kSumRowLanes = 8, kSumThreads = kSumLanes * kSumRowLanes;
// Blocks of pass 1 to aim for: two a multiprocessor of an H100/H200, each with 8 rows of loads
// in flight a thread (32 KiB a block at 16 bytes).
constexpr int64_t kSumBlocks = 264;
constexpr int kSumUnroll = 8;

template <class T, int V>
__global__ void __launch_bounds__(kSumThreads)
    column_partials_kernel(float* partials, const T* x, int64_t rows, int64_t cols, int64_t rows_per_chunk) {
  __shared__ float sums[kSumRowLanes][kSumLanes * V];
  const int lane = threadIdx.x % kSumLanes, row_lane = threadIdx.x / kSumLanes;
  const int64_t tile = static_cast<int64_t>(blockIdx.x) * kSumLanes * V, col = tile + lane * V;
  const int64_t begin = blockIdx.y * rows_per_chunk, end = min(rows, begin + rows_per_chunk);
  float acc[V] = {};
  if (col < cols) {
#pragma unroll kSumUnroll
    for (int64_t r = begin + row_lane; r < end; r += kSumRowLanes) {
      const Pack<T, V> p = *reinterpret_cast<const Pack<T, V>*>(x + r * cols + col);
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += to_float(p.v[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < V; ++i) sums[row_lane][lane * V + i] = acc[i];
  __syncthreads();
  for (int c = threadIdx.x; c < kSumLanes * V && tile + c < cols; c += kSumThreads) {
    float sum = 0.0f;
#pragma unroll
    for (int g = 0; g < kSumRowLanes; ++g) sum += sums[g][c];
    partials[blockIdx.y * cols + tile + c] = sum;
  }
}

template <class T>
__global__ void __launch_bounds__(kSumThreads)
    column_sums_kernel(T* out, const float* partials, int64_t chunks, int64_t cols) {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");  // launched as a programmatic dependent of pass 1
#endif
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kSumThreads + threadIdx.x;
  if (col >= cols) return;
  float sum = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) sum += partials[c * cols + col];
  out[col] = from_float<T>(sum);
}

}  // namespace

// ---- launchers --------------------------------------------------------------------------------

template <class T, class Out>
void gemm_cuda(const cuda::Context& ctx, const GemmShape& s, const GemmBatch& batch, const T* a, const T* b, Out* c,
               float alpha, bool accumulate) {
  if (s.m == 0 || s.n == 0 || batch.count == 0) return;
  if (s.k == 0) {  // an empty sum; cuBLAS rejects the zero leading dimensions
    if (accumulate) return;
    FT_CHECK(s.ldc == s.n && (batch.count == 1 || batch.stride_c == s.m * s.n),
             "gemm_cuda: k = 0 needs a contiguous C, got ", shape_text(s), " batch ", batch.count);
    FT_CUDA_CHECK(cudaMemsetAsync(c, 0, sizeof(Out) * s.m * s.n * batch.count, ctx.stream));
    return;
  }
  const float beta = accumulate ? 1.0f : 0.0f;
  FT_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
      ctx.cublas, operation(s.transpose_b), operation(s.transpose_a), s.n, s.m, s.k, &alpha, b, data_type<T>(), s.ldb,
      batch.stride_b, a, data_type<T>(), s.lda, batch.stride_a, &beta, c, data_type<Out>(), s.ldc, batch.stride_c,
      batch.count, compute_type<T>(), CUBLAS_GEMM_DEFAULT));
}

template <class T>
void gemm_bias_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, const T* bias, T* c) {
  if (s.m == 0 || s.n == 0) return;
  FT_CHECK(s.k > 0, "gemm_bias_cuda: k must be positive, got ", shape_text(s));
  if (run_epilogue_product(ctx, epilogue_product(s, a, b, c, CUBLASLT_EPILOGUE_BIAS, bias))) return;
  gemm_cuda<T>(ctx, s, {}, a, b, c);
  add_bias_kernel<<<blocks_for(s.m * s.n), kBlockThreads, 0, ctx.stream>>>(device_ptr(c), device_ptr(bias), s.m, s.n,
                                                                           s.ldc);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T>
void gemm_bias_grad_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, T* c, T* bias_grad) {
  FT_CHECK(s.transpose_a && s.lda == s.m, "gemm_bias_grad_cuda: A must be a transposed [k, m] matrix, got ",
           shape_text(s));
  if (s.m == 0) return;
  gemm_cuda<T>(ctx, s, {}, a, b, c);
  column_sums_cuda<T>(ctx, bias_grad, a, s.k, s.m);
}

template <class T>
void gemm_bias_gelu_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, const T* bias, T* h,
                         T* pre) {
  FT_CHECK(s.k > 0 && s.ldc == s.n, "gemm_bias_gelu_cuda: needs k > 0 and a contiguous C, got ", shape_text(s));
  if (s.m == 0 || s.n == 0) return;
  if (run_epilogue_product(ctx, epilogue_product(s, a, b, h, CUBLASLT_EPILOGUE_GELU_AUX_BIAS, bias, pre))) return;
  gemm_bias_cuda<T>(ctx, s, a, b, bias, pre);
  gelu_forward_cuda<T>(h, pre, s.m * s.n, ctx.stream);
}

template <class T>
void gemm_dgelu_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, const T* pre, T* grad_pre) {
  FT_CHECK(s.ldc == s.n, "gemm_dgelu_cuda: needs a contiguous C, got ", shape_text(s));
  if (s.n == 0) return;
  if (s.m > 0 && s.k > 0 &&
      run_epilogue_product(
          ctx, epilogue_product(s, a, b, grad_pre, CUBLASLT_EPILOGUE_DGELU, static_cast<const T*>(nullptr), pre)))
    return;
  gemm_cuda<T>(ctx, s, {}, a, b, grad_pre);
  // In place: each element is read and then written by the same thread.
  gelu_backward_cuda<T>(grad_pre, grad_pre, pre, s.m * s.n, ctx.stream);
}

void set_cublaslt_epilogues_enabled(bool enabled) { epilogues_enabled = enabled; }
int64_t cublaslt_epilogue_fallbacks() { return epilogue_fallbacks; }

template <class T>
void column_sums_cuda(const cuda::Context& ctx, T* out, const T* x, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  using D = cuda_t<T>;
  constexpr int kPack = kPackBytes / sizeof(T);
  const bool packed = cols % kPack == 0 && is_pack_aligned(x);
  const int64_t tile_columns = kSumLanes * (packed ? kPack : 1), tiles = (cols + tile_columns - 1) / tile_columns;
  // Chunks of whole row-lane rounds; at most as many partials as the workspace holds.
  const int64_t max_chunks = std::max<int64_t>(1, static_cast<int64_t>(ctx.workspace_bytes / sizeof(float)) / cols);
  const int64_t chunks = std::clamp<int64_t>((kSumBlocks + tiles - 1) / tiles, 1, std::min(max_chunks, int64_t{65535}));
  const int64_t rows_per_chunk =
      std::max<int64_t>(kSumRowLanes, (rows + chunks * kSumRowLanes - 1) / (chunks * kSumRowLanes) * kSumRowLanes);
  const int64_t used_chunks = std::max<int64_t>(1, (rows + rows_per_chunk - 1) / rows_per_chunk);
  FT_CHECK(tiles <= INT_MAX, "column_sums_cuda: ", cols, " columns exceed the grid");
  float* partials = static_cast<float*>(ctx.workspace);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(used_chunks));
  if (packed)
    column_partials_kernel<D, kPack>
        <<<grid, kSumThreads, 0, ctx.stream>>>(partials, device_ptr(x), rows, cols, rows_per_chunk);
  else
    column_partials_kernel<D, 1>
        <<<grid, kSumThreads, 0, ctx.stream>>>(partials, device_ptr(x), rows, cols, rows_per_chunk);
  FT_CUDA_CHECK_LAUNCH();
  launch_programmatic(column_sums_kernel<D>, dim3(static_cast<unsigned>((cols + kSumThreads - 1) / kSumThreads)),
                      dim3(kSumThreads), ctx.stream, device_ptr(out), static_cast<const float*>(partials), used_chunks,
                      cols);
}

#define FT_INSTANTIATE(T)                                                                                             \
  template void gemm_cuda<T, T>(const cuda::Context&, const GemmShape&, const GemmBatch&, const T*, const T*, T*,     \
                                float, bool);                                                                         \
  template void gemm_bias_cuda<T>(const cuda::Context&, const GemmShape&, const T*, const T*, const T*, T*);          \
  template void gemm_bias_grad_cuda<T>(const cuda::Context&, const GemmShape&, const T*, const T*, T*, T*);           \
  template void gemm_bias_gelu_cuda<T>(const cuda::Context&, const GemmShape&, const T*, const T*, const T*, T*, T*); \
  template void gemm_dgelu_cuda<T>(const cuda::Context&, const GemmShape&, const T*, const T*, const T*, T*);         \
  template void column_sums_cuda<T>(const cuda::Context&, T*, const T*, int64_t, int64_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(bfloat16)
FT_INSTANTIATE(half)
#undef FT_INSTANTIATE
template void gemm_cuda<bfloat16, float>(const cuda::Context&, const GemmShape&, const GemmBatch&, const bfloat16*,
                                         const bfloat16*, float*, float, bool);
template void gemm_cuda<half, float>(const cuda::Context&, const GemmShape&, const GemmBatch&, const half*, const half*,
                                     float*, float, bool);

}  // namespace ft::kernels
