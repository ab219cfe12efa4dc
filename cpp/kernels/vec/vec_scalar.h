// The portable "vector" of one float: the scalar path runs the same generic kernels as the SIMD paths,
// so every ISA computes the same formulas in the same order (results differ only by FMA contraction).
// Compiles on any architecture; no intrinsics.
#pragma once

#include <cstdint>
#include <cstring>

namespace cpuformer::scalar {
namespace {  // internal linkage: every kernel instantiated on Vec stays private to its ISA unit

struct Vec {
  using Reg = float;
  using TailMask = bool;  // lane 0 active?
  using CmpMask = bool;
  static constexpr int kWidth = 1;

  static Reg zero() { return 0.0f; }
  static Reg set1(float x) { return x; }
  // The float at base + index · S bytes (see RowMajorA in impl/gemm_microkernel.h).
  template <int S>
  static Reg broadcast_indexed(const float* base, std::int64_t index) {
    return *reinterpret_cast<const float*>(reinterpret_cast<const char*>(base) + index * S);
  }
  static Reg loadu(const float* p) { return *p; }
  static void storeu(float* p, Reg v) { *p = v; }
  static TailMask tail_mask(int n) { return n > 0; }
  static Reg load_mask(const float* p, TailMask m) { return m ? *p : 0.0f; }
  static void store_mask(float* p, Reg v, TailMask m) {
    if (m) *p = v;
  }
  static Reg load_tail(const float* p, int n, float fill) { return n > 0 ? *p : fill; }
  static void store_tail(float* p, Reg v, int n) {
    if (n > 0) *p = v;
  }

  static void transpose(Reg (&)[kWidth]) {}  // a 1 × 1 block is its own transpose

  // Lanes [0, n) of v, zeros elsewhere.
  static Reg keep_head(Reg v, int n) { return n > 0 ? v : 0.0f; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg sub(Reg a, Reg b) { return a - b; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg div(Reg a, Reg b) { return a / b; }
  static Reg div_fast(Reg a, Reg b) { return a / b; }
  static Reg fmadd(Reg a, Reg b, Reg c) { return a * b + c; }  // a·b + c
  static Reg fnmadd(Reg a, Reg b, Reg c) { return c - a * b; }  // c − a·b
  // max/min return the second operand when either is NaN, as x86 maxps/minps do, so that clamping
  // with max(lo, x) lets a NaN in x through on every path.
  static Reg max(Reg a, Reg b) { return a > b ? a : b; }
  static Reg min(Reg a, Reg b) { return a < b ? a : b; }
  static Reg abs(Reg a) { return __builtin_fabsf(a); }
  static Reg round(Reg a) { return __builtin_nearbyintf(a); }
  // 2^n for an integral n in [-126, 127].
  static Reg pow2i(Reg n) {
    const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
  }
  static CmpMask lt(Reg a, Reg b) { return a < b; }
  static CmpMask gt(Reg a, Reg b) { return a > b; }
  static Reg select(CmpMask m, Reg if_true, Reg if_false) { return m ? if_true : if_false; }
  static float hsum(Reg a) { return a; }
  static float hmax(Reg a) { return a; }
};

}  // namespace
}  // namespace cpuformer::scalar
