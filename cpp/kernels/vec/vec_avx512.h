// 16 floats in a zmm register (AVX-512 F/DQ/BW/VL). Included only by translation units compiled with
// the AVX-512 flags. Masked loads and stores make edge tiles as cheap as full ones.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace cpuformer::avx512 {
namespace {  // internal linkage: every kernel instantiated on Vec stays private to its ISA unit

struct Vec {
  using Reg = __m512;
  using TailMask = __mmask16;
  using CmpMask = __mmask16;
  static constexpr int kWidth = 16;

  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  // The float at base + index · S bytes, broadcast, with exactly that addressing mode (see RowMajorA in
  // impl/gemm_microkernel.h: the compiler, left to itself, gives every row its own pointer).
  template <int S>
  static Reg broadcast_indexed(const float* base, std::int64_t index) {
    Reg r;
    asm("vbroadcastss (%1,%2,%c3), %0" : "=v"(r) : "r"(base), "r"(index), "i"(S));
    return r;
  }
  static Reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static TailMask tail_mask(int n) {
    return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? static_cast<__mmask16>(0)
                                                             : static_cast<__mmask16>((1u << n) - 1u);
  }
  static Reg load_mask(const float* p, TailMask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store_mask(float* p, Reg v, TailMask m) { _mm512_mask_storeu_ps(p, m, v); }
  static Reg load_tail(const float* p, int n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p);
  }
  static void store_tail(float* p, Reg v, int n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }

  // Lanes [0, n) of v, zeros elsewhere.
  static Reg keep_head(Reg v, int n) { return _mm512_maskz_mov_ps(tail_mask(n), v); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  // a / b from the reciprocal estimate refined by one Newton step on the quotient (within ~1 ulp of the
  // division; b finite and non-zero): a division has ~10× the throughput cost of the four operations.
  static Reg div_fast(Reg a, Reg b) {
    const Reg r = _mm512_rcp14_ps(b);
    const Reg y = _mm512_mul_ps(a, r);
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(b, y, a), r, y);
  }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm512_fnmadd_ps(a, b, c); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm512_min_ps(a, b); }
  static Reg abs(Reg a) { return _mm512_abs_ps(a); }
  static Reg round(Reg a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Reg pow2i(Reg n) {
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(bits);
  }
  static CmpMask lt(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static CmpMask gt(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static Reg select(CmpMask m, Reg if_true, Reg if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
  // In-register 16 × 16 transpose: r[i] lane j becomes r[j] lane i (unpack 32-bit, unpack 64-bit, then
  // two rounds of 128-bit lane shuffles).
  static void transpose(Reg (&r)[kWidth]) {
    Reg t[16], u[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + j], 128-bit lane l: column 4l + j of rows 4g .. 4g + 3.
    for (int g = 0; g < 4; ++g) {
      const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
      u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; ++j) {
      const Reg even_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), odd_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
      const Reg even_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
      const Reg odd_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
      r[j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xDD);
      r[4 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
      r[12 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xDD);
    }
  }
  static float hsum(Reg a) {
    // Fixed pairwise order (not _mm512_reduce_add_ps, whose order is the compiler's choice).
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(Reg a) {
    __m256 s8 = _mm256_max_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace
}  // namespace cpuformer::avx512
