// The encoder-decoder Transformer of "Attention Is All You Need" (torch.nn.Transformer's structure and
// weight names), and its encoder-only / decoder-only halves (torch.nn.TransformerEncoder/Decoder).
//
// Inputs and outputs are padded, batch-first [B, L, D] float32 arrays plus per-sequence lengths (the
// key padding masks, as suffix lengths). Inside, sequences are packed without padding (sequence_batch.h):
// padding costs nothing, and rows at padded positions of the output are exactly zero.
// Masks are additive float masks in padded coordinates (see AttentionMask) or the causal flag.
// One forward at a time per model (a mutex guards the reused workspace); the GIL is not needed.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/dims.h"
#include "model/transformer_config.h"
#include "model/weight_map.h"
#include "nn/sequence_batch.h"
#include "nn/transformer_layers.h"
#include "nn/workspace.h"

namespace cpuformer {

enum class TransformerPart { kFull, kEncoder, kDecoder };

struct PaddedBatch {
  const float* data;      // [batch, len, D]
  Index batch, len;
  const Index* lengths;   // [batch] or null (all len)
};

class TransformerModel {
 public:
  // validate == false when a larger model (seq2seq) has validated the whole weight map itself.
  TransformerModel(const TransformerConfig& config, const WeightMap& weights, TransformerPart part,
                   bool validate = true);

  // The weights this configuration expects, with torch's names (prefixed "encoder."/"decoder." for kFull).
  static std::vector<WeightSpec> weight_specs(const TransformerConfig& config, TransformerPart part);

  const TransformerConfig& config() const { return config_; }
  TransformerPart part() const { return part_; }
  void set_num_threads(int threads) { threads_ = threads; }  // <= 0: the process default
  int num_threads() const { return threads_; }

  // out [B, S, D] = encoder(src).
  void encode(const PaddedBatch& src, const AttentionMask& src_mask, float* out);

  // out [B, T, D] = decoder(tgt, memory).
  void decode(const PaddedBatch& tgt, const AttentionMask& tgt_mask, const PaddedBatch& memory,
              const AttentionMask& memory_mask, float* out);

  // out [B, T, D] = decoder(tgt, encoder(src)); memory_lengths (or null: all S) mask the encoder output's keys.
  void forward(const PaddedBatch& src, const AttentionMask& src_mask, const PaddedBatch& tgt,
               const AttentionMask& tgt_mask, const Index* memory_lengths, const AttentionMask& memory_mask, float* out);

 // Building blocks for models built around the stacks (seq2seq). No locking: the caller owns `ws`.
  // x packed [seqs.total, D], updated in place (final norm included).
  void run_encoder(float* x, const SequenceBatch& seqs, const AttentionMask& mask, Workspace& ws) const;
  // memory_kv: [num_decoder_layers][src.total, 2D], from project_memory.
  void project_memory(const float* memory, const SequenceBatch& src, float* memory_kv) const;
  void run_decoder(float* x, const SequenceBatch& tgt, const AttentionMask& tgt_mask, const float* memory_kv,
                   const SequenceBatch& src, const AttentionMask& memory_mask, Workspace& ws) const;
  // One incremental step for n hypotheses (see DecoderLayer::step) with caches[l] the view of decoder
  // layer l's state. Final norm included.
  void decoder_step(float* x, Index n, const LayerStepCache* caches, Workspace& ws) const;

 private:
  void decode_with_memory(float* x, const SequenceBatch& tgt, const AttentionMask& tgt_mask, const float* memory,
                          const SequenceBatch& src, const AttentionMask& memory_mask);

  TransformerConfig config_;
  TransformerPart part_;
  std::vector<EncoderLayer> encoder_layers_;
  std::vector<DecoderLayer> decoder_layers_;
  std::unique_ptr<LayerNorm> encoder_norm_, decoder_norm_;
  int threads_ = 0;
  std::mutex mutex_;
  Workspace ws_;
  AlignedBuffer memory_;  // packed encoder output / memory
};

}  // namespace cpuformer
