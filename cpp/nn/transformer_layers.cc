#include "nn/transformer_layers.h"

#include "ops/rowwise.h"

namespace cpuformer {

FeedForward::FeedForward(const FeedForwardWeights& w, const LayerShape& shape)
    : d_model_(shape.d_model),
      dim_feedforward_(shape.dim_feedforward),
      activation_(shape.activation),
      linear1_(w.linear1_weight, w.linear1_bias, shape.dim_feedforward, shape.d_model),
      linear2_(w.linear2_weight, w.linear2_bias, shape.d_model, shape.dim_feedforward) {}

void FeedForward::forward(const float* x, Index rows, float* y, Workspace& ws, int threads) const {
  float* hidden = Workspace::get(ws.hidden, rows * dim_feedforward_);
  linear1_.forward(x, d_model_, rows, hidden, dim_feedforward_, activation_, threads);
  linear2_.forward(hidden, dim_feedforward_, rows, y, d_model_, Activation::kNone, threads);
}

namespace {
LayerNorm make_norm(const NormWeights& w, const LayerShape& s) {
  return LayerNorm(w.weight, w.bias, s.d_model, s.layer_norm_eps);
}
MultiHeadAttention make_attention(const AttentionWeights& w, const LayerShape& s, bool self) {
  return MultiHeadAttention(w.in_proj_weight, w.in_proj_bias, w.out_proj_weight, w.out_proj_bias, s.d_model, s.nhead,
                            self);
}
}  // namespace

EncoderLayer::EncoderLayer(const AttentionWeights& self_attn, const FeedForwardWeights& ff, const NormWeights& norm1,
                           const NormWeights& norm2, const LayerShape& shape)
    : shape_(shape),
      self_attn_(make_attention(self_attn, shape, true)),
      ff_(ff, shape),
      norm1_(make_norm(norm1, shape)),
      norm2_(make_norm(norm2, shape)) {}

void EncoderLayer::forward(float* x, const SequenceBatch& seqs, const AttentionMask& mask, Workspace& ws,
                           int threads) const {
  const Index rows = seqs.total, d = shape_.d_model;
  float* tmp = Workspace::get(ws.tmp, rows * d);
  if (shape_.norm_first) {
    float* normed = Workspace::get(ws.normed, rows * d);
    norm1_.forward(x, nullptr, normed, rows, threads);
    self_attn_.forward_self(normed, seqs, mask, tmp, ws, threads);
    add_rows(tmp, x, rows, d, threads);
    norm2_.forward(x, nullptr, normed, rows, threads);
    ff_.forward(normed, rows, tmp, ws, threads);
    add_rows(tmp, x, rows, d, threads);
  } else {
    self_attn_.forward_self(x, seqs, mask, tmp, ws, threads);
    norm1_.forward(tmp, x, x, rows, threads);
    ff_.forward(x, rows, tmp, ws, threads);
    norm2_.forward(tmp, x, x, rows, threads);
  }
}

DecoderLayer::DecoderLayer(const AttentionWeights& self_attn, const AttentionWeights& cross_attn,
                           const FeedForwardWeights& ff, const NormWeights& norm1, const NormWeights& norm2,
                           const NormWeights& norm3, const LayerShape& shape)
    : shape_(shape),
      self_attn_(make_attention(self_attn, shape, true)),
      cross_attn_(make_attention(cross_attn, shape, false)),
      ff_(ff, shape),
      norm1_(make_norm(norm1, shape)),
      norm2_(make_norm(norm2, shape)),
      norm3_(make_norm(norm3, shape)) {}

void DecoderLayer::forward(float* x, const SequenceBatch& tgt, const AttentionMask& self_mask, const float* memory_kv,
                           const SequenceBatch& src, const AttentionMask& memory_mask, Workspace& ws,
                           int threads) const {
  const Index rows = tgt.total, d = shape_.d_model;
  float* tmp = Workspace::get(ws.tmp, rows * d);
  if (shape_.norm_first) {
    float* normed = Workspace::get(ws.normed, rows * d);
    norm1_.forward(x, nullptr, normed, rows, threads);
    self_attn_.forward_self(normed, tgt, self_mask, tmp, ws, threads);
    add_rows(tmp, x, rows, d, threads);
    norm2_.forward(x, nullptr, normed, rows, threads);
    cross_attn_.forward_cross(normed, tgt, memory_kv, src, memory_mask, tmp, ws, threads);
    add_rows(tmp, x, rows, d, threads);
    norm3_.forward(x, nullptr, normed, rows, threads);
    ff_.forward(normed, rows, tmp, ws, threads);
    add_rows(tmp, x, rows, d, threads);
  } else {
    self_attn_.forward_self(x, tgt, self_mask, tmp, ws, threads);
    norm1_.forward(tmp, x, x, rows, threads);
    cross_attn_.forward_cross(x, tgt, memory_kv, src, memory_mask, tmp, ws, threads);
    norm2_.forward(tmp, x, x, rows, threads);
    ff_.forward(x, rows, tmp, ws, threads);
    norm3_.forward(tmp, x, x, rows, threads);
  }
}

void DecoderLayer::step(float* x, Index n, const LayerStepCache& cache, Workspace& ws, int threads) const {
  const Index d = shape_.d_model;
  float* tmp = Workspace::get(ws.tmp, n * d);
  if (shape_.norm_first) {
    float* normed = Workspace::get(ws.normed, n * d);
    norm1_.forward(x, nullptr, normed, n, threads);
    self_attn_.step_self(normed, n, cache, tmp, ws, threads);
    add_rows(tmp, x, n, d, threads);
    norm2_.forward(x, nullptr, normed, n, threads);
    cross_attn_.step_cross(normed, n, cache, tmp, ws, threads);
    add_rows(tmp, x, n, d, threads);
    norm3_.forward(x, nullptr, normed, n, threads);
    ff_.forward(normed, n, tmp, ws, threads);
    add_rows(tmp, x, n, d, threads);
  } else {
    self_attn_.step_self(x, n, cache, tmp, ws, threads);
    norm1_.forward(tmp, x, x, n, threads);
    cross_attn_.step_cross(x, n, cache, tmp, ws, threads);
    norm2_.forward(tmp, x, x, n, threads);
    ff_.forward(x, n, tmp, ws, threads);
    norm3_.forward(tmp, x, x, n, threads);
  }
}

}  // namespace cpuformer
