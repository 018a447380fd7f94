// Token embedding on the GPU: a gather in the forward, and in the backward the sum of the
// output gradients of all positions that hold the same id into that id's row of dweight.
//
// The backward is where the care goes. Scattering with float atomicAdd would be simple, but
// many positions hit the same few rows (frequent tokens) and contend, and the order of the
// additions, hence the bits of the result, would change from run to run. Instead, as PyTorch
// does, the positions are sorted by id on the device (CUB's radix sort, which is stable, so the
// positions of one id stay in increasing order), and the run of each id is summed by the
// threads that own its row: every element of dweight is written once, with `=`, adding the
// positions in increasing order, exactly as the CPU reference does (in f32, the same bits). The
// sort looks only at the bits an id can have.
//
// Both kernels are memory-bound and move 16 bytes per load and store (4 floats, 8 halves) when
// the rows allow it. A warp takes 32 such packs of one row (768 bf16 channels: three warps per
// row), so a long run (a frequent token; a position id, repeated once per sequence) is summed
// by many warps at once. The one non-obvious choice: the backward writes the whole of dweight
// in that same kernel, zeros for the rows no id hits, instead of a memset before it. Each warp
// finds its row's run by binary search in the sorted keys (64 KB for 16K tokens, in cache), so
// dweight is written exactly once, in one pass, after the sort, and the search of an id that
// occurs nowhere (most of a 50K vocabulary) costs no memory traffic.
//
// Ids must be in range; the loader validates them (data/prepare.cpp). An id outside [0, vocab)
// is made harmless, not reported (that would need a host synchronisation inside the op): it
// gathers a row of zeros and sorts into a run of its own (key `vocab`) that is never summed.
#include <climits>
#include <cub/device/device_radix_sort.cuh>
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
// Alignment of each buffer carved out of the workspace (CUB's own alignment for temp storage).
constexpr size_t kBufferAlignment = 256;

size_t aligned_size(size_t bytes) { return (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment; }

// Bits that hold every key 0..vocab (vocab stands for an invalid id).
int key_bits(int64_t vocab) {
  int bits = 1;
  while (bits < 32 && (int64_t{1} << bits) <= vocab) ++bits;
  return bits;
}

// The sort's buffers, carved out of the workspace in this order.
struct SortBuffers {
  uint32_t* keys_in;
  uint32_t* keys_out;
  int32_t* positions_in;
  int32_t* positions_out;
  void* temp;
  size_t temp_bytes;
};

size_t sort_temp_bytes(int64_t tokens, int64_t vocab) {
  size_t bytes = 0;
  FT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                                static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                static_cast<int32_t*>(nullptr), static_cast<int>(tokens), 0,
                                                key_bits(vocab)));
  return bytes;
}

SortBuffers carve(void* workspace, int64_t tokens, int64_t vocab) {
  const size_t array = aligned_size(static_cast<size_t>(tokens) * sizeof(uint32_t));
  auto* base = static_cast<char*>(workspace);
  return SortBuffers{reinterpret_cast<uint32_t*>(base),
                     reinterpret_cast<uint32_t*>(base + array),
                     reinterpret_cast<int32_t*>(base + 2 * array),
                     reinterpret_cast<int32_t*>(base + 3 * array),
                     base + 4 * array,
                     sort_temp_bytes(tokens, vocab)};
}

// Positions and sort keys are 32-bit.
void check_sizes(int64_t tokens, int64_t vocab) {
  FT_CHECK(tokens <= INT_MAX && vocab < INT_MAX, "embedding backward: ", tokens, " ids over a vocabulary of ", vocab,
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

// Sort keys (the id, or vocab for an invalid one) and the positions they come from.
__global__ void sort_keys_kernel(uint32_t* keys, int32_t* positions, const int32_t* ids, int64_t tokens,
                                 int64_t vocab) {
  for (int64_t t = global_index(); t < tokens; t += grid_stride()) {
    const int32_t id = ids[t];
    keys[t] = static_cast<uint32_t>(in_vocab(id, vocab) ? id : vocab);
    positions[t] = static_cast<int32_t>(t);
  }
}

// The first index in [lo, hi) of the sorted keys whose key is >= value (hi if none).
__device__ __forceinline__ int lower_bound(const uint32_t* __restrict__ keys, int lo, int hi, int64_t value) {
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (keys[mid] < value)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

template <int kPack, class P>
__device__ __forceinline__ void add_pack(float (&acc)[kPack], const P& d) {
#pragma unroll
  for (int j = 0; j < kPack; ++j) acc[j] += to_float(d.v[j]);
}

// Every row of dweight: the sum of the run of its id in the sorted keys, in increasing
// position, or zeros when the id occurs nowhere. Each warp takes a contiguous range of items,
// so it searches for a row's run once for all its groups, and the end of one row's run is the
// start of the next row's. All lanes search the same row (one broadcast load per step), then
// each sums its own pack of channels.
template <int kPack, class T>
__global__ void embedding_backward_kernel(T* __restrict__ dweight, const uint32_t* __restrict__ keys,
                                          const int32_t* __restrict__ positions, const T* __restrict__ dout, int tokens,
                                          RowGroups g) {
  using P = Pack<T, kPack>;
  const int lane = threadIdx.x % 32;
  const int64_t per_warp = (g.items() + warp_count() - 1) / warp_count();
  const int64_t first = warp_index() * per_warp, last = first + per_warp < g.items() ? first + per_warp : g.items();
  int64_t row = -1;
  int start = 0, end = 0;
  for (int64_t item = first; item < last; ++item) {
    const int64_t item_row = item / g.groups_per_row;
    if (item_row != row) {
      start = item_row == row + 1 ? end : lower_bound(keys, 0, tokens, item_row);
      end = lower_bound(keys, start, tokens, item_row + 1);
      row = item_row;
    }
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
void launch_backward(T* dweight, const SortBuffers& b, const T* dout, int64_t tokens, int64_t vocab, int64_t channels,
                     cudaStream_t stream) {
  const RowGroups g = row_groups(vocab, channels, kPack);
  embedding_backward_kernel<kPack><<<blocks_for_items(g), kBlockThreads, 0, stream>>>(
      device_ptr(dweight), b.keys_out, b.positions_out, device_ptr(dout), static_cast<int>(tokens), g);
  FT_CUDA_CHECK_LAUNCH();
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
  return 4 * aligned_size(static_cast<size_t>(tokens) * sizeof(uint32_t)) + sort_temp_bytes(tokens, vocab);
}

template <class T>
void embedding_backward_cuda(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                             int64_t channels, void* workspace, cudaStream_t stream) {
  check_sizes(tokens, vocab);
  if (vocab == 0 || channels == 0) return;
  SortBuffers b = carve(workspace, tokens, vocab);
  if (tokens > 0) {
    sort_keys_kernel<<<blocks_for(tokens), kBlockThreads, 0, stream>>>(b.keys_in, b.positions_in, ids, tokens, vocab);
    FT_CUDA_CHECK_LAUNCH();
    FT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(b.temp, b.temp_bytes, b.keys_in, b.keys_out, b.positions_in,
                                                  b.positions_out, static_cast<int>(tokens), 0, key_bits(vocab),
                                                  stream));
  }
  constexpr int kVector = kPackBytes / sizeof(T);
  if (pack_elements<T>(dweight, dout, channels) == kVector)
    launch_backward<kVector>(dweight, b, dout, tokens, vocab, channels, stream);
  else
    launch_backward<1>(dweight, b, dout, tokens, vocab, channels, stream);
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
