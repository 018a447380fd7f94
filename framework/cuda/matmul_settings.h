// Global switches for matrix products on CUDA. TF32 tensor cores run f32 products about 8x
// faster than full fp32 by rounding the inputs to a 10-bit mantissa (outputs and accumulation
// stay fp32): relative errors grow from ~1e-7 to ~1e-3, which training does not notice but an
// fp32 reference comparison does. It is on by default, for training speed; bf16 and f16
// products are not affected (they always use tensor cores with fp32 accumulation).
#pragma once

namespace ft::cuda {

// Whether f32 matmuls (matmul, linear, attention's products) may use TF32. Default: true.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace ft::cuda
