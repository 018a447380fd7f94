// Element types. Floating types are what ops compute in; i32 holds token ids and targets; u8
// holds masks and raw bytes; nf4 is the packed 4-bit type of QLoRA base weights (two values a
// byte, low nibble first), which only storage and dequantisation understand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ft {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, u8, nf4 };

// Bits one element takes in memory (4 for nf4).
int dtype_bits(DType t);
// Bytes that n elements take, rounded up to whole bytes.
size_t dtype_bytes(DType t, int64_t n);
const char* dtype_name(DType t);
// Parses a name as dtype_name prints it ("f32", "bf16", ...); throws ft::Error otherwise.
DType dtype_from_name(const std::string& name);
bool is_floating(DType t);

// 16-bit floating storage types for the CPU side. Conversions round to nearest even, keep
// infinities and NaN, and match CUDA's __half / __nv_bfloat16 bit for bit.
struct half {
  uint16_t bits;
};
struct bfloat16 {
  uint16_t bits;
};
float to_float(half h);
float to_float(bfloat16 b);
half to_half(float f);
bfloat16 to_bfloat16(float f);

// The DType of a C++ element type, for typed access: dtype_of<float>() == DType::f32.
template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<half>() { return DType::f16; }
template <> constexpr DType dtype_of<bfloat16>() { return DType::bf16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

}  // namespace ft
