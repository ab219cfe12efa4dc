// Encoder and decoder layers of "Attention Is All You Need" and their stacks, on packed sequences.
//   post-LN (the paper):  x = LN1(x + SelfAttn(x));            x = LN2(x + FF(x))
//   pre-LN (norm_first):  x = x + SelfAttn(LN1(x));            x = x + FF(LN2(x))
//   decoder adds cross-attention over the encoder output between the two (LN2), the FF norm is LN3.
// FF(x) = W2 · act(W1 · x + b1) + b2, the activation fused into the first GEMM's epilogue; post-LN residual
// adds are fused into the LayerNorm. Weights are raw views, copied (packed) at construction.
#pragma once

#include <memory>
#include <vector>

#include "core/dims.h"
#include "kernels/kernel_table.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/multi_head_attention.h"
#include "nn/sequence_batch.h"
#include "nn/workspace.h"

namespace cpuformer {

struct LayerShape {
  Index d_model, nhead, dim_feedforward;
  Activation activation;
  float layer_norm_eps;
  bool norm_first;
};

struct AttentionWeights {
  const float* in_proj_weight;   // [3D, D]
  const float* in_proj_bias;     // [3D] or null
  const float* out_proj_weight;  // [D, D]
  const float* out_proj_bias;    // [D] or null
};

struct FeedForwardWeights {
  const float* linear1_weight;  // [F, D]
  const float* linear1_bias;    // [F] or null
  const float* linear2_weight;  // [D, F]
  const float* linear2_bias;    // [D] or null
};

struct NormWeights {
  const float* weight;  // [D]
  const float* bias;    // [D] or null
};

class FeedForward {
 public:
  FeedForward(const FeedForwardWeights& w, const LayerShape& shape);
  // y[rows, D] = FF(x[rows, D]).
  void forward(const float* x, Index rows, float* y, Workspace& ws, int threads) const;

 private:
  Index d_model_, dim_feedforward_;
  Activation activation_;
  Linear linear1_, linear2_;
};

class EncoderLayer {
 public:
  EncoderLayer(const AttentionWeights& self_attn, const FeedForwardWeights& ff, const NormWeights& norm1,
               const NormWeights& norm2, const LayerShape& shape);
  // x: packed [seqs.total, D], updated in place.
  void forward(float* x, const SequenceBatch& seqs, const AttentionMask& mask, Workspace& ws, int threads) const;

 private:
  LayerShape shape_;
  MultiHeadAttention self_attn_;
  FeedForward ff_;
  LayerNorm norm1_, norm2_;
};

class DecoderLayer {
 public:
  DecoderLayer(const AttentionWeights& self_attn, const AttentionWeights& cross_attn, const FeedForwardWeights& ff,
               const NormWeights& norm1, const NormWeights& norm2, const NormWeights& norm3, const LayerShape& shape);

  const MultiHeadAttention& cross_attention() const { return cross_attn_; }

  // Incremental decoding: x [n, D] holds the newest position of n hypotheses, updated in place; `cache`
  // is this layer's view of the decoding state (nn/step_cache.h).
  void step(float* x, Index n, const LayerStepCache& cache, Workspace& ws, int threads) const;

  // x: packed target [tgt.total, D], updated in place; memory_kv from cross_attention().project_memory.
  void forward(float* x, const SequenceBatch& tgt, const AttentionMask& self_mask, const float* memory_kv,
               const SequenceBatch& src, const AttentionMask& memory_mask, Workspace& ws, int threads) const;

 private:
  LayerShape shape_;
  MultiHeadAttention self_attn_, cross_attn_;
  FeedForward ff_;
  LayerNorm norm1_, norm2_, norm3_;
};

}  // namespace cpuformer
