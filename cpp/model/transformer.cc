#include "model/transformer.h"

#include <cstring>

#include "core/check.h"

namespace cpuformer {
namespace {

std::string layer_prefix(TransformerPart part, const char* stack, Index i) {
  std::string p = part == TransformerPart::kFull ? std::string(stack) + "." : std::string();
  return p + "layers." + std::to_string(i) + ".";
}

std::string norm_prefix(TransformerPart part, const char* stack) {
  return part == TransformerPart::kFull ? std::string(stack) + ".norm." : std::string("norm.");
}

void add_attention_specs(std::vector<WeightSpec>& s, const std::string& p, const TransformerConfig& c) {
  const Index d = c.d_model;
  s.push_back({p + "in_proj_weight", {3 * d, d}});
  if (c.bias) s.push_back({p + "in_proj_bias", {3 * d}});
  s.push_back({p + "out_proj.weight", {d, d}});
  if (c.bias) s.push_back({p + "out_proj.bias", {d}});
}

void add_norm_specs(std::vector<WeightSpec>& s, const std::string& p, const TransformerConfig& c) {
  s.push_back({p + "weight", {c.d_model}});
  if (c.bias) s.push_back({p + "bias", {c.d_model}});
}

void add_ff_specs(std::vector<WeightSpec>& s, const std::string& p, const TransformerConfig& c) {
  s.push_back({p + "linear1.weight", {c.dim_feedforward, c.d_model}});
  if (c.bias) s.push_back({p + "linear1.bias", {c.dim_feedforward}});
  s.push_back({p + "linear2.weight", {c.d_model, c.dim_feedforward}});
  if (c.bias) s.push_back({p + "linear2.bias", {c.d_model}});
}

bool has_encoder(TransformerPart p) { return p != TransformerPart::kDecoder; }
bool has_decoder(TransformerPart p) { return p != TransformerPart::kEncoder; }

AttentionWeights attention_weights(const WeightMap& w, const std::string& p) {
  return {w.get(p + "in_proj_weight"), w.get(p + "in_proj_bias"), w.get(p + "out_proj.weight"),
          w.get(p + "out_proj.bias")};
}
FeedForwardWeights ff_weights(const WeightMap& w, const std::string& p) {
  return {w.get(p + "linear1.weight"), w.get(p + "linear1.bias"), w.get(p + "linear2.weight"),
          w.get(p + "linear2.bias")};
}
NormWeights norm_weights(const WeightMap& w, const std::string& p) { return {w.get(p + "weight"), w.get(p + "bias")}; }

// Copies the real rows of a padded [B, L, D] batch into packed rows.
void pack_rows(const PaddedBatch& in, const SequenceBatch& seqs, Index d, float* packed) {
  for (Index b = 0; b < seqs.batch(); ++b)
    std::memcpy(packed + seqs.offsets[b] * d, in.data + b * in.len * d,
                sizeof(float) * static_cast<std::size_t>(seqs.lengths[b] * d));
}

// Writes packed rows back to a padded [B, L, D] batch, zeros at padded positions.
void unpack_rows(const float* packed, const SequenceBatch& seqs, Index d, float* out) {
  for (Index b = 0; b < seqs.batch(); ++b) {
    float* dst = out + b * seqs.max_len * d;
    const Index real = seqs.lengths[b] * d;
    std::memcpy(dst, packed + seqs.offsets[b] * d, sizeof(float) * static_cast<std::size_t>(real));
    std::memset(dst + real, 0, sizeof(float) * static_cast<std::size_t>(seqs.max_len * d - real));
  }
}

}  // namespace

std::vector<WeightSpec> TransformerModel::weight_specs(const TransformerConfig& c, TransformerPart part) {
  std::vector<WeightSpec> s;
  if (has_encoder(part)) {
    for (Index i = 0; i < c.num_encoder_layers; ++i) {
      const std::string p = layer_prefix(part, "encoder", i);
      add_attention_specs(s, p + "self_attn.", c);
      add_ff_specs(s, p, c);
      add_norm_specs(s, p + "norm1.", c);
      add_norm_specs(s, p + "norm2.", c);
    }
    if (c.encoder_final_norm) add_norm_specs(s, norm_prefix(part, "encoder"), c);
  }
  if (has_decoder(part)) {
    for (Index i = 0; i < c.num_decoder_layers; ++i) {
      const std::string p = layer_prefix(part, "decoder", i);
      add_attention_specs(s, p + "self_attn.", c);
      add_attention_specs(s, p + "multihead_attn.", c);
      add_ff_specs(s, p, c);
      add_norm_specs(s, p + "norm1.", c);
      add_norm_specs(s, p + "norm2.", c);
      add_norm_specs(s, p + "norm3.", c);
    }
    if (c.decoder_final_norm) add_norm_specs(s, norm_prefix(part, "decoder"), c);
  }
  return s;
}

TransformerModel::TransformerModel(const TransformerConfig& config, const WeightMap& weights, TransformerPart part,
                                   bool validate)
    : config_(config), part_(part) {
  config_.validate();
  const char* what = part == TransformerPart::kFull      ? "Transformer"
                     : part == TransformerPart::kEncoder ? "TransformerEncoder"
                                                         : "TransformerDecoder";
  if (validate) weights.validate(weight_specs(config_, part), what);
  const LayerShape shape{config_.d_model, config_.nhead, config_.dim_feedforward, config_.activation,
                         config_.layer_norm_eps, config_.norm_first};
  if (has_encoder(part)) {
    encoder_layers_.reserve(config_.num_encoder_layers);
    for (Index i = 0; i < config_.num_encoder_layers; ++i) {
      const std::string p = layer_prefix(part, "encoder", i);
      encoder_layers_.emplace_back(attention_weights(weights, p + "self_attn."), ff_weights(weights, p),
                                   norm_weights(weights, p + "norm1."), norm_weights(weights, p + "norm2."), shape);
    }
    if (config_.encoder_final_norm) {
      const NormWeights n = norm_weights(weights, norm_prefix(part, "encoder"));
      encoder_norm_ = std::make_unique<LayerNorm>(n.weight, n.bias, config_.d_model, config_.layer_norm_eps);
    }
  }
  if (has_decoder(part)) {
    decoder_layers_.reserve(config_.num_decoder_layers);
    for (Index i = 0; i < config_.num_decoder_layers; ++i) {
      const std::string p = layer_prefix(part, "decoder", i);
      decoder_layers_.emplace_back(attention_weights(weights, p + "self_attn."),
                                   attention_weights(weights, p + "multihead_attn."), ff_weights(weights, p),
                                   norm_weights(weights, p + "norm1."), norm_weights(weights, p + "norm2."),
                                   norm_weights(weights, p + "norm3."), shape);
    }
    if (config_.decoder_final_norm) {
      const NormWeights n = norm_weights(weights, norm_prefix(part, "decoder"));
      decoder_norm_ = std::make_unique<LayerNorm>(n.weight, n.bias, config_.d_model, config_.layer_norm_eps);
    }
  }
}

void TransformerModel::run_encoder(float* x, const SequenceBatch& seqs, const AttentionMask& mask,
                                   Workspace& ws) const {
  for (const EncoderLayer& layer : encoder_layers_) layer.forward(x, seqs, mask, ws, threads_);
  if (encoder_norm_) encoder_norm_->forward(x, nullptr, x, seqs.total, threads_);
}

void TransformerModel::project_memory(const float* memory, const SequenceBatch& src, float* memory_kv) const {
  const Index block = src.total * 2 * config_.d_model;
  for (std::size_t i = 0; i < decoder_layers_.size(); ++i)
    decoder_layers_[i].cross_attention().project_memory(memory, src.total, memory_kv + i * block, threads_);
}

void TransformerModel::run_decoder(float* x, const SequenceBatch& tgt, const AttentionMask& tgt_mask,
                                   const float* memory_kv, const SequenceBatch& src,
                                   const AttentionMask& memory_mask, Workspace& ws) const {
  const Index block = src.total * 2 * config_.d_model;
  for (std::size_t i = 0; i < decoder_layers_.size(); ++i)
    decoder_layers_[i].forward(x, tgt, tgt_mask, memory_kv + i * block, src, memory_mask, ws, threads_);
  if (decoder_norm_) decoder_norm_->forward(x, nullptr, x, tgt.total, threads_);
}

void TransformerModel::decoder_step(float* x, Index n, const LayerStepCache* caches, Workspace& ws) const {
  for (std::size_t i = 0; i < decoder_layers_.size(); ++i) decoder_layers_[i].step(x, n, caches[i], ws, threads_);
  if (decoder_norm_) decoder_norm_->forward(x, nullptr, x, n, threads_);
}

void TransformerModel::decode_with_memory(float* x, const SequenceBatch& tgt, const AttentionMask& tgt_mask,
                                          const float* memory, const SequenceBatch& src,
                                          const AttentionMask& memory_mask) {
  float* kv = Workspace::get(ws_.memory_kv, static_cast<Index>(decoder_layers_.size()) * src.total * 2 *
                                                config_.d_model);
  project_memory(memory, src, kv);
  run_decoder(x, tgt, tgt_mask, kv, src, memory_mask, ws_);
}

void TransformerModel::encode(const PaddedBatch& src, const AttentionMask& src_mask, float* out) {
  CPUFORMER_CHECK(has_encoder(part_), "encode: this model has no encoder");
  std::lock_guard<std::mutex> lock(mutex_);
  const Index d = config_.d_model;
  const SequenceBatch seqs = SequenceBatch::make(src.batch, src.len, src.lengths);
  float* x = Workspace::get(ws_.x, seqs.total * d);
  pack_rows(src, seqs, d, x);
  run_encoder(x, seqs, src_mask, ws_);
  unpack_rows(x, seqs, d, out);
}

void TransformerModel::decode(const PaddedBatch& tgt, const AttentionMask& tgt_mask, const PaddedBatch& memory,
                              const AttentionMask& memory_mask, float* out) {
  CPUFORMER_CHECK(has_decoder(part_), "decode: this model has no decoder");
  std::lock_guard<std::mutex> lock(mutex_);
  const Index d = config_.d_model;
  const SequenceBatch src = SequenceBatch::make(memory.batch, memory.len, memory.lengths);
  const SequenceBatch seqs = SequenceBatch::make(tgt.batch, tgt.len, tgt.lengths);
  float* mem = memory_.reserve(static_cast<std::size_t>(std::max<Index>(1, src.total * d)));
  pack_rows(memory, src, d, mem);
  float* x = Workspace::get(ws_.x, seqs.total * d);
  pack_rows(tgt, seqs, d, x);
  decode_with_memory(x, seqs, tgt_mask, mem, src, memory_mask);
  unpack_rows(x, seqs, d, out);
}

void TransformerModel::forward(const PaddedBatch& src, const AttentionMask& src_mask, const PaddedBatch& tgt,
                               const AttentionMask& tgt_mask, const Index* memory_lengths,
                               const AttentionMask& memory_mask, float* out) {
  CPUFORMER_CHECK(part_ == TransformerPart::kFull, "forward: this model is not an encoder-decoder Transformer");
  std::lock_guard<std::mutex> lock(mutex_);
  const Index d = config_.d_model;
  const SequenceBatch src_seqs = SequenceBatch::make(src.batch, src.len, src.lengths);
  float* mem = memory_.reserve(static_cast<std::size_t>(std::max<Index>(1, src.batch * src.len * d)));
  {
    float* x = Workspace::get(ws_.x, src_seqs.total * d);
    pack_rows(src, src_seqs, d, x);
    run_encoder(x, src_seqs, src_mask, ws_);
    std::memcpy(mem, x, sizeof(float) * static_cast<std::size_t>(src_seqs.total * d));
  }
  // The decoder attends to the memory keys memory_lengths allows; the encoder output is zero at padded
  // source positions, so when they differ from the source lengths the memory is re-packed from padded form.
  SequenceBatch mem_seqs = SequenceBatch::make(src.batch, src.len, memory_lengths);
  if (mem_seqs.lengths != src_seqs.lengths) {
    std::vector<float> padded(static_cast<std::size_t>(src.batch * src.len * d));
    unpack_rows(mem, src_seqs, d, padded.data());
    pack_rows(PaddedBatch{padded.data(), src.batch, src.len, nullptr}, mem_seqs, d, mem);
  }
  const SequenceBatch tgt_seqs = SequenceBatch::make(tgt.batch, tgt.len, tgt.lengths);
  float* x = Workspace::get(ws_.x, tgt_seqs.total * d);
  pack_rows(tgt, tgt_seqs, d, x);
  decode_with_memory(x, tgt_seqs, tgt_mask, mem, mem_seqs, memory_mask);
  unpack_rows(x, tgt_seqs, d, out);
}

}  // namespace cpuformer
