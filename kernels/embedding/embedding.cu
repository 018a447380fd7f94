// Token embedding on the GPU: a gather in the forward, and in the backward the sum of the
// output gradients of all positions that hold the same id into that id's row of dweight.
//
// The backward is where the care goes. Scattering with float atomicAdd would be simple, but
// many positions hit the same few rows (frequent tokens) and contend, and the order of the
// additions, hence the bits of the result, would change from run to run. Instead every element
// of dweight is written once, with `=`, as the fp32 sum of its id's positions in increasing
// position order, exactly as the CPU reference does (in f32, the same bits), and the rows no id
// hits are written as zeros in the same pass (no memset first).
//
// One kernel, no sort. Block b owns a range of rows of dweight (the vocabulary over one block
// a multiprocessor: 381 of GPT-2's 50257 rows on an H200). It first reads all the ids (16K ids
// are 64 KB, read from L2 by every block) and keeps, in shared memory and in position order,
// the entries (row in the block, position) of those that fall in its rows, and how many hit
// each row: each thread takes 16 consecutive positions, and a scan over the lanes and the warps
// gives it where its entries go. Then its warps take the block's (row, group of 32 packs)
// items, one 16-byte pack a lane: a row no id hits is a store of zeros; a row that is hit finds
// its positions by ballots over the entries, in position order, and sums their dout rows, a few
// loads issued before the additions, which stay in order. So the kernel is one pass that writes
// dweight and reads dout once (plus the ids from L2).
//
// An earlier design sorted chunks of ids in one kernel and merged them slice by slice in a
// second; at GPT-2's shapes on an H200 it took 0.046 ms for the token table and 0.0129 ms for
// the position table, this one 0.043 and 0.0098 ms. Both are well short of the bandwidth bound
// (Nsight: ~39 us for the token table's kernel with DRAM ~40% busy and no pipeline saturated);
// where the rest goes is not yet known.
//
// A block holds the entries of kSegmentIds ids at most (shared memory), so longer id lists are
// cut into segments, one launch each, in position order: the sums in between stay fp32 in the
// workspace ([vocab, channels]), so every row is still added in position order and rounded
// once. A row that many positions hit (a frequent token) is summed by one warp a group of
// packs, kLoadsInFlight positions at a time.
//
// Ids must be in range; the loader validates them (data/prepare.cpp). An id outside [0, vocab)
// is made harmless, not reported (that would need a host synchronisation inside the op): it
// gathers a row of zeros and falls in no block's rows.
#include <algorithm>
#include <climits>
#include <type_traits>

#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/embedding/embedding_cuda.h"

namespace ft::kernels {
namespace {

// Packs of a row one warp takes: one per lane.
constexpr int kWarpPacks = 32;

// The backward's blocks: 32 warps, one a multiprocessor (64 registers a thread at most). Every
// block reads all the segment's ids, so fewer, larger blocks read less: one a multiprocessor.
constexpr int kBackwardThreads = 1024;
constexpr int kBackwardWarps = kBackwardThreads / 32;
constexpr int kBackwardBlocksPerSm = 1;
// Consecutive ids a thread reads (in registers, all loads in flight at once), and so ids a
// segment: 16384, GPT-2's 16 x 1024 tokens in one launch.
constexpr int kIdsPerLane = 16;
constexpr int kSegmentIds = kIdsPerLane * kBackwardThreads;
// An entry is (row in the block) << 16 | (position in the segment), one 32-bit word.
constexpr int kEntryShift = 16;
constexpr uint32_t kNoEntry = 0xffffffffu;  // matches no row: its row field is 65535
static_assert(kSegmentIds <= (1 << kEntryShift), "a position in the segment must fit 16 bits");
// Rows a block owns at most (their hit counts are in shared memory, beside the entries).
constexpr int kMaxBlockRows = 4096;
static_assert(kMaxBlockRows < (1 << kEntryShift) - 1, "a row in the block must fit 16 bits, below kNoEntry's");
// Dout loads a warp issues before it adds them (a row's positions after its first): 4 x 16
// bytes a lane. With kChunkItems below, the most that fits in 64 registers without spilling.
constexpr int kLoadsInFlight = 4;
// Items a warp takes at once in step 2, their first positions' loads issued together.
constexpr int kChunkItems = 2;

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

// ---- backward ------------------------------------------------------------------------------

// One launch over ids [first, first + count) (count <= kSegmentIds).
struct Segment {
  int64_t first;
  int count;
  bool accumulate;  // start each row from `partial`, the earlier segments' sums
  bool to_partial;  // leave the fp32 sums in `partial` for a later segment
  bool every_row;   // also write the rows this segment adds nothing to
};

template <int kPack, class D>
__device__ __forceinline__ void add_pack(float (&acc)[kPack], const D& d) {
#pragma unroll
  for (int j = 0; j < kPack; ++j) acc[j] += to_float(d.v[j]);
}

// A bf16 is the top half of a float, so widening a pair is a shift and a mask of their 32-bit
// word: fewer registers than widening all the loaded packs before adding them.
__device__ __forceinline__ void add_pack(float (&acc)[8], const Pack<__nv_bfloat16, 8>& d) {
  const auto& words = reinterpret_cast<const Pack<unsigned, 4>&>(d);
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    acc[2 * w] += __uint_as_float(words.v[w] << 16);
    acc[2 * w + 1] += __uint_as_float(words.v[w] & 0xffff0000u);
  }
}

// A lane's kIdsPerLane consecutive ids of the segment, from `begin` on (-1 past its end):
// four 16-byte loads where they are aligned and whole.
__device__ __forceinline__ void load_lane_ids(int (&id)[kIdsPerLane], const int32_t* __restrict__ segment_ids,
                                              int begin, int count) {
  const int32_t* p = segment_ids + begin;
  if (begin + kIdsPerLane <= count && is_pack_aligned(p)) {
#pragma unroll
    for (int k = 0; k < kIdsPerLane; k += 4) {
      const int4 four = reinterpret_cast<const int4*>(p)[k / 4];
      id[k] = four.x, id[k + 1] = four.y, id[k + 2] = four.z, id[k + 3] = four.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < kIdsPerLane; ++k) id[k] = begin + k < count ? p[k] : -1;
  }
}

// Step 1 of a block: the segment's ids that fall in the block's rows [first_row, first_row +
// rows), as entries in position order, their number (returned), and each row's count in hits.
// Thread t reads ids [t, t + 1) * kIdsPerLane, all loads in flight at once, and finds its hits
// with one unsigned compare each (ids below first_row, and negative ones, wrap past rows);
// a scan over the warp's lanes and a barrier over the warps give each thread the number of
// entries before its own, where it writes them, in order.
__device__ __forceinline__ int collect_entries(uint32_t* entries, int* hits, int* warp_counts,
                                               const int32_t* __restrict__ ids, const Segment& seg, int first_row,
                                               int rows) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, begin = threadIdx.x * kIdsPerLane;
  int id[kIdsPerLane];
  load_lane_ids(id, ids + seg.first, begin, seg.count);
  unsigned mine = 0;  // bit k: id k is in the block's rows
#pragma unroll
  for (int k = 0; k < kIdsPerLane; ++k)
    mine |= static_cast<unsigned>(static_cast<unsigned>(id[k]) - static_cast<unsigned>(first_row) <
                                  static_cast<unsigned>(rows))
            << k;
  const int count = __popc(mine);
  int inclusive = count;  // over the warp's lanes up to this one
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const int below = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += below;
  }
  for (int r = threadIdx.x; r < rows; r += blockDim.x) hits[r] = 0;
  if (lane == 31) warp_counts[warp] = inclusive;
  __syncthreads();
  int at = inclusive - count, total = 0;
  for (int w = 0; w < kBackwardWarps; ++w) {
    if (w == warp) at += total;
    total += warp_counts[w];
  }
  if (mine != 0) {
#pragma unroll
    for (int k = 0; k < kIdsPerLane; ++k) {
      if ((mine >> k & 1u) == 0) continue;
      const int row = id[k] - first_row;
      entries[at++] = static_cast<uint32_t>(row) << kEntryShift | static_cast<uint32_t>(begin + k);
      atomicAdd(&hits[row], 1);  // a count: its order does not matter
    }
  }
  __syncthreads();
  return total;
}

// Step 2's work: item (r, group) is row r of the block's rows, packs [group, group + 1) * 32
// of it, one a lane. Warp w takes items w, w + kBackwardWarps, ... of the row-major order,
// stepped by additions (a division an item is a long integer sequence).
struct Item {
  int r, group;
};

struct ItemStep {
  int groups, group_step;
  __device__ void advance(Item& item) const {
    item.r += kBackwardWarps / groups;
    item.group += group_step;
    if (item.group >= groups) item.group -= groups, ++item.r;
  }
};

// The position in the segment of row r's first entry (the row has one).
__device__ __forceinline__ int first_position(const uint32_t* entries, int total, int r) {
  const int lane = threadIdx.x % 32;
  for (int base = 0;; base += 32) {
    const uint32_t entry = base + lane < total ? entries[base + lane] : kNoEntry;
    const unsigned mine = __ballot_sync(0xffffffffu, entry >> kEntryShift == static_cast<uint32_t>(r));
    if (mine != 0) return __shfl_sync(0xffffffffu, static_cast<int>(entry & 0xffffu), __ffs(mine) - 1);
  }
}

// Step 2 for one item, whose row's first position's pack (`first`, when the row is hit) is
// already loaded: a row no id of the segment hits is a store (zeros, or the partial sums
// rounded); a row that is hit adds `first` and then its other positions' packs, in position
// order, up to kLoadsInFlight loads issued at once. in_row is false for lanes past the row's end.
template <int kPack, class T>
__device__ __forceinline__ void sum_item(T* dweight, float* partial, const T* __restrict__ dout,
                                         const uint32_t* entries, int total, int r, int row_hits,
                                         const Pack<T, kPack>& first, int64_t at, int64_t pack, bool in_row,
                                         int64_t packs_per_row, const Segment& seg) {
  using P = Pack<T, kPack>;
  using F = Pack<float, kPack>;
  if (row_hits == 0 && !seg.every_row) return;  // the whole warp
  const int lane = threadIdx.x % 32;
  float acc[kPack];
  const F start = seg.accumulate && in_row ? reinterpret_cast<const F*>(partial)[at] : F{};
#pragma unroll
  for (int j = 0; j < kPack; ++j) acc[j] = start.v[j];
  if (row_hits > 0 && in_row) add_pack(acc, first);

  // The other positions, 32 entries a ballot, in order (the first match is `first`).
  bool first_seen = false;
  for (int base = 0, found = 0; found < row_hits; base += 32) {
    const uint32_t entry = base + lane < total ? entries[base + lane] : kNoEntry;
    unsigned mine = __ballot_sync(0xffffffffu, entry >> kEntryShift == static_cast<uint32_t>(r));
    found += __popc(mine);
    if (!first_seen && mine != 0) mine &= mine - 1, first_seen = true;
    while (mine != 0) {
      P d[kLoadsInFlight];
      int n = 0;
#pragma unroll
      for (int u = 0; u < kLoadsInFlight; ++u) {
        if (mine == 0) break;  // mine is the same in every lane
        const int source = __ffs(mine) - 1;
        mine &= mine - 1;
        const int position = __shfl_sync(0xffffffffu, static_cast<int>(entry & 0xffffu), source);
        if (in_row) d[u] = reinterpret_cast<const P*>(dout)[(seg.first + position) * packs_per_row + pack];
        n = u + 1;
      }
#pragma unroll
      for (int u = 0; u < kLoadsInFlight; ++u)
        if (u < n && in_row) add_pack(acc, d[u]);
    }
  }
  if (!in_row) return;
  if (seg.to_partial) {
    F sums;
#pragma unroll
    for (int j = 0; j < kPack; ++j) sums.v[j] = acc[j];
    reinterpret_cast<F*>(partial)[at] = sums;
  } else {
    P result;
#pragma unroll
    for (int j = 0; j < kPack; ++j) result.v[j] = from_float<T>(acc[j]);
    reinterpret_cast<P*>(dweight)[at] = result;
  }
}

// Block b owns rows [b, b + 1) * rows_per_block (see the top). Dynamic shared memory: the
// entries (kSegmentIds words), then the block's row hit counts. A warp takes its items
// kChunkItems at a time and loads the first position of each hit one before it sums any: with
// uniform ids most hit rows have that one position, so a warp's hit rows are a few round trips
// to memory, not one each.
template <int kPack, class T>
__global__ void __launch_bounds__(kBackwardThreads, kBackwardBlocksPerSm)
    embedding_backward_kernel(T* dweight, float* partial, const int32_t* __restrict__ ids, const T* __restrict__ dout,
                              int vocab, int rows_per_block, RowGroups g, Segment seg) {
  using P = Pack<T, kPack>;
  extern __shared__ uint32_t shared_words[];
  __shared__ int warp_counts[kBackwardWarps];
  uint32_t* entries = shared_words;
  int* hits = reinterpret_cast<int*>(shared_words + kSegmentIds);
  const int first_row = blockIdx.x * rows_per_block, rows = min(rows_per_block, vocab - first_row);
  const int total = collect_entries(entries, hits, warp_counts, ids, seg, first_row, rows);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, groups = static_cast<int>(g.groups_per_row);
  const ItemStep step{groups, kBackwardWarps % groups};
  auto pack_of = [&](const Item& item) { return int64_t{item.group} * kWarpPacks + lane; };
  for (Item next{warp / groups, warp % groups}; next.r < rows;) {
    const Item chunk_start = next;
    P first[kChunkItems];
#pragma unroll
    for (int k = 0; k < kChunkItems; ++k, step.advance(next)) {
      if (next.r >= rows || hits[next.r] == 0) continue;  // the whole warp
      const int position = first_position(entries, total, next.r);
      if (pack_of(next) < g.packs_per_row)
        first[k] = reinterpret_cast<const P*>(dout)[(seg.first + position) * g.packs_per_row + pack_of(next)];
    }
    Item item = chunk_start;
#pragma unroll
    for (int k = 0; k < kChunkItems; ++k, step.advance(item)) {
      if (item.r >= rows) break;
      const int64_t pack = pack_of(item), at = (first_row + int64_t{item.r}) * g.packs_per_row + pack;
      sum_item<kPack>(dweight, partial, dout, entries, total, item.r, hits[item.r], first[k], at, pack,
                      pack < g.packs_per_row, g.packs_per_row, seg);
    }
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

// Rows a backward block owns: the vocabulary over kBackwardBlocksPerSm blocks a multiprocessor,
// so that one wave of blocks covers it (at most kMaxBlockRows; more blocks then).
int backward_rows_per_block(int64_t vocab) {
  int device = 0;
  FT_CUDA_CHECK(cudaGetDevice(&device));
  const int64_t blocks = int64_t{cuda::device_properties(device).multiProcessorCount} * kBackwardBlocksPerSm;
  return static_cast<int>(std::clamp<int64_t>((vocab + blocks - 1) / blocks, 1, kMaxBlockRows));
}

int64_t segment_count(int64_t tokens) { return std::max<int64_t>(1, (tokens + kSegmentIds - 1) / kSegmentIds); }

template <int kPack, class T>
void launch_backward(T* dweight, float* partial, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                     int64_t channels, cudaStream_t stream) {
  const int rows_per_block = backward_rows_per_block(vocab);
  const auto blocks = static_cast<int>((vocab + rows_per_block - 1) / rows_per_block);
  const size_t shared_bytes = kSegmentIds * sizeof(uint32_t) + rows_per_block * sizeof(int);
  const auto kernel = embedding_backward_kernel<kPack, cuda_t<T>>;
  FT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)));
  const RowGroups g = row_groups(rows_per_block, channels, kPack);
  const int64_t segments = segment_count(tokens);
  for (int64_t s = 0; s < segments; ++s) {
    const int64_t first = s * kSegmentIds;
    const Segment seg{first, static_cast<int>(std::min<int64_t>(kSegmentIds, tokens - first)), s > 0, s < segments - 1,
                      s == 0 || s == segments - 1};
    kernel<<<blocks, kBackwardThreads, shared_bytes, stream>>>(device_ptr(dweight), partial, ids, device_ptr(dout),
                                                               static_cast<int>(vocab), rows_per_block, g, seg);
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

size_t embedding_backward_workspace_bytes(int64_t tokens, int64_t vocab, int64_t channels) {
  return segment_count(tokens) > 1 ? static_cast<size_t>(vocab) * static_cast<size_t>(channels) * sizeof(float) : 0;
}

template <class T>
void embedding_backward_cuda(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                             int64_t channels, void* workspace, cudaStream_t stream) {
  FT_CHECK(vocab < INT_MAX, "embedding backward: a vocabulary of ", vocab, "; the CUDA kernels hold ids in 32 bits");
  if (vocab == 0 || channels == 0) return;
  auto* partial = static_cast<float*>(workspace);
  constexpr int kVector = kPackBytes / sizeof(T);
  if (pack_elements<T>(dweight, dout, channels) == kVector)
    launch_backward<kVector>(dweight, partial, ids, dout, tokens, vocab, channels, stream);
  else
    launch_backward<1>(dweight, partial, ids, dout, tokens, vocab, channels, stream);
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
