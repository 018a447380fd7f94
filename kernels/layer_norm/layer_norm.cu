// Layer normalisation on the GPU, forward and backward, beside its CPU reference
// layer_norm_cpu.cpp (the formulas are written out in layer_norm_cpu.h).
//
// Forward: one warp per row. GPT-2's rows are 768 to 1600 values, 24 to 50 per lane, so a
// warp's shuffles reduce a row without shared memory or barriers. The variance is two-pass (sum
// of squared deviations from the mean): it keeps the digits that E[x^2] - E[x]^2 would lose.
// The plain forward and the one with the residual add fused in front (GPT-2's x = x + branch;
// y = layer_norm(x)) are one kernel, branch and sum null for the plain one. The fused one writes
// the sum rounded to T (exactly what add would give, and what the backward will read back) and
// normalises that rounded row. Where the rows split into 16-byte packs of at most 8 a lane, a
// lane loads all its packs at once (the whole row in flight per warp) and keeps them in
// registers for the three passes. Other rows take a streamed kernel that keeps each warp's row
// in shared memory (each lane rereads only what it wrote itself, so no barrier), or rereads it
// from global memory when it is over 48 KiB.
//
// Backward: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat = dy *
// weight; dweight = sum over rows of dy * xhat and dbias = sum of dy. The backward is pure
// memory traffic (read dy and x, write dx), so the fast path reads each row once and splits it
// over a row group of several warps, one 16-byte pack a lane (8 bf16/f16 or 4 f32 columns:
// GPT-2's 768 columns are 3 warps in bf16, 6 in f32). A lane keeps its pack of x and dy in
// registers from the row sums to the dx store and adds dy * xhat and dy into fp32 sums for its
// own columns as it goes, so the parameter gradients cost no second read. Owning one pack keeps
// a lane at 64 registers (16 column sums, the current and the next row's packs), 30 warps a
// multiprocessor in bf16; a row's dependent chain (loads, warp shuffles, one named barrier of
// its group, dx) is a third of a warp-per-row kernel's; and every lane loads its next row
// before it works on the current one (and asks L2 for the row after), so its group's next bytes
// are in flight through the row's sums. (A warp a row with 24 columns a lane took 128 registers:
// 16 warps an SM, each walking its rows one long chain after another, latency-bound at ~50% of
// the bandwidth.) f32 takes 6 warps of one pack a lane rather than 3 of two: 56 registers, 36
// warps a multiprocessor, where two packs a lane would need ~24 registers more and spill.
//
// The one subtle decision is how the parameter gradients are added up: float atomics would
// make dweight change in its last bits from run to run. Instead each block owns a fixed chunk
// of rows (a function of the row count alone, about 256 chunks: enough blocks to fill the GPU,
// few enough that the fp32 partials stay a few percent of the traffic), its row groups' per-lane
// sums are added in group order through shared memory into one fp32 partial per chunk, and a
// second small kernel adds the chunks' partials in a fixed order (on compute capability 9.0 on,
// a programmatic dependent launch: it is launched during the first kernel's tail and waits for
// its end on the device). The row sums that dx needs are added warp by warp in warp order. Same
// inputs, same bits. Rows wider than 16 warps of packs or not 16-byte aligned take a slower path
// with the same chunks: dx with one warp a row, rereading the row through L1, and the partials
// from a kernel that walks 32 columns of a chunk.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#include "framework/dtype.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/common/programmatic_launch.cuh"
#include "kernels/layer_norm/layer_norm_cuda.h"

namespace ft::kernels {
namespace {

// One warp per row, 8 rows per block: 256 threads, the common block size, and enough rows in
// flight per block to hide the latency of the dependent row reductions.
constexpr int kRowsPerBlock = 8;
constexpr int kRowThreads = kRowsPerBlock * 32;
// The resident forward holds one row a warp, so its bytes in flight are the warps an SM holds:
// up to 3 packs a lane (GPT-2's 768 bf16 values), five blocks (40 warps, at most 48 registers a
// thread, enough without spilling) keep ~60 KiB in flight where the register count left to
// itself (~52) would allow four. Wider rows bring more bytes a warp; they get no minimum.
constexpr int resident_forward_blocks_per_sm(int packs) { return packs <= 3 ? 5 : 1; }
// 16-byte loads: 4 floats or 8 halves per instruction, the widest a thread can issue.
constexpr int kVectorBytes = 16;

// The fused forward's rows in shared memory: at most the 48 KiB a block gets without opting in
// to more. Up to kRowsPerBlock rows (8 x 768 f32 = 24 KiB); wider rows get fewer warps a block.
constexpr int64_t kSharedRowBytes = 48 * 1024;

// The parameter gradients' row chunks: about this many (one block each), so that GPT-2's 8 or
// 16 x 1024 rows fill an H100/H200 (132 SMs x 2 blocks of the grouped backward) in one wave
// while the partials (2 x 256 x 768 floats, 1.5 MiB) stay ~2% of the traffic.
constexpr int64_t kTargetChunks = 256;
// The resident forward holds at most this many 16-byte packs of a row per lane in registers.
constexpr int kMaxResidentPacks = 8;
// The grouped backward's blocks: as many row groups (the warps_per_row = packs / 32 warps, one
// 16-byte pack a lane, that hold one row) as fit in grouped_block_warps, two blocks a
// multiprocessor: with 256 chunks on 132 multiprocessors every block is then resident in one
// wave. A bf16/f16 lane needs 64 registers (16 fp32 column sums, its packs of the current and
// the next row, the weights): blocks of 16 warps, two filling the register file (GPT-2's 768
// columns: 5 groups of 3 warps, 30 warps a multiprocessor). An f32 lane has 8 column sums and
// fits in 56 registers without spilling: blocks of 18 warps (3 groups of 6 at 768 columns, 36
// warps). Wider rows than one block take the streamed path.
constexpr int kGroupedBlocksPerSm = 2;
template <class T>
constexpr int grouped_block_warps() {
  return sizeof(T) == 4 ? 18 : 16;
}
// The warps a row takes that the grouped backward has compiled in (its row sums then add the
// group's warps without a loop): GPT-2's 768 columns, 3 warps in bf16/f16 and 6 in f32. Other
// widths pass theirs at run time.
template <class T>
constexpr int compiled_warps_per_row() {
  return 768 / (32 * (kVectorBytes / static_cast<int>(sizeof(T))));
}
// A group syncs on its own named barrier, 1 to 15 (0 is __syncthreads's): at most 15 a block.
constexpr int kMaxGroups = 15;
// The slow path's partials: a block owns 32 columns (one per lane, so each warp reads 32
// neighbouring values of a row: coalesced) and a chunk of rows, shared out over its 8 warps.
constexpr int kParamColumns = 32;
constexpr int kParamWarps = 8;
// The final sum: a block adds 32 columns' partials of dweight or dbias, its warps taking every
// 32nd chunk, so each thread adds 8 of GPT-2's 256 chunks, all loads in flight together.
constexpr int kSumWarps = 32;

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

// Calls f(std::integral_constant<int, P>) with the fewest packs a lane, among those compiled (1,
// 2, 3, 4, 6, 8), that hold a row of `packs` packs; false when the row is wider than 8 a lane.
template <class F>
bool with_resident_packs(int64_t packs, F&& f) {
  const int64_t per_lane = (packs + 31) / 32;
  if (per_lane <= 1) return f(std::integral_constant<int, 1>{}), true;
  if (per_lane <= 2) return f(std::integral_constant<int, 2>{}), true;
  if (per_lane <= 3) return f(std::integral_constant<int, 3>{}), true;
  if (per_lane <= 4) return f(std::integral_constant<int, 4>{}), true;
  if (per_lane <= 6) return f(std::integral_constant<int, 6>{}), true;
  if (per_lane <= kMaxResidentPacks) return f(std::integral_constant<int, kMaxResidentPacks>{}), true;
  return false;
}

// The first column of a lane's pack p in the resident paths: lane l holds packs l, l + 32, ...
template <int N>
__device__ __forceinline__ int resident_column(int p) {
  return (p * 32 + threadIdx.x % 32) * N;
}

// The forward's fast path, plain (sum and branch null) or fused: a lane loads its P packs of
// the row (and of branch) in one go, so a warp has the whole row in flight, and keeps them in
// registers through the mean, the variance and the output.
template <class T, int N, int P>
__global__ void __launch_bounds__(kRowThreads, resident_forward_blocks_per_sm(P))
    layer_norm_resident_forward_kernel(T* sum, T* y, float* mean, float* rstd, const T* x, const T* branch,
                                       const T* weight, const T* bias, int64_t rows, int cols, float eps) {
  const int64_t row = warp_row();
  if (row >= rows) return;
  const int64_t offset = row * cols;
  Pack<T, N> v[P];
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (resident_column<N>(p) < cols) v[p] = load_pack<N>(x + offset + resident_column<N>(p));
  if (branch) {
    Pack<T, N> b[P];
#pragma unroll
    for (int p = 0; p < P; ++p)
      if (resident_column<N>(p) < cols) b[p] = load_pack<N>(branch + offset + resident_column<N>(p));
#pragma unroll
    for (int p = 0; p < P; ++p) {
      if (resident_column<N>(p) >= cols) continue;
#pragma unroll
      for (int k = 0; k < N; ++k) v[p].v[k] = from_float<T>(to_float(v[p].v[k]) + to_float(b[p].v[k]));
      store_pack<N>(sum + offset + resident_column<N>(p), v[p]);
    }
  }
  float total = 0.0f;
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (resident_column<N>(p) < cols)
#pragma unroll
      for (int k = 0; k < N; ++k) total += to_float(v[p].v[k]);
  const float m = warp_sum(total) / cols;
  float squares = 0.0f;
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (resident_column<N>(p) < cols)
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float d = to_float(v[p].v[k]) - m;
        squares += d * d;
      }
  const float s = 1.0f / sqrtf(warp_sum(squares) / cols + eps);
#pragma unroll
  for (int p = 0; p < P; ++p) {
    const int col = resident_column<N>(p);
    if (col >= cols) continue;
    const Pack<T, N> wp = load_pack<N>(weight + col), bp = load_pack<N>(bias + col);
    Pack<T, N> out;
#pragma unroll
    for (int k = 0; k < N; ++k)
      out.v[k] = from_float<T>((to_float(v[p].v[k]) - m) * s * to_float(wp.v[k]) + to_float(bp.v[k]));
    store_pack<N>(y + offset + col, out);
  }
  if (threadIdx.x % 32 == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// The forward's general path (any alignment, any row length), plain (sum and branch null) or
// fused. kept_in_shared: the warps' rows live in dynamic shared memory (cols values each), else
// each row is reread from x or from the sum just written.
template <class T, int N>
__global__ void layer_norm_streamed_forward_kernel(T* sum, T* y, float* mean, float* rstd, const T* x, const T* branch,
                                                   const T* weight, const T* bias, int64_t rows, int cols, float eps,
                                                   bool kept_in_shared) {
  extern __shared__ __align__(16) unsigned char shared_rows[];
  const int warp = threadIdx.x / 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + warp;
  if (row >= rows) return;
  const int64_t offset = row * cols;
  T* shared_row = reinterpret_cast<T*>(shared_rows) + static_cast<int64_t>(warp) * cols;
  const T* kept = kept_in_shared ? shared_row : branch ? sum + offset : x + offset;
  float total = 0.0f;
  FOR_EACH_PACK(j, cols) {
    Pack<T, N> sp = load_pack<N>(x + offset + j);
    if (branch) {
      const Pack<T, N> bp = load_pack<N>(branch + offset + j);
      for (int k = 0; k < N; ++k) sp.v[k] = from_float<T>(to_float(sp.v[k]) + to_float(bp.v[k]));
      store_pack<N>(sum + offset + j, sp);
    }
    for (int k = 0; k < N; ++k) total += to_float(sp.v[k]);
    if (kept_in_shared) store_pack<N>(shared_row + j, sp);
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

// Waits for the `threads` threads (a multiple of 32) that use barrier `id` (1 to 15; 0 is
// __syncthreads's) and, like __syncthreads, orders their shared-memory accesses.
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

// A 16-byte pack as four 32-bit words, each one f32 or two bf16/f16 (the lower half first): the
// grouped backward keeps its packs so, because ptxas gives each 16-bit value of a Pack<bf16, 8>
// a 32-bit register of its own, twice the registers, and widens the values with bit operations.
struct alignas(16) Words {
  uint32_t w[4];
};

__device__ __forceinline__ Words load_words(const void* p) { return *reinterpret_cast<const Words*>(p); }

// Element k of a pack of T (k known at compile time once the loops are unrolled).
template <class T>
__device__ __forceinline__ float element(const Words& p, int k);
template <>
__device__ __forceinline__ float element<float>(const Words& p, int k) {
  return __uint_as_float(p.w[k]);
}
template <>
__device__ __forceinline__ float element<__nv_bfloat16>(const Words& p, int k) {
  return __uint_as_float(k % 2 == 0 ? p.w[k / 2] << 16 : p.w[k / 2] & 0xffff0000u);
}
template <>
__device__ __forceinline__ float element<__half>(const Words& p, int k) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(k % 2 == 0 ? p.w[k / 2] : p.w[k / 2] >> 16)));
}

// The pack of T holding values v rounded to nearest, as from_float<T> rounds them.
template <class T, int N>
__device__ __forceinline__ Words to_words(const float (&v)[N]) {
  Words p;
  if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int k = 0; k < 4; ++k) p.w[k] = __float_as_uint(v[k]);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, __half>) {
        const __half2 pair = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
        memcpy(&p.w[i], &pair, sizeof(uint32_t));
      } else {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
        memcpy(&p.w[i], &pair, sizeof(uint32_t));
      }
    }
  }
  return p;
}

// Hides a pack's value from the compiler (an empty asm that claims to change it in place), so
// that the floats derived from it are recomputed where used: left to itself, the compiler
// hoists the weights' 8 bf16-to-float widenings out of the row loop, 4 registers more a lane
// for 8 bit operations a row saved, and spills.
__device__ __forceinline__ void forget_derived_values(Words& p) {
  asm volatile("" : "+r"(p.w[0]), "+r"(p.w[1]), "+r"(p.w[2]), "+r"(p.w[3]));
}

// What the grouped backward loads a row ahead: a lane's pack of the row's x and dy, and the
// row's statistics.
struct RowSlice {
  Words x, dy;
  float mean, rstd;
};

// Row `row` of mean and rstd, and the packs at element `offset` of x and dy.
template <class T>
__device__ __forceinline__ RowSlice load_row_slice(const T* dy, const T* x, const float* mean, const float* rstd,
                                                   int64_t row, int64_t offset, bool active) {
  RowSlice slice;
  slice.mean = mean[row];
  slice.rstd = rstd[row];
  if (active) {
    slice.x = load_words(x + offset);
    slice.dy = load_words(dy + offset);
  }
  return slice;
}

// Asks L2 for the packs at element `offset` of x and dy, which a lane will load later: no
// registers held, nothing waited for.
template <class T>
__device__ __forceinline__ void prefetch_to_l2(const T* dy, const T* x, int64_t offset) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(x + offset));
  asm volatile("prefetch.global.L2 [%0];" ::"l"(dy + offset));
}

// The sums of (a, b) over the lanes of a row group, in a fixed order (the same bits in every
// lane and on every run). A warp adds both in 5 shuffles rather than two warp_sums' 10: the
// first swaps a and b between its halves, so that its lower 16 lanes go on adding a and its
// upper 16 b; lanes 0 and 16 write the warp's two sums to its slot, and after the group's
// barrier every lane adds the group's slots in warp order. kWarpsPerRow is the group's warps
// when compiled in (that addition then has no loop), else 0 and warps_per_row says. The slots
// alternate with the row's parity so that one barrier a row is enough: a warp writes a parity's
// slot again two rows later, after the next row's barrier, which no warp of its group passes
// before every warp has read this row's slots.
template <int kWarpsPerRow>
__device__ __forceinline__ float2 row_group_sums(float a, float b, float* parity_slots, int group, int warps_per_row) {
  if constexpr (kWarpsPerRow > 0) warps_per_row = kWarpsPerRow;
  const int lane = threadIdx.x % 32;
  const bool upper = lane >= 16;
  float v = (upper ? b : a) + __shfl_xor_sync(0xffffffffu, upper ? a : b, 16);
  for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (lane % 16 == 0) parity_slots[threadIdx.x / 32 * 2 + upper] = v;
  named_barrier(1 + group, warps_per_row * 32);
  const float2* group_slots = reinterpret_cast<const float2*>(parity_slots) + group * warps_per_row;
  float2 total = group_slots[0];
  for (int w = 1; w < warps_per_row; ++w) {
    total.x += group_slots[w].x;
    total.y += group_slots[w].y;
  }
  return total;
}

// Where column j of row group g keeps its sum in the grouped backward's shared buffer: one
// padding float after each lane's N columns, so that a warp's lanes, N floats apart, store to
// 32 different banks.
template <int N>
__device__ __forceinline__ int padded_column(int group, int group_threads, int j) {
  return group * group_threads * (N + 1) + j + j / N;
}

// Adds the block's row groups' per-lane column sums in group order into `out` (cols floats: its
// chunk's partial of dweight or of dbias), through shared memory. Every thread of the block calls it.
template <int N>
__device__ __forceinline__ void add_group_column_sums(float* out, const float (&sums)[N], float* buffer, int cols,
                                                      int group_threads) {
  const int group = threadIdx.x / group_threads, lane_column = threadIdx.x % group_threads * N;
  __syncthreads();  // the buffer's previous sums have been read
#pragma unroll
  for (int k = 0; k < N; ++k) buffer[padded_column<N>(group, group_threads, lane_column + k)] = sums[k];
  __syncthreads();
  const int groups = blockDim.x / group_threads;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    float total = 0.0f;
    for (int g = 0; g < groups; ++g) total += buffer[padded_column<N>(g, group_threads, j)];
    out[j] = total;
  }
}

// The fast backward. Block b owns rows [b, b + 1) * rows_per_chunk; its row groups of
// warps_per_row warps (kWarpsPerRow, or 0 where it is known only at run time) take rows g,
// g + groups, ...; lane t of a group owns the pack of columns [t N, t N + N) (lanes past the
// row's end hold nothing and add zeros). A lane loads its next row's packs before it works on
// the current one, so they are in flight through the row's sums, barrier and dx store, and adds
// dy * xhat and dy into fp32 sums for its N columns over all its rows. dx and partials may each
// be null. row_step (groups * cols) and inv_cols (1 / cols) come from the host: as kernel
// parameters they take no registers.
//
// The kernel is close to issue-bound, so a row's instructions are counted: each row's addresses
// are an addition to the last row's, xhat is one fma (x s - m s), and dx, rstd * (dxhat -
// mean(dxhat) - xhat * mean(dxhat * xhat)), is regrouped per row into dxhat * rstd + x * c1 + c0:
// a product and two fmas an element. Both round differently from the textbook forms by an
// ulp-level amount relative to |mean| * rstd, which the stored mean's own rounding already has.
template <class T, int kWarpsPerRow>
__global__ void __launch_bounds__(grouped_block_warps<T>() * 32, kGroupedBlocksPerSm)
    layer_norm_backward_grouped_kernel(T* dx, float* partials, const T* dy, const T* x, const T* weight,
                                       const float* mean, const float* rstd, int64_t rows, int cols,
                                       int64_t rows_per_chunk, int warps_per_row, int64_t row_step, float inv_cols) {
#if __CUDA_ARCH__ >= 900
  // The parameter sums' kernel may launch now: it waits for this grid to finish before it reads
  // the partials, but its launch overlaps this grid's tail instead of following it. This grid is
  // itself launched as a programmatic dependent of the stream's previous work: it waits for that
  // to finish before it reads dy (which the previous work may have written).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  constexpr int N = kVectorBytes / sizeof(T), kWarps = grouped_block_warps<T>();
  if constexpr (kWarpsPerRow > 0) warps_per_row = kWarpsPerRow;
  __shared__ __align__(8) float row_slots[2][2 * kWarps];  // a float2 a warp: its (a, b) sums
  __shared__ float column_buffer[kWarps * 32 * (N + 1)];
  const int group_threads = warps_per_row * 32, groups = blockDim.x / group_threads;
  const int group = threadIdx.x / group_threads, col = threadIdx.x % group_threads * N;
  const bool active = col < cols;
  const int64_t chunk_begin = blockIdx.x * rows_per_chunk;
  const int64_t chunk_end = chunk_begin + rows_per_chunk < rows ? chunk_begin + rows_per_chunk : rows;
  const int chunk_rows = static_cast<int>(chunk_end - chunk_begin);
  Words w;
  if (active) w = load_words(weight + col);
  float dweight[N] = {}, dbias[N] = {};
  // The element offset of the lane's pack in its group's current row, and from one row of the
  // group to its next.
  int64_t offset = (chunk_begin + group) * cols + col;
  RowSlice current;
  if (group < chunk_rows) current = load_row_slice(dy, x, mean, rstd, chunk_begin + group, offset, active);
#pragma unroll 1
  for (int i = group, parity = 0; i < chunk_rows; i += groups, parity ^= 1, offset += row_step) {
    if (active && i + 2 * groups < chunk_rows) prefetch_to_l2(dy, x, offset + 2 * row_step);
    RowSlice next;
    if (i + groups < chunk_rows)
      next = load_row_slice(dy, x, mean, rstd, chunk_begin + i + groups, offset + row_step, active);
    const float s = current.rstd, ms = current.mean * s;
    float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
    if (active) {
      forget_derived_values(w);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float g = element<T>(current.dy, k), xhat = fmaf(element<T>(current.x, k), s, -ms);
        const float dxhat = g * element<T>(w, k);
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
        dweight[k] += g * xhat;
        dbias[k] += g;
      }
    }
    if (dx) {  // uniform over the grid
      const float2 sums =
          row_group_sums<kWarpsPerRow>(sum_dxhat, sum_dxhat_xhat, row_slots[parity], group, warps_per_row);
      // With a = mean(dxhat) and b = mean(dxhat * xhat): dx = s dxhat - s a - s b (x s - m s).
      const float s_over_cols = s * inv_cols;
      const float sa = s_over_cols * sums.x, sb = s_over_cols * sums.y;
      const float c1 = -sb * s, c0 = fmaf(sb, ms, -sa);
      if (active) {
        forget_derived_values(w);
        float out[N];
#pragma unroll
        for (int k = 0; k < N; ++k) {
          const float dxhat = element<T>(current.dy, k) * element<T>(w, k);
          out[k] = fmaf(element<T>(current.x, k), c1, fmaf(dxhat, s, c0));
        }
        *reinterpret_cast<Words*>(dx + offset) = to_words<T>(out);
      }
    }
    current = next;
  }
  if (!partials) return;  // uniform over the grid
  const int64_t chunk = blockIdx.x, chunks = gridDim.x;
  add_group_column_sums<N>(partials + chunk * cols, dweight, column_buffer, cols, group_threads);
  add_group_column_sums<N>(partials + (chunks + chunk) * cols, dbias, column_buffer, cols, group_threads);
}

// The slow path's partials, in the same layout: block (chunk, column tile) adds its chunk's
// rows for its 32 columns.
template <class T>
__global__ void layer_norm_param_partials_kernel(float* partials, const T* dy, const T* x, const float* mean,
                                                 const float* rstd, int64_t rows, int cols, int64_t rows_per_chunk) {
  __shared__ float dweight_sums[kParamWarps][kParamColumns];
  __shared__ float dbias_sums[kParamWarps][kParamColumns];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int col = blockIdx.y * kParamColumns + lane;
  const int64_t chunk = blockIdx.x, chunks = gridDim.x;
  const int64_t chunk_end = (chunk + 1) * rows_per_chunk, row_end = chunk_end < rows ? chunk_end : rows;
  float dweight = 0.0f, dbias = 0.0f;
  if (col < cols) {
    for (int64_t r = chunk * rows_per_chunk + warp; r < row_end; r += kParamWarps) {
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

// Block (b, which) adds columns [32 b, 32 b + 32) of dweight (which = 0) or dbias (1): warp w
// sums chunks w, w + 32, ... in order, then warp 0 adds the 32 warps' sums in order. With
// GPT-2's 256 chunks a warp has 8 independent loads from L2 in flight at once instead of one
// thread walking the chunks. Writes zeros when there are no chunks (no rows).
template <class T>
__global__ void __launch_bounds__(kSumWarps * 32)
    layer_norm_param_sums_kernel(T* dweight, T* dbias, const float* partials, int64_t chunks, int cols) {
#if __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of the kernel that writes the partials: wait for that
  // grid to finish and its writes to be visible. Every thread waits, before any returns, so this
  // grid never completes before that one (later work in the stream waits for this one only).
  // A programmatic dependent launched after this one (the next backward's grouped kernel) may
  // launch at once and wait likewise.
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  __shared__ float sums[kSumWarps][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, which = blockIdx.y;
  const int64_t col = blockIdx.x * 32LL + lane;
  T* out = which == 0 ? dweight : dbias;
  if (!out) return;  // uniform over the block
  const float* column = partials + which * chunks * cols + col;
  float total = 0.0f;
  if (col < cols) {
#pragma unroll 8
    for (int64_t c = warp; c < chunks; c += kSumWarps) total += column[c * cols];
  }
  sums[warp][lane] = total;
  __syncthreads();
  if (warp != 0 || col >= cols) return;
  total = sums[0][lane];
  for (int i = 1; i < kSumWarps; ++i) total += sums[i][lane];
  out[col] = from_float<T>(total);
}

// Rows per chunk: a function of the row count alone (so of nothing that varies run to run), a
// multiple of 8 (the slow path's 8 warps share a chunk evenly), giving at most kTargetChunks
// chunks.
int64_t rows_per_chunk(int64_t rows) {
  const int64_t target = std::max<int64_t>(1, (rows + kTargetChunks - 1) / kTargetChunks);
  return (target + kRowsPerBlock - 1) / kRowsPerBlock * kRowsPerBlock;
}

int64_t param_chunks(int64_t rows) { return (rows + rows_per_chunk(rows) - 1) / rows_per_chunk(rows); }

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

namespace {

// Both forwards (sum and branch null for the plain one): registers when the rows split into
// 16-byte packs of at most 8 a lane, else the streamed kernel.
template <class D>
void forward(const char* what, D* sum, D* y, float* mean, float* rstd, const D* x, const D* branch, const D* weight,
             const D* bias, int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  check_sizes(what, rows, cols);
  constexpr int kPack = kVectorBytes / sizeof(D);
  const int c = static_cast<int>(cols);
  const bool resident =
      packs_fit<kPack>(cols, {sum, y, x, branch, weight, bias}) && with_resident_packs(cols / kPack, [&](auto packs) {
        constexpr int P = decltype(packs)::value;
        const int blocks = static_cast<int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
        layer_norm_resident_forward_kernel<D, kPack, P>
            <<<blocks, kRowThreads, 0, stream>>>(sum, y, mean, rstd, x, branch, weight, bias, rows, c, eps);
      });
  if (!resident) {
    const int64_t row_bytes = cols * static_cast<int64_t>(sizeof(D));
    const bool kept_in_shared = row_bytes <= kSharedRowBytes;
    const int64_t rows_per_block =
        kept_in_shared ? std::min<int64_t>(kRowsPerBlock, kSharedRowBytes / row_bytes) : kRowsPerBlock;
    const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
    FT_CHECK(blocks <= INT_MAX, what, ": ", rows, " rows of ", cols, " values exceed the kernel's grid (", INT_MAX,
             " blocks of ", rows_per_block, " rows)");
    const size_t shared_bytes = kept_in_shared ? static_cast<size_t>(rows_per_block * row_bytes) : 0;
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<int>(blocks), static_cast<int>(rows_per_block * 32), shared_bytes, stream>>>(
          sum, y, mean, rstd, x, branch, weight, bias, rows, c, eps, kept_in_shared);
    };
    if (packs_fit<kPack>(cols, {sum, y, x, branch, weight, bias}))
      launch(layer_norm_streamed_forward_kernel<D, kPack>);
    else
      launch(layer_norm_streamed_forward_kernel<D, 1>);
  }
  FT_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class T>
void layer_norm_forward_cuda(T* y, float* mean, float* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                             int64_t cols, float eps, cudaStream_t stream) {
  using D = cuda_t<T>;
  forward<D>("layer_norm forward", nullptr, device_ptr(y), mean, rstd, device_ptr(x), nullptr, device_ptr(weight),
             device_ptr(bias), rows, cols, eps, stream);
}

template <class T>
void add_layer_norm_forward_cuda(T* sum, T* y, float* mean, float* rstd, const T* x, const T* branch, const T* weight,
                                 const T* bias, int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  using D = cuda_t<T>;
  forward<D>("add_layer_norm forward", device_ptr(sum), device_ptr(y), mean, rstd, device_ptr(x), device_ptr(branch),
             device_ptr(weight), device_ptr(bias), rows, cols, eps, stream);
}

int64_t layer_norm_backward_scratch_floats(int64_t rows, int64_t cols) { return 2 * param_chunks(rows) * cols; }

namespace {

// The fast path, when the rows split into 16-byte packs, one a lane, of at most a block's warps;
// false otherwise.
template <class D>
bool try_grouped_backward(D* dx, float* partials, const D* dy, const D* x, const D* weight, const float* mean,
                          const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
  constexpr int kPack = kVectorBytes / sizeof(D);
  const int64_t warps_per_row = (cols / kPack + 31) / 32;
  constexpr int kBlockWarps = grouped_block_warps<D>();
  if (!packs_fit<kPack>(cols, {dx, dy, x, weight}) || warps_per_row < 1 || warps_per_row > kBlockWarps) return false;
  const int64_t chunks = param_chunks(rows);
  if (chunks == 0) return true;
  const int groups = std::min<int>(kMaxGroups, kBlockWarps / static_cast<int>(warps_per_row));
  const int threads = groups * static_cast<int>(warps_per_row) * 32;
  auto launch = [&](auto kernel) {
    launch_programmatic(kernel, dim3(static_cast<unsigned>(chunks)), dim3(threads), stream, dx, partials, dy, x, weight,
                        mean, rstd, rows, static_cast<int>(cols), rows_per_chunk(rows), static_cast<int>(warps_per_row),
                        groups * cols, 1.0f / cols);
  };
  constexpr int kCompiledWarps = compiled_warps_per_row<D>();
  if (warps_per_row == kCompiledWarps)
    launch(layer_norm_backward_grouped_kernel<D, kCompiledWarps>);
  else
    launch(layer_norm_backward_grouped_kernel<D, 0>);
  FT_CUDA_CHECK_LAUNCH();
  return true;
}

// The slow path: dx rereading each row through L1, then the partials from a second read.
template <class D>
void streamed_backward(D* dx, float* partials, const D* dy, const D* x, const D* weight, const float* mean,
                       const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int c = static_cast<int>(cols);
  if (dx && rows > 0) {
    constexpr int kPack = kVectorBytes / sizeof(D);
    const int blocks = static_cast<int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
    if (packs_fit<kPack>(cols, {dx, dy, x, weight}))
      layer_norm_backward_dx_kernel<D, kPack>
          <<<blocks, kRowThreads, 0, stream>>>(dx, dy, x, weight, mean, rstd, rows, c);
    else
      layer_norm_backward_dx_kernel<D, 1><<<blocks, kRowThreads, 0, stream>>>(dx, dy, x, weight, mean, rstd, rows, c);
    FT_CUDA_CHECK_LAUNCH();
  }
  const int64_t chunks = param_chunks(rows), column_tiles = (cols + kParamColumns - 1) / kParamColumns;
  if (!partials || chunks == 0) return;
  FT_CHECK(column_tiles <= 65535, "layer_norm backward: ", cols,
           " columns exceed the parameter-gradient grid (at most ", 65535 * kParamColumns, " columns)");
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(column_tiles));
  layer_norm_param_partials_kernel<D>
      <<<grid, kParamWarps * 32, 0, stream>>>(partials, dy, x, mean, rstd, rows, c, rows_per_chunk(rows));
  FT_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class T>
void layer_norm_backward_cuda(T* dx, T* dweight, T* dbias, float* scratch, const T* dy, const T* x, const T* weight,
                              const float* mean, const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
  check_sizes("layer_norm backward", rows, cols);
  using D = cuda_t<T>;
  float* partials = dweight || dbias ? scratch : nullptr;
  if (!try_grouped_backward<D>(device_ptr(dx), partials, device_ptr(dy), device_ptr(x), device_ptr(weight), mean, rstd,
                               rows, cols, stream))
    streamed_backward<D>(device_ptr(dx), partials, device_ptr(dy), device_ptr(x), device_ptr(weight), mean, rstd, rows,
                         cols, stream);
  if (!partials) return;
  // The sums' grid is launched while the partials' kernel ends and waits for it on the device.
  launch_programmatic(layer_norm_param_sums_kernel<D>, dim3(static_cast<unsigned>((cols + 31) / 32), 2),
                      dim3(kSumWarps * 32), stream, device_ptr(dweight), device_ptr(dbias),
                      static_cast<const float*>(partials), param_chunks(rows), static_cast<int>(cols));
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
