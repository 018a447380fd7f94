// Token embedding on the GPU: a gather in the forward, and in the backward the sum of the
// output gradients of all positions that hold the same id into that id's row of dweight.
//
// The backward is where the care goes. Scattering with float atomicAdd would be simple, but
// many positions hit the same few rows (frequent tokens) and contend, and the order of the
// additions, hence the bits of the result, would change from run to run. Instead the positions
// are sorted by id with a counting sort, and the run of each id is summed by the threads that
// own its row: every element of dweight is written once, with `=`, adding the positions in
// increasing order, exactly as the CPU reference does (in f32, the same bits).
//
// The counting sort takes four launches, each small next to the gradient itself: a memset of
// the per-id counts; a histogram whose integer atomics also hand every position a slot in its
// id's run (the totals are deterministic, the slots are not); one block that scans the counts
// into run starts and scatters each position to its slot; and a pass that puts every run in
// increasing position order, each position counting the smaller ones in its run (its rank).
// The one subtle decision is that last pass: the atomics' order is repaired afterwards instead
// of avoided, which costs a position the length of its run in comparisons (a few hundred for a
// frequent token, read from cache) but needs no per-tile counts or block-wide stable ranking.
// The row kernel then finds id r's run at [start[r], start[r + 1]) with no search, and writes
// the whole of dweight in one pass, zeros for the rows no id hits, instead of a memset first.
//
// Both row kernels are memory-bound and move 16 bytes per load and store (4 floats, 8 halves)
// when the rows allow it. A warp takes 32 such packs of one row (768 bf16 channels: three
// warps per row), so a long run (a frequent token; a position id, repeated once per sequence)
// is summed by many warps at once.
//
// Ids must be in range; the loader validates them (data/prepare.cpp). An id outside [0, vocab)
// is made harmless, not reported (that would need a host synchronisation inside the op): it
// gathers a row of zeros and sorts into a run of its own (key `vocab`) that is never summed.
#include <climits>
#include <type_traits>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/embedding/embedding_cuda.h"

namespace ft::kernels {
namespace {

// Packs of a row one warp takes: one per lane.
constexpr int kWarpPacks = 32;
// Positions of a run whose loads the backward issues together before adding them in order. A
// run is a chain of dependent additions, so a long one (a frequent token: hundreds of
// positions) takes about length / kRunUnroll memory latencies; 8 packs of 16 bytes in
// registers still leave half occupancy or better.
constexpr int kRunUnroll = 8;
// Alignment of each buffer carved out of the workspace (a whole number of 128-byte lines).
constexpr size_t kBufferAlignment = 256;
// The one block that scans the counts: the widest block, each thread scanning kScanItems
// counts of its own in registers, so GPT-2's 50K counts take two rounds of block scan.
constexpr int kScanThreads = 1024;
constexpr int kScanItems = 32;
// Positions each thread of that block scatters at once: its loads are a chain (id, then run
// start), so 16K positions in batches of 8 take a few memory latencies, not sixteen.
constexpr int kScatterBatch = 8;

size_t aligned_size(size_t bytes) { return (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment; }

// The counting sort's buffers, carved out of the workspace in this order. Keys run over
// 0..vocab (vocab stands for an invalid id): `starts` holds their counts, then after the scan
// the start of each key's run, with starts[vocab + 1] = tokens.
struct SortBuffers {
  int32_t* starts;     // vocab + 2
  int32_t* slots;      // tokens: each position's slot in its run, in atomic order
  int32_t* scattered;  // tokens: positions grouped by key, each run in atomic order
  int32_t* sorted;     // tokens: positions grouped by key, each run in increasing order
};

size_t starts_bytes(int64_t vocab) { return aligned_size(static_cast<size_t>(vocab + 2) * sizeof(int32_t)); }
size_t positions_bytes(int64_t tokens) { return aligned_size(static_cast<size_t>(tokens) * sizeof(int32_t)); }

SortBuffers carve(void* workspace, int64_t tokens, int64_t vocab) {
  auto* base = static_cast<char*>(workspace);
  const size_t array = positions_bytes(tokens), first = starts_bytes(vocab);
  return SortBuffers{reinterpret_cast<int32_t*>(base), reinterpret_cast<int32_t*>(base + first),
                     reinterpret_cast<int32_t*>(base + first + array),
                     reinterpret_cast<int32_t*>(base + first + 2 * array)};
}

// Positions, counts and run starts are 32-bit.
void check_sizes(int64_t tokens, int64_t vocab) {
  FT_CHECK(tokens < INT_MAX && vocab < INT_MAX - 1, "embedding backward: ", tokens, " ids over a vocabulary of ", vocab,
           "; the CUDA kernels hold positions and ids in 32 bits");
}

// Elements per pack: 16 bytes when every row starts on a 16-byte boundary of both arrays,
// else one (a view of a weight may start anywhere; odd widths break the rows' alignment).
template <class T>
int pack_elements(const void* a, const void* b, int64_t channels) {
  const bool aligned = is_pack_aligned(a) && is_pack_aligned(b) && channels * sizeof(T) % kPackBytes == 0;
  return aligned ? kPackBytes / static_cast<int>(sizeof(T)) : 1;
}

// Warps loop over (row, group of kWarpPacks packs) items; each lane takes one pack of the group.
struct RowGroups {
  int64_t rows, packs_per_row, groups_per_row;
  __host__ __device__ int64_t items() const { return rows * groups_per_row; }
};

RowGroups row_groups(int64_t rows, int64_t channels, int pack) {
  const int64_t packs = channels / pack;
  return RowGroups{rows, packs, (packs + kWarpPacks - 1) / kWarpPacks};
}

int blocks_for_items(const RowGroups& g) { return blocks_for(g.items() * kWarpPacks); }

__device__ __forceinline__ int64_t warp_index() { return global_index() / 32; }
__device__ __forceinline__ int64_t warp_count() { return grid_stride() / 32; }

__device__ __forceinline__ bool in_vocab(int32_t id, int64_t vocab) { return id >= 0 && id < vocab; }

template <class P>
__device__ __forceinline__ P zero_pack() {
  P p;
#pragma unroll
  for (auto& v : p.v) v = from_float<std::remove_reference_t<decltype(v)>>(0.0f);
  return p;
}

// out row t = weight row ids[t], or zeros for an id out of range.
template <int kPack, class T>
__global__ void embedding_forward_kernel(T* __restrict__ out, const int32_t* __restrict__ ids,
                                         const T* __restrict__ weight, int64_t vocab, RowGroups g) {
  using P = Pack<T, kPack>;
  const int lane = threadIdx.x % 32;
  for (int64_t item = warp_index(); item < g.items(); item += warp_count()) {
    const int64_t t = item / g.groups_per_row;
    const int64_t pack = (item - t * g.groups_per_row) * kWarpPacks + lane;
    if (pack >= g.packs_per_row) continue;
    const int32_t id = ids[t];
    reinterpret_cast<P*>(out)[t * g.packs_per_row + pack] =
        in_vocab(id, vocab) ? reinterpret_cast<const P*>(weight)[id * g.packs_per_row + pack] : zero_pack<P>();
  }
}

// The sort key of position t: its id, or vocab for an invalid one.
__device__ __forceinline__ int32_t sort_key(const int32_t* __restrict__ ids, int64_t t, int64_t vocab) {
  const int32_t id = ids[t];
  return in_vocab(id, vocab) ? id : static_cast<int32_t>(vocab);
}

// counts[key] = the positions with that key; each position takes a slot in its key's run. The
// totals are deterministic, the slots are not (the rank pass puts them in order).
__global__ void histogram_kernel(int32_t* __restrict__ counts, int32_t* __restrict__ slots,
                                 const int32_t* __restrict__ ids, int64_t tokens, int64_t vocab) {
  for (int64_t t = global_index(); t < tokens; t += grid_stride())
    slots[t] = atomicAdd(&counts[sort_key(ids, t, vocab)], 1);
}

// Exclusive prefix sum over the block of one value per thread, returned with the block's total.
// `scratch` holds 32 ints in shared memory; every thread of the block must call it.
__device__ __forceinline__ int block_exclusive_scan(int value, int* scratch, int& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  int inclusive = value;
  for (int offset = 1; offset < 32; offset <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += up;
  }
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  int warp_total = lane < warps ? scratch[lane] : 0, warp_prefix = warp_total;
  for (int offset = 1; offset < 32; offset <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, warp_prefix, offset);
    if (lane >= offset) warp_prefix += up;
  }
  total = __shfl_sync(0xffffffffu, warp_prefix, 31);
  const int before_warp = __shfl_sync(0xffffffffu, warp_prefix - warp_total, warp);
  return before_warp + inclusive - value;
}

// One block (kScanThreads): the counts of keys 0..vocab become run starts in place, with
// starts[vocab + 1] = tokens; then every position goes to its slot in its run. The scatter
// reads starts the same block wrote, which __syncthreads makes visible.
__global__ void __launch_bounds__(kScanThreads)
    scan_scatter_kernel(int32_t* __restrict__ starts, int32_t* __restrict__ scattered,
                        const int32_t* __restrict__ slots, const int32_t* __restrict__ ids, int64_t tokens,
                        int64_t vocab) {
  __shared__ int scratch[32];
  const int64_t keys = vocab + 1, tile = int64_t{kScanThreads} * kScanItems;
  int carry = 0;
  for (int64_t base = 0; base < keys; base += tile) {
    const int64_t first = base + int64_t{threadIdx.x} * kScanItems;
    int counts[kScanItems], sum = 0;
#pragma unroll
    for (int j = 0; j < kScanItems; ++j) {
      counts[j] = first + j < keys ? starts[first + j] : 0;
      sum += counts[j];
    }
    int total = 0;
    int running = carry + block_exclusive_scan(sum, scratch, total);
#pragma unroll
    for (int j = 0; j < kScanItems; ++j) {
      if (first + j < keys) starts[first + j] = running;
      running += counts[j];
    }
    carry += total;
  }
  if (threadIdx.x == 0) starts[keys] = static_cast<int32_t>(tokens);
  __syncthreads();
  // A batch of positions per thread at a time, so that one block has many loads in flight.
  for (int64_t base = threadIdx.x; base < tokens; base += int64_t{kScatterBatch} * blockDim.x) {
    int32_t key[kScatterBatch];
#pragma unroll
    for (int u = 0; u < kScatterBatch; ++u) {
      const int64_t t = base + int64_t{u} * blockDim.x;
      key[u] = t < tokens ? sort_key(ids, t, vocab) : 0;
    }
#pragma unroll
    for (int u = 0; u < kScatterBatch; ++u) {
      const int64_t t = base + int64_t{u} * blockDim.x;
      if (t < tokens) scattered[starts[key[u]] + slots[t]] = static_cast<int32_t>(t);
    }
  }
}

// Every run in increasing position order: position p moves to the start of its run plus the
// number of smaller positions in the run (positions are distinct, so the ranks are too). The
// result depends only on the ids, not on the order the atomics handed out.
__global__ void rank_kernel(int32_t* __restrict__ sorted, const int32_t* __restrict__ scattered,
                            const int32_t* __restrict__ starts, const int32_t* __restrict__ ids, int64_t tokens,
                            int64_t vocab) {
  for (int64_t i = global_index(); i < tokens; i += grid_stride()) {
    const int32_t position = scattered[i], key = sort_key(ids, position, vocab);
    const int32_t start = starts[key], end = starts[key + 1];
    int rank = 0;
#pragma unroll 4
    for (int32_t k = start; k < end; ++k) rank += scattered[k] < position;
    sorted[start + rank] = position;
  }
}

template <int kPack, class P>
__device__ __forceinline__ void add_pack(float (&acc)[kPack], const P& d) {
#pragma unroll
  for (int j = 0; j < kPack; ++j) acc[j] += to_float(d.v[j]);
}

// Every row of dweight: the sum of its id's run, in increasing position, or zeros when the id
// occurs nowhere. Each warp takes a contiguous range of items, so the run starts of all its
// rows (rarely more than a few) come in one load, lane i holding the start of the warp's row i.
template <int kPack, class T>
__global__ void embedding_backward_kernel(T* __restrict__ dweight, const int32_t* __restrict__ starts,
                                          const int32_t* __restrict__ positions, const T* __restrict__ dout,
                                          RowGroups g) {
  using P = Pack<T, kPack>;
  const int lane = threadIdx.x % 32;
  const int64_t per_warp = (g.items() + warp_count() - 1) / warp_count();
  const int64_t first = warp_index() * per_warp, last = first + per_warp < g.items() ? first + per_warp : g.items();
  if (first >= last) return;
  const int64_t first_row = first / g.groups_per_row;
  // starts[rows] (the invalid ids' run) ends the last row's run; lanes past it load that entry.
  const int32_t lane_start = starts[first_row + lane <= g.rows ? first_row + lane : g.rows];
  auto run_start = [&](int64_t row) {
    const int64_t i = row - first_row;
    const int32_t cached = __shfl_sync(0xffffffffu, lane_start, static_cast<int>(i % 32));
    return i < 32 ? cached : starts[row];
  };
  for (int64_t item = first; item < last; ++item) {
    const int64_t row = item / g.groups_per_row;
    const int start = run_start(row), end = run_start(row + 1);
    const int64_t pack = (item - row * g.groups_per_row) * kWarpPacks + lane;
    if (pack >= g.packs_per_row) continue;
    const P* column = reinterpret_cast<const P*>(dout) + pack;
    float acc[kPack] = {};
    int k = start;
    // The loads of kRunUnroll positions are issued together, then added in order.
    for (; k + kRunUnroll <= end; k += kRunUnroll) {
      P d[kRunUnroll];
#pragma unroll
      for (int u = 0; u < kRunUnroll; ++u) d[u] = column[positions[k + u] * g.packs_per_row];
#pragma unroll
      for (int u = 0; u < kRunUnroll; ++u) add_pack(acc, d[u]);
    }
    for (; k < end; ++k) add_pack(acc, column[positions[k] * g.packs_per_row]);
    P result;
#pragma unroll
    for (int j = 0; j < kPack; ++j) result.v[j] = from_float<T>(acc[j]);
    reinterpret_cast<P*>(dweight)[row * g.packs_per_row + pack] = result;
  }
}

template <int kPack, class T>
void launch_forward(T* out, const int32_t* ids, const T* weight, int64_t tokens, int64_t vocab, int64_t channels,
                    cudaStream_t stream) {
  const RowGroups g = row_groups(tokens, channels, kPack);
  embedding_forward_kernel<kPack>
      <<<blocks_for_items(g), kBlockThreads, 0, stream>>>(device_ptr(out), ids, device_ptr(weight), vocab, g);
  FT_CUDA_CHECK_LAUNCH();
}

template <int kPack, class T>
void launch_backward(T* dweight, const SortBuffers& b, const T* dout, int64_t vocab, int64_t channels,
                     cudaStream_t stream) {
  const RowGroups g = row_groups(vocab, channels, kPack);
  embedding_backward_kernel<kPack>
      <<<blocks_for_items(g), kBlockThreads, 0, stream>>>(device_ptr(dweight), b.starts, b.sorted, device_ptr(dout), g);
  FT_CUDA_CHECK_LAUNCH();
}

// Positions grouped by key, each run in increasing order, and the run starts (see the top).
void counting_sort(const SortBuffers& b, const int32_t* ids, int64_t tokens, int64_t vocab, cudaStream_t stream) {
  FT_CUDA_CHECK(cudaMemsetAsync(b.starts, 0, static_cast<size_t>(vocab + 1) * sizeof(int32_t), stream));
  if (tokens > 0) {
    histogram_kernel<<<blocks_for(tokens), kBlockThreads, 0, stream>>>(b.starts, b.slots, ids, tokens, vocab);
    FT_CUDA_CHECK_LAUNCH();
  }
  scan_scatter_kernel<<<1, kScanThreads, 0, stream>>>(b.starts, b.scattered, b.slots, ids, tokens, vocab);
  FT_CUDA_CHECK_LAUNCH();
  if (tokens > 0) {
    rank_kernel<<<blocks_for(tokens), kBlockThreads, 0, stream>>>(b.sorted, b.scattered, b.starts, ids, tokens, vocab);
    FT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

template <class T>
void embedding_forward_cuda(T* out, const int32_t* ids, const T* weight, int64_t tokens, int64_t vocab,
                            int64_t channels, cudaStream_t stream) {
  if (tokens == 0 || channels == 0) return;
  constexpr int kVector = kPackBytes / sizeof(T);
  if (pack_elements<T>(out, weight, channels) == kVector)
    launch_forward<kVector>(out, ids, weight, tokens, vocab, channels, stream);
  else
    launch_forward<1>(out, ids, weight, tokens, vocab, channels, stream);
}

size_t embedding_backward_workspace_bytes(int64_t tokens, int64_t vocab) {
  check_sizes(tokens, vocab);
  return starts_bytes(vocab) + 3 * positions_bytes(tokens);
}

template <class T>
void embedding_backward_cuda(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                             int64_t channels, void* workspace, cudaStream_t stream) {
  check_sizes(tokens, vocab);
  if (vocab == 0 || channels == 0) return;
  const SortBuffers b = carve(workspace, tokens, vocab);
  counting_sort(b, ids, tokens, vocab, stream);
  constexpr int kVector = kPackBytes / sizeof(T);
  if (pack_elements<T>(dweight, dout, channels) == kVector)
    launch_backward<kVector>(dweight, b, dout, vocab, channels, stream);
  else
    launch_backward<1>(dweight, b, dout, vocab, channels, stream);
}

#define FT_INSTANTIATE(T)                                                                                         \
  template void embedding_forward_cuda<T>(T*, const int32_t*, const T*, int64_t, int64_t, int64_t, cudaStream_t); \
  template void embedding_backward_cuda<T>(T*, const int32_t*, const T*, int64_t, int64_t, int64_t, void*,        \
                                           cudaStream_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(ft::bfloat16)
FT_INSTANTIATE(ft::half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
