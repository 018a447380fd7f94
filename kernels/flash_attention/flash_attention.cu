// Flash attention (FlashAttention-2's scheme) on tensor cores, forward and backward, for head
// dims 64 and 128 in bf16 and f16; attention_cpu.h is the reference and writes out the math.
//
// Forward: one block of 4 warps per (64 queries, batch * head); each warp owns 16 query rows, the
// rows of one m16n8k16 MMA. The block walks the key tiles of 64 (only those at or below the
// diagonal when causal), with K and V double-buffered in shared memory by cp.async: tile j + 1
// is in flight while tile j is used. Per tile a warp computes S = Q K^T (fp32 accumulators),
// scales it by scale * log2(e) so that exp is exp2f, masks it, and updates each row's running
// max m and sum l online: on a new max m', l and the output accumulator are multiplied by
// 2^(m - m') before the tile's P = 2^(S - m') is added (l += rowsum P, O += P V, P rounded to
// T for the MMA). At the end O / l is written and lse = (m + log2 l) ln 2.
//
// Backward, with D_i = rowsum(dO_i * O_i) (= rowsum(dP_i * P_i), attention_cpu.h) and
// P = exp(S - lse) recomputed from the saved lse:
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dK = scale dS^T Q,  dQ = scale dS K.
// The subtle decision is how dQ is summed. FlashAttention-2 walks key tiles in the outer loop
// and adds each tile's share of dQ into an fp32 buffer with atomics: one pass, but the order of
// the additions changes from run to run and so do dQ's last bits. Here the backward is three
// kernels and no atomics: (1) D; (2) one block per (64 keys, batch * head) walks the query tiles
// and keeps dK and dV of its keys in registers; (3) one block per (64 queries, batch * head)
// walks the key tiles and keeps dQ of its queries in registers. S, P and dP are computed twice
// (by (2) and by (3)), about 40% more MMAs than one pass, in exchange for the same bits on
// every run and no [B, H, T, D] fp32 dQ buffer.
//
// Masks: a query sees a key when (not causal or key <= query) and both carry the same segment id
// >= 0. Positions past the sequence carry -1, as padding does, and without segment ids every
// position inside carries 0, so one comparison covers the tails, padding and packed documents.
// Tiles wholly inside the sequence and below the diagonal with no segment ids skip the
// per-element test. A query that sees nothing keeps m = -inf: its l is 0, its output 0 and its
// lse +inf, so the backward's P = 2^(S - lse) is 0 on its row and its gradients are 0.
//
// Operands: every [B, H, T, D] tensor (q, k, v, out, dO, dq, dk, dv) is addressed through its own
// batch, head and token strides, with D contiguous: the block of (batch b, head h) finds its rows
// at b * batch + h * head, `token` elements apart. So the caller's views are read and written in
// place (q, k, v side by side in one [B, T, 3C] projection, results heads-last). cp.async and the
// stores move 16-byte chunks, so the launchers check that every row starts on 16 bytes (pointers
// and strides). lse and D are [B, H, T] fp32, contiguous.
//
// Shared memory rows are padded by 16 bytes (kPad): a row of 64 or 128 values is then 9 or 17
// 16-byte units long, an odd count, so the 8 rows of an ldmatrix 8x8 matrix start in 8
// different bank groups. Tile rows past the sequence are zero-filled by cp.async, which keeps
// every product finite where the masks then drop it.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/flash_attention/flash_attention_cuda.h"

namespace ft::kernels {
namespace {

constexpr int kWarp = 32;
// 4 warps of 16 rows: FlashAttention-2's choice for these head dims; 64 query rows a block
// give B * H * T / 64 blocks (GPT-2: 2304 a layer), and 128 threads leave each thread up to 255
// registers for the fp32 accumulators (a 16 x 128 block is 64 of them).
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kMmaRows = 16;                   // m16n8k16: a warp's MMAs cover 16 rows
constexpr int kQueryTile = kWarps * kMmaRows;  // query rows of a forward or dQ block
constexpr int kKeyTile = 64;                   // keys per step: a 16 x 64 fp32 S is 32 registers a thread
constexpr int kPad = 8;                        // 16 bytes of padding per shared-memory row (see the top)
constexpr int kValueBytes = 2;                 // bf16 and f16
constexpr int kChunk = 16 / kValueBytes;       // values in one 16-byte cp.async or store
constexpr float kLog2e = 1.4426950408889634f;  // scores are scaled by scale * log2(e): exp(x) = 2^(x log2 e)
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
constexpr int kRowStride = D + kPad;  // shared-memory row stride in values

// Query rows per step of the dK/dV kernel: its warps hold dK and dV (16 x D fp32 each) besides
// S^T and dP^T (16 x rows each); at D = 128 that is 128 + 2 x 16 registers with 32 rows, where
// 64 rows would spill.
template <int D>
constexpr int kBackwardQueryTile = D == 64 ? 64 : 32;

// ---- PTX: asynchronous copies, ldmatrix, mma -------------------------------------------------

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes from global to shared memory, or 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 matrices of 16-bit values; lane l gives the address of row l % 8 of matrix l / 8, and
// gets in r[i] the values (row l / 4, columns 2 (l % 4) and the next) of matrix i, or with .trans
// those of its transpose.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

// d += a b for a 16x16 A (row-major fragment) and a 16x8 B (column-major), fp32 accumulation.
template <class T>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two fp32 values rounded to T in one 32-bit register, lo in the low half (the lower column).
template <class T>
__device__ __forceinline__ uint32_t pack(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// ---- warp tiles -------------------------------------------------------------------------------

// A warp's fp32 accumulator for a 16 x N block is acc[N / 8][4] (m16n8 layout): element e of
// n-block n lies at row acc_row(e) and column acc_col(n, e) of the block.
__device__ __forceinline__ int acc_row(int e) { return threadIdx.x % kWarp / 4 + e / 2 * 8; }
__device__ __forceinline__ int acc_col(int n, int e) { return n * 8 + threadIdx.x % 4 * 2 + e % 2; }

// acc += A B^T for a warp's 16 x N block: A is the 16 rows at `a`, B the N rows at `b`, both
// [rows, kDepth] in shared memory with row stride kStride. (Q K^T, dO V^T, K Q^T, V dO^T.)
template <class T, int kDepth, int N, int kStride>
__device__ __forceinline__ void warp_mma_abt(float (&acc)[N / 8][4], const T* a, const T* b) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    uint32_t af[4];
    ldmatrix_x4(af, a + lane % 16 * kStride + kk * 16 + lane / 16 * 8);
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      uint32_t bf[4];  // n-blocks 2n (bf[0], bf[1]) and 2n + 1 (bf[2], bf[3])
      ldmatrix_x4(bf, b + (n * 16 + lane / 16 * 8 + lane % 8) * kStride + kk * 16 + lane / 8 % 2 * 8);
      mma<T>(acc[2 * n], af, bf[0], bf[1]);
      mma<T>(acc[2 * n + 1], af, bf[2], bf[3]);
    }
  }
}

// acc += P B for a warp's 16 x N block: P is the warp's 16 x kDepth fp32 accumulator (rounded
// to T here), B the kDepth x N matrix at `b` in shared memory. (P V, P^T dO, dS^T Q, dS K.)
template <class T, int kDepth, int N, int kStride>
__device__ __forceinline__ void warp_mma_pb(float (&acc)[N / 8][4], const float (&p)[kDepth / 8][4], const T* b) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int kb = 0; kb < kDepth / 16; ++kb) {
    // The accumulator layout of columns 16 kb .. 16 kb + 15 is the A fragment's.
    const uint32_t af[4] = {pack<T>(p[2 * kb][0], p[2 * kb][1]), pack<T>(p[2 * kb][2], p[2 * kb][3]),
                            pack<T>(p[2 * kb + 1][0], p[2 * kb + 1][1]), pack<T>(p[2 * kb + 1][2], p[2 * kb + 1][3])};
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      uint32_t bf[4];
      ldmatrix_x4_trans(bf, b + (kb * 16 + lane % 8 + lane / 8 % 2 * 8) * kStride + n * 16 + lane / 16 * 8);
      mma<T>(acc[2 * n], af, bf[0], bf[1]);
      mma<T>(acc[2 * n + 1], af, bf[2], bf[3]);
    }
  }
}

// Starts copying rows [row0, row0 + kRows) of a [seq_len, D] head (rows `token` elements apart in
// global memory) into a shared tile of row stride kRowStride<D>; rows at or past seq_len become
// zeros. Each round the block copies kRoundRows whole rows and a thread's chunk moves that many rows
// down: one pointer step. Computing each round's address apart made ptxas keep one 64-bit product
// per round of every tile alive across the key loop: on sm_90 the forward at D = 64 took 139
// registers that way (one block less per SM), 127 this way, 122 when rows were D apart.
template <int D, int kRows, class T>
__device__ __forceinline__ void load_tile_async(T* tile, const T* head, int64_t token, int row0, int seq_len) {
  constexpr int kChunksPerRow = D / kChunk, kRoundRows = kThreads / kChunksPerRow;
  static_assert(kRows % kRoundRows == 0, "a tile is whole rounds of the block's threads");
  const int first = threadIdx.x / kChunksPerRow, col = threadIdx.x % kChunksPerRow * kChunk;
  const T* src = head + (row0 + first) * token + col;
#pragma unroll
  for (int i = 0; i < kRows / kRoundRows; ++i, src += kRoundRows * token) {
    const int r = first + i * kRoundRows;
    const bool valid = row0 + r < seq_len;
    cp_async_16(tile + r * kRowStride<D> + col, valid ? src : head, valid);
  }
}

// Writes a warp's 16 x D fp32 block times `scale` as T into rows [row0, row0 + 16) of a
// [seq_len, D] head (rows `token` elements apart), those before seq_len. It goes through
// `staging`, the warp's own 16 rows of a shared tile (no other warp reads them), so that the
// global stores are 16 bytes wide.
template <class T, int D>
__device__ __forceinline__ void store_warp_rows(const float (&acc)[D / 8][4], float scale, T* staging, T* head,
                                                int64_t token, int row0, int seq_len) {
  constexpr int kChunksPerRow = D / kChunk;
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; e += 2)
      *reinterpret_cast<uint32_t*>(staging + acc_row(e) * kRowStride<D> + acc_col(n, e)) =
          pack<T>(acc[n][e] * scale, acc[n][e + 1] * scale);
  __syncwarp();
  for (int c = threadIdx.x % kWarp; c < kMmaRows * kChunksPerRow; c += kWarp) {
    const int r = c / kChunksPerRow, col = c % kChunksPerRow * kChunk;
    if (row0 + r < seq_len)
      *reinterpret_cast<uint4*>(head + (row0 + r) * token + col) =
          *reinterpret_cast<const uint4*>(staging + r * kRowStride<D> + col);
  }
}

// ---- masks ------------------------------------------------------------------------------------

// The segment id of a position: -1 past the sequence (like padding), 0 without segment ids.
__device__ __forceinline__ int32_t segment_of(const int32_t* segments, int position, int seq_len) {
  return position >= seq_len ? -1 : segments ? segments[position] : 0;
}

__device__ __forceinline__ bool sees(bool causal, int query, int key, int32_t query_segment, int32_t key_segment) {
  return (!causal || key <= query) && query_segment >= 0 && query_segment == key_segment;
}

// Whether a (query tile, key tile) pair needs the per-element test: segment ids, a tail, or a
// key after some query under the causal mask.
__device__ __forceinline__ bool tile_needs_mask(bool causal, bool segmented, int q0, int queries, int k0, int keys,
                                                int seq_len) {
  return segmented || q0 + queries > seq_len || k0 + keys > seq_len || (causal && k0 + keys - 1 > q0);
}

// Key tiles a query tile starting at q0 walks: all, or those up to its last query when causal.
__device__ __forceinline__ int key_tiles_for(bool causal, int q0, int seq_len) {
  const int all = (seq_len + kKeyTile - 1) / kKeyTile;
  return causal ? min(all, (q0 + kQueryTile + kKeyTile - 1) / kKeyTile) : all;
}

// Calls f(std::true_type{}) for a tile that needs the per-element test (tile_needs_mask) and
// f(std::false_type{}) for one that does not: two copies of the loop, the common one with no test
// at all. Left to choose, nvcc may keep one loop with a branch around each element (on sm_90 the
// dK/dV kernel with strided operands ran 1.8x slower that way, its exp2s inside 72 branches).
template <class F>
__device__ __forceinline__ void with_tile_mask(bool needs_mask, F&& f) {
  if (needs_mask)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// ---- kernels ----------------------------------------------------------------------------------

// An operand in global memory: element (b, h, t, d) of the [batch, heads, seq_len, D] tensor is
// data[b * batch + h * head + t * token + d].
template <class T>
struct Heads {
  T* data;
  int64_t batch, head, token;

  // The first row of the [seq_len, D] matrix of batch * heads index bh.
  __device__ __forceinline__ T* rows_of(int64_t bh, int heads) const {
    return data + bh / heads * batch + bh % heads * head;
  }
};

template <class T>
struct Args {
  Heads<const T> q, k, v, out, d_out;
  Heads<T> o_write, dq, dk, dv;
  float* lse_write;
  const float *lse, *delta;
  const int32_t* segment_ids;  // [batch, seq_len] or null
  int seq_len, heads;
  bool causal;
  float scale, scale_log2;  // scale, and scale * log2(e)
};

template <int D>
constexpr size_t forward_shared_bytes() {  // Q, two K and two V tiles, two tiles' key segments
  return (kQueryTile + 4 * kKeyTile) * kRowStride<D> * kValueBytes + 2 * kKeyTile * sizeof(int32_t);
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(Args<T> a) {
  constexpr int kStride = kRowStride<D>;
  extern __shared__ __align__(16) unsigned char shared[];
  T* q_tile = reinterpret_cast<T*>(shared);
  T* k_tiles = q_tile + kQueryTile * kStride;
  T* v_tiles = k_tiles + 2 * kKeyTile * kStride;
  int32_t* key_segments = reinterpret_cast<int32_t*>(v_tiles + 2 * kKeyTile * kStride);

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, seq_len = a.seq_len;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kQueryTile;  // the longest causal rows start first
  const int64_t bh = blockIdx.y;
  const T* k_head = a.k.rows_of(bh, a.heads);
  const T* v_head = a.v.rows_of(bh, a.heads);
  const int32_t* segments = a.segment_ids ? a.segment_ids + bh / a.heads * seq_len : nullptr;
  const int key_tiles = key_tiles_for(a.causal, q0, seq_len);

  load_tile_async<D, kQueryTile>(q_tile, a.q.rows_of(bh, a.heads), a.q.token, q0, seq_len);
  load_tile_async<D, kKeyTile>(k_tiles, k_head, a.k.token, 0, seq_len);
  load_tile_async<D, kKeyTile>(v_tiles, v_head, a.v.token, 0, seq_len);
  cp_async_commit();
  for (int i = threadIdx.x; i < kKeyTile; i += kThreads) key_segments[i] = segment_of(segments, i, seq_len);

  int query[2];  // the thread's two rows (accumulator elements 0-1 and 2-3)
  int32_t query_segment[2];
  for (int r = 0; r < 2; ++r) {
    query[r] = q0 + warp * kMmaRows + acc_row(2 * r);
    query_segment[r] = segment_of(segments, query[r], seq_len);
  }
  float o[D / 8][4] = {};
  // Per row: the max of the scaled scores so far (log2 domain, the same in the row's 4 lanes) and
  // the sum of 2^(score - max) over this thread's columns (the lanes' sums are added at the end).
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

  for (int j = 0; j < key_tiles; ++j) {
    const int buf = j % 2, k0 = j * kKeyTile;
    if (j + 1 < key_tiles) {  // the next tile goes into the buffer the previous step read
      load_tile_async<D, kKeyTile>(k_tiles + (buf ^ 1) * kKeyTile * kStride, k_head, a.k.token, k0 + kKeyTile, seq_len);
      load_tile_async<D, kKeyTile>(v_tiles + (buf ^ 1) * kKeyTile * kStride, v_head, a.v.token, k0 + kKeyTile, seq_len);
      for (int i = threadIdx.x; i < kKeyTile; i += kThreads)
        key_segments[(buf ^ 1) * kKeyTile + i] = segment_of(segments, k0 + kKeyTile + i, seq_len);
    }
    cp_async_commit();
    cp_async_wait<1>();  // this step's tile has landed (the next one may still be in flight)
    __syncthreads();

    float s[kKeyTile / 8][4] = {};
    warp_mma_abt<T, D, kKeyTile, kStride>(s, q_tile + warp * kMmaRows * kStride, k_tiles + buf * kKeyTile * kStride);
    with_tile_mask(tile_needs_mask(a.causal, segments != nullptr, q0, kQueryTile, k0, kKeyTile, seq_len),
                   [&](auto masked) {
#pragma unroll
                     for (int n = 0; n < kKeyTile / 8; ++n)
#pragma unroll
                       for (int e = 0; e < 4; ++e) {
                         const int c = acc_col(n, e);
                         const bool hidden = masked && !sees(a.causal, query[e / 2], k0 + c, query_segment[e / 2],
                                                             key_segments[buf * kKeyTile + c]);
                         s[n][e] = hidden ? -INFINITY : s[n][e] * a.scale_log2;
                       }
                   });

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m = row_max[r];
#pragma unroll
      for (int n = 0; n < kKeyTile / 8; ++n) m = fmaxf(m, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));  // the 4 lanes of a row
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
      const float base = m == -INFINITY ? 0.0f : m;  // nothing seen yet: 2^(-inf - 0) = 0, not NaN
      const float rescale = exp2f(row_max[r] - base);
      row_max[r] = m;
      row_sum[r] *= rescale;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * r] *= rescale;
        o[n][2 * r + 1] *= rescale;
      }
#pragma unroll
      for (int n = 0; n < kKeyTile / 8; ++n) {
        s[n][2 * r] = exp2f(s[n][2 * r] - base);
        s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - base);
        row_sum[r] += s[n][2 * r] + s[n][2 * r + 1];
      }
    }
    warp_mma_pb<T, kKeyTile, D, kStride>(o, s, v_tiles + buf * kKeyTile * kStride);
    __syncthreads();  // every warp is done with buffer buf before the next step refills it
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;  // a row that saw nothing has sum 0 and o 0
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][2 * r] *= inverse;
      o[n][2 * r + 1] *= inverse;
    }
    if (lane % 4 == 0 && query[r] < seq_len)
      a.lse_write[bh * seq_len + query[r]] = sum > 0.0f ? row_max[r] * kLn2 + logf(sum) : INFINITY;
  }
  store_warp_rows<T, D>(o, 1.0f, q_tile + warp * kMmaRows * kStride, a.o_write.rows_of(bh, a.heads), a.o_write.token,
                        q0 + warp * kMmaRows, seq_len);
}

// delta[row] = sum over d of out[row, d] * d_out[row, d], for each of the batch * heads * seq_len
// rows (row = bh * seq_len + position, as lse): D / 8 lanes a row, 16 bytes a lane.
template <class T, int D>
__global__ void __launch_bounds__(kBlockThreads)
    row_dot_kernel(Heads<const T> out, Heads<const T> d_out, float* delta, int64_t rows, int seq_len, int heads) {
  constexpr int kLanes = D / kChunk;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kBlockThreads / kLanes) + threadIdx.x / kLanes;
  const int lane = threadIdx.x % kLanes;
  float sum = 0.0f;
  if (row < rows) {
    const int64_t bh = row / seq_len, position = row % seq_len;
    const T* o_row = out.rows_of(bh, heads) + position * out.token;
    const T* g_row = d_out.rows_of(bh, heads) + position * d_out.token;
    const Pack<T, kChunk> o = *reinterpret_cast<const Pack<T, kChunk>*>(o_row + lane * kChunk);
    const Pack<T, kChunk> g = *reinterpret_cast<const Pack<T, kChunk>*>(g_row + lane * kChunk);
#pragma unroll
    for (int i = 0; i < kChunk; ++i) sum += to_float(o.v[i]) * to_float(g.v[i]);
  }
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (row < rows && lane == 0) delta[row] = sum;
}

template <int D>
constexpr size_t dkdv_shared_bytes() {  // K, V, two Q and two dO tiles; two tiles' lse, D and segments
  constexpr int kRows = kBackwardQueryTile<D>;
  return (2 * kKeyTile + 4 * kRows) * kRowStride<D> * kValueBytes + 2 * kRows * (2 * sizeof(float) + sizeof(int32_t));
}

// dK and dV of 64 keys: S^T = K Q^T, P^T = 2^(S^T - lse), dV += P^T dO, dP^T = V dO^T,
// dS^T = P^T * (dP^T - D), dK += dS^T Q, over the query tiles that see them.
template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_backward_dkdv_kernel(Args<T> a) {
  constexpr int kStride = kRowStride<D>, kRows = kBackwardQueryTile<D>;
  extern __shared__ __align__(16) unsigned char shared[];
  T* k_tile = reinterpret_cast<T*>(shared);
  T* v_tile = k_tile + kKeyTile * kStride;
  T* q_tiles = v_tile + kKeyTile * kStride;
  T* do_tiles = q_tiles + 2 * kRows * kStride;
  float* lse_tiles = reinterpret_cast<float*>(do_tiles + 2 * kRows * kStride);  // log2 domain
  float* delta_tiles = lse_tiles + 2 * kRows;
  int32_t* query_segments = reinterpret_cast<int32_t*>(delta_tiles + 2 * kRows);

  const int warp = threadIdx.x / kWarp, seq_len = a.seq_len;
  const int k0 = blockIdx.x * kKeyTile;  // in order: the first keys have the most causal queries
  const int64_t bh = blockIdx.y, rows = bh * seq_len;
  const T* q_head = a.q.rows_of(bh, a.heads);
  const T* do_head = a.d_out.rows_of(bh, a.heads);
  const int32_t* segments = a.segment_ids ? a.segment_ids + bh / a.heads * seq_len : nullptr;
  const int first = a.causal ? k0 / kRows : 0, last = (seq_len + kRows - 1) / kRows;

  // Starts loading query tile i into buffer buf (Q and dO asynchronously, the rest directly).
  auto load_queries = [&](int i, int buf) {
    const int q0 = i * kRows;
    load_tile_async<D, kRows>(q_tiles + buf * kRows * kStride, q_head, a.q.token, q0, seq_len);
    load_tile_async<D, kRows>(do_tiles + buf * kRows * kStride, do_head, a.d_out.token, q0, seq_len);
    for (int r = threadIdx.x; r < kRows; r += kThreads) {
      const bool inside = q0 + r < seq_len;  // past the sequence: P = 2^(S - inf) = 0
      lse_tiles[buf * kRows + r] = inside ? a.lse[rows + q0 + r] * kLog2e : INFINITY;
      delta_tiles[buf * kRows + r] = inside ? a.delta[rows + q0 + r] : 0.0f;
      query_segments[buf * kRows + r] = segment_of(segments, q0 + r, seq_len);
    }
  };
  load_tile_async<D, kKeyTile>(k_tile, a.k.rows_of(bh, a.heads), a.k.token, k0, seq_len);
  load_tile_async<D, kKeyTile>(v_tile, a.v.rows_of(bh, a.heads), a.v.token, k0, seq_len);
  load_queries(first, 0);
  cp_async_commit();

  int key[2];  // the thread's two rows
  int32_t key_segment[2];
  for (int r = 0; r < 2; ++r) {
    key[r] = k0 + warp * kMmaRows + acc_row(2 * r);
    key_segment[r] = segment_of(segments, key[r], seq_len);
  }
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};

  for (int i = first; i < last; ++i) {
    const int buf = (i - first) % 2, q0 = i * kRows;
    if (i + 1 < last) load_queries(i + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const T* q_tile = q_tiles + buf * kRows * kStride;
    const T* do_tile = do_tiles + buf * kRows * kStride;
    const float* lse = lse_tiles + buf * kRows;
    const float* delta = delta_tiles + buf * kRows;

    float p[kRows / 8][4] = {};
    warp_mma_abt<T, D, kRows, kStride>(p, k_tile + warp * kMmaRows * kStride, q_tile);
    // A hidden element's exponent is -inf, so its P is 2^-inf = 0 with no branch.
    with_tile_mask(tile_needs_mask(a.causal, segments != nullptr, q0, kRows, k0, kKeyTile, seq_len),
                   [&](auto masked) {
#pragma unroll
                     for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
                       for (int e = 0; e < 4; ++e) {
                         const int c = acc_col(n, e);
                         const bool hidden = masked && !sees(a.causal, q0 + c, key[e / 2],
                                                             query_segments[buf * kRows + c], key_segment[e / 2]);
                         p[n][e] = exp2f(hidden ? -INFINITY : p[n][e] * a.scale_log2 - lse[c]);
                       }
                   });
    warp_mma_pb<T, kRows, D, kStride>(dv, p, do_tile);

    float ds[kRows / 8][4] = {};
    warp_mma_abt<T, D, kRows, kStride>(ds, v_tile + warp * kMmaRows * kStride, do_tile);
#pragma unroll
    for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) ds[n][e] = p[n][e] * (ds[n][e] - delta[acc_col(n, e)]);
    warp_mma_pb<T, kRows, D, kStride>(dk, ds, q_tile);
    __syncthreads();
  }

  const int row0 = k0 + warp * kMmaRows;
  store_warp_rows<T, D>(dk, a.scale, k_tile + warp * kMmaRows * kStride, a.dk.rows_of(bh, a.heads), a.dk.token, row0,
                        seq_len);
  store_warp_rows<T, D>(dv, 1.0f, v_tile + warp * kMmaRows * kStride, a.dv.rows_of(bh, a.heads), a.dv.token, row0,
                        seq_len);
}

template <int D>
constexpr size_t dq_shared_bytes() {  // Q, dO, two K and two V tiles, two tiles' key segments
  return (2 * kQueryTile + 4 * kKeyTile) * kRowStride<D> * kValueBytes + 2 * kKeyTile * sizeof(int32_t);
}

// dQ of 64 queries: S = Q K^T, P = 2^(S - lse), dP = dO V^T, dS = P * (dP - D), dQ += dS K, over
// the key tiles they see.
template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_backward_dq_kernel(Args<T> a) {
  constexpr int kStride = kRowStride<D>;
  extern __shared__ __align__(16) unsigned char shared[];
  T* q_tile = reinterpret_cast<T*>(shared);
  T* do_tile = q_tile + kQueryTile * kStride;
  T* k_tiles = do_tile + kQueryTile * kStride;
  T* v_tiles = k_tiles + 2 * kKeyTile * kStride;
  int32_t* key_segments = reinterpret_cast<int32_t*>(v_tiles + 2 * kKeyTile * kStride);

  const int warp = threadIdx.x / kWarp, seq_len = a.seq_len;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kQueryTile;
  const int64_t bh = blockIdx.y;
  const T* k_head = a.k.rows_of(bh, a.heads);
  const T* v_head = a.v.rows_of(bh, a.heads);
  const int32_t* segments = a.segment_ids ? a.segment_ids + bh / a.heads * seq_len : nullptr;
  const int key_tiles = key_tiles_for(a.causal, q0, seq_len);

  load_tile_async<D, kQueryTile>(q_tile, a.q.rows_of(bh, a.heads), a.q.token, q0, seq_len);
  load_tile_async<D, kQueryTile>(do_tile, a.d_out.rows_of(bh, a.heads), a.d_out.token, q0, seq_len);
  load_tile_async<D, kKeyTile>(k_tiles, k_head, a.k.token, 0, seq_len);
  load_tile_async<D, kKeyTile>(v_tiles, v_head, a.v.token, 0, seq_len);
  cp_async_commit();
  for (int i = threadIdx.x; i < kKeyTile; i += kThreads) key_segments[i] = segment_of(segments, i, seq_len);

  int query[2];
  int32_t query_segment[2];
  float lse[2], delta[2];  // lse in the log2 domain
  for (int r = 0; r < 2; ++r) {
    query[r] = q0 + warp * kMmaRows + acc_row(2 * r);
    query_segment[r] = segment_of(segments, query[r], seq_len);
    const bool inside = query[r] < seq_len;
    lse[r] = inside ? a.lse[bh * seq_len + query[r]] * kLog2e : INFINITY;
    delta[r] = inside ? a.delta[bh * seq_len + query[r]] : 0.0f;
  }
  float dq[D / 8][4] = {};

  for (int j = 0; j < key_tiles; ++j) {
    const int buf = j % 2, k0 = j * kKeyTile;
    if (j + 1 < key_tiles) {
      load_tile_async<D, kKeyTile>(k_tiles + (buf ^ 1) * kKeyTile * kStride, k_head, a.k.token, k0 + kKeyTile, seq_len);
      load_tile_async<D, kKeyTile>(v_tiles + (buf ^ 1) * kKeyTile * kStride, v_head, a.v.token, k0 + kKeyTile, seq_len);
      for (int i = threadIdx.x; i < kKeyTile; i += kThreads)
        key_segments[(buf ^ 1) * kKeyTile + i] = segment_of(segments, k0 + kKeyTile + i, seq_len);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const T* k_tile = k_tiles + buf * kKeyTile * kStride;

    float p[kKeyTile / 8][4] = {};
    warp_mma_abt<T, D, kKeyTile, kStride>(p, q_tile + warp * kMmaRows * kStride, k_tile);
    with_tile_mask(tile_needs_mask(a.causal, segments != nullptr, q0, kQueryTile, k0, kKeyTile, seq_len),
                   [&](auto masked) {
#pragma unroll
                     for (int n = 0; n < kKeyTile / 8; ++n)
#pragma unroll
                       for (int e = 0; e < 4; ++e) {
                         const int c = acc_col(n, e);
                         const bool hidden = masked && !sees(a.causal, query[e / 2], k0 + c, query_segment[e / 2],
                                                             key_segments[buf * kKeyTile + c]);
                         p[n][e] = exp2f(hidden ? -INFINITY : p[n][e] * a.scale_log2 - lse[e / 2]);
                       }
                   });

    float ds[kKeyTile / 8][4] = {};
    warp_mma_abt<T, D, kKeyTile, kStride>(ds, do_tile + warp * kMmaRows * kStride, v_tiles + buf * kKeyTile * kStride);
#pragma unroll
    for (int n = 0; n < kKeyTile / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) ds[n][e] = p[n][e] * (ds[n][e] - delta[e / 2]);
    warp_mma_pb<T, kKeyTile, D, kStride>(dq, ds, k_tile);
    __syncthreads();
  }
  store_warp_rows<T, D>(dq, a.scale, q_tile + warp * kMmaRows * kStride, a.dq.rows_of(bh, a.heads), a.dq.token,
                        q0 + warp * kMmaRows, seq_len);
}

// ---- launchers --------------------------------------------------------------------------------

// An operand as the launchers check it: its name in the error, its layout and its data.
struct NamedOperand {
  const char* name;
  AttentionStrides strides;
  const void* data;
};

// The problem's sizes, then (unless it is empty: nothing is read or written) every operand's
// layout: the 16-byte chunks that cp.async and the stores move must be whole and aligned.
void check_inputs(const char* what, const AttentionShape& s, std::initializer_list<NamedOperand> operands) {
  FT_CHECK(s.head_dim == 64 || s.head_dim == 128, what, ": head_dim ", s.head_dim, " is not supported (64 or 128)");
  FT_CHECK(s.batch * s.heads <= 65535, what, ": batch * heads = ", s.batch * s.heads,
           " exceeds the grid's second dimension (65535)");
  FT_CHECK(s.seq_len <= (1 << 30), what, ": seq_len ", s.seq_len, " exceeds 2^30");
  if (s.batch * s.heads * s.seq_len == 0) return;
  for (const NamedOperand& x : operands) check_fused_operand(x.strides, x.data, what, x.name);
}

// An operand as the kernels address it, in CUDA's value type (const kept).
template <class T>
auto heads_of(const FlashOperand<T>& x) {
  using Value = std::remove_pointer_t<decltype(device_ptr(x.data))>;
  return Heads<Value>{device_ptr(x.data), x.strides.batch, x.strides.heads, x.strides.seq};
}

template <class T>
Args<cuda_t<T>> make_args(const AttentionShape& s, const AttentionMask& mask, float scale) {
  Args<cuda_t<T>> a{};
  a.segment_ids = mask.segment_ids;
  a.seq_len = static_cast<int>(s.seq_len);
  a.heads = static_cast<int>(s.heads);
  a.causal = mask.causal;
  a.scale = scale;
  a.scale_log2 = scale * kLog2e;
  return a;
}

// Launches kernel on a grid of (tiles, batch * heads) with `bytes` of shared memory (above 48 KiB
// only once the kernel has opted in).
template <class Kernel, class A>
void launch(Kernel kernel, int64_t tiles, const AttentionShape& s, size_t bytes, const A& args, cudaStream_t stream) {
  FT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(s.batch * s.heads));
  kernel<<<grid, kThreads, bytes, stream>>>(args);
  FT_CUDA_CHECK_LAUNCH();
}

template <class T, int D>
void forward(const AttentionShape& s, const Args<T>& a, cudaStream_t stream) {
  launch(flash_forward_kernel<T, D>, (s.seq_len + kQueryTile - 1) / kQueryTile, s, forward_shared_bytes<D>(), a,
         stream);
}

template <class T, int D>
void backward(const AttentionShape& s, const Args<T>& a, float* delta, cudaStream_t stream) {
  const int64_t rows = s.batch * s.heads * s.seq_len, rows_per_block = kBlockThreads / (D / kChunk);
  row_dot_kernel<T, D>
      <<<static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block), kBlockThreads, 0, stream>>>(
          a.out, a.d_out, delta, rows, a.seq_len, a.heads);
  FT_CUDA_CHECK_LAUNCH();
  launch(flash_backward_dkdv_kernel<T, D>, (s.seq_len + kKeyTile - 1) / kKeyTile, s, dkdv_shared_bytes<D>(), a, stream);
  launch(flash_backward_dq_kernel<T, D>, (s.seq_len + kQueryTile - 1) / kQueryTile, s, dq_shared_bytes<D>(), a, stream);
}

}  // namespace

template <class T>
void flash_attention_forward_cuda(const AttentionShape& s, const AttentionMask& mask, float scale,
                                  FlashOperand<const T> q, FlashOperand<const T> k, FlashOperand<const T> v,
                                  FlashOperand<T> out, float* lse, cudaStream_t stream) {
  check_inputs(
      "flash_attention_forward_cuda", s,
      {{"q", q.strides, q.data}, {"k", k.strides, k.data}, {"v", v.strides, v.data}, {"out", out.strides, out.data}});
  if (s.batch * s.heads * s.seq_len == 0) return;
  Args<cuda_t<T>> a = make_args<T>(s, mask, scale);
  a.q = heads_of(q);
  a.k = heads_of(k);
  a.v = heads_of(v);
  a.o_write = heads_of(out);
  a.lse_write = lse;
  if (s.head_dim == 64)
    forward<cuda_t<T>, 64>(s, a, stream);
  else
    forward<cuda_t<T>, 128>(s, a, stream);
}

template <class T>
void flash_attention_backward_cuda(const AttentionShape& s, const AttentionMask& mask, float scale,
                                   FlashOperand<const T> q, FlashOperand<const T> k, FlashOperand<const T> v,
                                   FlashOperand<const T> out, FlashOperand<const T> d_out, const float* lse,
                                   float* delta, FlashOperand<T> dq, FlashOperand<T> dk, FlashOperand<T> dv,
                                   cudaStream_t stream) {
  check_inputs("flash_attention_backward_cuda", s,
               {{"q", q.strides, q.data},
                {"k", k.strides, k.data},
                {"v", v.strides, v.data},
                {"out", out.strides, out.data},
                {"d_out", d_out.strides, d_out.data},
                {"dq", dq.strides, dq.data},
                {"dk", dk.strides, dk.data},
                {"dv", dv.strides, dv.data}});
  if (s.batch * s.heads * s.seq_len == 0) return;
  Args<cuda_t<T>> a = make_args<T>(s, mask, scale);
  a.q = heads_of(q);
  a.k = heads_of(k);
  a.v = heads_of(v);
  a.out = heads_of(out);
  a.d_out = heads_of(d_out);
  a.lse = lse;
  a.delta = delta;
  a.dq = heads_of(dq);
  a.dk = heads_of(dk);
  a.dv = heads_of(dv);
  if (s.head_dim == 64)
    backward<cuda_t<T>, 64>(s, a, delta, stream);
  else
    backward<cuda_t<T>, 128>(s, a, delta, stream);
}

#define FT_INSTANTIATE(T)                                                                                             \
  template void flash_attention_forward_cuda<T>(const AttentionShape&, const AttentionMask&, float,                   \
                                                FlashOperand<const T>, FlashOperand<const T>, FlashOperand<const T>,  \
                                                FlashOperand<T>, float*, cudaStream_t);                               \
  template void flash_attention_backward_cuda<T>(const AttentionShape&, const AttentionMask&, float,                  \
                                                 FlashOperand<const T>, FlashOperand<const T>, FlashOperand<const T>, \
                                                 FlashOperand<const T>, FlashOperand<const T>, const float*, float*,  \
                                                 FlashOperand<T>, FlashOperand<T>, FlashOperand<T>, cudaStream_t);
FT_INSTANTIATE(bfloat16)
FT_INSTANTIATE(half)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
