// Token embedding on the GPU: a gather in the forward, and in the backward the sum of the
// output gradients of all positions that hold the same id into that id's row of dweight.
//
// The backward is where the care goes. Scattering with float atomicAdd would be simple, but
// many positions hit the same few rows (frequent tokens) and contend, and the order of the
// additions, hence the bits of the result, would change from run to run. Instead, as PyTorch
// does, the positions are sorted by id on the device (CUB's radix sort, which is stable, so the
// positions of one id stay in increasing order), and the run of each id is summed by the
// threads that own its row, one channel each: every element of dweight is written once, with
// `=`, adding the positions in increasing order, exactly as the CPU reference does (in f32, the
// same bits). The sort looks only at the bits an id can have.
//
// Ids must be in range; the loader validates them (data/prepare.cpp). An id outside [0, vocab)
// is made harmless, not reported (that would need a host synchronisation inside the op): it
// gathers a row of zeros and sorts into a run of its own (key `vocab`) that is never summed.
#include <climits>
#include <cub/device/device_radix_sort.cuh>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/embedding/embedding_cuda.h"

namespace ft::kernels {
namespace {

// Channels of a row that one backward block takes (GPT-2's 768: three blocks per id).
constexpr int kRowThreads = 256;
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
void check_sizes(int64_t tokens, int64_t vocab, int64_t channels) {
  FT_CHECK(tokens <= INT_MAX && vocab <= INT_MAX, "embedding backward: ", tokens, " ids over a vocabulary of ", vocab,
           "; the CUDA kernels hold positions and ids in 32 bits");
  FT_CHECK(channels <= 65535 * int64_t{kRowThreads}, "embedding backward: ", channels,
           " channels; the CUDA kernel takes at most ", 65535 * kRowThreads);
}

__device__ __forceinline__ bool in_vocab(int32_t id, int64_t vocab) { return id >= 0 && id < vocab; }

template <class T>
__global__ void embedding_forward_kernel(T* out, const int32_t* ids, const T* weight, int64_t tokens, int64_t vocab,
                                         int64_t channels) {
  const int64_t n = tokens * channels;
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t t = i / channels, c = i - t * channels;
    const int32_t id = ids[t];
    out[i] = in_vocab(id, vocab) ? weight[id * channels + c] : from_float<T>(0.0f);
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

// Block (j, slice) looks at sorted entry j; if it starts the run of a valid id, the block sums
// the run's rows of dout into that id's row of dweight, one channel of the slice per thread, in
// increasing position. The channels are split over blocks so that a long run (a frequent token,
// or padding) is summed by as many threads as it has channels.
template <class T>
__global__ void embedding_backward_kernel(T* dweight, const uint32_t* keys, const int32_t* positions, const T* dout,
                                          int64_t tokens, int64_t vocab, int64_t channels) {
  const int64_t j = blockIdx.x;
  const int64_t c = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const uint32_t id = keys[j];
  if (c >= channels || id >= vocab || (j > 0 && keys[j - 1] == id)) return;
  int64_t end = j + 1;
  while (end < tokens && keys[end] == id) ++end;
  float acc = 0.0f;
  // Unrolled, the loads are issued ahead while the additions keep their order.
#pragma unroll 8
  for (int64_t k = j; k < end; ++k) acc += to_float(dout[positions[k] * channels + c]);
  dweight[id * channels + c] = from_float<T>(acc);
}

}  // namespace

template <class T>
void embedding_forward_cuda(T* out, const int32_t* ids, const T* weight, int64_t tokens, int64_t vocab,
                            int64_t channels, cudaStream_t stream) {
  const int64_t n = tokens * channels;
  if (n == 0) return;
  embedding_forward_kernel<<<blocks_for(n), kBlockThreads, 0, stream>>>(device_ptr(out), ids, device_ptr(weight),
                                                                        tokens, vocab, channels);
  FT_CUDA_CHECK_LAUNCH();
}

size_t embedding_backward_workspace_bytes(int64_t tokens, int64_t vocab) {
  check_sizes(tokens, vocab, 0);
  return 4 * aligned_size(static_cast<size_t>(tokens) * sizeof(uint32_t)) + sort_temp_bytes(tokens, vocab);
}

template <class T>
void embedding_backward_cuda(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                             int64_t channels, void* workspace, cudaStream_t stream) {
  check_sizes(tokens, vocab, channels);
  // Rows of ids that occur nowhere stay zero; the others are overwritten below.
  FT_CUDA_CHECK(cudaMemsetAsync(dweight, 0, static_cast<size_t>(vocab * channels) * sizeof(T), stream));
  if (tokens == 0 || channels == 0) return;
  SortBuffers b = carve(workspace, tokens, vocab);
  sort_keys_kernel<<<blocks_for(tokens), kBlockThreads, 0, stream>>>(b.keys_in, b.positions_in, ids, tokens, vocab);
  FT_CUDA_CHECK_LAUNCH();
  FT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(b.temp, b.temp_bytes, b.keys_in, b.keys_out, b.positions_in,
                                                b.positions_out, static_cast<int>(tokens), 0, key_bits(vocab), stream));
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>((channels + kRowThreads - 1) / kRowThreads));
  embedding_backward_kernel<<<grid, kRowThreads, 0, stream>>>(device_ptr(dweight), b.keys_out, b.positions_out,
                                                              device_ptr(dout), tokens, vocab, channels);
  FT_CUDA_CHECK_LAUNCH();
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
