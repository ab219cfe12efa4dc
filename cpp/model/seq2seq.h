// A sequence-to-sequence Transformer for translation: source/target token embeddings (shared or not,
// scaled) + sinusoidal positions, the encoder and decoder stacks of TransformerModel, an output
// projection (tied to the target embeddings or not) with an optional final logits bias, log-softmax.
//
// Weight names: the stacks' torch.nn.Transformer names ("encoder.layers.0.self_attn.in_proj_weight", ...)
// plus "src_embedding.weight" [Vs, D], "tgt_embedding.weight" [Vt, D] (unless shared),
// "output_projection.weight" [Vt, D] (unless tied) and "final_logits_bias" [Vt] (when configured).
//
// Incremental decoding keeps, per decoder layer, a self-attention key/value cache that grows by one
// position per step (allocated once per batch for max_steps positions) and the cross-attention
// keys/values of the source, computed once. DecodeState holds all of it; reorder() follows beam search.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/dims.h"
#include "model/transformer.h"
#include "model/transformer_config.h"
#include "model/weight_map.h"
#include "nn/embedding.h"
#include "ops/packed_weight.h"

namespace cpuformer {

struct Seq2SeqConfig {
  TransformerConfig transformer;
  Index src_vocab_size = 0;
  Index tgt_vocab_size = 0;
  bool shared_embeddings = true;
  bool tied_output = true;
  bool final_logits_bias = false;
  float embedding_scale = 1.0f;  // sqrt(d_model) in the paper
  PositionalLayout positional = PositionalLayout::kInterleaved;
  Index max_positions = 1024;
  std::int64_t pad_id = 0, eos_id = 1, decoder_start_id = 0;

  void validate() const;
};

// Everything incremental decoding keeps for one batch of sentences. Keys are stored in the panel layout
// of `kernels`' micro-kernels (ops/packed_keys.h) so that steps attend without repacking them.
struct DecodeState {
  const KernelTable* kernels = nullptr;
  SequenceBatch src;                 // the sentences' packed memory layout
  AlignedBuffer memory_kv;           // [layers][src.total, 2D] (the values are read from it)
  AlignedBuffer memory_k;            // [layers][memory_k_layer] packed source keys
  std::vector<Index> memory_k_offsets;  // sentence s's keys within a layer's block
  Index memory_k_layer = 0;
  Index max_steps = 0;               // cache capacity (positions) per hypothesis
  Index cache_stride = 0;            // floats per hypothesis per layer (max_steps rounded up to whole panels, × D)
  Index rows = 0;                    // live hypotheses
  Index capacity_rows = 0;           // cache slots, sized by start() for the widest the search gets
  Index step = 0;                    // positions already decoded
  std::vector<Index> hyp_sentence;   // sentence of each live hypothesis
  std::vector<Index> slots;          // cache slot of each live hypothesis (reorders move slots, not caches)
  AlignedBuffer k_cache, v_cache;    // [layers][capacity_rows slots][cache_stride]: key caches; values [positions, D]
  AlignedBuffer x;                   // [rows, D]
  AlignedBuffer logits;              // [rows, V]
  AlignedBuffer source;              // [src.total, D] encoder activations (start() only)
  std::vector<LayerStepCache> views; // per decoder layer, rebuilt each step
};

class Seq2SeqModel {
 public:
  Seq2SeqModel(const Seq2SeqConfig& config, const WeightMap& weights);
  static std::vector<WeightSpec> weight_specs(const Seq2SeqConfig& config);

  const Seq2SeqConfig& config() const { return config_; }
  void set_num_threads(int threads) { stacks_->set_num_threads(threads); }
  int num_threads() const { return stacks_->num_threads(); }

  // Checks source ids (std::out_of_range naming the bad id) and lengths.
  void check_source(const std::int64_t* ids, Index batch, Index len, const Index* lengths) const;

  // Bytes forward_log_probs needs at most for [B, S] sources and [B, T] targets, its output included
  // (activations of every token, the source keys/values of every layer, logits), to refuse a batch
  // that cannot fit before starting it.
  double log_probs_bytes(Index batch, Index src_len, Index tgt_len) const;

  // Teacher-forced forward: log-probabilities [B, T, Vt] of the next token after each target prefix
  // (rows at padded target positions are zero). Ids are [B, S] / [B, T] padded with lengths.
  void forward_log_probs(const std::int64_t* src_ids, Index batch, Index src_len, const Index* src_lengths,
                         const std::int64_t* tgt_ids, Index tgt_len, const Index* tgt_lengths, float* out);

  // Encodes a batch and prepares decoding of `hyps_per_sentence` hypotheses per sentence (row r belongs
  // to sentence r / hyps_per_sentence) for at most max_steps steps, with caches for up to
  // max_hyps_per_sentence hypotheses per sentence (beam search grows to its beam; 0: hyps_per_sentence).
  void start(DecodeState& state, const std::int64_t* src_ids, Index batch, Index src_len, const Index* src_lengths,
             Index hyps_per_sentence, Index max_steps, Index max_hyps_per_sentence = 0);

  // One step: feeds tokens[r] (the last token of each live hypothesis) and writes the log-probabilities
  // of the next token, [state.rows, Vt], into state.logits.
  void step(DecodeState& state, const std::int64_t* tokens);

  // Keeps hypotheses: new row r continues old row sources[r] (sources.size() new rows; a row may be
  // repeated, as beam search needs, or dropped, when its sentence is finished).
  void reorder(DecodeState& state, const std::vector<Index>& sources);

  std::mutex& mutex() { return mutex_; }
  // A state kept between generate() calls (use it only while holding mutex()): its caches grow to the
  // largest batch seen and are reused, instead of tens of MB being allocated and page-faulted per call.
  DecodeState& reusable_state() { return decode_state_; }

 private:
  void embed(const Embedding& e, const std::int64_t* ids, const Index* positions, Index count, float* out) const;

  Seq2SeqConfig config_;
  std::unique_ptr<TransformerModel> stacks_;
  std::unique_ptr<Embedding> src_embedding_;
  std::unique_ptr<Embedding> tgt_embedding_;  // null when shared
  std::unique_ptr<PackedWeight> output_;      // [D, Vt]
  std::vector<float> logits_bias_;            // empty when none
  Workspace ws_;
  DecodeState decode_state_;
  std::mutex mutex_;
};

}  // namespace cpuformer
