// Multi-head attention as torch.nn.MultiheadAttention computes it (in_proj [3D, D] holding Wq, Wk, Wv one
// above the other, out_proj [D, D]), on packed sequences (see sequence_batch.h).
// Self-attention runs one fused Q/K/V projection; cross-attention projects the queries alone and the
// memory's keys/values once per source (project_memory), reused by every decoding step.
// Heads are read in place from the projection buffer by strides: no transposes, no copies.
#pragma once

#include <functional>

#include "core/dims.h"
#include "nn/linear.h"
#include "nn/sequence_batch.h"
#include "nn/step_cache.h"
#include "nn/workspace.h"

namespace cpuformer {

class MultiHeadAttention {
 public:
  MultiHeadAttention(const float* in_proj_weight, const float* in_proj_bias, const float* out_proj_weight,
                     const float* out_proj_bias, Index d_model, Index heads, bool self_attention);

  Index d_model() const { return d_model_; }
  Index heads() const { return heads_; }

  // y[rows, D] = MHA(x, x, x) for packed x [seqs.total, D].
  void forward_self(const float* x, const SequenceBatch& seqs, const AttentionMask& mask, float* y, Workspace& ws,
                    int threads) const;

  // kv[rows, 2D] = memory · [Wk; Wv]ᵀ + [bk; bv] (cross-attention only).
  void project_memory(const float* memory, Index rows, float* kv, int threads) const;

  // y = MHA(x, memory, memory) with kv from project_memory over memory laid out as `kv_seqs`.
  void forward_cross(const float* x, const SequenceBatch& q_seqs, const float* kv, const SequenceBatch& kv_seqs,
                     const AttentionMask& mask, float* y, Workspace& ws, int threads) const;

 // Incremental decoding (one new position for each of n hypotheses, see nn/step_cache.h) -------------
  // Self-attention: appends this step's keys/values at cache.position of each hypothesis' cache, then
  // attends over positions 0..position.
  void step_self(const float* x, Index n, const LayerStepCache& cache, float* y, Workspace& ws, int threads) const;

  // Cross-attention of hypothesis r over the source of sentence cache.hyp_sentence[r].
  void step_cross(const float* x, Index n, const LayerStepCache& cache, float* y, Workspace& ws, int threads) const;

 private:
  // One query row per hypothesis against its packed keys / row-major values (row stride ldv); runs the
  // hypotheses in parallel. Consecutive rows with the same keys and values (the beams of one sentence in
  // cross-attention) form one multi-row query, so the keys are read once and the micro-kernel works on
  // a tile of several rows; a row's arithmetic does not depend on the rows it is grouped with.
  // prepare(first_row, rows), when given, runs on the attending thread just before a group attends (the
  // self-attention appends there: the cache lines it writes are the ones the attention reads next).
  // key_caches: k_packed[r] are key caches (ops/packed_keys.h: the last, partial panel still rows), not
  // fully packed sequences.
  void attend_rows(const KernelTable& kernels, const float* q, Index ldq, Index n, const float* const* k_packed,
                   const float* const* v, Index ldv, const Index* k_lens, float* out, int threads,
                   const std::function<void(Index, Index)>* prepare = nullptr,
                   bool key_caches = false) const;

  // out[rows, D] = attention of q (row stride ldq) over k, v (row stride ldkv), sequence by sequence.
  void attend(const float* q, Index ldq, const SequenceBatch& q_seqs, const float* k, const float* v, Index ldkv,
              const SequenceBatch& kv_seqs, const AttentionMask& mask, float* out, int threads) const;

  Index d_model_, heads_;
  bool self_attention_;
  Linear in_proj_;   // self: [3D ← D] (Q, K, V); cross: [D ← D] (Q only)
  Linear kv_proj_;   // cross only: [2D ← D] (K, V); unused (0 × 0) for self-attention
  Linear out_proj_;  // [D ← D]
};

}  // namespace cpuformer
