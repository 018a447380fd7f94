// Attention through cuDNN's fused flash attention ("SDPA"): the in-process baseline that our own
// flash kernels (kernels/flash_attention) are measured against. The math is attention_cpu.h's
// (scale, causal mask, softmax, the forward's log-sum-exp kept for the backward) without segment
// ids; the work is cuDNN's, reached through its backend graph API with no frontend library.
//
// Each call describes the problem (shape, dtype, causal, device and every operand's strides:
// cuDNN reads strided views in place, so the caller need not copy), and the first call for a
// problem builds the operation graph, asks the heuristics for an engine and finalizes an execution
// plan, which is cached; later calls cost one cudnnBackendExecute. The workspace is the caller's
// (ask for its size first), so it comes from the framework's caching allocator.
//
// libcudnn.so.9 is loaded on first use (dlopen: by its soname, so LD_LIBRARY_PATH finds it, then
// where the build found it), not linked: binaries built here still start on a machine whose cuDNN
// lives elsewhere or nowhere, and only this kernel then fails, naming what it looked for.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "framework/dtype.h"
#include "kernels/attention/attention_strides.h"

namespace ft::kernels {

// What a forward plan depends on. dtype: bf16 or f16; head_dim 64 or 128; device: the current
// CUDA device (plans and handles are per device). Every operand's strides must be ones that
// fused_attention_takes (attention_strides.h); the calls below throw for one that is not.
struct CudnnAttentionForward {
  AttentionShape shape;
  DType dtype;
  bool causal;
  int device;
  AttentionStrides q, k, v, out;
};

// What a backward plan depends on: the forward's operands, the upstream gradient d_out and the
// three gradients written.
struct CudnnAttentionBackward {
  CudnnAttentionForward forward;
  AttentionStrides d_out, dq, dk, dv;
};

// Workspace bytes the calls below need for this problem (0 is possible). Builds and caches the
// plan if needed; throws ft::Error when cuDNN cannot be loaded or no engine takes the graph.
size_t cudnn_attention_forward_workspace(const CudnnAttentionForward& p);
size_t cudnn_attention_backward_workspace(const CudnnAttentionBackward& p);

// out = softmax(scale q k^T, causal mask) v, and lse [batch, heads, seq_len] (packed, fp32): the
// natural log of each query row's sum of exp(scale q . k) over the keys it sees. Every pointer is
// device memory aligned to 16 bytes, laid out by p's strides; workspace holds the bytes asked for.
void cudnn_attention_forward(const CudnnAttentionForward& p, float scale, const void* q, const void* k, const void* v,
                             void* out, float* lse, void* workspace, cudaStream_t stream);

// dq, dk, dv from the forward's inputs, its out and lse, and d_out. cuDNN accumulates dq over key
// tiles with atomics, so the bits of dq may differ run to run (unlike kernels/flash_attention).
void cudnn_attention_backward(const CudnnAttentionBackward& p, float scale, const void* q, const void* k, const void* v,
                              const void* out, const void* d_out, const float* lse, void* dq, void* dk, void* dv,
                              void* workspace, cudaStream_t stream);

// "cuDNN 9.14.0 (libcudnn.so.9)" once loaded; throws ft::Error saying where it looked otherwise.
std::string cudnn_library_version();

}  // namespace ft::kernels
