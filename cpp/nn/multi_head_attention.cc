#include "nn/multi_head_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "ops/attention.h"
#include "ops/packed_keys.h"

namespace cpuformer {
namespace {

const float* offset_or_null(const float* p, Index offset) { return p ? p + offset : nullptr; }

}  // namespace

MultiHeadAttention::MultiHeadAttention(const float* in_proj_weight, const float* in_proj_bias,
                                       const float* out_proj_weight, const float* out_proj_bias, Index d_model,
                                       Index heads, bool self_attention)
    : d_model_(d_model),
      heads_(heads),
      self_attention_(self_attention),
      in_proj_(in_proj_weight, in_proj_bias, self_attention ? 3 * d_model : d_model, d_model),
      kv_proj_(self_attention ? nullptr : in_proj_weight + d_model * d_model,
               self_attention ? nullptr : offset_or_null(in_proj_bias, d_model), self_attention ? 0 : 2 * d_model,
               self_attention ? 0 : d_model),
      out_proj_(out_proj_weight, out_proj_bias, d_model, d_model) {
  CPUFORMER_CHECK(heads > 0 && d_model % heads == 0, "nhead: must divide d_model = ", d_model, ", got ", heads);
}

void MultiHeadAttention::attend(const float* q, Index ldq, const SequenceBatch& q_seqs, const float* k,
                                const float* v, Index ldkv, const SequenceBatch& kv_seqs, const AttentionMask& mask,
                                float* out, int threads) const {
  const Index dh = d_model_ / heads_;
  const Index batch = q_seqs.batch();
  if (threads <= 0) threads = get_num_threads();
  // Many sequences: one per task, each single-threaded, claimed by the threads as they become free
  // (their costs, q_len · k_len, differ; a thread slowed by other work hands on its share). Few: each
  // sequence spreads over the threads.
  const bool per_sequence = batch >= threads;
  auto run = [&](Index b_begin, Index b_end) {
    for (Index b = b_begin; b < b_end; ++b) {
      if (q_seqs.lengths[b] == 0) continue;
      AttentionArgs a{};
      a.batch = 1;
      a.heads = heads_;
      a.q_len = q_seqs.lengths[b];
      a.k_len = kv_seqs.lengths[b];
      a.head_dim = dh;
      a.q = q + q_seqs.offsets[b] * ldq;
      a.q_batch_stride = 0, a.q_head_stride = dh, a.q_row_stride = ldq;
      a.k = k + kv_seqs.offsets[b] * ldkv;
      a.k_batch_stride = 0, a.k_head_stride = dh, a.k_row_stride = ldkv;
      a.v = v + kv_seqs.offsets[b] * ldkv;
      a.v_batch_stride = 0, a.v_head_stride = dh, a.v_row_stride = ldkv;
      a.out = out + q_seqs.offsets[b] * d_model_;
      a.out_batch_stride = 0, a.out_head_stride = dh, a.out_row_stride = d_model_;
      a.scale = 1.0f / std::sqrt(static_cast<float>(dh));
      a.causal = mask.causal;
      if (mask.additive) {
        a.mask = mask.additive + b * mask.batch_stride;
        a.mask_head_stride = mask.head_stride;
        a.mask_row_stride = mask.row_stride;
      }
      if (a.k_len == 0) {  // no keys at all: every row fully masked
        for (Index i = 0; i < a.q_len; ++i)
          for (Index c = 0; c < d_model_; ++c) a.out[i * d_model_ + c] = 0.0f;
        continue;
      }
      attention(a, per_sequence ? 1 : threads);
    }
  };
  if (per_sequence)
    parallel_for_guided(batch, 1, run, threads);
  else
    run(0, batch);
}

void MultiHeadAttention::forward_self(const float* x, const SequenceBatch& seqs, const AttentionMask& mask, float* y,
                                      Workspace& ws, int threads) const {
  const Index rows = seqs.total, d = d_model_;
  float* qkv = Workspace::get(ws.qkv, rows * 3 * d);
  float* attn = Workspace::get(ws.attn, rows * d);
  in_proj_.forward(x, d, rows, qkv, 3 * d, Activation::kNone, threads);
  attend(qkv, 3 * d, seqs, qkv + d, qkv + 2 * d, 3 * d, seqs, mask, attn, threads);
  out_proj_.forward(attn, d, rows, y, d, Activation::kNone, threads);
}

void MultiHeadAttention::project_memory(const float* memory, Index rows, float* kv, int threads) const {
  kv_proj_.forward(memory, d_model_, rows, kv, 2 * d_model_, Activation::kNone, threads);
}

void MultiHeadAttention::forward_cross(const float* x, const SequenceBatch& q_seqs, const float* kv,
                                       const SequenceBatch& kv_seqs, const AttentionMask& mask, float* y,
                                       Workspace& ws, int threads) const {
  const Index rows = q_seqs.total, d = d_model_;
  float* q = Workspace::get(ws.qkv, rows * d);
  float* attn = Workspace::get(ws.attn, rows * d);
  in_proj_.forward(x, d, rows, q, d, Activation::kNone, threads);
  attend(q, d, q_seqs, kv, kv + d, 2 * d, kv_seqs, mask, attn, threads);
  out_proj_.forward(attn, d, rows, y, d, Activation::kNone, threads);
}

void MultiHeadAttention::attend_rows(const KernelTable& kernels, const float* q, Index ldq, Index n,
                                     const float* const* k_packed, const float* const* v, Index ldv,
                                     const Index* k_lens, float* out, int threads,
                                     const std::function<void(Index, Index)>* prepare,
                                     bool key_caches) const {
  const Index dh = d_model_ / heads_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  std::vector<Index> group_start;  // rows [group_start[g], group_start[g + 1]) share keys and values
  for (Index r = 0; r < n; ++r)
    if (r == 0 || k_packed[r] != k_packed[r - 1] || v[r] != v[r - 1] || k_lens[r] != k_lens[r - 1])
      group_start.push_back(r);
  const Index groups = static_cast<Index>(group_start.size());
  group_start.push_back(n);
  parallel_for(groups, [&](Index g0, Index g1) {
    for (Index g = g0; g < g1; ++g) {
      const Index r = group_start[g], rows = group_start[g + 1] - r;
      if (prepare) (*prepare)(r, rows);
      float* o = out + r * d_model_;
      if (k_lens[r] == 0) {
        std::fill(o, o + rows * d_model_, 0.0f);
        continue;
      }
      AttentionArgs a{};
      a.batch = 1, a.heads = heads_, a.q_len = rows, a.k_len = k_lens[r], a.head_dim = dh;
      a.q = q + r * ldq, a.q_batch_stride = 0, a.q_head_stride = dh, a.q_row_stride = ldq;
      if (key_caches)
        set_key_cache(a, k_packed[r], kernels.gemm.nr);
      else
        set_packed_keys(a, k_packed[r], 0, kernels.gemm.nr);
      a.kernels = &kernels;
      a.v = v[r], a.v_batch_stride = 0, a.v_head_stride = dh, a.v_row_stride = ldv;
      a.out = o, a.out_batch_stride = 0, a.out_head_stride = dh, a.out_row_stride = d_model_;
      a.scale = scale;
      attention(a, groups == 1 ? threads : 1);  // one group: its heads may still run in parallel
    }
  }, n * d_model_ >= 4096 && groups > 1 ? threads : 1);
}

void MultiHeadAttention::step_self(const float* x, Index n, const LayerStepCache& cache, float* y, Workspace& ws,
                                   int threads) const {
  const Index d = d_model_;
  float* qkv = Workspace::get(ws.qkv, n * 3 * d);
  float* attn = Workspace::get(ws.attn, n * d);
  in_proj_.forward(x, d, n, qkv, 3 * d, Activation::kNone, threads);
  std::vector<float*> k(n), v(n);
  std::vector<Index> lens(n, cache.position + 1);
  for (Index r = 0; r < n; ++r) {
    k[r] = cache.self_k + cache.slots[r] * cache.self_stride;
    v[r] = cache.self_v + cache.slots[r] * cache.self_stride;
  }
  // Each hypothesis appends its new key and value right before it attends, on the same thread, which
  // then reads the fresh rows from L1/L2 instead of fetching them a second time.
  const std::function<void(Index, Index)> append = [&](Index first, Index rows) {
    for (Index r = first; r < first + rows; ++r) {
      append_key(*cache.kernels, qkv + r * 3 * d + d, cache.position, heads_, d / heads_, k[r]);
      std::copy(qkv + r * 3 * d + 2 * d, qkv + r * 3 * d + 3 * d, v[r] + cache.position * d);
    }
  };
  attend_rows(*cache.kernels, qkv, 3 * d, n, k.data(), v.data(), d, lens.data(), attn, threads, &append,
              true);
  out_proj_.forward(attn, d, n, y, d, Activation::kNone, threads);
}

void MultiHeadAttention::step_cross(const float* x, Index n, const LayerStepCache& cache, float* y, Workspace& ws,
                                    int threads) const {
  const Index d = d_model_;
  float* q = Workspace::get(ws.qkv, n * d);
  float* attn = Workspace::get(ws.attn, n * d);
  in_proj_.forward(x, d, n, q, d, Activation::kNone, threads);
  std::vector<const float*> k(n), v(n);
  std::vector<Index> lens(n);
  for (Index r = 0; r < n; ++r) {
    const Index s = cache.hyp_sentence[r];
    k[r] = cache.memory_k + cache.memory_k_offsets[s];
    v[r] = cache.memory_kv + cache.memory_offsets[s] * 2 * d + d;
    lens[r] = cache.memory_lengths[s];
  }
  attend_rows(*cache.kernels, q, d, n, k.data(), v.data(), 2 * d, lens.data(), attn, threads);
  out_proj_.forward(attn, d, n, y, d, Activation::kNone, threads);
}

}  // namespace cpuformer
