// Transcendental functions written once over a Vec trait (see vec/*.h), so every ISA computes the same
// polynomials. Accuracy (float32, measured against float64 in tests): exp within 2 ulp, erf within
// ~7 ulp near ±1 (absolute error < 5e-7), which makes GELU's relative error < 1e-6 of its scale.
#pragma once

namespace cpuformer::impl {

// exp(x): Cody–Waite range reduction x = n·ln2 + r, a degree-6 polynomial for e^r (Cephes expf
// coefficients), then scaling by 2^n built in the exponent field. Below −87.34 gives exactly 0
// (softmax needs exp(−inf) == 0); above 88.7228 (float overflow) gives +inf; NaN propagates.
template <class V>
inline typename V::Reg exp(typename V::Reg x) {
  using R = typename V::Reg;
  const R lo = V::set1(-87.33654475f), hi = V::set1(88.72283935546875f);
  // Lanes below lo (−inf: masked keys, the dead lanes of a tail) are computed as exp(0) and zeroed at
  // the end. Clamped to lo instead, they made p · 2^−126 a denormal, and every denormal result costs a
  // microcode assist of ~150 cycles: half the time of an attention row over 37 keys went there.
  const auto below = V::lt(x, lo);
  const R xc = V::select(below, V::zero(), V::min(hi, x));  // min's operand order keeps NaN (see Vec::min)
  // n ≤ 127 keeps 2^n a normal float; just below overflow r then reaches ln 2, still within the
  // polynomial's accurate range.
  const R n = V::min(V::set1(127.0f), V::round(V::mul(xc, V::set1(1.44269504088896341f))));
  R r = V::fnmadd(n, V::set1(0.693359375f), xc);
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  R p = V::set1(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set1(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set1(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set1(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set1(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set1(5.0000001201e-1f));
  p = V::fmadd(p, V::mul(r, r), V::add(r, V::set1(1.0f)));
  R out = V::mul(p, V::pow2i(n));
  out = V::select(below, V::zero(), out);
  out = V::select(V::gt(x, V::set1(88.72283935546875f)), V::set1(__builtin_inff()), out);
  return out;
}

// erf(x) = x·P(x²)/Q(x²) on x clamped to ±3.8325 (where erf rounds to ±1 in float32); the rational
// approximation used by XLA and Eigen for float32.
template <class V>
inline typename V::Reg erf(typename V::Reg x) {
  using R = typename V::Reg;
  const R xc = V::min(V::set1(3.832506856900711f), V::max(V::set1(-3.832506856900711f), x));
  const R x2 = V::mul(xc, xc);
  R p = V::set1(-2.72614225801306e-10f);
  p = V::fmadd(p, x2, V::set1(2.77068142495902e-08f));
  p = V::fmadd(p, x2, V::set1(-2.10102402082508e-06f));
  p = V::fmadd(p, x2, V::set1(-5.69250639462346e-05f));
  p = V::fmadd(p, x2, V::set1(-7.34990630326855e-04f));
  p = V::fmadd(p, x2, V::set1(-2.95459980854025e-03f));
  p = V::fmadd(p, x2, V::set1(-1.60960333262415e-02f));
  R q = V::set1(-1.45660718464996e-05f);
  q = V::fmadd(q, x2, V::set1(-2.13374055278905e-04f));
  q = V::fmadd(q, x2, V::set1(-1.68282697438203e-03f));
  q = V::fmadd(q, x2, V::set1(-7.37332916720468e-03f));
  q = V::fmadd(q, x2, V::set1(-1.42647390514189e-02f));
  // Beyond the clamp erf is ±1 exactly (the rational form leaves 1 − 2^−25 there, which would make
  // 1 + erf(x) and GELU of large negative x tiny but non-zero).
  const R e = V::div_fast(V::mul(xc, p), q);  // q ≤ −0.0142 never approaches 0
  const R big = V::set1(3.832506856900711f);
  return V::select(V::gt(x, big), V::set1(1.0f), V::select(V::lt(x, V::sub(V::zero(), big)), V::set1(-1.0f), e));
}

// 1 / (1 + exp(−x)); exact 0 and 1 in the far tails.
template <class V>
inline typename V::Reg sigmoid(typename V::Reg x) {
  const auto one = V::set1(1.0f);
  return V::div(one, V::add(one, exp<V>(V::sub(V::zero(), x))));
}

template <class V>
inline typename V::Reg relu(typename V::Reg x) {
  // max(x, 0) with x second so a NaN input stays NaN.
  return V::max(V::zero(), x);
}

// GELU, exact form: x · Φ(x) = 0.5 · x · (1 + erf(x / √2)).
template <class V>
inline typename V::Reg gelu_erf(typename V::Reg x) {
  const auto e = erf<V>(V::mul(x, V::set1(0.70710678118654752f)));
  return V::mul(V::mul(V::set1(0.5f), x), V::add(V::set1(1.0f), e));
}

// GELU, tanh form: 0.5 · x · (1 + tanh(u)) with u = √(2/π)(x + 0.044715 x³), computed as x · σ(2u),
// which is the same function without the cancellation in 1 + tanh(u) for negative u.
template <class V>
inline typename V::Reg gelu_tanh(typename V::Reg x) {
  const auto x3 = V::mul(V::mul(x, x), x);
  const auto u = V::mul(V::set1(0.7978845608028654f), V::fmadd(V::set1(0.044715f), x3, x));
  return V::mul(x, sigmoid<V>(V::add(u, u)));
}

// SiLU (swish): x · σ(x).
template <class V>
inline typename V::Reg silu(typename V::Reg x) {
  return V::mul(x, sigmoid<V>(x));
}

}  // namespace cpuformer::impl
