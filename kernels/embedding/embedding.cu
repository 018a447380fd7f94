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
// Block b owns a range of rows of dweight: the vocabulary over one block a multiprocessor (381
// of GPT-2's 50257 token rows on an H200, 8 of its 1024 position rows). It reads all the
// segment's ids (16K ids are 64 KB, from L2 by every block), and two kernels, picked on the host
// by that row count, turn them into each of its rows' run of positions, in order, then sum the
// runs' dout rows.
//
// A large table (more than kSmallTableRows rows a block; the token table) counts the hits of
// each of its rows in shared memory, and then, since only a third of its rows are hit, writes
// the others with nothing but stores while it builds, from a scan of the counts, the list of hit
// rows and each one's run of positions (a counting sort in shared memory; the atomics leave a
// run's order arbitrary, so runs of two or more positions are sorted, by rank in a warp or
// through a bitmap when longer than a warp). Last, the hit rows' sums: items are (hit row, group
// of 32 packs), one 16-byte pack a lane, and warp w walks the positions of its items w, w + 32,
// ... as one stream of dout loads, kLoadsInFlight in flight across items. The stream is taken 32
// entries at a time into a window spread over the lanes (entry e's offsets in lane e, the items'
// first and last entries as bits of two masks), so a load costs a shuffle, an address and a bit
// test, and every item's positions are added in order.
//
// A small table (at most kSmallTableRows rows a block; the position table, every row hit 16
// times) has few rows and many hits a row, so the first dout load should come as soon after the
// ids as it can: a block keeps its hits in position order (one scan of the threads' hit
// counts), warp r picks row r's run out of them by ballots, in order (nothing to sort), and
// each (row, group of 32 packs) item streams its run with kLoadsInFlight loads in flight. Three
// barriers from the ids to the first dout load, where the large-table kernel has six and the
// sorts.
//
// On compute capability 9.0 on, the small-table kernel is a programmatic dependent launch: its
// blocks start while the kernel before it in the stream ends, read the ids and build their runs,
// and wait for that kernel to finish before they read dout and write dweight. So the ids must
// not be written by the kernel just before it (embedding_cuda.h): a batch's ids are copied in,
// and the forward reads them long before. It lets the next kernel launch only once its own wait
// is over, so no dependent of it starts while the kernel before it still runs.
//
// dweight is stored evict-first: it is not read again here, and so the zero rows (most of a
// token table) do not push out of L2 the dout rows being summed. So each kernel writes
// dweight and reads dout once (plus the ids from L2), and no search.
//
// Earlier designs, at GPT-2's shapes on an H200: a chunk sort and a slice-by-slice merge in two
// kernels, 0.046 ms for the token table and 0.0129 ms for the position table; then one kernel
// with the hits in position order and every (row, group) item finding its positions by ballots
// over all the block's hits, adding each window's few before the next window's loads, 0.043 and
// 0.0098 ms (Nsight: ~130 instructions an item, each a long dependent chain); then runs by a
// counting sort and a ring of loads a warp that tracked items, runs and rows at every load,
// 0.0353 and 0.0116 ms (Nsight, position table: ~67 instructions a 16-byte load, and dout read
// only after the sort); then the large-table kernel alone, for both tables, 0.0298-0.0305 and
// 0.0115-0.0134 ms (a variant that prefetched each hit's dout row to L2 in step 1 was slower:
// 0.0305 / 0.0133 ms against 0.0298 / 0.0115 without; plain stores instead of evict-first:
// 0.0330 ms for the token table). The position table stayed latency-bound there: its blocks
// spent the scan and sort before their first load. The small-table kernel for it: 0.0095-0.0096
// ms launched plainly, 0.0067-0.0076 ms as a programmatic dependent (in `bench kernels` the
// kernel before it is the previous call's, so that figure includes their overlap); a variant
// that also prefetched each block's share of dout to L2 at its start measured 0.0068-0.0076 ms,
// no clear gain, and was left out.
//
// A block holds the positions of kSegmentIds ids at most (shared memory), so longer id lists are
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
#include "kernels/common/programmatic_launch.cuh"
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
// A position in the segment is 16 bits (runs hold them as uint16_t), and so is a row in the
// block (the high half of a hit-row word); the counts' scan adds both in one 32-bit word.
static_assert(kSegmentIds < (1 << 16), "a position in the segment, and their count, must fit 16 bits");
// Rows a block owns at most (a word each in shared memory, beside the runs).
constexpr int kMaxBlockRows = 4096;
// Rows a thread scans (kScanRows consecutive rows' counts, one 16-byte load).
constexpr int kScanRows = 4;
static_assert(kMaxBlockRows <= kScanRows * kBackwardThreads && kMaxBlockRows <= (1 << 16),
              "one scan covers a block's rows, and a row in the block fits 16 bits");
// Runs longer than a warp are sorted through a bitmap of the segment's positions, one each for
// the first kSortWarps warps (2 KB each): such runs are few (a frequent token's row).
constexpr int kBitmapWords = kSegmentIds / 32;
constexpr int kSortWarps = 8;
// Dout packs a warp has in flight in step 4 (16 bytes a lane each): the most that fits in 64
// registers without spilling. A divisor of 32, a window's entries.
constexpr int kLoadsInFlight = 8;

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

// A pack of dweight, stored evict-first when it is 16 bytes: dweight is not read again here
// (GPT-2's token table: 77 MB, 56 MB of them zero rows, stored while step 4 reads the 25 MB of
// dout rows, which should stay in L2).
template <class P>
__device__ __forceinline__ void store_dweight(P* p, const P& v) {
  if constexpr (sizeof(P) == 16)
    __stcs(reinterpret_cast<int4*>(p), reinterpret_cast<const int4&>(v));
  else
    *p = v;
}

constexpr unsigned kFullMask = 0xffffffffu;  // all lanes of a warp

__device__ __forceinline__ unsigned warp_inclusive_sum(unsigned v) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const unsigned below = __shfl_up_sync(kFullMask, v, offset);
    if (lane >= offset) v += below;
  }
  return v;
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

// Bit k: the lane's id k is in the block's rows [first_row, first_row + rows). One unsigned
// compare each: ids below first_row, and negative ones, wrap past rows.
__device__ __forceinline__ unsigned block_hits(const int (&id)[kIdsPerLane], int first_row, int rows) {
  unsigned hits = 0;
#pragma unroll
  for (int k = 0; k < kIdsPerLane; ++k)
    hits |= static_cast<unsigned>(static_cast<unsigned>(id[k]) - static_cast<unsigned>(first_row) <
                                  static_cast<unsigned>(rows))
            << k;
  return hits;
}

// A block's dynamic shared memory, in 16-byte aligned pieces: the segment's positions that hit
// the block's rows, grouped by row (a run a row, in position order once sorted); kSortWarps
// bitmaps of the segment's positions (to sort runs longer than a warp); a word a row (its hit
// count, then where its next position goes); and the list of the hit rows, each row << 16 | the
// start of its run, then the end of the last run.
struct SharedLayout {
  static constexpr size_t kBitmaps = kSegmentIds * sizeof(uint16_t);
  static constexpr size_t kRowWords = kBitmaps + kSortWarps * kBitmapWords * sizeof(uint32_t);
  int padded_rows;  // rows_per_block rounded up to kScanRows: the row words are scanned as int4
  __host__ __device__ explicit SharedLayout(int rows_per_block)
      : padded_rows((rows_per_block + kScanRows - 1) / kScanRows * kScanRows) {}
  __host__ __device__ size_t hit_rows() const { return kRowWords + padded_rows * sizeof(int); }
  __host__ __device__ size_t bytes() const { return hit_rows() + (padded_rows + 1) * sizeof(uint32_t); }
};

// The zero rows: warp w takes rows w, w + 32, ... of the block and calls store(pack) on every
// pack of those no id hits, `pack` counted from the block's first (32-bit: the host checks that
// the block's rows fit). Nothing but stores, so the warps issue them back to back.
template <class Store>
__device__ __forceinline__ void for_zero_rows(const int* counts, int rows, int packs_per_row, Store store) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, row_step = kBackwardWarps * packs_per_row;
  for (int r = warp, row = warp * packs_per_row; r < rows; r += kBackwardWarps, row += row_step) {
    if (counts[r] != 0) continue;  // the whole warp
    for (int pack = row + lane, end = row + packs_per_row; pack < end; pack += kWarpPacks) store(pack);
  }
}

// Sorts the runs of 2..32 positions, one a warp at a time: a lane's rank is how many of the
// run's positions are below its own, and it writes its position there.
__device__ __forceinline__ void sort_short_runs(uint16_t* runs, const uint32_t* hit_rows, int hit_count) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int h = warp; h < hit_count; h += kBackwardWarps) {
    const int start = hit_rows[h] & 0xffffu, count = (hit_rows[h + 1] & 0xffffu) - start;
    if (count < 2 || count > kWarpPacks) continue;  // the whole warp
    const int position = lane < count ? runs[start + lane] : 0xffff;
    int rank = 0;
    for (int other = 0; other < count; ++other) rank += __shfl_sync(kFullMask, position, other) < position;
    if (lane < count) runs[start + rank] = static_cast<uint16_t>(position);
  }
}

// Sorts the runs longer than a warp, with warp w's bitmap (zero before and after): set a bit a
// position, then lane l reads the bits of positions [l, l + 1) * 512 and writes their positions
// in order after those of the lanes below it.
__device__ __forceinline__ void sort_long_runs(uint16_t* runs, uint32_t* bitmaps, const uint32_t* hit_rows,
                                               int hit_count) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  constexpr int kLaneWords = kBitmapWords / 32;
  uint32_t* bits = bitmaps + warp * kBitmapWords;
  uint4* lane_bits = reinterpret_cast<uint4*>(bits + lane * kLaneWords);
  for (int h = warp; h < hit_count; h += kSortWarps) {
    const int start = hit_rows[h] & 0xffffu, count = (hit_rows[h + 1] & 0xffffu) - start;
    if (count <= kWarpPacks) continue;  // the whole warp
    for (int i = lane; i < count; i += 32) {
      const int position = runs[start + i];
      atomicOr(&bits[position / 32], 1u << position % 32);
    }
    __syncwarp();
    uint32_t word[kLaneWords];
    int mine = 0;
#pragma unroll
    for (int q = 0; q < kLaneWords / 4; ++q) {
      const uint4 four = lane_bits[q];
      word[4 * q] = four.x, word[4 * q + 1] = four.y, word[4 * q + 2] = four.z, word[4 * q + 3] = four.w;
      lane_bits[q] = uint4{0, 0, 0, 0};
    }
#pragma unroll
    for (int q = 0; q < kLaneWords; ++q) mine += __popc(word[q]);
    int at = start + static_cast<int>(warp_inclusive_sum(mine)) - mine;
#pragma unroll
    for (int q = 0; q < kLaneWords; ++q)
      for (uint32_t w = word[q]; w != 0; w &= w - 1)
        runs[at++] = static_cast<uint16_t>((lane * kLaneWords + q) * 32 + __ffs(w) - 1);
    __syncwarp();  // the bitmap is clear again before the next run sets bits
  }
}

// ---- step 4: the hit rows' sums, one stream of loads a warp ---------------------------------
//
// Item (h, g) is hit row h, packs [g, g + 1) * 32 of it, one a lane; warp w takes items w,
// w + 32, ... of the row-major order (h * groups + g), and their positions, item after item, make
// one stream of dout loads. A window is the stream's next 32 entries (fewer where it ends), entry
// e held by lane e as two offsets and a bit in two masks, so the loop over them costs a shuffle,
// an address and a bit test a load; the bookkeeping of items, runs and hit rows is paid once a
// window, by all lanes at once.
//
// Only a row's last group can be partial (packs_per_row not a multiple of 32): its items carry
// kPartialGroup, bit 31 of their offsets (which the launcher keeps below 2^31, so adding the flag
// is setting it), and in them only lanes below packs_per_row % 32 load, add and store.
constexpr int kPartialGroup = INT_MIN;
static_assert(32 % kLoadsInFlight == 0, "the ring's loads divide a window");

struct StreamWindow {
  int source;       // lane e: entry e's load, in packs from the segment's first position (each lane
                    // adds its own): position * packs_per_row + g * 32 (| kPartialGroup)
  int target;       // lane e: its item's sum, in packs from the block's first row (each lane adds
                    // its own): row * packs_per_row + g * 32 (| kPartialGroup)
  unsigned firsts;  // bit e: entry e is its item's first position
  unsigned lasts;   // bit e: entry e is its item's last (the sum is complete)
  int count;        // entries: 32, or fewer where the stream ends
};

// The warp's place in its stream: its next item (the warp's item-th: w + 32 item) and how many of
// that item's positions earlier windows took.
struct StreamCursor {
  int item = 0, taken = 0;
};

// The next window of the warp's stream, and the cursor moved past it. Lane l reads the warp's
// l-th next item (its hit row's word and the next's); a scan of their lengths places each item's
// entries [first, end) in the window, and entry e's item is the last one to start at or before e.
__device__ __forceinline__ StreamWindow next_window(StreamCursor& cursor, const uint16_t* runs,
                                                    const uint32_t* hit_rows, int hit_count, int packs_per_row,
                                                    int groups) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int item = warp + kBackwardWarps * (cursor.item + lane), h = item / groups, g = item - h * groups;
  int begin = 0, length = 0, group_pack = 0, target = 0;
  if (h < hit_count) {
    const uint32_t word = hit_rows[h];
    begin = static_cast<int>(word & 0xffffu);
    length = static_cast<int>(hit_rows[h + 1] & 0xffffu) - begin;
    group_pack = g * kWarpPacks + (g == groups - 1 && packs_per_row % kWarpPacks != 0 ? kPartialGroup : 0);
    target = static_cast<int>(word >> 16) * packs_per_row + group_pack;
  }
  if (lane == 0) begin += cursor.taken, length -= cursor.taken;
  const int end = static_cast<int>(warp_inclusive_sum(static_cast<unsigned>(length))), first = end - length;
  const unsigned firsts = __reduce_or_sync(kFullMask, length > 0 && first < 32 ? 1u << first : 0u);
  const unsigned lasts = __reduce_or_sync(kFullMask, length > 0 && end <= 32 ? 1u << (end - 1) : 0u);
  StreamWindow w;
  // The entries by a reduction rather than a shuffle of the scan's last lane: the compiler then
  // sees that the count (like the masks) is one value for the warp and keeps it in a uniform
  // register (with a shuffle, step 4 spilled).
  w.count = min(static_cast<int>(__reduce_add_sync(kFullMask, static_cast<unsigned>(length))), 32);
  w.firsts = cursor.taken == 0 ? firsts : firsts & ~1u;  // entry 0 may continue an item
  w.lasts = lasts;
  const int t = __popc(firsts & (kFullMask >> (31 - lane))) - 1;  // entry `lane`'s item
  const int run_at = __shfl_sync(kFullMask, begin - first, t) + lane;
  const int position = lane < w.count ? runs[run_at] : 0;
  w.source = position * packs_per_row + __shfl_sync(kFullMask, group_pack, t);
  w.target = __shfl_sync(kFullMask, target, t);
  // Items that start in the window: all done, or the last one goes on into the next window.
  const int started = __popc(firsts);
  if (w.count == 0 || lasts >> (w.count - 1) & 1u) {
    cursor.item += started, cursor.taken = 0;
  } else {
    cursor.taken = (started == 1 ? cursor.taken : 0) + w.count - (31 - __clz(firsts));
    cursor.item += started - 1;
  }
  return w;
}

// Step 4 (see the kernel): the block's hit rows. kLoadsInFlight dout packs are in flight in a
// ring: as the oldest is added, the load kLoadsInFlight entries on is issued, in this window or
// (for the last slots) the next, so the stream never drains between windows. Each item's
// entries are added in stream order, so every sum is in position order. `out` and `sums` start
// at the block's first row, `segment_dout` at the segment's first position. kAccumulate: start
// each sum from `sums`, the earlier segments'; kToPartial: leave it there, in fp32, for a later
// segment.
template <bool kAccumulate, bool kToPartial, int kPack, class T>
__device__ __forceinline__ void sum_hit_rows(Pack<T, kPack>* out, Pack<float, kPack>* sums,
                                             const Pack<T, kPack>* __restrict__ segment_dout, const uint16_t* runs,
                                             const uint32_t* hit_rows, int hit_count, int packs_per_row, int groups) {
  using P = Pack<T, kPack>;
  using F = Pack<float, kPack>;
  const int lane = threadIdx.x % 32;
  const bool in_partial_group = lane < packs_per_row % kWarpPacks;
  auto in_row = [&](int offset) { return offset >= 0 || in_partial_group; };
  float acc[kPack] = {};
  // Loads entry e of a window whose sources are `sources` and that has `count` entries.
  auto issue = [&](P& slot, int sources, int count, int e) {
    if (e >= count) return;
    const int source = __shfl_sync(kFullMask, sources, e);
    if (in_row(source)) slot = segment_dout[(source & INT_MAX) + lane];
  };
  auto consume = [&](const P& slot, const StreamWindow& w, int e) {
    if (kAccumulate && (w.firsts >> e & 1u)) {
      const int target = __shfl_sync(kFullMask, w.target, e);
      if (in_row(target)) {
        const F start = sums[(target & INT_MAX) + lane];
#pragma unroll
        for (int j = 0; j < kPack; ++j) acc[j] = start.v[j];
      }
    }
    add_pack(acc, slot);
    if ((w.lasts >> e & 1u) == 0) return;
    const int target = __shfl_sync(kFullMask, w.target, e);
    if (in_row(target)) {
      if (kToPartial) {
        F s;
#pragma unroll
        for (int j = 0; j < kPack; ++j) s.v[j] = acc[j];
        sums[(target & INT_MAX) + lane] = s;
      } else {
        P result;
#pragma unroll
        for (int j = 0; j < kPack; ++j) result.v[j] = from_float<T>(acc[j]);
        store_dweight(out + (target & INT_MAX) + lane, result);
      }
    }
#pragma unroll
    for (int j = 0; j < kPack; ++j) acc[j] = 0.0f;
  };

  StreamCursor cursor;
  StreamWindow current = next_window(cursor, runs, hit_rows, hit_count, packs_per_row, groups);
  P ring[kLoadsInFlight] = {};
#pragma unroll
  for (int u = 0; u < kLoadsInFlight; ++u) issue(ring[u], current.source, current.count, u);
  while (current.count > 0) {
    StreamWindow next{0, 0, 0u, 0u, 0};
    for (int base = 0; base < current.count; base += kLoadsInFlight) {
      // The window's last kLoadsInFlight slots are refilled from the next window, read once the
      // first of them is free (fewer registers held while it is built).
      const bool crossing = base + kLoadsInFlight == 32;
#pragma unroll
      for (int u = 0; u < kLoadsInFlight; ++u) {
        if (base + u >= current.count) break;
        consume(ring[u], current, base + u);
        if (u == 0 && crossing && current.count == 32)
          next = next_window(cursor, runs, hit_rows, hit_count, packs_per_row, groups);
        if (crossing)
          issue(ring[u], next.source, next.count, u);
        else
          issue(ring[u], current.source, current.count, base + kLoadsInFlight + u);
      }
    }
    current = next;
  }
}

// Block b owns rows [b, b + 1) * rows_per_block (see the top for the steps). The block's
// barriers are all at its top level, under conditions the whole block shares.
template <int kPack, class T>
__global__ void __launch_bounds__(kBackwardThreads, kBackwardBlocksPerSm)
    embedding_backward_kernel(T* dweight, float* partial, const int32_t* __restrict__ ids, const T* __restrict__ dout,
                              int vocab, int rows_per_block, int packs_per_row, int groups, Segment seg) {
  using P = Pack<T, kPack>;
  using F = Pack<float, kPack>;
  extern __shared__ uint4 shared_memory[];
  __shared__ unsigned warp_sums[kBackwardWarps];
  __shared__ int has_long_run;
  const SharedLayout layout(rows_per_block);
  auto* bytes = reinterpret_cast<unsigned char*>(shared_memory);
  auto* runs = reinterpret_cast<uint16_t*>(bytes);
  auto* bitmaps = reinterpret_cast<uint32_t*>(bytes + SharedLayout::kBitmaps);
  auto* counts = reinterpret_cast<int*>(bytes + SharedLayout::kRowWords);
  auto* hit_rows = reinterpret_cast<uint32_t*>(bytes + layout.hit_rows());
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int first_row = blockIdx.x * rows_per_block, rows = min(rows_per_block, vocab - first_row);
  const int64_t block_pack = int64_t{first_row} * packs_per_row;
  P* out = reinterpret_cast<P*>(dweight) + block_pack;
  F* sums = partial != nullptr ? reinterpret_cast<F*>(partial) + block_pack : nullptr;
  const P* segment_dout = reinterpret_cast<const P*>(dout) + seg.first * packs_per_row;

  // Step 1: each thread reads kIdsPerLane consecutive ids (all loads in flight at once), picks
  // those in the block's rows and counts them in their rows' words.
  const int begin = threadIdx.x * kIdsPerLane;
  int id[kIdsPerLane];
  load_lane_ids(id, ids + seg.first, begin, seg.count);
  if (threadIdx.x < layout.padded_rows / kScanRows) reinterpret_cast<int4*>(counts)[threadIdx.x] = int4{0, 0, 0, 0};
  for (int i = threadIdx.x; i < kSortWarps * kBitmapWords / 4; i += kBackwardThreads)
    reinterpret_cast<uint4*>(bitmaps)[i] = uint4{0, 0, 0, 0};
  if (threadIdx.x == 0) has_long_run = 0;
  const unsigned mine = block_hits(id, first_row, rows);
  __syncthreads();
  if (mine != 0) {
#pragma unroll
    for (int k = 0; k < kIdsPerLane; ++k)
      if (mine >> k & 1u) atomicAdd(&counts[id[k] - first_row], 1);  // a count: the order does not matter
  }
  __syncthreads();

  // Step 2: a scan of the counts, kScanRows rows a thread, over positions and hit rows at once
  // (positions in the low 16 bits, hit rows in the high 16), gives each hit row its run and
  // its place in the hit-row list. Between the scan's halves the warps write the zero rows:
  // they need nothing but the counts, and their stores overlap the rest of the steps.
  const int4 four = threadIdx.x < layout.padded_rows / kScanRows ? reinterpret_cast<const int4*>(counts)[threadIdx.x]
                                                                 : int4{0, 0, 0, 0};
  const int count[kScanRows] = {four.x, four.y, four.z, four.w};
  unsigned scanned = 0;
#pragma unroll
  for (int j = 0; j < kScanRows; ++j) scanned += static_cast<unsigned>(count[j]) | (count[j] > 0 ? 1u << 16 : 0u);
  const unsigned inclusive = warp_inclusive_sum(scanned);
  if (lane == 31) warp_sums[warp] = inclusive;
  if (seg.every_row && !seg.accumulate) {
    if (seg.to_partial)  // the first of several segments
      for_zero_rows(counts, rows, packs_per_row, [&](int pack) { sums[pack] = F{}; });
    else  // the only one
      for_zero_rows(counts, rows, packs_per_row,
                    [&, zero = zero_pack<P>()](int pack) { store_dweight(out + pack, zero); });
  }
  __syncthreads();
  const unsigned warp_sum = warp_sums[lane], warps_inclusive = warp_inclusive_sum(warp_sum);
  // The totals by a reduction: one value for the warp as the compiler sees (a uniform register).
  const unsigned totals = __reduce_add_sync(kFullMask, warp_sum);
  const int hit_count = static_cast<int>(totals >> 16), entries = static_cast<int>(totals & 0xffffu);
  const unsigned before = __shfl_sync(kFullMask, warps_inclusive - warp_sum, warp) + inclusive - scanned;
  int at = static_cast<int>(before & 0xffffu), hit = static_cast<int>(before >> 16);
#pragma unroll
  for (int j = 0; j < kScanRows; ++j) {
    if (count[j] == 0) continue;
    const int r = threadIdx.x * kScanRows + j;
    hit_rows[hit++] = static_cast<uint32_t>(r) << 16 | static_cast<uint32_t>(at);
    counts[r] = at;  // from here on, where the row's next position goes
    at += count[j];
    if (count[j] > kWarpPacks) has_long_run = 1;
  }
  if (threadIdx.x == 0) hit_rows[hit_count] = static_cast<uint32_t>(entries);
  __syncthreads();

  // Step 3: each thread puts its hits' positions into their rows' runs. Within a run the
  // atomics' order is arbitrary, so runs of more than one position are then sorted.
  if (mine != 0) {
#pragma unroll
    for (int k = 0; k < kIdsPerLane; ++k)
      if (mine >> k & 1u) runs[atomicAdd(&counts[id[k] - first_row], 1)] = static_cast<uint16_t>(begin + k);
  }
  __syncthreads();
  // The last of several segments: its zero rows are the earlier segments' sums, rounded. Done
  // here, where the ids are no longer held (beside them the loads spill) and nothing is held
  // across step 4; a row's word is still 0 only if no id hit it (a hit row's is past its run's
  // start).
  if (seg.every_row && seg.accumulate)
    for_zero_rows(counts, rows, packs_per_row, [&](int pack) {
      const F s = sums[pack];
      P result;
#pragma unroll
      for (int j = 0; j < kPack; ++j) result.v[j] = from_float<T>(s.v[j]);
      store_dweight(out + pack, result);
    });
  if (entries > hit_count) {  // some run has more than one position
    sort_short_runs(runs, hit_rows, hit_count);
    if (has_long_run && warp < kSortWarps) sort_long_runs(runs, bitmaps, hit_rows, hit_count);
    __syncthreads();
  }

  // Step 4: the hit rows' sums.
  if (!seg.accumulate && !seg.to_partial)  // the only segment
    sum_hit_rows<false, false>(out, sums, segment_dout, runs, hit_rows, hit_count, packs_per_row, groups);
  else if (!seg.accumulate)  // the first of several
    sum_hit_rows<false, true>(out, sums, segment_dout, runs, hit_rows, hit_count, packs_per_row, groups);
  else if (seg.to_partial)  // one in the middle
    sum_hit_rows<true, true>(out, sums, segment_dout, runs, hit_rows, hit_count, packs_per_row, groups);
  else  // the last
    sum_hit_rows<true, false>(out, sums, segment_dout, runs, hit_rows, hit_count, packs_per_row, groups);
}

// ---- the backward of a small table ---------------------------------------------------------
//
// At most kSmallTableRows rows a block (GPT-2's 1024 positions: 8 a block), each hit many
// times. A block (step 1) keeps its hits in position order, each thread's after those of the
// threads below it (one scan of the threads' hit counts), and counts them a row; (step 2) warp r
// picks row r's positions out of those entries by ballots, 32 entries a ballot, so each row's
// run comes out in position order with nothing to sort; and (step 3) warps take (row, group of
// 32 packs) items and sum each run, kLoadsInFlight dout loads in flight. Every row is written in
// every segment (the earlier segments' sums, or zeros, when no id of this one hits it).

// Rows a block owns at most in the small-table kernel: warp r builds row r's run, and lane r of
// each warp holds row r's count and run start.
constexpr int kSmallTableRows = 32;
static_assert(kSmallTableRows <= kBackwardWarps, "a warp builds each row's run");
// A run starts on a multiple of kLoadsInFlight positions, so that the positions of a ring's
// loads are one 16-byte load from shared memory (kLoadsInFlight uint16_t).
static_assert(kLoadsInFlight * sizeof(uint16_t) == sizeof(uint4), "a ring's positions are one 16-byte load");
// An entry: (row in the block) << 16 | (position in the segment); kNoEntry matches no row.
constexpr uint32_t kNoEntry = 0xffffffffu;

// The small-table kernel's dynamic shared memory: the block's entries (at most a segment's ids),
// then the runs (each padded to a multiple of kLoadsInFlight).
constexpr size_t kSmallTableEntryBytes = kSegmentIds * sizeof(uint32_t);
constexpr size_t kSmallTableSharedBytes =
    kSmallTableEntryBytes + (kSegmentIds + kSmallTableRows * (kLoadsInFlight - 1)) * sizeof(uint16_t);

// Step 2 for row r: its `count` positions, in position order, from the block's `hits` entries
// (all its rows' hits, in position order) into `run`, 32 entries a ballot.
__device__ __forceinline__ void collect_run(uint16_t* run, const uint32_t* entries, int hits, int r, int count) {
  const int lane = threadIdx.x % 32;
  for (int base = 0, found = 0; found < count; base += 32) {
    const uint32_t entry = base + lane < hits ? entries[base + lane] : kNoEntry;
    const bool match = entry >> 16 == static_cast<uint32_t>(r);
    const unsigned matches = __ballot_sync(kFullMask, match);
    if (match) run[found + __popc(matches & ((1u << lane) - 1u))] = static_cast<uint16_t>(entry & 0xffffu);
    found += __popc(matches);
  }
}

// Position u of a ring's kLoadsInFlight positions, read as one uint4 (u known at compile time).
__device__ __forceinline__ int ring_position(const uint4& positions, int u) {
  const unsigned word = u < 2 ? positions.x : u < 4 ? positions.y : u < 6 ? positions.z : positions.w;
  return static_cast<int>(u % 2 == 0 ? word & 0xffffu : word >> 16);
}

// Step 3 for one item: the lane's pack of the dout rows at the `count` positions of `run`
// (16-byte aligned), added in order onto the earlier segments' sum or zero, then stored (to
// `sum` for a later segment, else rounded to `out`). kLoadsInFlight loads in flight: as the
// oldest is added, the load kLoadsInFlight positions on is issued. `column` is the lane's pack of
// the segment's first dout row.
template <int kPack, class T>
__device__ __forceinline__ void sum_run(Pack<T, kPack>* out, Pack<float, kPack>* sum,
                                        const Pack<T, kPack>* __restrict__ column, const uint16_t* run, int count,
                                        int packs_per_row, const Segment& seg) {
  using P = Pack<T, kPack>;
  using F = Pack<float, kPack>;
  // A 16-byte pack is held as a uint4 until it is added: as Pack<half, 8>, ptxas gives each
  // 16-bit value a register of its own, and the ring spilled.
  using Slot = std::conditional_t<sizeof(P) == sizeof(uint4), uint4, P>;
  const auto* slots = reinterpret_cast<const Slot*>(column);
  const auto* positions = reinterpret_cast<const uint4*>(run);
  Slot ring[kLoadsInFlight];
  uint4 ahead = count > 0 ? positions[0] : uint4{0, 0, 0, 0};
#pragma unroll
  for (int u = 0; u < kLoadsInFlight; ++u)
    if (u < count) ring[u] = slots[ring_position(ahead, u) * packs_per_row];
  float acc[kPack] = {};
  if (seg.accumulate) {
    const F start = *sum;
#pragma unroll
    for (int j = 0; j < kPack; ++j) acc[j] = start.v[j];
  }
  for (int base = 0; base < count; base += kLoadsInFlight) {
    const bool more = base + kLoadsInFlight < count;
    ahead = more ? positions[base / kLoadsInFlight + 1] : uint4{0, 0, 0, 0};
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      if (base + u >= count) break;
      add_pack(acc, reinterpret_cast<const P&>(ring[u]));
      if (base + kLoadsInFlight + u < count) ring[u] = slots[ring_position(ahead, u) * packs_per_row];
    }
  }
  if (seg.to_partial) {
    F s;
#pragma unroll
    for (int j = 0; j < kPack; ++j) s.v[j] = acc[j];
    *sum = s;
  } else {
    P result;
#pragma unroll
    for (int j = 0; j < kPack; ++j) result.v[j] = from_float<T>(acc[j]);
    store_dweight(out, result);
  }
}

// Block b owns rows [b, b + 1) * rows_per_block, at most kSmallTableRows (see above for the
// steps). Its barriers are all at its top level.
template <int kPack, class T>
__global__ void __launch_bounds__(kBackwardThreads, kBackwardBlocksPerSm)
    embedding_backward_small_table_kernel(T* dweight, float* partial, const int32_t* __restrict__ ids,
                                          const T* __restrict__ dout, int vocab, int rows_per_block, int packs_per_row,
                                          int groups, Segment seg) {
  using P = Pack<T, kPack>;
  using F = Pack<float, kPack>;
  extern __shared__ uint4 shared_memory[];
  __shared__ unsigned warp_hits[kBackwardWarps];
  __shared__ int row_hits[kSmallTableRows];
  auto* entries = reinterpret_cast<uint32_t*>(shared_memory);
  auto* runs = reinterpret_cast<uint16_t*>(reinterpret_cast<unsigned char*>(shared_memory) + kSmallTableEntryBytes);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int first_row = blockIdx.x * rows_per_block, rows = min(rows_per_block, vocab - first_row);

  // Step 1: thread t reads ids [t, t + 1) * kIdsPerLane (all loads in flight at once) and writes
  // those in the block's rows as entries, in order, after the entries of threads 0 .. t - 1 (a
  // scan of the threads' hit counts over the lanes, then over the warps), and counts each row's.
  if (threadIdx.x < kSmallTableRows) row_hits[threadIdx.x] = 0;
  const int begin = threadIdx.x * kIdsPerLane;
  int id[kIdsPerLane];
  load_lane_ids(id, ids + seg.first, begin, seg.count);
  const unsigned mine = block_hits(id, first_row, rows), mine_count = __popc(mine);
  const unsigned inclusive = warp_inclusive_sum(mine_count);
  if (lane == 31) warp_hits[warp] = inclusive;
  __syncthreads();
  const unsigned warp_total = warp_hits[lane], warps_inclusive = warp_inclusive_sum(warp_total);
  const int hits = static_cast<int>(__reduce_add_sync(kFullMask, warp_total));
  int at = static_cast<int>(__shfl_sync(kFullMask, warps_inclusive - warp_total, warp) + inclusive - mine_count);
  if (mine != 0) {
#pragma unroll
    for (int k = 0; k < kIdsPerLane; ++k) {
      if ((mine >> k & 1u) == 0) continue;
      const int r = id[k] - first_row;
      entries[at++] = static_cast<uint32_t>(r) << 16 | static_cast<uint32_t>(begin + k);
      atomicAdd(&row_hits[r], 1);  // a count: the order does not matter
    }
  }
  __syncthreads();

  // Step 2: lane r of every warp takes row r's count and, from a scan of the counts rounded up to
  // kLoadsInFlight, where its run starts; warp r collects row r's run.
  const int row_count = lane < rows ? row_hits[lane] : 0;
  const int padded = (row_count + kLoadsInFlight - 1) / kLoadsInFlight * kLoadsInFlight;
  const int run_start = static_cast<int>(warp_inclusive_sum(static_cast<unsigned>(padded))) - padded;
  const int own_start = __shfl_sync(kFullMask, run_start, warp), own_count = __shfl_sync(kFullMask, row_count, warp);
  if (warp < rows) collect_run(runs + own_start, entries, hits, warp, own_count);
  __syncthreads();
#if __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of the kernel before it in the stream (see the top):
  // steps 1 and 2 read only the ids, so they ran during that kernel's tail; dout, the sums so far
  // and dweight are touched only now that it has finished and its writes are visible. Then the
  // next kernel may launch its blocks (they start as these exit), this one's wait being over.
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif

  // Step 3: warp w takes items w, w + 32, ...: (row, group of 32 packs), one pack a lane.
  P* out = reinterpret_cast<P*>(dweight) + int64_t{first_row} * packs_per_row;
  F* sums = partial != nullptr ? reinterpret_cast<F*>(partial) + int64_t{first_row} * packs_per_row : nullptr;
  const P* segment_dout = reinterpret_cast<const P*>(dout) + seg.first * packs_per_row;
  for (int item = warp; item < rows * groups; item += kBackwardWarps) {
    const int r = item / groups, pack = (item - r * groups) * kWarpPacks + lane;
    const int count = __shfl_sync(kFullMask, row_count, r), start = __shfl_sync(kFullMask, run_start, r);
    if (pack >= packs_per_row) continue;
    const int at_pack = r * packs_per_row + pack;
    sum_run(out + at_pack, sums != nullptr ? sums + at_pack : nullptr, segment_dout + pack, runs + start, count,
            packs_per_row, seg);
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
  const int64_t packs_per_row = channels / kPack;
  // A block's packs are counted in 32 bits from its first (its zero-row loop steps a warp past
  // its last row).
  FT_CHECK((rows_per_block + int64_t{kBackwardWarps}) * packs_per_row <= INT_MAX,
           "embedding backward: ", rows_per_block, " rows of ", channels, " channels are too many for one block");
  // Step 4 counts a segment's dout packs in 31 bits (bit 31 flags a partial group).
  FT_CHECK(int64_t{kSegmentIds} * packs_per_row <= INT_MAX, "embedding backward: rows of ", channels,
           " channels are too wide");
  const auto blocks = static_cast<int>((vocab + rows_per_block - 1) / rows_per_block);
  const bool small_table = rows_per_block <= kSmallTableRows;
  const size_t shared_bytes = small_table ? kSmallTableSharedBytes : SharedLayout(rows_per_block).bytes();
  const auto kernel = small_table ? embedding_backward_small_table_kernel<kPack, cuda_t<T>>
                                  : embedding_backward_kernel<kPack, cuda_t<T>>;
  FT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)));
  const int groups = static_cast<int>((packs_per_row + kWarpPacks - 1) / kWarpPacks);
  // The small-table kernel as a programmatic dependent of the kernel before it, where the device
  // has them (compute capability 9.0 on): see the top.
  const int64_t segments = segment_count(tokens);
  for (int64_t s = 0; s < segments; ++s) {
    const int64_t first = s * kSegmentIds;
    const Segment seg{first, static_cast<int>(std::min<int64_t>(kSegmentIds, tokens - first)), s > 0, s < segments - 1,
                      s == 0 || s == segments - 1};
    launch_maybe_programmatic(small_table, kernel, dim3(static_cast<unsigned>(blocks)), dim3(kBackwardThreads),
                              shared_bytes, stream, device_ptr(dweight), partial, ids, device_ptr(dout),
                              static_cast<int>(vocab), rows_per_block, static_cast<int>(packs_per_row), groups, seg);
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
