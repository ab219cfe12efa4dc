// The row kernels of fused attention's online softmax (Milakov & Gimelshein 2018, "Online normalizer
// calculation for softmax"; the FlashAttention loop), written once over a Vec trait. A query row keeps a
// running maximum m and a running sum l of exp(score − m) over the key tiles seen so far; each new tile
// raises m, and the caller rescales its output accumulator by the returned factor before adding the
// tile's P·V. Lanes are assigned from the tile's first key and reductions use the Vec trait's fixed
// horizontal order, so a row's result depends only on its scores, its valid-key count and the tile
// boundaries, never on how many masked keys trail a tile or which other rows share the call.
#pragma once

#include "core/dims.h"
#include "kernels/impl/vec_math.h"
#include "kernels/kernel_table.h"

namespace cpuformer::impl {

template <class V>
inline void zero_fill(float* x, Index n) {
  constexpr int W = V::kWidth;
  Index j = 0;
  for (; j + W <= n; j += W) V::storeu(x + j, V::zero());
  if (j < n) V::store_tail(x + j, V::zero(), static_cast<int>(n - j));
}

// See KernelTable::attention_softmax_tile for the contract.
template <class V>
float attention_softmax_tile(float* s, Index n, Index n_valid, float scale, const float* mask, float* running_max,
                             float* running_sum) {
  using R = typename V::Reg;
  constexpr int W = V::kWidth;
  const float neg_inf = -__builtin_inff();
  const Index nv = n_valid < 0 ? 0 : n_valid > n ? n : n_valid;
  const R vscale = V::set1(scale);
  // Pass 1: x = scale · s + mask, stored in place, and the tile's maximum. x is formed with one explicit
  // FMA (or a lone multiply without a mask), never as a multiply feeding an add that the compiler may
  // or may not contract (GCC's default for C++ is -ffp-contract=fast): with a zero mask, x must round
  // exactly as scale · s does without one, so that padding given as a mask and padding given as key
  // lengths produce the same bits. Pass 2 then only subtracts, so the max element gets exp(0) = 1.
  R vmax = V::set1(neg_inf);
  Index j = 0;
  for (; j + W <= nv; j += W) {
    const R x = mask ? V::fmadd(V::loadu(s + j), vscale, V::loadu(mask + j)) : V::mul(V::loadu(s + j), vscale);
    V::storeu(s + j, x);
    vmax = V::max(vmax, x);
  }
  // The partial last vector stays in a register for pass 2 (reloading it right after a masked store
  // would defeat store-to-load forwarding). Its dead lanes hold −inf: x = scale · 0 + (−inf).
  const int rest = static_cast<int>(nv - j);
  R x_tail = vmax;
  if (rest > 0) {
    static constexpr float kZeros[16] = {};
    static_assert(W <= 16, "kZeros covers one register");
    const R sv = V::load_tail(s + j, rest, 0.0f);
    x_tail = V::fmadd(sv, vscale, mask ? V::load_tail(mask + j, rest, neg_inf) : V::load_tail(kZeros, rest, neg_inf));
    V::store_tail(s + j, x_tail, rest);
    vmax = V::max(vmax, x_tail);
  }
  const float m_old = *running_max;
  const float tile_max = V::hmax(vmax);
  // A NaN score may or may not survive the vector max (maxps returns its second operand on NaN), but a
  // NaN max must win here, or a row of NaN scores would look fully masked and give zeros.
  float m_new = tile_max > m_old || tile_max != tile_max ? tile_max : m_old;
  if (m_new == neg_inf) {  // maxps may have dropped NaN lanes: a tile of NaN scores must not look masked
    for (Index i = 0; i < nv; ++i)
      if (s[i] != s[i]) m_new = s[i];
  }
  if (m_new == neg_inf) {  // nothing valid yet: P = 0, state unchanged (and no exp(−inf − (−inf)) = NaN)
    zero_fill<V>(s, n);
    return 1.0f;
  }
  // alpha = exp(m_old − m_new) with the tile's polynomial; its two common values need no exp
  // (exp(−inf) = 0 on a row's first valid tile, exp(0) = 1 when the max stands).
  float alpha = 0.0f;
  if (m_old == m_new) {
    alpha = 1.0f;
  } else if (m_old != neg_inf) {
    float lanes[W];
    V::storeu(lanes, exp<V>(V::set1(m_old - m_new)));
    alpha = lanes[0];
  }
  // Pass 2: P = exp(x − m_new) and its sum.
  const R vm = V::set1(m_new);
  R vsum = V::zero();
  for (j = 0; j + W <= nv; j += W) {
    const R p = exp<V>(V::sub(V::loadu(s + j), vm));
    V::storeu(s + j, p);
    vsum = V::add(vsum, p);
  }
  if (rest > 0) {
    const R p = exp<V>(V::sub(x_tail, vm));  // exp(−inf) = 0 in the dead lanes
    V::store_tail(s + j, p, rest);
    vsum = V::add(vsum, p);
  }
  zero_fill<V>(s + nv, n - nv);
  *running_max = m_new;
  *running_sum = *running_sum * alpha + V::hsum(vsum);
  return alpha;
}

// y = x · factor over n floats; y may alias x.
template <class V>
void scale_row(const float* x, float factor, float* y, Index n) {
  constexpr int W = V::kWidth;
  const auto f = V::set1(factor);
  Index j = 0;
  for (; j + W <= n; j += W) V::storeu(y + j, V::mul(V::loadu(x + j), f));
  if (j < n) {
    const int rest = static_cast<int>(n - j);
    V::store_tail(y + j, V::mul(V::load_tail(x + j, rest, 0.0f), f), rest);
  }
}

}  // namespace cpuformer::impl
