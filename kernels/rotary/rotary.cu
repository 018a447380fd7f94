// Rotary position embedding on CUDA: one thread per pair (x[i], x[i + D/2]) of a head's vector,
// rotated by theta_i = position * base^(-2i/D) (rotary_cpu.h has the math).
//
// The angle is computed in double, as on the CPU: at position 1000 an fp32 angle is off by
// ~6e-5 radians, far more than an f32 result may differ from the reference, while H100/A100
// run fp64 at half the fp32 rate and this kernel is bound by memory anyway. cos and sin are
// then rounded to fp32 and the rotation runs in fp32 whatever T is.
#include "framework/cuda/check.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/rotary/rotary_cuda.h"

namespace ft::kernels {
namespace {

template <class T>
__global__ void rotary_kernel(T* out, const T* x, const int32_t* positions, int64_t heads, int64_t seq_len,
                              int64_t head_dim, double base, double direction, int64_t pairs) {
  const int64_t half = head_dim / 2;
  for (int64_t p = global_index(); p < pairs; p += grid_stride()) {
    const int64_t row = p / half, i = p % half;  // row: (batch, head, token)
    const int64_t b = row / (heads * seq_len), t = row % seq_len;
    const double position = positions ? positions[b * seq_len + t] : static_cast<double>(t);
    const double angle = direction * position * pow(base, -2.0 * static_cast<double>(i) / head_dim);
    double sin_angle, cos_angle;
    sincos(angle, &sin_angle, &cos_angle);
    const float c = static_cast<float>(cos_angle), s = static_cast<float>(sin_angle);
    const int64_t first_index = row * head_dim + i;
    const float first = to_float(x[first_index]), second = to_float(x[first_index + half]);
    out[first_index] = from_float<T>(first * c - second * s);
    out[first_index + half] = from_float<T>(second * c + first * s);
  }
}

}  // namespace

template <class T>
void rotary_cuda(T* out, const T* x, const int32_t* positions, int64_t batch, int64_t heads, int64_t seq_len,
                 int64_t head_dim, double base, bool inverse, cudaStream_t stream) {
  const int64_t pairs = batch * heads * seq_len * (head_dim / 2);
  if (pairs == 0) return;
  rotary_kernel<<<blocks_for(pairs), kBlockThreads, 0, stream>>>(device_ptr(out), device_ptr(x), positions, heads,
                                                                 seq_len, head_dim, base, inverse ? -1.0 : 1.0, pairs);
  FT_CUDA_CHECK_LAUNCH();
}

template void rotary_cuda<float>(float*, const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t, double, bool,
                                 cudaStream_t);
template void rotary_cuda<bfloat16>(bfloat16*, const bfloat16*, const int32_t*, int64_t, int64_t, int64_t, int64_t,
                                    double, bool, cudaStream_t);
template void rotary_cuda<half>(half*, const half*, const int32_t*, int64_t, int64_t, int64_t, int64_t, double, bool,
                                cudaStream_t);

}  // namespace ft::kernels
