// Layer normalisation on the GPU, forward and backward, beside its CPU reference
// layer_norm_cpu.cpp (the formulas are written out in layer_norm_cpu.h).
//
// Forward: one warp per row. GPT-2's rows are 768 to 1600 values, 24 to 50 per lane, so a
// warp's shuffles reduce a row without shared memory or barriers. The row is read three times
// (sum, sum of squared deviations, output): the two-pass variance keeps the digits that
// E[x^2] - E[x]^2 would lose, and the second and third reads hit L1. Rows are loaded 16 bytes
// at a time when the row length and every pointer allow it, else element by element.
//
// The residual add fused in front (GPT-2's x = x + branch; y = layer_norm(x)): the same warp
// per row reads x and branch once, writes their sum rounded to T (exactly what add would give,
// and what the backward will read back), and keeps that rounded row in shared memory for the
// two later passes instead of reading it back from global memory. Each lane rereads only the
// elements it wrote itself, so the warps need no barrier. A row too long for shared memory
// (over 48 KiB) is reread from the sum just written instead.
//
// Backward: dx is again one warp per row (two row sums, then the formula). The parameter
// gradients are sums over all rows, and the one subtle decision is how to add them up: float
// atomics would make dweight change in its last bits from run to run, so each block instead
// sums a tile of 32 columns over a chunk of rows into its own fp32 partial, and a second small
// kernel adds the chunks' partials in order. Same inputs, same bits.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <initializer_list>

#include "framework/cuda/check.h"
#include "framework/dtype.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/layer_norm/layer_norm_cuda.h"

namespace ft::kernels {
namespace {

// One warp per row, 8 rows per block: 256 threads, the common block size, and enough rows in
// flight per block to hide the latency of the dependent row reductions.
constexpr int kRowsPerBlock = 8;
constexpr int kRowThreads = kRowsPerBlock * 32;
// 16-byte loads: 4 floats or 8 halves per instruction, the widest a thread can issue.
constexpr int kVectorBytes = 16;

// The fused forward's rows in shared memory: at most the 48 KiB a block gets without opting in
// to more. Up to kRowsPerBlock rows (8 x 768 f32 = 24 KiB); wider rows get fewer warps a block.
constexpr int64_t kSharedRowBytes = 48 * 1024;

// The parameter gradients: a block owns 32 columns (one per lane, so each warp reads 32
// neighbouring values of a row: coalesced) and a chunk of rows, shared out over its 8 warps.
// 128 rows a chunk gives GPT-2's 8192 x 768 activations 64 chunks x 24 column tiles = 1536
// blocks, several waves over any current GPU, and keeps the partials small (2 x 64 x 768).
constexpr int kParamColumns = 32;
constexpr int kParamWarps = 8;
constexpr int kParamRowsPerChunk = 128;

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <int N, class T>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <int N, class T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& pack) {
  *reinterpret_cast<Pack<T, N>*>(p) = pack;
}

// The row a warp works on (rows are warp-uniform, so a warp leaves or stays as a whole).
__device__ __forceinline__ int64_t warp_row() {
  return blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.x / 32;
}

// Each lane visits the packs lane, lane + 32, ... of a row: index j of the first element.
// With N > 1, cols is a multiple of N, so a pack never crosses the row's end.
#define FOR_EACH_PACK(j, cols) for (int j = (threadIdx.x % 32) * N; j < (cols); j += 32 * N)

template <class T, int N>
__global__ void layer_norm_forward_kernel(T* y, float* mean, float* rstd, const T* x, const T* weight, const T* bias,
                                          int64_t rows, int cols, float eps) {
  const int64_t row = warp_row();
  if (row >= rows) return;
  const T* xr = x + row * cols;
  float sum = 0.0f;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> xp = load_pack<N>(xr + j);
    for (int k = 0; k < N; ++k) sum += to_float(xp.v[k]);
  }
  const float m = warp_sum(sum) / cols;
  float squares = 0.0f;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> xp = load_pack<N>(xr + j);
    for (int k = 0; k < N; ++k) {
      const float d = to_float(xp.v[k]) - m;
      squares += d * d;
    }
  }
  const float s = 1.0f / sqrtf(warp_sum(squares) / cols + eps);
  T* yr = y + row * cols;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> xp = load_pack<N>(xr + j), wp = load_pack<N>(weight + j), bp = load_pack<N>(bias + j);
    Pack<T, N> out;
    for (int k = 0; k < N; ++k)
      out.v[k] = from_float<T>((to_float(xp.v[k]) - m) * s * to_float(wp.v[k]) + to_float(bp.v[k]));
    store_pack<N>(yr + j, out);
  }
  if (threadIdx.x % 32 == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// kept_in_shared: the warps' rows live in dynamic shared memory (cols values each), else each
// row's sum is reread from global memory.
template <class T, int N>
__global__ void add_layer_norm_forward_kernel(T* sum, T* y, float* mean, float* rstd, const T* x, const T* branch,
                                              const T* weight, const T* bias, int64_t rows, int cols, float eps,
                                              bool kept_in_shared) {
  extern __shared__ __align__(16) unsigned char shared_rows[];
  const int warp = threadIdx.x / 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + warp;
  if (row >= rows) return;
  const int64_t offset = row * cols;
  T* sum_row = sum + offset;
  T* kept = kept_in_shared ? reinterpret_cast<T*>(shared_rows) + static_cast<int64_t>(warp) * cols : sum_row;
  float total = 0.0f;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> xp = load_pack<N>(x + offset + j), bp = load_pack<N>(branch + offset + j);
    Pack<T, N> sp;
    for (int k = 0; k < N; ++k) {
      sp.v[k] = from_float<T>(to_float(xp.v[k]) + to_float(bp.v[k]));
      total += to_float(sp.v[k]);
    }
    store_pack<N>(sum_row + j, sp);
    if (kept_in_shared) store_pack<N>(kept + j, sp);
  }
  const float m = warp_sum(total) / cols;
  float squares = 0.0f;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> sp = load_pack<N>(kept + j);
    for (int k = 0; k < N; ++k) {
      const float d = to_float(sp.v[k]) - m;
      squares += d * d;
    }
  }
  const float s = 1.0f / sqrtf(warp_sum(squares) / cols + eps);
  T* yr = y + offset;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> sp = load_pack<N>(kept + j), wp = load_pack<N>(weight + j), bp = load_pack<N>(bias + j);
    Pack<T, N> out;
    for (int k = 0; k < N; ++k)
      out.v[k] = from_float<T>((to_float(sp.v[k]) - m) * s * to_float(wp.v[k]) + to_float(bp.v[k]));
    store_pack<N>(yr + j, out);
  }
  if (threadIdx.x % 32 == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

template <class T, int N>
__global__ void layer_norm_backward_dx_kernel(T* dx, const T* dy, const T* x, const T* weight, const float* mean,
                                              const float* rstd, int64_t rows, int cols) {
  const int64_t row = warp_row();
  if (row >= rows) return;
  const T* xr = x + row * cols;
  const T* dyr = dy + row * cols;
  const float m = mean[row], s = rstd[row];
  float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> xp = load_pack<N>(xr + j), gp = load_pack<N>(dyr + j), wp = load_pack<N>(weight + j);
    for (int k = 0; k < N; ++k) {
      const float dxhat = to_float(gp.v[k]) * to_float(wp.v[k]);
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * (to_float(xp.v[k]) - m) * s;
    }
  }
  const float mean_dxhat = warp_sum(sum_dxhat) / cols;
  const float mean_dxhat_xhat = warp_sum(sum_dxhat_xhat) / cols;
  T* dxr = dx + row * cols;
  FOR_EACH_PACK(j, cols) {
    const Pack<T, N> xp = load_pack<N>(xr + j), gp = load_pack<N>(dyr + j), wp = load_pack<N>(weight + j);
    Pack<T, N> out;
    for (int k = 0; k < N; ++k) {
      const float xhat = (to_float(xp.v[k]) - m) * s;
      const float dxhat = to_float(gp.v[k]) * to_float(wp.v[k]);
      out.v[k] = from_float<T>(s * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
    }
    store_pack<N>(dxr + j, out);
  }
}

#undef FOR_EACH_PACK

// partials: [2][chunks][cols], dweight's then dbias's; block (chunk, column tile) writes its
// chunk's sums for its 32 columns.
template <class T>
__global__ void layer_norm_param_partials_kernel(float* partials, const T* dy, const T* x, const float* mean,
                                                 const float* rstd, int64_t rows, int cols) {
  __shared__ float dweight_sums[kParamWarps][kParamColumns];
  __shared__ float dbias_sums[kParamWarps][kParamColumns];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int col = blockIdx.y * kParamColumns + lane;
  const int64_t chunk = blockIdx.x, chunks = gridDim.x;
  const int64_t chunk_end = (chunk + 1) * kParamRowsPerChunk, row_end = chunk_end < rows ? chunk_end : rows;
  float dweight = 0.0f, dbias = 0.0f;
  if (col < cols) {
    for (int64_t r = chunk * kParamRowsPerChunk + warp; r < row_end; r += kParamWarps) {
      const float g = to_float(dy[r * cols + col]);
      dweight += g * (to_float(x[r * cols + col]) - mean[r]) * rstd[r];
      dbias += g;
    }
  }
  dweight_sums[warp][lane] = dweight;
  dbias_sums[warp][lane] = dbias;
  __syncthreads();
  if (warp != 0 || col >= cols) return;
  dweight = dweight_sums[0][lane];
  dbias = dbias_sums[0][lane];
  for (int w = 1; w < kParamWarps; ++w) {
    dweight += dweight_sums[w][lane];
    dbias += dbias_sums[w][lane];
  }
  partials[chunk * cols + col] = dweight;
  partials[(chunks + chunk) * cols + col] = dbias;
}

// One thread per column adds the chunks' partials in chunk order.
template <class T>
__global__ void layer_norm_param_sums_kernel(T* dweight, T* dbias, const float* partials, int64_t chunks, int cols) {
  for (int64_t col = global_index(); col < cols; col += grid_stride()) {
    float w = 0.0f, b = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) {
      w += partials[c * cols + col];
      b += partials[(chunks + c) * cols + col];
    }
    if (dweight) dweight[col] = from_float<T>(w);
    if (dbias) dbias[col] = from_float<T>(b);
  }
}

int64_t param_chunks(int64_t rows) { return (rows + kParamRowsPerChunk - 1) / kParamRowsPerChunk; }

// Whether every pointer is 16-byte aligned and rows split into whole packs of N elements.
template <int N>
bool packs_fit(int64_t cols, std::initializer_list<const void*> pointers) {
  if (cols % N != 0) return false;
  for (const void* p : pointers)
    if (p && reinterpret_cast<uintptr_t>(p) % kVectorBytes != 0) return false;
  return true;
}

void check_sizes(const char* what, int64_t rows, int64_t cols) {
  FT_CHECK(cols <= INT_MAX && (rows + kRowsPerBlock - 1) / kRowsPerBlock <= INT_MAX, what, ": ", rows, " rows of ",
           cols, " values exceed the kernel's grid (rows / 8 and cols must fit in an int)");
}

}  // namespace

template <class T>
void layer_norm_forward_cuda(T* y, float* mean, float* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                             int64_t cols, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  check_sizes("layer_norm forward", rows, cols);
  using D = cuda_t<T>;
  constexpr int kPack = kVectorBytes / sizeof(T);
  const int blocks = static_cast<int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const int c = static_cast<int>(cols);
  if (packs_fit<kPack>(cols, {y, x, weight, bias}))
    layer_norm_forward_kernel<D, kPack><<<blocks, kRowThreads, 0, stream>>>(
        device_ptr(y), mean, rstd, device_ptr(x), device_ptr(weight), device_ptr(bias), rows, c, eps);
  else
    layer_norm_forward_kernel<D, 1><<<blocks, kRowThreads, 0, stream>>>(
        device_ptr(y), mean, rstd, device_ptr(x), device_ptr(weight), device_ptr(bias), rows, c, eps);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T>
void add_layer_norm_forward_cuda(T* sum, T* y, float* mean, float* rstd, const T* x, const T* branch, const T* weight,
                                 const T* bias, int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  check_sizes("add_layer_norm forward", rows, cols);
  using D = cuda_t<T>;
  constexpr int kPack = kVectorBytes / sizeof(T);
  const int64_t row_bytes = cols * static_cast<int64_t>(sizeof(T));
  const bool kept_in_shared = row_bytes <= kSharedRowBytes;
  const int64_t rows_per_block =
      kept_in_shared ? std::min<int64_t>(kRowsPerBlock, kSharedRowBytes / row_bytes) : kRowsPerBlock;
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  FT_CHECK(blocks <= INT_MAX, "add_layer_norm forward: ", rows, " rows of ", cols, " values exceed the kernel's grid (",
           INT_MAX, " blocks of ", rows_per_block, " rows)");
  const size_t shared_bytes = kept_in_shared ? static_cast<size_t>(rows_per_block * row_bytes) : 0;
  auto launch = [&](auto kernel) {
    kernel<<<static_cast<int>(blocks), static_cast<int>(rows_per_block * 32), shared_bytes, stream>>>(
        device_ptr(sum), device_ptr(y), mean, rstd, device_ptr(x), device_ptr(branch), device_ptr(weight),
        device_ptr(bias), rows, static_cast<int>(cols), eps, kept_in_shared);
  };
  if (packs_fit<kPack>(cols, {sum, y, x, branch, weight, bias}))
    launch(add_layer_norm_forward_kernel<D, kPack>);
  else
    launch(add_layer_norm_forward_kernel<D, 1>);
  FT_CUDA_CHECK_LAUNCH();
}

int64_t layer_norm_backward_scratch_floats(int64_t rows, int64_t cols) { return 2 * param_chunks(rows) * cols; }

template <class T>
void layer_norm_backward_cuda(T* dx, T* dweight, T* dbias, float* scratch, const T* dy, const T* x, const T* weight,
                              const float* mean, const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
  check_sizes("layer_norm backward", rows, cols);
  using D = cuda_t<T>;
  const int c = static_cast<int>(cols);
  if (dx && rows > 0) {
    constexpr int kPack = kVectorBytes / sizeof(T);
    const int blocks = static_cast<int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
    if (packs_fit<kPack>(cols, {dx, dy, x, weight}))
      layer_norm_backward_dx_kernel<D, kPack><<<blocks, kRowThreads, 0, stream>>>(
          device_ptr(dx), device_ptr(dy), device_ptr(x), device_ptr(weight), mean, rstd, rows, c);
    else
      layer_norm_backward_dx_kernel<D, 1><<<blocks, kRowThreads, 0, stream>>>(
          device_ptr(dx), device_ptr(dy), device_ptr(x), device_ptr(weight), mean, rstd, rows, c);
    FT_CUDA_CHECK_LAUNCH();
  }
  if (!dweight && !dbias) return;
  const int64_t chunks = param_chunks(rows), column_tiles = (cols + kParamColumns - 1) / kParamColumns;
  FT_CHECK(column_tiles <= 65535 && chunks <= INT_MAX, "layer_norm backward: ", cols, " columns and ", rows,
           " rows exceed the parameter-gradient grid (at most ", 65535 * kParamColumns, " columns)");
  if (chunks > 0) {
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(column_tiles));
    layer_norm_param_partials_kernel<D>
        <<<grid, kParamWarps * 32, 0, stream>>>(scratch, device_ptr(dy), device_ptr(x), mean, rstd, rows, c);
    FT_CUDA_CHECK_LAUNCH();
  }
  layer_norm_param_sums_kernel<D>
      <<<blocks_for(cols), kBlockThreads, 0, stream>>>(device_ptr(dweight), device_ptr(dbias), scratch, chunks, c);
  FT_CUDA_CHECK_LAUNCH();
}

#define FT_INSTANTIATE(T)                                                                                             \
  template void layer_norm_forward_cuda<T>(T*, float*, float*, const T*, const T*, const T*, int64_t, int64_t, float, \
                                           cudaStream_t);                                                             \
  template void add_layer_norm_forward_cuda<T>(T*, T*, float*, float*, const T*, const T*, const T*, const T*,        \
                                               int64_t, int64_t, float, cudaStream_t);                                \
  template void layer_norm_backward_cuda<T>(T*, T*, T*, float*, const T*, const T*, const T*, const float*,           \
                                            const float*, int64_t, int64_t, cudaStream_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(ft::bfloat16)
FT_INSTANTIATE(ft::half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
