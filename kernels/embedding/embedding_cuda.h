// Token embedding on the GPU: the launchers of kernels/embedding/embedding.cu, on raw device
// pointers and a stream. Ids are validated before they reach the GPU (data/prepare.cpp checks
// every token of a dataset against the vocabulary, the CPU op checks its ids); the kernels never
// touch memory for an id outside [0, vocab): its output row is zeros and it adds to no gradient.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ft::kernels {

// out: [tokens, channels] = weight[ids[t]] ([vocab, channels]).
template <class T>
void embedding_forward_cuda(T* out, const int32_t* ids, const T* weight, int64_t tokens, int64_t vocab,
                            int64_t channels, cudaStream_t stream);

// Bytes of scratch embedding_backward_cuda needs: none for up to 16384 ids (one launch); over
// that, vocab * channels floats of partial sums handed from one segment of ids to the next.
size_t embedding_backward_workspace_bytes(int64_t tokens, int64_t vocab, int64_t channels);

// Overwrites dweight ([vocab, channels]) with the sum over positions t of dout[t] into row
// ids[t], in fp32 and in increasing t for each row (the CPU reference's order): deterministic.
// `workspace` holds embedding_backward_workspace_bytes(tokens, vocab, channels) bytes, 256-byte
// aligned. On compute capability 9.0 on, a small table's kernel reads `ids` while the kernel
// launched just before it on `stream` may still run (a programmatic dependent launch), so that
// kernel must not write `ids`.
template <class T>
void embedding_backward_cuda(T* dweight, const int32_t* ids, const T* dout, int64_t tokens, int64_t vocab,
                             int64_t channels, void* workspace, cudaStream_t stream);

}  // namespace ft::kernels
