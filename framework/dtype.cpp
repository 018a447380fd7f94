#include "framework/dtype.h"

#include <cstring>

#include "framework/error.h"

namespace ft {

int dtype_bits(DType t) {
  switch (t) {
    case DType::f32: return 32;
    case DType::f64: return 64;
    case DType::f16: return 16;
    case DType::bf16: return 16;
    case DType::i32: return 32;
    case DType::u8: return 8;
    case DType::nf4: return 4;
  }
  throw Error("dtype_bits: unknown dtype");
}

size_t dtype_bytes(DType t, int64_t n) { return (static_cast<size_t>(n) * dtype_bits(t) + 7) / 8; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
    case DType::nf4: return "nf4";
  }
  return "unknown";
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::u8, DType::nf4})
    if (name == dtype_name(t)) return t;
  throw Error(str("unknown dtype '", name, "' (expected one of f32, f64, f16, bf16, i32, u8, nf4)"));
}

bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}

static uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

static float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float to_float(bfloat16 b) { return bits_float(static_cast<uint32_t>(b.bits) << 16); }

bfloat16 to_bfloat16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16{static_cast<uint16_t>((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return bfloat16{static_cast<uint16_t>(u >> 16)};
}

float to_float(half h) {
  uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // Subnormal half: value = mant * 2^-24, exactly representable in float.
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

half to_half(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return half{static_cast<uint16_t>(sign | 0x7e00u)};  // NaN
  if (abs >= 0x477ff000u) return half{static_cast<uint16_t>(sign | 0x7c00u)};  // overflow to inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero) in half: round abs * 2^24 to an integer, ties to even.
    float scaled = bits_float(abs) * 16777216.0f;  // exact: a power-of-two scale
    uint32_t m = static_cast<uint32_t>(scaled);
    float rem = scaled - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return half{static_cast<uint16_t>(sign | m)};
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even.
  uint32_t v = abs - (112u << 23);
  v += 0xfffu + ((v >> 13) & 1u);
  return half{static_cast<uint16_t>(sign | (v >> 13))};
}

}  // namespace ft
