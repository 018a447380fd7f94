// Flash attention (FlashAttention-2's scheme) on tensor cores, forward and backward, for head
// dims 64 and 128 in bf16 and f16; attention_cpu.h is the reference and writes out the math.
//
// Two instruction sets, one set of kernels: Hopper's warpgroup products (wgmma, in the sm_90a
// code) on a compute capability 9.0 device, and mma.sync (m16n8k16, sm_80 on) elsewhere. They
// differ in the shared-memory layout of the tiles, in which rows a warp owns and in the block
// shapes (WarpShape); the section "shared-memory tiles and block-level products" holds all that.
//
// Forward: one block of 4 warps per (64 or 128 queries, batch * head); each warp owns one or
// two blocks of the 16 rows of an MMA (WarpShape). The block walks the key
// tiles of 64 (only those at or below the diagonal when causal), with K and V double-buffered in
// shared memory by cp.async: tile j + 1 is in flight while tile j is used. Per tile a warp
// computes S = Q K^T (fp32 accumulators), masks it, and updates each row's running max m (of the
// scores times scale * log2(e), so that exp is a base-2 exponent, one MUFU.EX2) and sum l
// online: on a new max m', l and the output accumulator are multiplied by 2^(m - m') before the
// tile's P = 2^(S - m') is added (l += rowsum P, O += P V, P rounded to T for the MMA). At the
// end O / l is written and lse = (m + log2 l) ln 2.
//
// Backward, with D_i = rowsum(dO_i * O_i) (= rowsum(dP_i * P_i), attention_cpu.h) and
// P = exp(S - lse) recomputed from the saved lse:
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dK = scale dS^T Q,  dQ = scale dS K.
// The subtle decision is how dQ is summed. FlashAttention-2 walks key tiles in the outer loop
// and adds each tile's share of dQ into an fp32 buffer with atomics: one pass, but the order of
// the additions changes from run to run and so do dQ's last bits. Here the backward is three
// kernels and no atomics: (1) D; (2) one block per (64 or 128 keys, batch * head) walks the
// query tiles and keeps dK and dV of its keys in registers; (3) one block per (64 or 128 queries,
// batch * head) walks the key tiles and keeps dQ of its queries in registers. S, P and dP are computed twice (by (2)
// and by (3)), about 40% more MMAs than one pass, in exchange for the same bits on every run and no [B, H, T, D] fp32
// dQ buffer. (A one-pass variant, dS through shared memory and dQ added with float2 atomics or with the bulk copy
// engine's reductions, was measured on the H200 at 0.99-1.02x of this at D = 64 with mma.sync: the kernels were bound
// by shared-memory reads, which it does not reduce; docs/benchmarks.md.)
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
// Shared memory, mma.sync: rows are padded by 16 bytes (kPad): a row of 64 or 128 values is then
// 9 or 17 16-byte units long, an odd count, so the 8 rows of an ldmatrix 8x8 matrix start in 8
// different bank groups. wgmma: the 128-byte swizzle (tile_offset). Tile rows past the sequence
// are zero-filled by cp.async, which keeps every product finite where the masks then drop it.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/flash_attention/flash_attention_cuda.h"

namespace ft::kernels {
namespace {

constexpr int kWarp = 32;
// 4 warps a block (one warpgroup), FlashAttention-2's choice for these head dims, each of one or
// two blocks of 16 rows (WarpShape): 128 threads leave each thread up to 255 registers for the
// fp32 accumulators (a 16 x 128 block is 64 of them), and 64 or 128 rows a block give GPT-2's
// 16 x 12 heads of 1024 rows 2304 or 1152 blocks a layer.
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kMmaRows = 16;                   // m16n8k16: a warp's MMAs cover 16 rows
constexpr int kKeyTile = 64;                   // keys per step: a 16 x 64 fp32 S is 32 registers a thread
constexpr int kPad = 8;                        // 16 bytes of padding per shared-memory row (see the top)
constexpr int kValueBytes = 2;                 // bf16 and f16
constexpr int kChunk = 16 / kValueBytes;       // values in one 16-byte cp.async or store
constexpr float kLog2e = 1.4426950408889634f;  // scores are scaled by scale * log2(e): exp(x) = 2^(x log2 e)
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
constexpr int kRowStride = D + kPad;  // shared-memory row stride in values

// The kernels' warp shapes (measured on the H200, docs/benchmarks.md), for mma.sync and for
// wgmma. Fields: the forward's and the dQ kernel's query blocks of 16 a warp, the dK/dV kernel's
// key blocks of 16 a warp, and its query rows a step.
// - mma.sync: a warp that owns two blocks of 16 rows loads each B fragment (K, V, Q or dO) from
//   shared memory once for both: with one block the kernels were bound by shared-memory reads,
//   about one ldmatrix a warp for every two MMAs. Two blocks cost registers: the dK/dV kernel
//   then holds 2 x 2 x 16 x D fp32 accumulators, so at D = 128 only the forward takes two (with
//   a few spilled registers, still faster), and the dK/dV kernel steps 32 query rows at a time.
// - wgmma: B is read once for the warpgroup anyway, so one block a warp (64 rows a block) wins:
//   fewer registers, more blocks a multiprocessor to hide each other's waits (the forward at
//   D = 64 takes 96 registers, 5 blocks). The dK/dV kernel steps 128 query rows at D = 64 and
//   64 at D = 128, as wide a B (N) as its registers allow: each step's four products then keep
//   the tensor cores busy longer per wait.
template <bool kWgmma, int D>
struct WarpShape;
template <>
struct WarpShape<false, 64> {
  static constexpr int kForwardBlocks = 2, kDqBlocks = 2, kDkdvBlocks = 2, kDkdvRows = 32;
};
template <>
struct WarpShape<false, 128> {
  static constexpr int kForwardBlocks = 2, kDqBlocks = 1, kDkdvBlocks = 1, kDkdvRows = 32;
};
template <>
struct WarpShape<true, 64> {
  static constexpr int kForwardBlocks = 1, kDqBlocks = 1, kDkdvBlocks = 1, kDkdvRows = 128;
};
template <>
struct WarpShape<true, 128> {
  static constexpr int kForwardBlocks = 1, kDqBlocks = 1, kDkdvBlocks = 1, kDkdvRows = 64;
};

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

// 2^x in one MUFU.EX2 instruction. exp2f also handles subnormal results, in three more
// instructions an element; here they flush to 0, which a probability below 2^-126 may.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
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

// ---- PTX: wgmma (sm_90a) ------------------------------------------------------------------------
//
// A warpgroup (4 consecutive warps, 128 threads) multiplies a 64 x 16 A by a 16 x N B into a
// 64 x N fp32 accumulator, B read by the tensor cores straight from shared memory: no ldmatrix,
// and one read of B for the 4 warps, where mma.sync has each warp load its own copy into
// registers. Warp w of the group holds rows 16 w .. 16 w + 15 of the accumulator in the layout
// of an m16n8 accumulator (acc_row, acc_col), and an A taken from registers is an m16n8k16 A
// fragment of its 16 rows. The instructions run asynchronously: fence, issue, commit, wait.
// They exist only in the arch-specific sm_90a code; elsewhere these helpers trap, and the
// launchers never choose them (use_wgmma).

// A shared-memory matrix as wgmma reads it: the 128-byte swizzle (mode 1, bits 62-63), the
// start address, the byte offset between 64-column sub-tiles (`leading`, used by the
// MN-major layout when N > 64) and between 8-row groups (1024: 8 rows of 128 bytes), all in
// 16-byte units.
__device__ __forceinline__ uint64_t wgmma_descriptor(const void* start, uint32_t leading) {
  return (shared_address(start) & 0x3FFFF) >> 4 | static_cast<uint64_t>(leading >> 4) << 16 |
         static_cast<uint64_t>(1024 >> 4) << 32 | 1ull << 62;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FT_SM90A(code) code
#else
#define FT_SM90A(code) __trap()
#endif

__device__ __forceinline__ void wgmma_fence() { FT_SM90A(asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory")); }
__device__ __forceinline__ void wgmma_commit() {
  FT_SM90A(asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"));
}
// Waits until at most kPending of the warpgroup's committed groups of products are in flight.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  FT_SM90A(asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory"));
}
// Keeps the compiler from moving reads of an accumulator (any array of floats) above the wait:
// it does not know that the asynchronous products write it until then.
template <class Accumulator>
__device__ __forceinline__ void fence_accumulator(Accumulator& acc) {
  float* values = reinterpret_cast<float*>(&acc);
#pragma unroll
  for (int i = 0; i < static_cast<int>(sizeof(Accumulator) / sizeof(float)); ++i)
    asm volatile("" : "+f"(values[i])::"memory");
}

// d (64 x N) += A B: wgmma_ss with A and B K-major in shared memory (descriptors), wgmma_rs with
// A in registers and B MN-major (rows along K) in shared memory.
template <class T, int N>
__device__ void wgmma_ss(float (&d)[N / 8][4], uint64_t a, uint64_t b);
template <class T, int N>
__device__ void wgmma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b);

#define FT_ACC(n) "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])
#define FT_ACC_32 FT_ACC(0), FT_ACC(1), FT_ACC(2), FT_ACC(3)
#define FT_ACC_64 FT_ACC_32, FT_ACC(4), FT_ACC(5), FT_ACC(6), FT_ACC(7)
#define FT_ACC_128 \
  FT_ACC_64, FT_ACC(8), FT_ACC(9), FT_ACC(10), FT_ACC(11), FT_ACC(12), FT_ACC(13), FT_ACC(14), FT_ACC(15)
#define FT_REGS_32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define FT_REGS_64                                                                                                  \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31}"
#define FT_REGS_128                                                                                                 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "  \
  "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
// The operands after the accumulators are numbered from N / 2 on (m64nN): FIRST, SECOND, ...
#define FT_DEFINE_WGMMA_SS(CT, PTX_T, N, FIRST, SECOND, THIRD)                                                        \
  template <>                                                                                                         \
  __device__ __forceinline__ void wgmma_ss<CT, N>(float(&d)[N / 8][4], uint64_t a, uint64_t b) {                      \
    FT_SM90A(asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" THIRD ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N     \
                          "k16.f32." PTX_T "." PTX_T " " FT_REGS_##N ", %" FIRST ", %" SECOND ", p, 1, 1, 0, 0;\n}\n" \
                          : FT_ACC_##N                                                                                \
                          : "l"(a), "l"(b), "r"(1)));                                                                 \
  }
#define FT_DEFINE_WGMMA_RS(CT, PTX_T, N, FIRST, SECOND, THIRD, FOURTH, FIFTH, SIXTH)                                \
  template <>                                                                                                       \
  __device__ __forceinline__ void wgmma_rs<CT, N>(float(&d)[N / 8][4], const uint32_t(&a)[4], uint64_t b) {         \
    FT_SM90A(asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" SIXTH ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N   \
                          "k16.f32." PTX_T "." PTX_T " " FT_REGS_##N ", {%" FIRST ", %" SECOND ", %" THIRD          \
                                                                     ", %" FOURTH "}, %" FIFTH ", p, 1, 1, 1;\n}\n" \
                          : FT_ACC_##N                                                                              \
                          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1)));                           \
  }
// The shapes the kernels use: A B^T over N = 64 or 128 rows of B, P B over N = D = 64 or 128.
#define FT_DEFINE_WGMMA_TYPE(CT, PTX_T)                                 \
  FT_DEFINE_WGMMA_SS(CT, PTX_T, 64, "32", "33", "34")                   \
  FT_DEFINE_WGMMA_SS(CT, PTX_T, 128, "64", "65", "66")                  \
  FT_DEFINE_WGMMA_RS(CT, PTX_T, 64, "32", "33", "34", "35", "36", "37") \
  FT_DEFINE_WGMMA_RS(CT, PTX_T, 128, "64", "65", "66", "67", "68", "69")
FT_DEFINE_WGMMA_TYPE(__nv_bfloat16, "bf16")
FT_DEFINE_WGMMA_TYPE(__half, "f16")
#undef FT_DEFINE_WGMMA_TYPE
#undef FT_DEFINE_WGMMA_RS
#undef FT_DEFINE_WGMMA_SS
#undef FT_REGS_128
#undef FT_REGS_64
#undef FT_REGS_32
#undef FT_ACC_128
#undef FT_ACC_64
#undef FT_ACC_32
#undef FT_ACC

// ---- warp tiles -------------------------------------------------------------------------------

// A warp's fp32 accumulator for a 16 x N block is acc[N / 8][4] (m16n8 layout): element e of
// n-block n lies at row acc_row(e) and column acc_col(n, e) of the block.
__device__ __forceinline__ int acc_row(int e) { return threadIdx.x % kWarp / 4 + e / 2 * 8; }
__device__ __forceinline__ int acc_col(int n, int e) { return n * 8 + threadIdx.x % 4 * 2 + e % 2; }

// The A fragment of columns 16 kb .. 16 kb + 15 of a warp's 16-row fp32 accumulator p, rounded
// to T: the accumulator layout of 16 columns is an m16n8k16 A fragment's.
template <class T, int kBlocks>
__device__ __forceinline__ void a_fragment(uint32_t (&af)[4], const float (&p)[kBlocks][4], int kb) {
  af[0] = pack<T>(p[2 * kb][0], p[2 * kb][1]);
  af[1] = pack<T>(p[2 * kb][2], p[2 * kb][3]);
  af[2] = pack<T>(p[2 * kb + 1][0], p[2 * kb + 1][1]);
  af[3] = pack<T>(p[2 * kb + 1][2], p[2 * kb + 1][3]);
}

// acc[m] += A_m B^T for a warp's kM blocks of 16 x N: A_m is the 16 rows at a + 16 m rows, B
// the N rows at `b`, all [rows, kDepth] in shared memory with row stride kStride. Each B fragment
// is loaded once for the kM blocks. (Q K^T, dO V^T, K Q^T, V dO^T.)
template <class T, int kDepth, int N, int kStride, int kM>
__device__ __forceinline__ void warp_mma_abt(float (&acc)[kM][N / 8][4], const T* a, const T* b) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    uint32_t af[kM][4];
#pragma unroll
    for (int m = 0; m < kM; ++m) ldmatrix_x4(af[m], a + (m * kMmaRows + lane % 16) * kStride + kk * 16 + lane / 16 * 8);
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      uint32_t bf[4];  // n-blocks 2n (bf[0], bf[1]) and 2n + 1 (bf[2], bf[3])
      ldmatrix_x4(bf, b + (n * 16 + lane / 16 * 8 + lane % 8) * kStride + kk * 16 + lane / 8 % 2 * 8);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        mma<T>(acc[m][2 * n], af[m], bf[0], bf[1]);
        mma<T>(acc[m][2 * n + 1], af[m], bf[2], bf[3]);
      }
    }
  }
}

// acc[m] += P_m B for a warp's kM blocks of 16 x N: P_m is the warp's 16 x kDepth fp32
// accumulator p[m] (rounded to T here), B the kDepth x N matrix at `b` in shared memory. Each B
// fragment is loaded once for the kM blocks. (P V, P^T dO, dS^T Q, dS K.)
template <class T, int kDepth, int N, int kStride, int kM>
__device__ __forceinline__ void warp_mma_pb(float (&acc)[kM][N / 8][4], const float (&p)[kM][kDepth / 8][4],
                                            const T* b) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int kb = 0; kb < kDepth / 16; ++kb) {
    uint32_t af[kM][4];
#pragma unroll
    for (int m = 0; m < kM; ++m) a_fragment<T>(af[m], p[m], kb);
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      uint32_t bf[4];
      ldmatrix_x4_trans(bf, b + (kb * 16 + lane % 8 + lane / 8 % 2 * 8) * kStride + n * 16 + lane / 16 * 8);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        mma<T>(acc[m][2 * n], af[m], bf[0], bf[1]);
        mma<T>(acc[m][2 * n + 1], af[m], bf[2], bf[3]);
      }
    }
  }
}

// ---- shared-memory tiles and block-level products: mma.sync or wgmma ---------------------------
//
// Every kernel is compiled twice, kWgmma false (mma.sync, sm_80 on) and true (wgmma, sm_90a).
// The two differ only in how a tile lies in shared memory, which rows of it a warp owns, and
// the instructions of the two products below; the kernels' loops and masks are the same.
//
// Tiles: [rows, D] of T. mma.sync: rows padded by kPad (see the top). wgmma: the 128-byte
// swizzle that wgmma reads, with TMA's name: 64-column sub-tiles of rows x 128 bytes, one after
// the other, in which the 16-byte chunk c of row r lies at chunk c ^ (r % 8), so that the
// 8 rows of an 8 x 8 core matrix fall in 8 different bank groups; the tile starts on 1024 bytes.

// Shared memory a tile of `rows` takes, in values.
template <bool kWgmma, int D>
constexpr int tile_values(int rows) {
  return kWgmma ? rows * D : rows * kRowStride<D>;
}

// Where value (r, c) of a tile of kRows rows lies, in values from its start.
template <bool kWgmma, int D, int kRows>
__device__ __forceinline__ int tile_offset(int r, int c) {
  if constexpr (kWgmma)
    return c / 64 * (kRows * 64) + r * 64 + (c / kChunk % 8 ^ r % 8) * kChunk + c % kChunk;
  else
    return r * kRowStride<D> + c;
}

// The kernels' shared memory, aligned as the tiles need (the launchers ask for kSharedSlack more).
constexpr size_t kSharedSlack = 1024;
template <bool kWgmma>
__device__ __forceinline__ unsigned char* shared_tiles() {
  extern __shared__ __align__(16) unsigned char shared[];
  if constexpr (kWgmma) return shared + (1024 - shared_address(shared) % 1024) % 1024;
  return shared;
}

// After a thread's cp.async copies have landed and before the barrier that publishes them:
// wgmma reads shared memory through the async proxy, which needs a proxy fence to see what
// ordinary (generic proxy) writes put there.
template <bool kWgmma>
__device__ __forceinline__ void publish_tiles() {
  if constexpr (kWgmma) FT_SM90A(asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"));
}

// The first row, in the block's tile, of a warp's block m of 16 rows, a warp owning kM blocks.
// mma.sync: warp w owns the kM consecutive blocks from 16 kM w. wgmma: the block's rows are kM
// slabs of 64, one warpgroup product each, and warp w holds rows 16 w .. 16 w + 15 of each.
template <bool kWgmma, int kM>
__device__ __forceinline__ int warp_block_row(int m) {
  const int warp = threadIdx.x / kWarp;
  return kWgmma ? m * kWarps * kMmaRows + warp * kMmaRows : (warp * kM + m) * kMmaRows;
}

// Starts acc[m] += A_m B^T for each block m of the warp's: A is the block's tile of kARows rows
// (the warp's rows of it, warp_block_row), B the N rows of a tile, both [rows, D]. With mma.sync
// the product is done on return; with wgmma it is one committed group in flight, and acc may be
// read only after block_mma_wait.
template <bool kWgmma, class T, int D, int N, int kARows, int kM>
__device__ __forceinline__ void block_mma_abt(float (&acc)[kM][N / 8][4], const T* a, const T* b) {
  if constexpr (kWgmma) {
    wgmma_fence();
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)  // K-major: a k-step is 32 bytes further along the rows
        wgmma_ss<T, N>(acc[m], wgmma_descriptor(a + tile_offset<true, D, kARows>(m * kWarps * kMmaRows, kk * 16), 16),
                       wgmma_descriptor(b + tile_offset<true, D, N>(0, kk * 16), 16));
    wgmma_commit();
  } else {
    warp_mma_abt<T, D, N, kRowStride<D>, kM>(acc, a + warp_block_row<false, kM>(0) * kRowStride<D>, b);
  }
}

// Starts acc[m] += P_m B for each block m of the warp's: P_m its 16 x kDepth fp32 accumulator
// p[m] (rounded to T), B a [kDepth, N] tile. In flight as block_mma_abt's.
template <bool kWgmma, class T, int kDepth, int N, int kM>
__device__ __forceinline__ void block_mma_pb(float (&acc)[kM][N / 8][4], const float (&p)[kM][kDepth / 8][4],
                                             const T* b) {
  if constexpr (kWgmma) {
    uint32_t af[kM][kDepth / 16][4];
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int kb = 0; kb < kDepth / 16; ++kb) a_fragment<T>(af[m][kb], p[m], kb);
    wgmma_fence();
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int kb = 0; kb < kDepth / 16; ++kb)  // MN-major: a k-step is 16 rows further
        wgmma_rs<T, N>(acc[m], af[m][kb],
                       wgmma_descriptor(b + tile_offset<true, N, kDepth>(kb * 16, 0), kDepth * 64 * kValueBytes));
    wgmma_commit();
  } else {
    warp_mma_pb<T, kDepth, N, kRowStride<N>, kM>(acc, p, b);
  }
}

// Waits until at most kPending of the products the warp started are in flight (they finish in
// the order started), then lets the code read the accumulators `done` (those of the finished
// products). Nothing to wait for with mma.sync.
template <bool kWgmma, int kPending, class... Accumulators>
__device__ __forceinline__ void block_mma_wait(Accumulators&... done) {
  if constexpr (kWgmma) {
    wgmma_wait<kPending>();
    (fence_accumulator(done), ...);
  }
}

// Starts copying rows [row0, row0 + kRows) of a [seq_len, D] head (rows `token` elements apart in
// global memory) into a shared tile; rows at or past seq_len become zeros. Each round the block
// copies kRoundRows whole rows and a thread's chunk moves that many rows down: one pointer step.
// Computing each round's address apart made ptxas keep one 64-bit product per round of every
// tile alive across the key loop: on sm_90 the forward at D = 64 took 139 registers that way
// (one block less per SM), 127 this way, 122 when rows were D apart.
template <bool kWgmma, int D, int kRows, class T>
__device__ __forceinline__ void load_tile_async(T* tile, const T* head, int64_t token, int row0, int seq_len) {
  constexpr int kChunksPerRow = D / kChunk, kRoundRows = kThreads / kChunksPerRow;
  static_assert(kRows % kRoundRows == 0, "a tile is whole rounds of the block's threads");
  const int first = threadIdx.x / kChunksPerRow, col = threadIdx.x % kChunksPerRow * kChunk;
  const T* src = head + (row0 + first) * token + col;
#pragma unroll
  for (int i = 0; i < kRows / kRoundRows; ++i, src += kRoundRows * token) {
    const int r = first + i * kRoundRows;
    const bool valid = row0 + r < seq_len;
    cp_async_16(tile + tile_offset<kWgmma, D, kRows>(r, col), valid ? src : head, valid);
  }
}

// Writes a warp's 16 x D fp32 block times `scale` as T into rows [row0, row0 + 16) of a
// [seq_len, D] head (rows `token` elements apart), those before seq_len. It goes through rows
// [tile_row, tile_row + 16) of a shared tile of kTileRows rows, the warp's own (no other warp
// reads them), so that the global stores are 16 bytes wide.
template <bool kWgmma, class T, int D, int kTileRows>
__device__ __forceinline__ void store_warp_rows(const float (&acc)[D / 8][4], float scale, T* tile, int tile_row,
                                                T* head, int64_t token, int row0, int seq_len) {
  constexpr int kChunksPerRow = D / kChunk;
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; e += 2)
      *reinterpret_cast<uint32_t*>(tile + tile_offset<kWgmma, D, kTileRows>(tile_row + acc_row(e), acc_col(n, e))) =
          pack<T>(acc[n][e] * scale, acc[n][e + 1] * scale);
  __syncwarp();
  for (int c = threadIdx.x % kWarp; c < kMmaRows * kChunksPerRow; c += kWarp) {
    const int r = c / kChunksPerRow, col = c % kChunksPerRow * kChunk;
    if (row0 + r < seq_len)
      *reinterpret_cast<uint4*>(head + (row0 + r) * token + col) =
          *reinterpret_cast<const uint4*>(tile + tile_offset<kWgmma, D, kTileRows>(tile_row + r, col));
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

// Key tiles a query tile of `queries` rows starting at q0 walks: all, or those up to its last
// query when causal.
__device__ __forceinline__ int key_tiles_for(bool causal, int q0, int queries, int seq_len) {
  const int all = (seq_len + kKeyTile - 1) / kKeyTile;
  return causal ? min(all, (q0 + queries + kKeyTile - 1) / kKeyTile) : all;
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

// Q, two K and two V tiles, two tiles' key segments.
template <bool kWgmma, int D, int kQueries>
constexpr size_t forward_shared_bytes() {
  return tile_values<kWgmma, D>(kQueries + 4 * kKeyTile) * kValueBytes + 2 * kKeyTile * sizeof(int32_t) + kSharedSlack;
}

// kQueries = 4 warps x kM blocks of 16 query rows.
template <class T, int D, int kM, bool kWgmma>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(Args<T> a) {
  constexpr int kQueries = kWarps * kM * kMmaRows, kKeyTileValues = tile_values<kWgmma, D>(kKeyTile);
  T* q_tile = reinterpret_cast<T*>(shared_tiles<kWgmma>());
  T* k_tiles = q_tile + tile_values<kWgmma, D>(kQueries);
  T* v_tiles = k_tiles + 2 * kKeyTileValues;
  int32_t* key_segments = reinterpret_cast<int32_t*>(v_tiles + 2 * kKeyTileValues);

  const int lane = threadIdx.x % kWarp, seq_len = a.seq_len;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kQueries;  // the longest causal rows start first
  const int64_t bh = blockIdx.y;
  const T* k_head = a.k.rows_of(bh, a.heads);
  const T* v_head = a.v.rows_of(bh, a.heads);
  const int32_t* segments = a.segment_ids ? a.segment_ids + bh / a.heads * seq_len : nullptr;
  const int key_tiles = key_tiles_for(a.causal, q0, kQueries, seq_len);

  load_tile_async<kWgmma, D, kQueries>(q_tile, a.q.rows_of(bh, a.heads), a.q.token, q0, seq_len);
  load_tile_async<kWgmma, D, kKeyTile>(k_tiles, k_head, a.k.token, 0, seq_len);
  load_tile_async<kWgmma, D, kKeyTile>(v_tiles, v_head, a.v.token, 0, seq_len);
  cp_async_commit();
  for (int i = threadIdx.x; i < kKeyTile; i += kThreads) key_segments[i] = segment_of(segments, i, seq_len);

  int query[kM][2];  // the thread's two rows of each block (accumulator elements 0-1 and 2-3)
  int32_t query_segment[kM][2];
  for (int m = 0; m < kM; ++m)
    for (int r = 0; r < 2; ++r) {
      query[m][r] = q0 + warp_block_row<kWgmma, kM>(m) + acc_row(2 * r);
      query_segment[m][r] = segment_of(segments, query[m][r], seq_len);
    }
  float o[kM][D / 8][4] = {};
  // Per row: the max of the scaled scores so far (log2 domain, the same in the row's 4 lanes) and
  // the sum of 2^(score - max) over this thread's columns (the lanes' sums are added at the end).
  float row_max[kM][2], row_sum[kM][2];
  for (int m = 0; m < kM; ++m)
    for (int r = 0; r < 2; ++r) row_max[m][r] = -INFINITY, row_sum[m][r] = 0.0f;

  for (int j = 0; j < key_tiles; ++j) {
    const int buf = j % 2, k0 = j * kKeyTile;
    if (j + 1 < key_tiles) {  // the next tile goes into the buffer the previous step read
      load_tile_async<kWgmma, D, kKeyTile>(k_tiles + (buf ^ 1) * kKeyTileValues, k_head, a.k.token, k0 + kKeyTile,
                                           seq_len);
      load_tile_async<kWgmma, D, kKeyTile>(v_tiles + (buf ^ 1) * kKeyTileValues, v_head, a.v.token, k0 + kKeyTile,
                                           seq_len);
      for (int i = threadIdx.x; i < kKeyTile; i += kThreads)
        key_segments[(buf ^ 1) * kKeyTile + i] = segment_of(segments, k0 + kKeyTile + i, seq_len);
    }
    cp_async_commit();
    cp_async_wait<1>();  // this step's tile has landed (the next one may still be in flight)
    publish_tiles<kWgmma>();
    __syncthreads();

    float s[kM][kKeyTile / 8][4] = {};
    block_mma_abt<kWgmma, T, D, kKeyTile, kQueries>(s, q_tile, k_tiles + buf * kKeyTileValues);
    block_mma_wait<kWgmma, 0>(s);
    with_tile_mask(
        tile_needs_mask(a.causal, segments != nullptr, q0, kQueries, k0, kKeyTile, seq_len), [&](auto masked) {
#pragma unroll
          for (int m = 0; m < kM; ++m)
#pragma unroll
            for (int n = 0; n < kKeyTile / 8; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int c = acc_col(n, e);
                const bool hidden = masked && !sees(a.causal, query[m][e / 2], k0 + c, query_segment[m][e / 2],
                                                    key_segments[buf * kKeyTile + c]);
                s[m][n][e] = hidden ? -INFINITY : s[m][n][e];
              }
        });

    // The max is taken over the raw scores (scale > 0 keeps their order), and each exponent is
    // then one fma: 2^(s scale log2(e) - max').
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < kKeyTile / 8; ++n) mx = fmaxf(mx, fmaxf(s[m][n][2 * r], s[m][n][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the 4 lanes of a row
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        mx = fmaxf(row_max[m][r], mx * a.scale_log2);
        const float base = mx == -INFINITY ? 0.0f : mx;  // nothing seen yet: 2^(-inf - 0) = 0, not NaN
        const float rescale = exp2_ftz(row_max[m][r] - base);
        row_max[m][r] = mx;
        row_sum[m][r] *= rescale;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          o[m][n][2 * r] *= rescale;
          o[m][n][2 * r + 1] *= rescale;
        }
#pragma unroll
        for (int n = 0; n < kKeyTile / 8; ++n) {
          s[m][n][2 * r] = exp2_ftz(fmaf(s[m][n][2 * r], a.scale_log2, -base));
          s[m][n][2 * r + 1] = exp2_ftz(fmaf(s[m][n][2 * r + 1], a.scale_log2, -base));
          row_sum[m][r] += s[m][n][2 * r] + s[m][n][2 * r + 1];
        }
      }
    block_mma_pb<kWgmma, T, kKeyTile, D>(o, s, v_tiles + buf * kKeyTileValues);
    block_mma_wait<kWgmma, 0>(o);
    __syncthreads();  // every warp is done with buffer buf before the next step refills it
  }

#pragma unroll
  for (int m = 0; m < kM; ++m) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float sum = row_sum[m][r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;  // a row that saw nothing has sum 0 and o 0
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[m][n][2 * r] *= inverse;
        o[m][n][2 * r + 1] *= inverse;
      }
      if (lane % 4 == 0 && query[m][r] < seq_len)
        a.lse_write[bh * seq_len + query[m][r]] = sum > 0.0f ? row_max[m][r] * kLn2 + logf(sum) : INFINITY;
    }
    const int row0 = warp_block_row<kWgmma, kM>(m);
    store_warp_rows<kWgmma, T, D, kQueries>(o[m], 1.0f, q_tile, row0, a.o_write.rows_of(bh, a.heads), a.o_write.token,
                                            q0 + row0, seq_len);
  }
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

// Shared memory of the dK/dV kernel: K and V (kKeys rows), two Q and two dO tiles (kRows rows
// each), and two tiles' lse, D and segments.
template <bool kWgmma, int D, int kKeys, int kRows>
constexpr size_t dkdv_shared_bytes() {
  return tile_values<kWgmma, D>(2 * kKeys + 4 * kRows) * kValueBytes +
         2 * kRows * (2 * sizeof(float) + sizeof(int32_t)) + kSharedSlack;
}

// dK and dV of kKeys keys: S^T = K Q^T, P^T = 2^(S^T - lse), dV += P^T dO, dP^T = V dO^T,
// dS^T = P^T * (dP^T - D), dK += dS^T Q, over the query tiles of kRows rows that see them. Each
// warp owns kM blocks of 16 keys (WarpShape says how many, and kRows).
template <class T, int D, int kM, int kRows, bool kWgmma>
__global__ void __launch_bounds__(kThreads) flash_backward_dkdv_kernel(Args<T> a) {
  constexpr int kKeys = kWarps * kM * kMmaRows, kRowTileValues = tile_values<kWgmma, D>(kRows);
  T* k_tile = reinterpret_cast<T*>(shared_tiles<kWgmma>());
  T* v_tile = k_tile + tile_values<kWgmma, D>(kKeys);
  T* q_tiles = v_tile + tile_values<kWgmma, D>(kKeys);
  T* do_tiles = q_tiles + 2 * kRowTileValues;
  float* lse_tiles = reinterpret_cast<float*>(do_tiles + 2 * kRowTileValues);  // log2 domain
  float* delta_tiles = lse_tiles + 2 * kRows;
  int32_t* query_segments = reinterpret_cast<int32_t*>(delta_tiles + 2 * kRows);

  const int seq_len = a.seq_len;
  const int k0 = blockIdx.x * kKeys;  // in order: the first keys have the most causal queries
  const int64_t bh = blockIdx.y, rows = bh * seq_len;
  const T* q_head = a.q.rows_of(bh, a.heads);
  const T* do_head = a.d_out.rows_of(bh, a.heads);
  const int32_t* segments = a.segment_ids ? a.segment_ids + bh / a.heads * seq_len : nullptr;
  const int first = a.causal ? k0 / kRows : 0, last = (seq_len + kRows - 1) / kRows;

  // Starts loading query tile i into buffer buf (Q and dO asynchronously, the rest directly).
  auto load_queries = [&](int i, int buf) {
    const int q0 = i * kRows;
    load_tile_async<kWgmma, D, kRows>(q_tiles + buf * kRowTileValues, q_head, a.q.token, q0, seq_len);
    load_tile_async<kWgmma, D, kRows>(do_tiles + buf * kRowTileValues, do_head, a.d_out.token, q0, seq_len);
    for (int r = threadIdx.x; r < kRows; r += kThreads) {
      const bool inside = q0 + r < seq_len;  // past the sequence: P = 2^(S - inf) = 0
      lse_tiles[buf * kRows + r] = inside ? a.lse[rows + q0 + r] * kLog2e : INFINITY;
      delta_tiles[buf * kRows + r] = inside ? a.delta[rows + q0 + r] : 0.0f;
      query_segments[buf * kRows + r] = segment_of(segments, q0 + r, seq_len);
    }
  };
  load_tile_async<kWgmma, D, kKeys>(k_tile, a.k.rows_of(bh, a.heads), a.k.token, k0, seq_len);
  load_tile_async<kWgmma, D, kKeys>(v_tile, a.v.rows_of(bh, a.heads), a.v.token, k0, seq_len);
  load_queries(first, 0);
  cp_async_commit();

  int key[kM][2];  // the thread's two rows of each block
  int32_t key_segment[kM][2];
  for (int m = 0; m < kM; ++m)
    for (int r = 0; r < 2; ++r) {
      key[m][r] = k0 + warp_block_row<kWgmma, kM>(m) + acc_row(2 * r);
      key_segment[m][r] = segment_of(segments, key[m][r], seq_len);
    }
  float dk[kM][D / 8][4] = {}, dv[kM][D / 8][4] = {};

  for (int i = first; i < last; ++i) {
    const int buf = (i - first) % 2, q0 = i * kRows;
    if (i + 1 < last) load_queries(i + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    publish_tiles<kWgmma>();
    __syncthreads();
    const T* q_tile = q_tiles + buf * kRowTileValues;
    const T* do_tile = do_tiles + buf * kRowTileValues;
    const float* lse = lse_tiles + buf * kRows;
    const float* delta = delta_tiles + buf * kRows;

    // S^T and dP^T start together; P is computed while dP^T is in flight, dS while dV's product is.
    float p[kM][kRows / 8][4] = {}, ds[kM][kRows / 8][4] = {};
    block_mma_abt<kWgmma, T, D, kRows, kKeys>(p, k_tile, q_tile);
    block_mma_abt<kWgmma, T, D, kRows, kKeys>(ds, v_tile, do_tile);
    block_mma_wait<kWgmma, 1>(p);
    // A hidden element's exponent is -inf, so its P is 2^-inf = 0 with no branch.
    with_tile_mask(tile_needs_mask(a.causal, segments != nullptr, q0, kRows, k0, kKeys, seq_len), [&](auto masked) {
#pragma unroll
      for (int m = 0; m < kM; ++m)
#pragma unroll
        for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int c = acc_col(n, e);
            const bool hidden = masked && !sees(a.causal, q0 + c, key[m][e / 2], query_segments[buf * kRows + c],
                                                key_segment[m][e / 2]);
            p[m][n][e] = exp2_ftz(hidden ? -INFINITY : fmaf(p[m][n][e], a.scale_log2, -lse[c]));
          }
    });
    block_mma_pb<kWgmma, T, kRows, D>(dv, p, do_tile);
    block_mma_wait<kWgmma, 1>(ds);
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) ds[m][n][e] = p[m][n][e] * (ds[m][n][e] - delta[acc_col(n, e)]);
    block_mma_pb<kWgmma, T, kRows, D>(dk, ds, q_tile);
    block_mma_wait<kWgmma, 0>(dv, dk);
    __syncthreads();
  }

#pragma unroll
  for (int m = 0; m < kM; ++m) {
    const int row0 = warp_block_row<kWgmma, kM>(m);
    store_warp_rows<kWgmma, T, D, kKeys>(dk[m], a.scale, k_tile, row0, a.dk.rows_of(bh, a.heads), a.dk.token, k0 + row0,
                                         seq_len);
    store_warp_rows<kWgmma, T, D, kKeys>(dv[m], 1.0f, v_tile, row0, a.dv.rows_of(bh, a.heads), a.dv.token, k0 + row0,
                                         seq_len);
  }
}

// Q, dO, two K and two V tiles, two tiles' key segments.
template <bool kWgmma, int D, int kQueries>
constexpr size_t dq_shared_bytes() {
  return tile_values<kWgmma, D>(2 * kQueries + 4 * kKeyTile) * kValueBytes + 2 * kKeyTile * sizeof(int32_t) +
         kSharedSlack;
}

// dQ of kQueries queries, each warp's kM blocks of 16: S = Q K^T, P = 2^(S - lse), dP = dO V^T,
// dS = P * (dP - D), dQ += dS K, over the key tiles they see.
template <class T, int D, int kM, bool kWgmma>
__global__ void __launch_bounds__(kThreads) flash_backward_dq_kernel(Args<T> a) {
  constexpr int kQueries = kWarps * kM * kMmaRows, kKeyTileValues = tile_values<kWgmma, D>(kKeyTile);
  T* q_tile = reinterpret_cast<T*>(shared_tiles<kWgmma>());
  T* do_tile = q_tile + tile_values<kWgmma, D>(kQueries);
  T* k_tiles = do_tile + tile_values<kWgmma, D>(kQueries);
  T* v_tiles = k_tiles + 2 * kKeyTileValues;
  int32_t* key_segments = reinterpret_cast<int32_t*>(v_tiles + 2 * kKeyTileValues);

  const int seq_len = a.seq_len;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kQueries;
  const int64_t bh = blockIdx.y;
  const T* k_head = a.k.rows_of(bh, a.heads);
  const T* v_head = a.v.rows_of(bh, a.heads);
  const int32_t* segments = a.segment_ids ? a.segment_ids + bh / a.heads * seq_len : nullptr;
  const int key_tiles = key_tiles_for(a.causal, q0, kQueries, seq_len);

  load_tile_async<kWgmma, D, kQueries>(q_tile, a.q.rows_of(bh, a.heads), a.q.token, q0, seq_len);
  load_tile_async<kWgmma, D, kQueries>(do_tile, a.d_out.rows_of(bh, a.heads), a.d_out.token, q0, seq_len);
  load_tile_async<kWgmma, D, kKeyTile>(k_tiles, k_head, a.k.token, 0, seq_len);
  load_tile_async<kWgmma, D, kKeyTile>(v_tiles, v_head, a.v.token, 0, seq_len);
  cp_async_commit();
  for (int i = threadIdx.x; i < kKeyTile; i += kThreads) key_segments[i] = segment_of(segments, i, seq_len);

  int query[kM][2];
  int32_t query_segment[kM][2];
  float lse[kM][2], delta[kM][2];  // lse in the log2 domain
  for (int m = 0; m < kM; ++m)
    for (int r = 0; r < 2; ++r) {
      query[m][r] = q0 + warp_block_row<kWgmma, kM>(m) + acc_row(2 * r);
      query_segment[m][r] = segment_of(segments, query[m][r], seq_len);
      const bool inside = query[m][r] < seq_len;
      lse[m][r] = inside ? a.lse[bh * seq_len + query[m][r]] * kLog2e : INFINITY;
      delta[m][r] = inside ? a.delta[bh * seq_len + query[m][r]] : 0.0f;
    }
  float dq[kM][D / 8][4] = {};

  for (int j = 0; j < key_tiles; ++j) {
    const int buf = j % 2, k0 = j * kKeyTile;
    if (j + 1 < key_tiles) {
      load_tile_async<kWgmma, D, kKeyTile>(k_tiles + (buf ^ 1) * kKeyTileValues, k_head, a.k.token, k0 + kKeyTile,
                                           seq_len);
      load_tile_async<kWgmma, D, kKeyTile>(v_tiles + (buf ^ 1) * kKeyTileValues, v_head, a.v.token, k0 + kKeyTile,
                                           seq_len);
      for (int i = threadIdx.x; i < kKeyTile; i += kThreads)
        key_segments[(buf ^ 1) * kKeyTile + i] = segment_of(segments, k0 + kKeyTile + i, seq_len);
    }
    cp_async_commit();
    cp_async_wait<1>();
    publish_tiles<kWgmma>();
    __syncthreads();
    const T* k_tile = k_tiles + buf * kKeyTileValues;

    // S and dP start together; P is computed while dP is in flight.
    float p[kM][kKeyTile / 8][4] = {}, ds[kM][kKeyTile / 8][4] = {};
    block_mma_abt<kWgmma, T, D, kKeyTile, kQueries>(p, q_tile, k_tile);
    block_mma_abt<kWgmma, T, D, kKeyTile, kQueries>(ds, do_tile, v_tiles + buf * kKeyTileValues);
    block_mma_wait<kWgmma, 1>(p);
    with_tile_mask(
        tile_needs_mask(a.causal, segments != nullptr, q0, kQueries, k0, kKeyTile, seq_len), [&](auto masked) {
#pragma unroll
          for (int m = 0; m < kM; ++m)
#pragma unroll
            for (int n = 0; n < kKeyTile / 8; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int c = acc_col(n, e);
                const bool hidden = masked && !sees(a.causal, query[m][e / 2], k0 + c, query_segment[m][e / 2],
                                                    key_segments[buf * kKeyTile + c]);
                p[m][n][e] = exp2_ftz(hidden ? -INFINITY : fmaf(p[m][n][e], a.scale_log2, -lse[m][e / 2]));
              }
        });

    block_mma_wait<kWgmma, 0>(ds);
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int n = 0; n < kKeyTile / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) ds[m][n][e] = p[m][n][e] * (ds[m][n][e] - delta[m][e / 2]);
    block_mma_pb<kWgmma, T, kKeyTile, D>(dq, ds, k_tile);
    block_mma_wait<kWgmma, 0>(dq);
    __syncthreads();
  }
#pragma unroll
  for (int m = 0; m < kM; ++m) {
    const int row0 = warp_block_row<kWgmma, kM>(m);
    store_warp_rows<kWgmma, T, D, kQueries>(dq[m], a.scale, q_tile, row0, a.dq.rows_of(bh, a.heads), a.dq.token,
                                            q0 + row0, seq_len);
  }
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
Args<cuda_t<T>> make_args(const char* what, const AttentionShape& s, const AttentionMask& mask, float scale) {
  // The forward takes each row's max over the raw scores, which only a positive scale keeps.
  FT_CHECK(scale > 0.0f && std::isfinite(scale), what, ": scale ", scale, " is not a positive number");
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

template <class T, int D, bool kWgmma>
void forward(const AttentionShape& s, const Args<T>& a, cudaStream_t stream) {
  constexpr int kM = WarpShape<kWgmma, D>::kForwardBlocks, kQueries = kWarps * kM * kMmaRows;
  launch(flash_forward_kernel<T, D, kM, kWgmma>, (s.seq_len + kQueries - 1) / kQueries, s,
         forward_shared_bytes<kWgmma, D, kQueries>(), a, stream);
}

template <class T, int D, bool kWgmma>
void backward(const AttentionShape& s, const Args<T>& a, float* delta, cudaStream_t stream) {
  const int64_t rows = s.batch * s.heads * s.seq_len, rows_per_block = kBlockThreads / (D / kChunk);
  row_dot_kernel<T, D>
      <<<static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block), kBlockThreads, 0, stream>>>(
          a.out, a.d_out, delta, rows, a.seq_len, a.heads);
  FT_CUDA_CHECK_LAUNCH();
  using Shape = WarpShape<kWgmma, D>;
  constexpr int kKeys = kWarps * Shape::kDkdvBlocks * kMmaRows, kQueries = kWarps * Shape::kDqBlocks * kMmaRows;
  launch(flash_backward_dkdv_kernel<T, D, Shape::kDkdvBlocks, Shape::kDkdvRows, kWgmma>,
         (s.seq_len + kKeys - 1) / kKeys, s, dkdv_shared_bytes<kWgmma, D, kKeys, Shape::kDkdvRows>(), a, stream);
  launch(flash_backward_dq_kernel<T, D, Shape::kDqBlocks, kWgmma>, (s.seq_len + kQueries - 1) / kQueries, s,
         dq_shared_bytes<kWgmma, D, kQueries>(), a, stream);
}

std::atomic<bool> wgmma_allowed{true};

// wgmma where it was built (sm_90a, FLASHTRAIN_HAS_WGMMA) and the current device runs it
// (compute capability 9.0 exactly: sm_90a code runs nowhere else), unless turned off.
bool use_wgmma() {
#ifdef FLASHTRAIN_HAS_WGMMA
  int device = 0;
  FT_CUDA_CHECK(cudaGetDevice(&device));
  const cudaDeviceProp& properties = cuda::device_properties(device);
  return wgmma_allowed && properties.major == 9 && properties.minor == 0;
#else
  return false;
#endif
}

// Calls f(std::integral_constant<int, D>{}, std::bool_constant<kWgmma>{}) for the problem's head
// dim (64 or 128, checked) and the matrix instructions use_wgmma chooses.
template <class F>
void with_kernel_choice(int64_t head_dim, F&& f) {
  const bool wgmma = use_wgmma();
  auto with_dim = [&](auto d) {
    if (wgmma)
      f(d, std::true_type{});
    else
      f(d, std::false_type{});
  };
  if (head_dim == 64)
    with_dim(std::integral_constant<int, 64>{});
  else
    with_dim(std::integral_constant<int, 128>{});
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
  Args<cuda_t<T>> a = make_args<T>("flash_attention_forward_cuda", s, mask, scale);
  a.q = heads_of(q);
  a.k = heads_of(k);
  a.v = heads_of(v);
  a.o_write = heads_of(out);
  a.lse_write = lse;
  with_kernel_choice(s.head_dim, [&](auto d, auto wgmma) {
    forward<cuda_t<T>, decltype(d)::value, decltype(wgmma)::value>(s, a, stream);
  });
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
  Args<cuda_t<T>> a = make_args<T>("flash_attention_backward_cuda", s, mask, scale);
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
  with_kernel_choice(s.head_dim, [&](auto d, auto wgmma) {
    backward<cuda_t<T>, decltype(d)::value, decltype(wgmma)::value>(s, a, delta, stream);
  });
}

void flash_attention_allow_wgmma(bool allow) { wgmma_allowed = allow; }

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
