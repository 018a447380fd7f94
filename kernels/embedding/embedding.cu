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
// Finding each row's positions takes no device-wide sort (a radix sort of 16K ids is several
// launches, most of them a few busy blocks). The ids are cut into chunks of consecutive
// positions, and one block sorts each chunk by id (cub::BlockRadixSort, stable: the positions
// of one id stay in increasing order) and counts, for every slice of R consecutive rows, where
// that slice starts in its sorted chunk. Then one warp takes each slice and merges up to 32
// chunks, one per lane: lane c keeps a cursor on the next run of chunk c and that run's id in a
// register, so a row no id hits costs a few register operations and its zero stores (no load),
// and a row that is hit sums the runs of the lanes whose id it is in lane order, which is chunk
// order, which is position order. The whole warp sums each position's row, three 16-byte packs
// per lane (768 bf16 channels: one row per warp), several positions' loads in flight before the
// additions, which stay in order. With R chosen so that there are about as many slices as warps
// that fit on the GPU at once, the merge is bound by writing dweight.
//
// The one subtle decision is what a lane keeps: each sorted entry carries the id of the run
// after its own, so once a lane has summed a run it knows at once which row it waits for next,
// and the load of that run's entry has until then to arrive. More than 32 chunks (over 131072
// ids) take several merge passes over 32 chunks each, whose sums stay fp32 in the workspace in
// between, so every row is still rounded once and added in position order.
//
// Ids must be in range; the loader validates them (data/prepare.cpp). An id outside [0, vocab)
// is made harmless, not reported (that would need a host synchronisation inside the op): it
// gathers a row of zeros and sorts, as key `vocab`, after every row's runs, matching no row.
#include <climits>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <type_traits>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/embedding/embedding_cuda.h"

namespace ft::kernels {
namespace {

// Packs of a row one warp takes in the forward: one per lane.
constexpr int kWarpPacks = 32;
// Alignment of each buffer carved out of the workspace (a whole number of 128-byte lines).
constexpr size_t kBufferAlignment = 256;

// The chunk sort: a block of kSortThreads sorts kSortThreads * items ids, items one of 2, 4, 8
// or 16 (chunks of 512 to 4096 ids), the fewest that leave at most kMergeLanes chunks. Small
// chunks sort fastest (a block's radix passes are its latency), and GPT-2's 16K ids make 32
// blocks of 512.
constexpr int kSortThreads = 256;
constexpr int kMinSortItems = 2, kMaxSortItems = 16;
// Key bits a radix pass takes. GPT-2's 16-bit keys take 3 passes of 6 bits instead of cub's
// default 4 of 4; each pass is a serial chain of about 7 block barriers (counters, scan, two
// exchanges), and the wider digit costs only 24 more shared-memory counters per thread to scan
// (33 instead of 9, in registers). 8 bits would need 129 x 256 x 4 bytes of counters, over the
// 48 KB of static shared memory; 6 bits take 33.8 KB.
constexpr int kSortRadixBits = 6;
// Chunks one merge pass takes: one per lane.
constexpr int kMergeLanes = 32;
// At most this many slices: a power-of-two R rows each, the smallest R that keeps the count
// under it. A merge warp is a serial chain of dependent loads, one per row that ids hit (the
// dout rows it sums, then the run's next entry), so its time is that chain: GPT-2's 16K uniform
// ids hit about 10 rows of a 32-row slice, and 1571 such warps (12 per H200 multiprocessor, 15%
// of the warp slots) measured 44 us, while its minimal traffic (dweight written, dout read)
// takes 24 us. Slices of 16 rows halve the chain and double the warps: 3142 warps in 786
// blocks, 6 on each of the 132 multiprocessors (24 warps), all resident at once under the
// register cap below; the sums and their order do not change. The chunks'
// slice starts stay small (slices x chunks <= 8 per id, 400 KB for GPT-2). A 1024-row position
// table still gets one row per warp.
constexpr int kMaxSlices = 4096;
// Packs (16 bytes) per lane per row that a merge warp sums at once: 96 packs are 768 bf16
// channels, GPT-2's whole row; wider rows take several rounds.
constexpr int kLanePacks = 3;
// Positions whose loads a merge warp issues before adding them (in order): 2 x 3 packs of 16
// bytes, 96 bytes per lane in flight (78 registers in bf16, 67 in f32). Four would spill under
// the cap below.
constexpr int kMergeUnroll = 2;
// Merge blocks of 4 warps (4 slices), so that GPT-2's 786 blocks spread evenly (6 on each
// multiprocessor); 6 blocks a multiprocessor cap the registers at 80 (bf16 took 103 before its
// add_pack below, which allows only 4 blocks, 528 of the 786), and ptxas spills nothing. In
// flight per multiprocessor: up to 24 warps x 2 positions x 3 packs x 16 bytes x 32 lanes =
// 72 KB of dout loads (36 KB when, as mostly with uniform ids, a row has one position), besides
// the 1.5 KB row stores each warp issues without waiting.
constexpr int kMergeThreads = 128;
constexpr int kMergeBlocksPerSm = 6;
// The key of no run: after a chunk's last run, and for lanes without a chunk.
constexpr int kNoKey = INT_MAX;

size_t aligned_size(size_t bytes) { return (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment; }

// Bits that hold every key 0..vocab (vocab stands for an invalid id).
int key_bits(int64_t vocab) {
  int bits = 1;
  while (bits < 32 && (int64_t{1} << bits) <= vocab) ++bits;
  return bits;
}

// Positions and sort keys are 32-bit.
void check_sizes(int64_t tokens, int64_t vocab) {
  FT_CHECK(tokens <= INT_MAX && vocab < INT_MAX, "embedding backward: ", tokens, " ids over a vocabulary of ", vocab,
           "; the CUDA kernels hold positions and ids in 32 bits");
}

// How the backward cuts the ids into chunks and the rows into slices.
struct Plan {
  int64_t tokens;
  int vocab;
  int sort_items, chunk_tokens, chunks;
  int slice_shift, slices;  // slice s holds rows [s << slice_shift, (s + 1) << slice_shift)
  int passes;               // merge passes of up to kMergeLanes chunks
};

Plan plan_backward(int64_t tokens, int64_t vocab) {
  check_sizes(tokens, vocab);
  Plan p{tokens, static_cast<int>(vocab), kMinSortItems, 0, 0, 0, 0, 0};
  while (p.sort_items < kMaxSortItems && tokens > int64_t{kMergeLanes} * kSortThreads * p.sort_items) p.sort_items *= 2;
  p.chunk_tokens = kSortThreads * p.sort_items;
  p.chunks = static_cast<int>((tokens + p.chunk_tokens - 1) / p.chunk_tokens);
  while ((vocab + (int64_t{1} << p.slice_shift) - 1) >> p.slice_shift > kMaxSlices) ++p.slice_shift;
  p.slices = static_cast<int>((vocab + (int64_t{1} << p.slice_shift) - 1) >> p.slice_shift);
  p.passes = std::max(1, (p.chunks + kMergeLanes - 1) / kMergeLanes);
  return p;
}

// One id of a sorted chunk. Only a run's first entry is read whole; the others give their position.
struct alignas(16) Entry {
  int key;       // the id, or vocab for an invalid one
  int next_key;  // the key of the chunk's next run, kNoKey after its last
  int position;  // in the whole ids
  int run_end;   // the index in the sorted chunk one past this entry's run
};

// The workspace, carved in this order: each chunk's sorted entries (at chunk * chunk_tokens),
// each slice's start in each sorted chunk ([slice][chunk]), and with several merge passes the
// fp32 sums they hand on ([vocab, channels]).
struct Workspace {
  Entry* entries;
  int* slice_starts;
  float* partial;
};

size_t entries_bytes(const Plan& p) { return aligned_size(static_cast<size_t>(p.tokens) * sizeof(Entry)); }
size_t starts_bytes(const Plan& p) {
  return aligned_size(static_cast<size_t>(p.slices) * static_cast<size_t>(p.chunks) * sizeof(int));
}
size_t partial_bytes(const Plan& p, int64_t channels) {
  return p.passes > 1 ? aligned_size(static_cast<size_t>(p.vocab) * static_cast<size_t>(channels) * sizeof(float)) : 0;
}

Workspace carve(void* workspace, const Plan& p) {
  auto* base = static_cast<char*>(workspace);
  return Workspace{reinterpret_cast<Entry*>(base), reinterpret_cast<int*>(base + entries_bytes(p)),
                   reinterpret_cast<float*>(base + entries_bytes(p) + starts_bytes(p))};
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

// ---- backward, step 1: sort each chunk -----------------------------------------------------

// The first index in sorted[0, n) whose key is > value.
__device__ __forceinline__ int upper_bound(const unsigned* sorted, int n, unsigned value) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (sorted[mid] <= value)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// One block per chunk: its ids sorted by key (the id, or vocab for an invalid one), stably, as
// entries; and for every slice the number of the chunk's valid ids in earlier slices, which is
// where the slice starts in the sorted chunk. A last, short chunk is padded with key vocab after
// its ids; the padding sorts behind them and is never written.
template <int kItems>
__global__ void __launch_bounds__(kSortThreads)
    sort_chunks_kernel(Entry* __restrict__ entries, int* __restrict__ slice_starts, const int32_t* __restrict__ ids,
                       Plan p, int key_bits) {
  constexpr int kChunk = kSortThreads * kItems, kSlicesPerThread = kMaxSlices / kSortThreads;
  using Sort = cub::BlockRadixSort<unsigned, kSortThreads, kItems, int, kSortRadixBits>;
  using Scan = cub::BlockScan<int, kSortThreads>;
  __shared__ union {
    typename Sort::TempStorage sort;
    struct {
      unsigned keys[kChunk];
      int counts[kMaxSlices];
      typename Scan::TempStorage scan;
    } after;
  } smem;

  const int chunk = blockIdx.x;
  const int64_t start = int64_t{chunk} * kChunk;
  const int len = static_cast<int>(min(int64_t{kChunk}, p.tokens - start));
  const auto vocab = static_cast<unsigned>(p.vocab);
  unsigned keys[kItems];
  int index[kItems];  // in the chunk, before sorting
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    index[j] = threadIdx.x * kItems + j;
    const int32_t id = index[j] < len ? ids[start + index[j]] : -1;
    keys[j] = in_vocab(id, p.vocab) ? static_cast<unsigned>(id) : vocab;
  }
  Sort(smem.sort).Sort(keys, index, 0, key_bits);  // blocked: this thread holds sorted[threadIdx.x * kItems + j]
  __syncthreads();                                 // the sort's storage becomes `after`

#pragma unroll
  for (int j = 0; j < kItems; ++j) smem.after.keys[threadIdx.x * kItems + j] = keys[j];
  for (int s = threadIdx.x; s < kMaxSlices; s += kSortThreads) smem.after.counts[s] = 0;
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kItems; ++j)
    if (keys[j] < vocab) atomicAdd(&smem.after.counts[keys[j] >> p.slice_shift], 1);
  __syncthreads();

  // Slice starts: an exclusive sum of the counts, kSlicesPerThread consecutive slices a thread.
  int starts[kSlicesPerThread];
#pragma unroll
  for (int k = 0; k < kSlicesPerThread; ++k) starts[k] = smem.after.counts[threadIdx.x * kSlicesPerThread + k];
  Scan(smem.after.scan).ExclusiveSum(starts, starts);
#pragma unroll
  for (int k = 0; k < kSlicesPerThread; ++k) {
    const int slice = threadIdx.x * kSlicesPerThread + k;
    if (slice < p.slices) slice_starts[int64_t{slice} * p.chunks + chunk] = starts[k];
  }

#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    const int i = threadIdx.x * kItems + j;
    if (i >= len) continue;
    const int run_end = upper_bound(smem.after.keys, kChunk, keys[j]);
    const int next_key = run_end < len ? static_cast<int>(smem.after.keys[run_end]) : kNoKey;
    entries[start + i] = Entry{static_cast<int>(keys[j]), next_key, static_cast<int>(start + index[j]), run_end};
  }
}

// ---- backward, step 2: merge the chunks slice by slice -------------------------------------

// One merge pass: chunks [first_chunk, first_chunk + chunks_here), in order after the earlier
// passes' chunks.
struct MergePass {
  int first_chunk, chunks_here;
  bool accumulate;  // start each row from `partial`, an earlier pass's sums
  bool to_partial;  // leave the fp32 sums in `partial` for a later pass
  bool every_row;   // also write the rows this pass adds nothing to
};

// Contribution k of the current row (k < total): the runs of the lanes whose key is the row, in
// lane order; `ends` is the inclusive sum of the runs' lengths over the lanes, and contribution
// k of the owning lane's run is entries[first_entry + k]. The first entry of a run is the
// lane's `head`, already in registers.
__device__ __forceinline__ int contribution_position(int k, int total, int ends, int first_entry, int head_entry,
                                                     int head_position, const Entry* __restrict__ entries) {
  int owner = 0;  // the number of lanes whose runs end at or before k
#pragma unroll
  for (int step = 16; step > 0; step >>= 1) {
    const int probe = __shfl_sync(0xffffffffu, ends, owner + step - 1);
    if (probe <= k) owner += step;
  }
  const int entry = __shfl_sync(0xffffffffu, first_entry, owner) + k;
  const bool is_head = entry == __shfl_sync(0xffffffffu, head_entry, owner);
  const int position = __shfl_sync(0xffffffffu, head_position, owner);
  return k < total && !is_head ? entries[entry].position : position;
}

template <int kPack, class D>
__device__ __forceinline__ void add_pack(float (&acc)[kPack], const D& d) {
#pragma unroll
  for (int j = 0; j < kPack; ++j) acc[j] += to_float(d.v[j]);
}

// A bf16 is the top half of a float, so widening a pair is a shift and a mask of their 32-bit
// word, done as each is added. Through __bfloat162float ptxas widened all the loaded packs
// before adding them and needed 103 registers (150 bytes of spills under the cap below); this
// way 78.
__device__ __forceinline__ void add_pack(float (&acc)[8], const Pack<__nv_bfloat16, 8>& d) {
  const auto& words = reinterpret_cast<const Pack<unsigned, 4>&>(d);
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    acc[2 * w] += __uint_as_float(words.v[w] << 16);
    acc[2 * w + 1] += __uint_as_float(words.v[w] & 0xffff0000u);
  }
}

// Every row of one slice per warp (see the top). Lane c holds the head (first entry) of chunk
// c's next run at or after the current row and its key; a lane that sums its run moves to the
// next one, whose key the run's entry carries. The partial sums are [vocab, channels] fp32.
template <int kPack, class T>
__global__ void __launch_bounds__(kMergeThreads, kMergeBlocksPerSm)
    merge_chunks_kernel(T* dweight, float* partial, const Entry* __restrict__ entries,
                        const int* __restrict__ slice_starts, const T* __restrict__ dout, Plan p, int64_t packs_per_row,
                        MergePass pass) {
  using P = Pack<T, kPack>;
  using F = Pack<float, kPack>;
  const int64_t slice = warp_index();
  if (slice >= p.slices) return;  // the whole warp
  const int lane = threadIdx.x % 32, chunk = pass.first_chunk + lane;
  const bool has_chunk = lane < pass.chunks_here;
  const int chunk_start = has_chunk ? chunk * p.chunk_tokens : 0;  // below tokens <= INT_MAX
  int cursor = 0, key = kNoKey;
  Entry head{kNoKey, kNoKey, 0, 0};
  if (has_chunk) {
    cursor = slice_starts[slice * p.chunks + chunk];
    if (cursor < min(int64_t{p.chunk_tokens}, p.tokens - chunk_start)) {
      head = entries[chunk_start + cursor];
      key = head.key;
    }
  }

  const int first_row = static_cast<int>(slice << p.slice_shift);
  const int end_row = static_cast<int>(min(int64_t{p.vocab}, (slice + 1) << p.slice_shift));
  for (int row = first_row; row < end_row; ++row) {
    const bool hit = key == row;
    const unsigned hits = __ballot_sync(0xffffffffu, hit);
    if (hits == 0 && !pass.every_row) continue;
    const int run = hit ? head.run_end - cursor : 0;
    int ends = run;  // inclusive sum over the lanes
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      const int before = __shfl_up_sync(0xffffffffu, ends, offset);
      if (lane >= offset) ends += before;
    }
    const int total = __shfl_sync(0xffffffffu, ends, 31);
    // Entry indices are below tokens <= INT_MAX.
    const int head_entry = chunk_start + cursor, first_entry = head_entry - (ends - run);

    // Rounds of 32 * kLanePacks packs; every lane takes every round, for the shuffles inside.
    for (int64_t round = 0; round < packs_per_row; round += 32 * kLanePacks) {
      const int64_t pack0 = round + lane;
      float acc[kLanePacks][kPack];
      bool in_row[kLanePacks];
#pragma unroll
      for (int q = 0; q < kLanePacks; ++q) {
        const int64_t pack = pack0 + 32 * q;
        in_row[q] = pack < packs_per_row;
        const F start =
            pass.accumulate && in_row[q] ? reinterpret_cast<const F*>(partial)[row * packs_per_row + pack] : F{};
#pragma unroll
        for (int j = 0; j < kPack; ++j) acc[q][j] = start.v[j];
      }
      for (int k0 = 0; k0 < total; k0 += 32) {
        const int position =
            contribution_position(k0 + lane, total, ends, first_entry, head_entry, head.position, entries);
        const int n = min(32, total - k0);
        for (int i = 0; i < n; i += kMergeUnroll) {
          P d[kMergeUnroll][kLanePacks];
#pragma unroll
          for (int u = 0; u < kMergeUnroll; ++u) {
            const P* src = reinterpret_cast<const P*>(dout) +
                           __shfl_sync(0xffffffffu, position, (i + u) % 32) * packs_per_row + pack0;
#pragma unroll
            for (int q = 0; q < kLanePacks; ++q)
              if (i + u < n && in_row[q]) d[u][q] = src[32 * q];
          }
#pragma unroll
          for (int u = 0; u < kMergeUnroll; ++u)
#pragma unroll
            for (int q = 0; q < kLanePacks; ++q)
              if (i + u < n) add_pack(acc[q], d[u][q]);
        }
      }
#pragma unroll
      for (int q = 0; q < kLanePacks; ++q) {
        const int64_t pack = pack0 + 32 * q, at = row * packs_per_row + pack;
        if (pack >= packs_per_row) continue;
        if (pass.to_partial) {
          F sums;
#pragma unroll
          for (int j = 0; j < kPack; ++j) sums.v[j] = acc[q][j];
          reinterpret_cast<F*>(partial)[at] = sums;
        } else {
          P result;
#pragma unroll
          for (int j = 0; j < kPack; ++j) result.v[j] = from_float<T>(acc[q][j]);
          reinterpret_cast<P*>(dweight)[at] = result;
        }
      }
    }

    if (hit) {  // on to the chunk's next run; its entry is not needed before the row of its key
      cursor = head.run_end;
      key = head.next_key;
      if (key != kNoKey) head = entries[chunk_start + cursor];
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

template <int kItems>
void launch_sort(const Workspace& w, const int32_t* ids, const Plan& p, cudaStream_t stream) {
  sort_chunks_kernel<kItems>
      <<<p.chunks, kSortThreads, 0, stream>>>(w.entries, w.slice_starts, ids, p, key_bits(p.vocab));
  FT_CUDA_CHECK_LAUNCH();
}

void sort_chunks(const Workspace& w, const int32_t* ids, const Plan& p, cudaStream_t stream) {
  if (p.chunks == 0) return;
  switch (p.sort_items) {
    case 2:
      return launch_sort<2>(w, ids, p, stream);
    case 4:
      return launch_sort<4>(w, ids, p, stream);
    case 8:
      return launch_sort<8>(w, ids, p, stream);
    default:
      return launch_sort<kMaxSortItems>(w, ids, p, stream);
  }
}

template <int kPack, class T>
void merge_chunks(T* dweight, const Workspace& w, const T* dout, const Plan& p, int64_t channels, cudaStream_t stream) {
  const int warps_per_block = kMergeThreads / 32, blocks = (p.slices + warps_per_block - 1) / warps_per_block;
  for (int i = 0; i < p.passes; ++i) {
    const int first_chunk = i * kMergeLanes;
    const MergePass pass{first_chunk, std::min(kMergeLanes, p.chunks - first_chunk), i > 0, i < p.passes - 1,
                         i == 0 || i == p.passes - 1};
    merge_chunks_kernel<kPack><<<blocks, kMergeThreads, 0, stream>>>(
        device_ptr(dweight), w.partial, w.entries, w.slice_starts, device_ptr(dout), p, channels / kPack, pass);
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
  const Plan p = plan_backward(tokens, vocab);
  return entries_bytes(p) + starts_bytes(p) + partial_bytes(p, channels);
}

template <class T>
void embedding_backward_cuda(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                             int64_t channels, void* workspace, cudaStream_t stream) {
  const Plan p = plan_backward(tokens, vocab);
  if (vocab == 0 || channels == 0) return;
  const Workspace w = carve(workspace, p);
  sort_chunks(w, ids, p, stream);
  constexpr int kVector = kPackBytes / sizeof(T);
  if (pack_elements<T>(dweight, dout, channels) == kVector)
    merge_chunks<kVector>(dweight, w, dout, p, channels, stream);
  else
    merge_chunks<1>(dweight, w, dout, p, channels, stream);
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
