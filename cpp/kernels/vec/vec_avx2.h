// 8 floats in a ymm register (AVX2 + FMA). Included only by translation units compiled with
// -mavx2 -mfma -mf16c; everything is inline in an anonymous-namespace-using unit.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace cpuformer::avx2 {
namespace {  // internal linkage: every kernel instantiated on Vec stays private to its ISA unit

struct Vec {
  using Reg = __m256;
  using TailMask = __m256i;
  using CmpMask = __m256;
  static constexpr int kWidth = 8;

  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  // The float at base + index · S bytes, broadcast, with exactly that addressing mode (see RowMajorA in
  // impl/gemm_microkernel.h: the compiler, left to itself, gives every row its own pointer).
  template <int S>
  static Reg broadcast_indexed(const float* base, std::int64_t index) {
    Reg r;
    asm("vbroadcastss (%1,%2,%c3), %0" : "=x"(r) : "r"(base), "r"(index), "i"(S));
    return r;
  }
  static Reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static TailMask tail_mask(int n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
  }
  static Reg load_mask(const float* p, TailMask m) { return _mm256_maskload_ps(p, m); }
  static void store_mask(float* p, Reg v, TailMask m) { _mm256_maskstore_ps(p, m, v); }
  static Reg load_tail(const float* p, int n, float fill) {
    const TailMask m = tail_mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_tail(float* p, Reg v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }

  // Lanes [0, n) of v, zeros elsewhere.
  static Reg keep_head(Reg v, int n) { return _mm256_and_ps(v, _mm256_castsi256_ps(tail_mask(n))); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  // a / b from the reciprocal estimate refined by one Newton step on the quotient (within ~1 ulp of the
  // division; b finite and non-zero): a division has ~10× the throughput cost of the four operations.
  static Reg div_fast(Reg a, Reg b) {
    const Reg r = _mm256_rcp_ps(b);
    const Reg y = _mm256_mul_ps(a, r);
    return _mm256_fmadd_ps(_mm256_fnmadd_ps(b, y, a), r, y);
  }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm256_fnmadd_ps(a, b, c); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm256_min_ps(a, b); }
  static Reg abs(Reg a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static Reg round(Reg a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Reg pow2i(Reg n) {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(bits);
  }
  static CmpMask lt(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static CmpMask gt(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static Reg select(CmpMask m, Reg if_true, Reg if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
  // In-register 8 × 8 transpose: r[i] lane j becomes r[j] lane i.
  static void transpose(Reg (&r)[kWidth]) {
    Reg t[8], s[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // s[4h + j], 128-bit lane l: column 4l + j of rows 4h .. 4h + 3.
    for (int h = 0; h < 2; ++h) {
      s[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
      s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
      s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
      s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
      r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
    }
  }
  static float hsum(Reg a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(Reg a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace
}  // namespace cpuformer::avx2
