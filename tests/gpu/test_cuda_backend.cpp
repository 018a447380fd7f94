// The CUDA backend's plumbing on a real GPU: contexts, errors, the caching allocator, copies
// between host and devices, dtype conversion, strided gathers and fills (each against its CPU
// reference, bit for bit), Tensor's data movement, and cuBLAS / cuBLASLt through the context.
// Destinations are poisoned before every write, so an element a kernel forgot shows up.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <thread>

#include "framework/cuda/caching_allocator.h"
#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#include "framework/cuda/copy.h"
#include "framework/ops.h"
#include "kernels/copy/copy_cpu.h"
#include "kernels/matmul/matmul_cpu.h"
#include "tests/support/gradcheck.h"

using namespace ft;

namespace {

using Bytes = std::vector<uint8_t>;

const Device kGpu = Device::cuda(0);
const DType kCopyDTypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::u8, DType::nf4};
const DType kValueDTypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::u8};

// Raw device memory, from the caching allocator.
Tensor device_buffer(size_t bytes, Device device = kGpu) {
  return Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, device);
}

void poison(const Tensor& buffer, uint8_t byte) {
  cuda::fill(buffer.raw_data(), DType::u8, static_cast<int64_t>(buffer.nbytes()), byte, buffer.device().index);
}

void upload(const Tensor& buffer, const Bytes& bytes) {
  REQUIRE(bytes.size() <= buffer.nbytes());
  cuda::copy_bytes(buffer.raw_data(), buffer.device(), bytes.data(), Device::cpu(), bytes.size());
}

Bytes download(const Tensor& buffer) {
  Bytes out(buffer.nbytes(), 0xEE);
  cuda::copy_bytes(out.data(), Device::cpu(), buffer.raw_data(), buffer.device(), out.size());
  return out;
}

// The bytes of a tensor on any device, in row-major order.
Bytes host_bytes(const Tensor& t) {
  Tensor host = t.to(Device::cpu()).contiguous();
  const auto* p = static_cast<const uint8_t*>(host.raw_data());
  return Bytes(p, p + host.nbytes());
}

// Random bytes in [1, 254]: never zero, never the 0xFF poison.
Bytes random_bytes(size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> byte(1, 254);
  Bytes out(n);
  for (uint8_t& b : out) b = static_cast<uint8_t>(byte(rng));
  return out;
}

// A CPU tensor of random values, none zero: normals for floating dtypes, integers for the others.
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::uniform_int_distribution<int> integer(dtype == DType::u8 ? 1 : -100000, dtype == DType::u8 ? 255 : 100000);
  std::vector<double> values(shape_numel(shape));
  for (double& v : values) {
    do {
      v = is_floating(dtype) ? normal(rng) : integer(rng);
    } while (v == 0);
  }
  return Tensor::from_vector(values, shape, dtype);
}

std::string hex(const uint8_t* p, int bytes) {
  std::string s = "0x";
  char digits[3];
  for (int i = bytes - 1; i >= 0; --i) {  // little-endian: most significant byte last
    std::snprintf(digits, sizeof digits, "%02x", p[i]);
    s += digits;
  }
  return s;
}

double element_value(const uint8_t* p, DType dtype) {
  double v;
  kernels::convert_cpu(&v, DType::f64, p, dtype, 1);
  return v;
}

// Compares two arrays of n elements of `dtype` bit for bit; describes the first few mismatches
// (with the source element that produced them, when given). Empty when equal.
std::string compare_bits(const Bytes& expected, const Bytes& got, DType dtype, const Bytes* source = nullptr,
                         DType source_dtype = DType::u8) {
  if (expected.size() != got.size()) return str("sizes differ: ", expected.size(), " vs ", got.size(), " bytes");
  const int width = dtype_bits(dtype) / 8;
  const int source_width = dtype_bits(source_dtype) / 8;
  std::string report;
  int64_t mismatches = 0;
  for (size_t i = 0; i * width < expected.size(); ++i) {
    if (std::memcmp(&expected[i * width], &got[i * width], width) == 0) continue;
    if (++mismatches > 5) continue;
    report += str("\n  element ", i, ": expected ", hex(&expected[i * width], width), " (",
                  element_value(&expected[i * width], dtype), "), got ", hex(&got[i * width], width), " (",
                  element_value(&got[i * width], dtype), ")");
    if (source)
      report += str(" from ", dtype_name(source_dtype), " ", hex(&(*source)[i * source_width], source_width), " (",
                    element_value(&(*source)[i * source_width], source_dtype), ")");
  }
  if (mismatches == 0) return "";
  return str(mismatches, " of ", expected.size() / width, " ", dtype_name(dtype), " elements differ:", report);
}

// Bytes compared as opaque data (nf4 included).
std::string compare_bytes(const Bytes& expected, const Bytes& got) { return compare_bits(expected, got, DType::u8); }

}  // namespace

// ---- contexts and errors -----------------------------------------------------------------------

// First in the file (doctest runs in file order), so that the threads race to create the context.
TEST_CASE("the context of a device is created once, even when threads race for it") {
  std::vector<cuda::Context*> seen(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < seen.size(); ++i) threads.emplace_back([&, i] { seen[i] = &cuda::context(0); });
  for (std::thread& t : threads) t.join();
  CHECK(std::set<cuda::Context*>(seen.begin(), seen.end()).size() == 1);

  const cuda::Context& ctx = cuda::context(0);
  const cudaDeviceProp& p = ctx.properties;
  MESSAGE("cuda:0 is ", p.name, ", compute capability ", p.major, ".", p.minor, ", ", p.totalGlobalMem / (1 << 20),
          " MiB, ", p.multiProcessorCount, " SMs; ", cuda::device_count(), " device(s) present");
  CHECK(ctx.device == 0);
  CHECK(ctx.stream != nullptr);
  CHECK(ctx.cublas != nullptr);
  CHECK(ctx.cublaslt != nullptr);
  CHECK(ctx.workspace != nullptr);
  CHECK(ctx.workspace_bytes == size_t{32} << 20);
  CHECK(p.multiProcessorCount > 0);
  // The stream is non-blocking, and it is the one cuBLAS works on.
  unsigned flags = 0;
  FT_CUDA_CHECK(cudaStreamGetFlags(ctx.stream, &flags));
  CHECK(flags == cudaStreamNonBlocking);
  cudaStream_t cublas_stream = nullptr;
  FT_CUBLAS_CHECK(cublasGetStream(ctx.cublas, &cublas_stream));
  CHECK(cublas_stream == ctx.stream);
  CHECK(std::string(cuda::device_properties(0).name) == p.name);
  CHECK_NOTHROW(cuda::synchronize(0));
}

TEST_CASE("a device index past the devices present is a clear error") {
  const int count = cuda::device_count();
  const std::string expected = str("cuda:", count, " requested but only ", count);
  CHECK_THROWS_WITH(cuda::set_device(count), doctest::Contains(expected.c_str()));
  CHECK_THROWS_WITH(cuda::context(count), doctest::Contains(expected.c_str()));
  CHECK_THROWS_WITH(Tensor::empty({4}, DType::f32, Device::cuda(count)), doctest::Contains(expected.c_str()));
  CHECK_THROWS_WITH(Tensor::zeros({4}).to(Device::cuda(count)), doctest::Contains(expected.c_str()));
  CHECK_THROWS_WITH(cuda::check_device(-1), doctest::Contains("cuda:-1 requested"));
  CHECK_NOTHROW(cuda::set_device(0));
  // The DeviceGuard restores the current device.
  int current = -1;
  { cuda::DeviceGuard guard(count - 1); }
  FT_CUDA_CHECK(cudaGetDevice(&current));
  CHECK(current == 0);
}

TEST_CASE("a failing CUDA or cuBLAS call names the error, the call and the file") {
  try {
    FT_CUDA_CHECK(cudaSetDevice(99));
    FAIL("cudaSetDevice(99) did not fail");
  } catch (const Error& e) {
    const std::string message = e.what();
    MESSAGE("the error reads: ", message);
    CHECK(message.find("CUDA error cudaErrorInvalidDevice (invalid device ordinal) in cudaSetDevice(99) at ") == 0);
    CHECK(message.find("tests/gpu/test_cuda_backend.cpp:") != std::string::npos);
    CHECK(message.find("/tests/gpu/") == std::string::npos);  // the path is relative to the repository
  }
  // The error was cleared when thrown: the next launch check does not report it again.
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK_NOTHROW(FT_CUDA_CHECK_LAUNCH());

  const float one = 1;
  float* none = nullptr;
  MESSAGE("cuBLAS prints \"On entry to SGEMM parameter number 3 had an illegal value\" next: that is expected");
  CHECK_THROWS_WITH(FT_CUBLAS_CHECK(cublasSgemm(cuda::context(0).cublas, CUBLAS_OP_N, CUBLAS_OP_N, -1, 1, 1, &one, none,
                                                1, none, 1, &one, none, 1)),
                    doctest::Contains("cuBLAS error CUBLAS_STATUS_INVALID_VALUE"));
  CHECK_THROWS_WITH(cuda::gather_strided(nullptr, nullptr, 4, Shape(9, 1), Shape(9, 1), 0),
                    doctest::Contains("at most 8"));
  CHECK_THROWS_WITH(cuda::convert(nullptr, DType::nf4, nullptr, DType::f32, 4, 0), doctest::Contains("nf4"));
}

// ---- the caching allocator ---------------------------------------------------------------------

TEST_CASE("block sizes round to 512 bytes below 1 MiB and to 2 MiB above") {
  constexpr size_t MiB = size_t{1} << 20;
  CHECK(cuda::rounded_block_size(0) == 512);
  CHECK(cuda::rounded_block_size(1) == 512);
  CHECK(cuda::rounded_block_size(512) == 512);
  CHECK(cuda::rounded_block_size(513) == 1024);
  CHECK(cuda::rounded_block_size(MiB - 1) == MiB);
  CHECK(cuda::rounded_block_size(MiB) == 2 * MiB);
  CHECK(cuda::rounded_block_size(2 * MiB + 1) == 4 * MiB);
}

TEST_CASE("the caching allocator reuses freed blocks, best fit, and keeps its stats") {
  constexpr size_t MiB = size_t{1} << 20;
  Allocator& allocator = cuda::caching_allocator(0);
  cuda::empty_cache(0);
  AllocatorStats start = allocator.stats();
  REQUIRE(start.allocated_bytes == 0);  // no tensor of an earlier test is alive
  REQUIRE(start.reserved_bytes == 0);

  // Free, then allocate a size of the same rounded block: the same pointer, no cudaMalloc.
  void* a = allocator.allocate(1000);
  AllocatorStats s = allocator.stats();
  CHECK(s.allocated_bytes == 1024);
  CHECK(s.reserved_bytes == 1024);
  CHECK(s.allocations == start.allocations + 1);
  CHECK(s.system_allocations == start.system_allocations + 1);
  allocator.deallocate(a, 1000);
  CHECK(allocator.stats().allocated_bytes == 0);
  CHECK(allocator.stats().reserved_bytes == 1024);  // cached, not returned
  void* b = allocator.allocate(600);
  CHECK(b == a);
  CHECK(allocator.stats().system_allocations == start.system_allocations + 1);
  allocator.deallocate(b, 600);

  // Best fit among cached blocks of 4, 6 and 8 MiB; a block over twice the request is left.
  void* four = allocator.allocate(4 * MiB);
  void* six = allocator.allocate(5 * MiB + 1);
  void* eight = allocator.allocate(8 * MiB);
  CHECK(allocator.stats().reserved_bytes == 1024 + 18 * MiB);
  for (void* p : {four, six, eight}) allocator.deallocate(p, 0);
  const int64_t system_before = allocator.stats().system_allocations;
  void* x = allocator.allocate(5 * MiB);  // rounds to 6 MiB
  void* y = allocator.allocate(3 * MiB);  // rounds to 4 MiB
  CHECK(x == six);
  CHECK(y == four);
  CHECK(allocator.stats().system_allocations == system_before);
  void* z = allocator.allocate(2 * MiB);  // the 8 MiB block is more than twice 2 MiB
  CHECK(z != eight);
  CHECK(allocator.stats().system_allocations == system_before + 1);
  for (void* p : {x, y, z}) allocator.deallocate(p, 0);

  // Peak: the most allocated since the last reset.
  allocator.reset_peak();
  CHECK(allocator.stats().peak_allocated_bytes == 0);
  void* p = allocator.allocate(8 * MiB);
  void* q = allocator.allocate(8 * MiB);
  allocator.deallocate(p, 0);
  s = allocator.stats();
  CHECK(s.allocated_bytes == 8 * MiB);
  CHECK(s.peak_allocated_bytes == 16 * MiB);
  allocator.reset_peak();
  CHECK(allocator.stats().peak_allocated_bytes == 8 * MiB);
  allocator.deallocate(q, 0);

  // With nothing live, empty_cache returns everything to the driver.
  CHECK(allocator.stats().reserved_bytes > 0);
  cuda::empty_cache(0);
  s = allocator.stats();
  CHECK(s.allocated_bytes == 0);
  CHECK(s.reserved_bytes == 0);
}

TEST_CASE("a reused block holds the new tensor's data") {
  cuda::empty_cache(0);
  const int64_t n = int64_t{4} << 20;
  void* first_block = nullptr;
  {
    Tensor a = Tensor::full({n}, 1.0, DType::f32, kGpu);
    first_block = a.raw_data();
  }
  Tensor b = Tensor::full({n}, 2.0, DType::f32, kGpu);
  CHECK(b.raw_data() == first_block);
  std::vector<double> values = b.to_double_vector();
  int64_t wrong = 0;
  for (double v : values) wrong += v != 2.0;
  CHECK(wrong == 0);
}

TEST_CASE("the caching allocator is thread-safe") {
  Allocator& allocator = cuda::caching_allocator(0);
  const AllocatorStats start = allocator.stats();
  constexpr int kThreads = 4, kRounds = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&allocator, t] {
      std::mt19937_64 rng(t);
      std::uniform_int_distribution<size_t> size(1, 3 << 20);
      std::vector<void*> held;
      for (int i = 0; i < kRounds; ++i) {
        held.push_back(allocator.allocate(size(rng)));
        if (held.size() > 8 || rng() % 2) {
          allocator.deallocate(held.front(), 0);
          held.erase(held.begin());
        }
      }
      for (void* p : held) allocator.deallocate(p, 0);
    });
  for (std::thread& t : threads) t.join();
  const AllocatorStats end = allocator.stats();
  CHECK(end.allocated_bytes == start.allocated_bytes);
  CHECK(end.allocations == start.allocations + kThreads * kRounds);
  CHECK(end.reserved_bytes >= end.allocated_bytes);
}

TEST_CASE("out of memory empties the cache, retries, then says how much was asked and what is free") {
  Allocator& allocator = cuda::caching_allocator(0);
  void* cached = allocator.allocate(4096);
  allocator.deallocate(cached, 0);
  const size_t huge = size_t{1} << 50;  // 1 PiB
  try {
    allocator.allocate(huge);
    FAIL("allocating 1 PiB succeeded");
  } catch (const Error& e) {
    const std::string message = e.what();
    MESSAGE("the error reads: ", message);
    CHECK(message.find("cuda:0 out of memory") != std::string::npos);
    CHECK(message.find("1125899906842624 bytes requested") != std::string::npos);
    CHECK(message.find("reserved") != std::string::npos);
    CHECK(message.find(" free of ") != std::string::npos);
  }
  const AllocatorStats s = allocator.stats();
  CHECK(s.reserved_bytes == s.allocated_bytes);  // the cache was emptied before the retry
  CHECK(cudaGetLastError() == cudaSuccess);      // and the failure left no error behind
  Tensor after = Tensor::full({1000}, 3.0, DType::f32, kGpu);
  CHECK(after.to_double_vector() == std::vector<double>(1000, 3.0));
}

// ---- copies ------------------------------------------------------------------------------------

TEST_CASE("bytes round-trip host -> device -> device -> host for every dtype") {
  std::mt19937_64 rng(1);
  const int64_t n = 1000003;  // odd, and more than one grid's worth for the poison fill
  for (DType dtype : kCopyDTypes) {
    INFO("dtype ", dtype_name(dtype));
    const size_t bytes = dtype_bytes(dtype, n);
    const Bytes data = random_bytes(bytes, rng);
    Tensor on_gpu = device_buffer(bytes), on_gpu_copy = device_buffer(bytes);
    poison(on_gpu, 0xFF);
    poison(on_gpu_copy, 0xFF);
    upload(on_gpu, data);
    cuda::copy_bytes(on_gpu_copy.raw_data(), kGpu, on_gpu.raw_data(), kGpu, bytes);
    Bytes back = download(on_gpu_copy);
    CHECK_MESSAGE(compare_bytes(data, back).empty(), compare_bytes(data, back));

    // A copy one byte short leaves the last byte alone.
    poison(on_gpu, 0xFF);
    cuda::copy_bytes(on_gpu.raw_data(), kGpu, data.data(), Device::cpu(), bytes - 1);
    back = download(on_gpu);
    CHECK(back[bytes - 1] == 0xFF);
    CHECK(std::memcmp(back.data(), data.data(), bytes - 1) == 0);
  }
}

// Counts the elements of a tensor (on any device) that differ from `expected`.
int64_t count_not_equal(const Tensor& t, double expected) {
  int64_t wrong = 0;
  for (double v : t.to_double_vector()) wrong += v != expected;
  return wrong;
}

TEST_CASE("with two GPUs, copies between them keep both streams' order, and work runs on the tensor's GPU") {
  if (cuda::device_count() < 2) {
    MESSAGE("only one GPU: copies between GPUs are not tested");
    return;
  }
  const Device first = Device::cuda(0), second = Device::cuda(1);
  cuda::set_device(0);
  std::mt19937_64 rng(2);
  const Bytes data = random_bytes(3 << 20, rng);
  Tensor on_first = device_buffer(data.size(), first);
  Tensor on_second = device_buffer(data.size(), second);
  poison(on_second, 0xFF);
  upload(on_first, data);
  cuda::copy_bytes(on_second.raw_data(), second, on_first.raw_data(), first, data.size());
  Bytes back = download(on_second);
  CHECK_MESSAGE(compare_bytes(data, back).empty(), compare_bytes(data, back));

  // Work queued on both GPUs before a copy between them: fills of the source on cuda:0, and of
  // the destination on cuda:1. A copy that did not wait for either, or a conversion on cuda:1
  // that did not wait for the copy, leaves wrong values.
  const int64_t n = int64_t{16} << 20;
  Tensor source = Tensor::empty({n}, DType::f32, first), destination = Tensor::empty({n}, DType::f32, second);
  for (int i = 0; i < 20; ++i) {
    source.fill_(i);
    destination.fill_(-1.0);
  }
  source.fill_(1.5);
  destination.copy_(source);
  Tensor halves = destination.to(DType::f16);
  CHECK(halves.device() == second);
  CHECK(count_not_equal(halves, 1.5) == 0);
  for (int i = 0; i < 20; ++i) halves.fill_(i);
  halves.fill_(-2.5);
  source.copy_(halves);  // converted on cuda:1, then copied to cuda:0
  CHECK(count_not_equal(source, -2.5) == 0);

  // Views and conversions of a tensor on cuda:1, with cuda:0 current throughout.
  Tensor t = random_tensor({33, 17, 5}, DType::f32, 3);
  Tensor t1 = t.to(first).to(second);
  CHECK(t1.device() == second);
  CHECK(host_bytes(t1) == host_bytes(t));
  CHECK(host_bytes(transpose(t1, 0, 2).contiguous()) == host_bytes(transpose(t, 0, 2).contiguous()));
  CHECK(host_bytes(t1.to(DType::bf16)) == host_bytes(t.to(DType::bf16)));
  int current = -1;
  FT_CUDA_CHECK(cudaGetDevice(&current));
  CHECK(current == 0);
  CHECK(cuda::caching_allocator(1).stats().allocated_bytes > 0);
}

// ---- conversion --------------------------------------------------------------------------------

namespace {

// Whether a C cast of v to `type` is defined (it truncates toward zero first).
bool castable(double v, DType type) {
  if (type == DType::i32) return v > -2147483649.0 && v < 2147483648.0;
  if (type == DType::u8) return v > -1.0 && v < 256.0;
  return true;
}

double quiet_nan(uint64_t sign_and_payload) {
  uint64_t bits = 0x7ff8000000000000ull | sign_and_payload;
  double v;
  std::memcpy(&v, &bits, 8);
  return v;
}

// Values where rounding is decided, as doubles, grouped by what they test.
std::vector<double> conversion_specials() {
  const double inf = std::numeric_limits<double>::infinity();
  return {0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.99999994, 254.5, 255.0, 255.75, 256.0, 1e5, -7e5, inf,
          -inf,
          // Quiet NaNs with signs and payloads (the payload's top bits survive narrowing).
          quiet_nan(0), quiet_nan(1ull << 63), quiet_nan(0x12345ull << 29), quiet_nan((1ull << 63) | 0x3ffull << 40),
          quiet_nan(1),
          // f32: largest, smallest normal, subnormals, a tie between subnormals, a tie with zero.
          3.4028234663852886e38, -3.4028234663852886e38, 3.5e38, std::ldexp(1.0, -126), std::ldexp(1.0, -127),
          std::ldexp(1.0, -149), std::ldexp(3.0, -150), std::ldexp(1.0, -150), std::ldexp(1.0, -151),
          // f64 extremes and subnormals (zero or inf in every narrower type).
          std::numeric_limits<double>::max(), std::numeric_limits<double>::denorm_min(), 1e-310,
          // f16: largest finite, just below and at the overflow threshold, subnormals and their ties.
          65504.0, 65519.99, 65520.0, -65520.0, std::ldexp(1.0, -14), std::ldexp(1.0, -14) - std::ldexp(1.0, -24),
          std::ldexp(1.0, -24), std::ldexp(1.0, -25), std::ldexp(3.0, -25), std::ldexp(5.0, -26), 6e-8,
          // Halfway cases: ties go to the even neighbour.
          1 + std::ldexp(1.0, -11), 1 + std::ldexp(3.0, -11), -(1 + std::ldexp(1.0, -11)),  // f16
          1 + std::ldexp(1.0, -8), 1 + std::ldexp(3.0, -8), 3 + std::ldexp(1.0, -7),        // bf16
          1 + std::ldexp(1.0, -24), 1 + std::ldexp(3.0, -24),                               // f32
          // f64 -> f16 rounds twice on the CPU (to f32, then to f16): this one rounds to f32's 1 + 2^-11,
          // a tie in f16 that goes down to 1; rounded once it would go up.
          1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40),
          // Integers that are ties or overflow in the float types.
          2049.0, 2051.0, 257.0, 259.0, 16777217.0, 16777219.0, 65535.0, 2147483647.0, -2147483648.0, 123456789.0,
          2147483647.99, -2147483648.99};
}

// Source values for a conversion from `src` to `dst`, as `src` bytes: the specials and random
// values over a wide range, rounded to `src`. Integer types get only the values a C cast can
// give them: out of range, the CPU reference is undefined behaviour.
Bytes conversion_inputs(DType src, DType dst, std::mt19937_64& rng) {
  std::vector<double> candidates = conversion_specials();
  std::uniform_real_distribution<double> unit(0, 1);
  std::uniform_int_distribution<int> exponent(-160, 160);
  std::uniform_int_distribution<int64_t> any_int(INT32_MIN, INT32_MAX);
  for (int i = 0; i < 2000; ++i) {
    const double sign = rng() % 2 ? 1 : -1;
    candidates.push_back(sign * std::ldexp(1 + unit(rng), exponent(rng)));  // all magnitudes, 52 random bits
    candidates.push_back(sign * unit(rng) * 70000);                         // around f16's range
    candidates.push_back(unit(rng) * 301 - 1);                              // around u8's range
    candidates.push_back(static_cast<double>(any_int(rng)));
  }
  std::vector<double> kept;
  for (double v : candidates)
    if (castable(v, src)) kept.push_back(v);
  Bytes as_src(dtype_bytes(src, kept.size()));
  kernels::convert_cpu(as_src.data(), src, kept.data(), DType::f64, kept.size());
  std::vector<double> rounded(kept.size());
  kernels::convert_cpu(rounded.data(), DType::f64, as_src.data(), src, kept.size());

  const int width = dtype_bits(src) / 8;
  Bytes out;
  for (size_t i = 0; i < kept.size(); ++i)
    if (castable(rounded[i], dst)) out.insert(out.end(), &as_src[i * width], &as_src[(i + 1) * width]);
  // NaN payloads a double cannot carry into the narrower types (quiet, as the CPU makes them).
  if (is_floating(dst)) {
    std::vector<uint64_t> nans;
    if (src == DType::f32) nans = {0x7fc00001, 0xffc12345, 0x7fffffff};
    if (src == DType::f16) nans = {0x7e01, 0xfe3f, 0x7fff};
    if (src == DType::bf16) nans = {0x7fc1, 0xffff, 0x7fd5};
    for (uint64_t bits : nans)
      out.insert(out.end(), reinterpret_cast<uint8_t*>(&bits), reinterpret_cast<uint8_t*>(&bits) + width);
  }
  return out;
}

}  // namespace

TEST_CASE("convert on the GPU equals convert_cpu bit for bit, for every dtype pair") {
  std::mt19937_64 rng(4);
  int pairs = 0;
  int64_t elements = 0;
  for (DType src : kValueDTypes) {
    for (DType dst : kValueDTypes) {
      INFO(dtype_name(src), " -> ", dtype_name(dst));
      const Bytes input = conversion_inputs(src, dst, rng);
      const int64_t n = static_cast<int64_t>(input.size()) / (dtype_bits(src) / 8);
      REQUIRE(n > 100);
      Bytes expected(dtype_bytes(dst, n));
      kernels::convert_cpu(expected.data(), dst, input.data(), src, n);

      Tensor src_gpu = device_buffer(input.size());
      Tensor dst_gpu = device_buffer(expected.size());
      upload(src_gpu, input);
      for (uint8_t poison_byte : {0xFF, 0x00}) {  // two poisons: an unwritten element fails one of them
        poison(dst_gpu, poison_byte);
        cuda::convert(dst_gpu.raw_data(), dst, src_gpu.raw_data(), src, n, 0);
        const std::string diff = compare_bits(expected, download(dst_gpu), dst, &input, src);
        CHECK_MESSAGE(diff.empty(), dtype_name(src), " -> ", dtype_name(dst), ": ", diff);
      }
      ++pairs;
      elements += n;
    }
  }
  MESSAGE("compared ", pairs, " dtype pairs, ", elements, " elements");
}

TEST_CASE("convert of a large array covers every element") {
  const int64_t n = (int64_t{3} << 20) + 5;  // more than the kernel's grid covers in one pass
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  Tensor host = Tensor::from_blob(values.data(), {n}, DType::f32, Device::cpu());
  Tensor on_gpu = host.to(kGpu);
  CHECK(host_bytes(on_gpu.to(DType::bf16)) == host_bytes(host.to(DType::bf16)));
  CHECK(host_bytes(on_gpu.to(DType::f64)) == host_bytes(host.to(DType::f64)));
}

// ---- strided gathers and fills -----------------------------------------------------------------

TEST_CASE("gathering strided views on the GPU equals the CPU gather") {
  for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::u8}) {
    INFO("dtype ", dtype_name(dtype));
    Tensor cpu4 = random_tensor({3, 4, 5, 6}, dtype, 6);
    Tensor gpu4 = cpu4.to(kGpu);
    Tensor cpu3 = reshape(cpu4, {12, 5, 6}), gpu3 = reshape(gpu4, {12, 5, 6});
    const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&, const Tensor&)>>> views = {
        {"4-D transpose(1, 3)", [](const Tensor& t4, const Tensor&) { return transpose(t4, 1, 3); }},
        {"4-D slice(2, 1, 4)", [](const Tensor& t4, const Tensor&) { return slice(t4, 2, 1, 4); }},
        {"4-D transpose(0, 2) then slice(3, 2, 5)",
         [](const Tensor& t4, const Tensor&) { return slice(transpose(t4, 0, 2), 3, 2, 5); }},
        {"3-D transpose(0, 2)", [](const Tensor&, const Tensor& t3) { return transpose(t3, 0, 2); }},
        {"3-D slice(0, 3, 9) then transpose(1, 2)",
         [](const Tensor&, const Tensor& t3) { return transpose(slice(t3, 0, 3, 9), 1, 2); }},
        {"3-D broadcast (stride 0) at an offset",
         [](const Tensor&, const Tensor& t3) {
           return t3.as_strided({4, 5, 6}, {0, 6, 1}, 30);
         }},
    };
    for (const auto& [name, view] : views) {
      INFO("view: ", name);
      Tensor on_cpu = view(cpu4, cpu3), on_gpu = view(gpu4, gpu3);
      REQUIRE(!on_gpu.is_contiguous());
      Tensor gathered = on_gpu.contiguous();
      CHECK(gathered.device() == kGpu);
      CHECK(gathered.is_contiguous());
      const Bytes expected = host_bytes(on_cpu.contiguous());
      CHECK_MESSAGE(compare_bits(expected, host_bytes(gathered), dtype).empty(),
                    compare_bits(expected, host_bytes(gathered), dtype));
    }
  }
}

TEST_CASE("gathers of attention head views equal the CPU gather, wide elements or not") {
  // GPT-2's q, k, v: [B, T, 3C] sliced, split into heads and transposed; an inner dimension of
  // 64 bf16 values moves as 16-byte elements, of 6 as 4-byte ones, and a start 1 element past an
  // aligned address as single elements.
  const int64_t b = 2, t = 37, h = 3;
  for (int64_t d : {64, 6}) {
    for (int64_t start : {0, 1}) {
      INFO("head dim ", d, ", start ", start);
      Tensor cpu = random_tensor({b * t * 3 * h * d + 1}, DType::bf16, 9);
      Tensor gpu = cpu.to(kGpu);
      for (int64_t part = 0; part < 3; ++part) {
        auto view = [&](const Tensor& x) {
          const Tensor packed = x.as_strided({b, t, 3 * h * d}, {t * 3 * h * d, 3 * h * d, 1}, start);
          return transpose(reshape(slice(packed, 2, part * h * d, (part + 1) * h * d), {b, t, h, d}), 1, 2);
        };
        const Bytes expected = host_bytes(view(cpu).contiguous());
        const Bytes gathered = host_bytes(view(gpu).contiguous());
        CHECK_MESSAGE(compare_bits(expected, gathered, DType::bf16).empty(),
                      compare_bits(expected, gathered, DType::bf16));
      }
      // And back: heads-last [B, T, H, D] from [B, H, T, D].
      Tensor heads = cpu.as_strided({b, h, t, d}, {h * t * d, t * d, d, 1}, start);
      Tensor heads_gpu = gpu.as_strided({b, h, t, d}, {h * t * d, t * d, d, 1}, start);
      CHECK(host_bytes(transpose(heads_gpu, 1, 2).contiguous()) == host_bytes(transpose(heads, 1, 2).contiguous()));
    }
  }
}

TEST_CASE("gather_strided handles 8 dimensions and more elements than one grid") {
  // 8 dims, strides permuted and padded.
  const Shape shape = {2, 3, 1, 2, 3, 2, 1, 4};
  const Shape strides = {1, 2 * 500, 7, 6 * 500, 2, 12 * 500, 3, 24 * 500};
  std::mt19937_64 rng(7);
  const Bytes source = random_bytes(4 * 96 * 500, rng);
  Tensor src = device_buffer(source.size());
  upload(src, source);
  Tensor dst = device_buffer(4 * shape_numel(shape));
  poison(dst, 0xFF);
  cuda::gather_strided(dst.raw_data(), src.raw_data(), 4, shape, strides, 0);
  Bytes expected(dst.nbytes());
  kernels::gather_strided_cpu(expected.data(), source.data(), 4, shape, strides);
  CHECK_MESSAGE(compare_bits(expected, download(dst), DType::f32).empty(),
                compare_bits(expected, download(dst), DType::f32));

  // A transposed [1100, 1000] matrix: 1.1 M elements, more than the grid covers in one pass.
  Tensor big = random_tensor({1100, 1000}, DType::f32, 8);
  CHECK(host_bytes(transpose(big.to(kGpu), 0, 1).contiguous()) == host_bytes(transpose(big, 0, 1).contiguous()));
}

TEST_CASE("fill writes every element with the value rounded as fill_cpu rounds it") {
  const int64_t n = (int64_t{3} << 20) + 7;
  const std::vector<std::pair<DType, std::vector<double>>> cases = {
      {DType::f32, {1.5, -2.75, 0.1, 1e-40, NAN, -INFINITY}},
      {DType::f64, {0.1, -1e-310, INFINITY}},
      {DType::f16, {0.1, 65504, 65520, 1e-7, -NAN}},
      {DType::bf16, {0.1, 1 + std::ldexp(1.0, -8), 3e38, NAN}},
      {DType::i32, {-7, 123456789, 2.9, -2.9}},
      {DType::u8, {200, 1, 7.5}},
  };
  for (const auto& [dtype, values] : cases) {
    Tensor t = Tensor::empty({n}, dtype, kGpu);
    for (double value : values) {
      INFO(dtype_name(dtype), " filled with ", value);
      poison(t, 0xFF);
      cuda::fill(t.raw_data(), dtype, n, value, 0);
      Bytes expected(t.nbytes());
      kernels::fill_cpu(expected.data(), dtype, n, value);
      CHECK_MESSAGE(compare_bits(expected, host_bytes(t), dtype).empty(), compare_bits(expected, host_bytes(t), dtype));
    }
  }
}

// ---- the Tensor API ----------------------------------------------------------------------------

TEST_CASE("Tensor moves between devices and dtypes through to, clone, contiguous and copy_") {
  // Values in (0, 250): every dtype holds them (a C cast of a negative float to u8 is undefined).
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> positive(0.25, 250);
  std::vector<double> values(5 * 7 * 3);
  for (double& v : values) v = positive(rng);
  Tensor x = Tensor::from_vector(values, {5, 7, 3}, DType::f32);
  Tensor g = x.to(kGpu);
  CHECK(g.device() == kGpu);
  CHECK(g.shape() == x.shape());
  CHECK(g.to(kGpu).impl() == g.impl());  // already there: the same tensor
  CHECK(host_bytes(g) == host_bytes(x));
  CHECK(g.to(Device::cpu()).device() == Device::cpu());

  Tensor c = g.clone();
  CHECK(c.device() == kGpu);
  CHECK(c.storage() != g.storage());
  CHECK(host_bytes(c) == host_bytes(x));
  CHECK(g.contiguous().impl() == g.impl());

  Tensor gt = transpose(g, 0, 2);
  Tensor gtc = gt.contiguous();
  CHECK(gtc.device() == kGpu);
  CHECK(host_bytes(gtc) == host_bytes(transpose(x, 0, 2).contiguous()));
  CHECK(gt.to_double_vector() == transpose(x, 0, 2).to_double_vector());

  for (DType dtype : kValueDTypes) {
    INFO("dtype ", dtype_name(dtype));
    Tensor converted = g.to(dtype);
    CHECK(converted.device() == kGpu);
    CHECK(converted.dtype() == dtype);
    CHECK(host_bytes(converted) == host_bytes(x.to(dtype)));
    CHECK(host_bytes(gt.to(dtype)) == host_bytes(transpose(x, 0, 2).to(dtype).contiguous()));
  }

  // copy_ across devices and dtypes, from strided sources, into existing tensors.
  Tensor strided_cpu = slice(transpose(x, 0, 1), 2, 1, 2);  // [7, 5, 1]
  Tensor into_gpu = Tensor::full({7, 5, 1}, NAN, DType::f64, kGpu);
  into_gpu.copy_(strided_cpu);
  CHECK(host_bytes(into_gpu) == host_bytes(strided_cpu.to(DType::f64)));
  Tensor into_cpu = Tensor::full({7, 5, 3}, NAN, DType::bf16);
  into_cpu.copy_(transpose(g, 0, 1));
  CHECK(host_bytes(into_cpu) == host_bytes(transpose(x, 0, 1).to(DType::bf16)));

  // Factories and fills on the GPU.
  CHECK(Tensor::zeros({3, 4}, DType::f16, kGpu).to_double_vector() == std::vector<double>(12, 0.0));
  CHECK(Tensor::full({2, 2}, -1.25, DType::bf16, kGpu).to_double_vector() == std::vector<double>(4, -1.25));
  CHECK(Tensor::from_vector({1, 2, 3}, {3}, DType::f64, kGpu).to_double_vector() == std::vector<double>{1, 2, 3});
  CHECK(Tensor::from_ints({7, -8}, {2}, kGpu).to_int_vector() == std::vector<int32_t>{7, -8});
  Tensor filled = Tensor::empty({4}, DType::i32, kGpu);
  filled.fill_(42);
  CHECK(filled.to_int_vector() == std::vector<int32_t>(4, 42));
  filled.zero_();
  CHECK(filled.to_int_vector() == std::vector<int32_t>(4, 0));
  CHECK(Tensor::full({1}, 2.5, DType::f32, kGpu).item() == 2.5);
  CHECK(Tensor::empty({0, 3}, DType::f32, kGpu).to(Device::cpu()).numel() == 0);
}

// ---- cuBLAS and cuBLASLt through the context ---------------------------------------------------

namespace {

// Row-major C[m, n] = A[m, k] B[k, n] on random matrices, with the CPU's answer. cuBLAS is
// column-major: it computes the same bytes as C^T = B^T A^T, with B first.
struct GemmProblem {
  static constexpr int m = 64, n = 48, k = 32;
  Tensor a = random_tensor({m, k}, DType::f32, 10);
  Tensor b = random_tensor({k, n}, DType::f32, 11);
  Tensor a_gpu = a.to(kGpu), b_gpu = b.to(kGpu);
  Tensor c_gpu = Tensor::full({m, n}, NAN, DType::f32, kGpu);

  double relative_error_to_cpu() const {
    Tensor expected = Tensor::empty({m, n}, DType::f32);
    kernels::gemm_cpu<float>({m, n, k, false, false, k, n, n}, a.data<float>(), b.data<float>(), expected.data<float>(),
                             false);
    return testing::relative_error(c_gpu, expected);
  }
};

}  // namespace

TEST_CASE("cuBLAS sgemm through the context's handle matches gemm_cpu") {
  const cuda::Context& ctx = cuda::context(0);
  GemmProblem p;
  cublasMath_t saved;
  FT_CUBLAS_CHECK(cublasGetMathMode(ctx.cublas, &saved));
  FT_CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_PEDANTIC_MATH));  // full fp32, no TF32
  const float one = 1, zero = 0;
  FT_CUBLAS_CHECK(cublasSgemm(ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, p.n, p.m, p.k, &one, p.b_gpu.data<float>(), p.n,
                              p.a_gpu.data<float>(), p.k, &zero, p.c_gpu.data<float>(), p.n));
  FT_CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, saved));
  const double error = p.relative_error_to_cpu();  // reads C back, after the stream has finished
  MESSAGE("cublasSgemm 64x48x32 relative error vs gemm_cpu: ", error);
  CHECK(error < 1e-5);
}

TEST_CASE("cuBLASLt matmul through the context's handle, stream and workspace matches gemm_cpu") {
  const cuda::Context& ctx = cuda::context(0);
  GemmProblem p;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t b_layout, a_layout, c_layout;
  cublasLtMatmulPreference_t preference;
  FT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F_PEDANTIC, CUDA_R_32F));
  FT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_layout, CUDA_R_32F, p.n, p.k, p.n));
  FT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_layout, CUDA_R_32F, p.k, p.m, p.k));
  FT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c_layout, CUDA_R_32F, p.n, p.m, p.n));
  FT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  FT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &ctx.workspace_bytes, sizeof ctx.workspace_bytes));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  FT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.cublaslt, op, b_layout, a_layout, c_layout, c_layout, preference,
                                                 1, &heuristic, &found));
  REQUIRE(found == 1);
  const float one = 1, zero = 0;
  FT_CUBLAS_CHECK(cublasLtMatmul(ctx.cublaslt, op, &one, p.b_gpu.data<float>(), b_layout, p.a_gpu.data<float>(),
                                 a_layout, &zero, p.c_gpu.data<float>(), c_layout, p.c_gpu.data<float>(), c_layout,
                                 &heuristic.algo, ctx.workspace, ctx.workspace_bytes, ctx.stream));
  FT_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(preference));
  FT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(c_layout));
  FT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(a_layout));
  FT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(b_layout));
  FT_CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
  const double error = p.relative_error_to_cpu();
  MESSAGE("cublasLtMatmul 64x48x32 relative error vs gemm_cpu: ", error);
  CHECK(error < 1e-5);
}
