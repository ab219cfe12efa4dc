// Row-wise kernels (softmax, layer norm, bias + activation) written once over a Vec trait. Each walks a
// contiguous row with full vectors and one masked tail; reductions use one accumulator vector and a
// fixed horizontal order, so a row's result depends only on the row (not on the batch or threads).
#pragma once


#include "core/dims.h"
#include "kernels/impl/vec_math.h"
#include "kernels/kernel_table.h"

namespace cpuformer::impl {

// Scalar scan for the rare rows whose vector max came out −inf (templated on the ISA's Vec, like
// everything here, so each ISA unit keeps its own private copy).
template <class V>
bool has_nan(const float* x, Index n) {
  for (Index i = 0; i < n; ++i)
    if (x[i] != x[i]) return true;
  return false;
}

template <class V>
void softmax_row(const float* x, float* y, Index n) {
  using R = typename V::Reg;
  constexpr int W = V::kWidth;
  const float neg_inf = -__builtin_inff();
  R vmax = V::set1(neg_inf);
  Index j = 0;
  for (; j + W <= n; j += W) vmax = V::max(vmax, V::loadu(x + j));
  if (j < n) vmax = V::max(vmax, V::load_tail(x + j, static_cast<int>(n - j), neg_inf));
  const float row_max = V::hmax(vmax);
  if (row_max == neg_inf) {
    // Every key masked: zeros, not NaN. (maxps may drop NaN lanes: a row of NaN only lands here too,
    // and must stay NaN.)
    const float fill = has_nan<V>(x, n) ? __builtin_nanf("") : 0.0f;
    for (Index i = 0; i < n; ++i) y[i] = fill;
    return;
  }
  const R m = V::set1(row_max);
  R vsum = V::zero();
  for (j = 0; j + W <= n; j += W) {
    const R e = exp<V>(V::sub(V::loadu(x + j), m));
    V::storeu(y + j, e);
    vsum = V::add(vsum, e);
  }
  if (j < n) {
    const int rest = static_cast<int>(n - j);
    const R e = exp<V>(V::sub(V::load_tail(x + j, rest, neg_inf), m));  // exp(−inf) = 0 in the tail
    V::store_tail(y + j, e, rest);
    vsum = V::add(vsum, e);
  }
  const R inv = V::set1(1.0f / V::hsum(vsum));
  for (j = 0; j + W <= n; j += W) V::storeu(y + j, V::mul(V::loadu(y + j), inv));
  if (j < n) {
    const int rest = static_cast<int>(n - j);
    V::store_tail(y + j, V::mul(V::load_tail(y + j, rest, 0.0f), inv), rest);
  }
}

// y = x − max − log Σ exp(x − max); a row whose max is −inf stays −inf (no NaN).
template <class V>
void log_softmax_row(const float* x, float* y, Index n) {
  using R = typename V::Reg;
  constexpr int W = V::kWidth;
  const float neg_inf = -__builtin_inff();
  R vmax = V::set1(neg_inf);
  Index j = 0;
  for (; j + W <= n; j += W) vmax = V::max(vmax, V::loadu(x + j));
  if (j < n) vmax = V::max(vmax, V::load_tail(x + j, static_cast<int>(n - j), neg_inf));
  const float row_max = V::hmax(vmax);
  if (row_max == neg_inf) {
    const float fill = has_nan<V>(x, n) ? __builtin_nanf("") : neg_inf;
    for (Index i = 0; i < n; ++i) y[i] = fill;
    return;
  }
  const R m = V::set1(row_max);
  R vsum = V::zero();
  for (j = 0; j + W <= n; j += W) vsum = V::add(vsum, exp<V>(V::sub(V::loadu(x + j), m)));
  if (j < n) vsum = V::add(vsum, exp<V>(V::sub(V::load_tail(x + j, static_cast<int>(n - j), neg_inf), m)));
  const R shift = V::set1(row_max + __builtin_logf(V::hsum(vsum)));
  for (j = 0; j + W <= n; j += W) V::storeu(y + j, V::sub(V::loadu(x + j), shift));
  if (j < n) {
    const int rest = static_cast<int>(n - j);
    V::store_tail(y + j, V::sub(V::load_tail(x + j, rest, 0.0f), shift), rest);
  }
}

// The first index of the largest value; NaN entries are ignored (a row of NaN only gives 0). Two passes:
// the maximum (V::max(x, m) keeps m where x is NaN), then the first block that may hold it, scanned.
template <class V>
Index argmax_row(const float* x, Index n) {
  using R = typename V::Reg;
  constexpr int W = V::kWidth;
  const float neg_inf = -__builtin_inff();
  R vmax = V::set1(neg_inf);
  Index j = 0;
  for (; j + W <= n; j += W) vmax = V::max(V::loadu(x + j), vmax);
  if (j < n) vmax = V::max(V::load_tail(x + j, static_cast<int>(n - j), neg_inf), vmax);
  const float m = V::hmax(vmax);
  for (j = 0; j + W <= n; j += W)
    if (!(V::hmax(V::loadu(x + j)) < m)) break;  // the block holds m (or a NaN: scan it)
  for (; j < n; ++j)
    if (x[j] == m) return j;
  return 0;
}

template <class V>
inline typename V::Reg load_sum(const float* x, const float* residual, Index j) {
  const auto v = V::loadu(x + j);
  return residual ? V::add(v, V::loadu(residual + j)) : v;
}

template <class V>
inline typename V::Reg load_sum_tail(const float* x, const float* residual, Index j, int rest) {
  const auto v = V::load_tail(x + j, rest, 0.0f);
  return residual ? V::add(v, V::load_tail(residual + j, rest, 0.0f)) : v;
}

// Two passes over h = x + residual (mean, then the mean of squared deviations), never E[h²] − E[h]²,
// which loses all precision on rows with a large common offset.
template <class V>
void layer_norm_row(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                    float* y, Index n) {
  using R = typename V::Reg;
  constexpr int W = V::kWidth;
  // Sums over four accumulators (vector v of the row goes to accumulator v mod 4, combined in a fixed
  // order): one chain of dependent adds made a 1024-wide row latency-bound.
  R s[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
  Index j = 0;
  for (; j + 4 * W <= n; j += 4 * W)
    for (int u = 0; u < 4; ++u) s[u] = V::add(s[u], load_sum<V>(x, residual, j + u * W));
  for (int u = 0; j + W <= n; j += W, ++u) s[u] = V::add(s[u], load_sum<V>(x, residual, j));
  if (j < n) s[3] = V::add(s[3], load_sum_tail<V>(x, residual, j, static_cast<int>(n - j)));
  const float mean = V::hsum(V::add(V::add(s[0], s[1]), V::add(s[2], s[3]))) / static_cast<float>(n);
  const R vmean = V::set1(mean);
  R q[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
  for (j = 0; j + 4 * W <= n; j += 4 * W)
    for (int u = 0; u < 4; ++u) {
      const R d = V::sub(load_sum<V>(x, residual, j + u * W), vmean);
      q[u] = V::fmadd(d, d, q[u]);
    }
  for (int u = 0; j + W <= n; j += W, ++u) {
    const R d = V::sub(load_sum<V>(x, residual, j), vmean);
    q[u] = V::fmadd(d, d, q[u]);
  }
  if (j < n) {
    const int rest = static_cast<int>(n - j);
    // Lanes past the row hold h = 0, so d = −mean there: zero them before squaring.
    const R d = V::keep_head(V::sub(load_sum_tail<V>(x, residual, j, rest), vmean), rest);
    q[3] = V::fmadd(d, d, q[3]);
  }
  const float var = V::hsum(V::add(V::add(q[0], q[1]), V::add(q[2], q[3]))) / static_cast<float>(n);
  const R rstd = V::set1(1.0f / __builtin_sqrtf(var + eps));
  for (j = 0; j + W <= n; j += W) {
    const R d = V::mul(V::sub(load_sum<V>(x, residual, j), vmean), rstd);
    V::storeu(y + j, V::fmadd(d, V::loadu(gamma + j), V::loadu(beta + j)));
  }
  if (j < n) {
    const int rest = static_cast<int>(n - j);
    const R d = V::mul(V::sub(load_sum_tail<V>(x, residual, j, rest), vmean), rstd);
    V::store_tail(y + j, V::fmadd(d, V::load_tail(gamma + j, rest, 0.0f), V::load_tail(beta + j, rest, 0.0f)), rest);
  }
}

template <class V>
inline typename V::Reg apply_activation(typename V::Reg v, Activation act) {
  switch (act) {
    case Activation::kNone: return v;
    case Activation::kRelu: return relu<V>(v);
    case Activation::kGeluErf: return gelu_erf<V>(v);
    case Activation::kGeluTanh: return gelu_tanh<V>(v);
    case Activation::kSilu: return silu<V>(v);
  }
  return v;
}

template <class V, Activation kAct>
void bias_activation_row_impl(const float* x, const float* bias, float* y, Index n) {
  constexpr int W = V::kWidth;
  Index j = 0;
  for (; j + W <= n; j += W) {
    auto v = V::loadu(x + j);
    if (bias) v = V::add(v, V::loadu(bias + j));
    V::storeu(y + j, apply_activation<V>(v, kAct));
  }
  if (j < n) {
    const int rest = static_cast<int>(n - j);
    auto v = V::load_tail(x + j, rest, 0.0f);
    if (bias) v = V::add(v, V::load_tail(bias + j, rest, 0.0f));
    V::store_tail(y + j, apply_activation<V>(v, kAct), rest);
  }
}

template <class V>
void bias_activation_row(const float* x, const float* bias, Activation act, float* y, Index n) {
  switch (act) {
    case Activation::kNone: return bias_activation_row_impl<V, Activation::kNone>(x, bias, y, n);
    case Activation::kRelu: return bias_activation_row_impl<V, Activation::kRelu>(x, bias, y, n);
    case Activation::kGeluErf: return bias_activation_row_impl<V, Activation::kGeluErf>(x, bias, y, n);
    case Activation::kGeluTanh: return bias_activation_row_impl<V, Activation::kGeluTanh>(x, bias, y, n);
    case Activation::kSilu: return bias_activation_row_impl<V, Activation::kSilu>(x, bias, y, n);
  }
}

}  // namespace cpuformer::impl
