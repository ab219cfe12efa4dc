#include "model/seq2seq.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/check.h"
#include "core/memory_budget.h"
#include "core/parallel.h"
#include "kernels/registry.h"
#include "ops/gemm.h"
#include "ops/packed_keys.h"
#include "ops/rowwise.h"

namespace cpuformer {

void Seq2SeqConfig::validate() const {
  transformer.validate();
  CPUFORMER_CHECK(src_vocab_size > 0, "src_vocab_size: expected a positive integer, got ", src_vocab_size);
  CPUFORMER_CHECK(tgt_vocab_size > 0, "tgt_vocab_size: expected a positive integer, got ", tgt_vocab_size);
  CPUFORMER_CHECK(!shared_embeddings || src_vocab_size == tgt_vocab_size,
                  "shared_embeddings: source and target vocabularies differ (", src_vocab_size, " vs ",
                  tgt_vocab_size, ")");
  CPUFORMER_CHECK(max_positions > 0, "max_positions: expected a positive integer, got ", max_positions);
  for (auto [name, id] : {std::pair<const char*, std::int64_t>{"pad_id", pad_id}, {"eos_id", eos_id},
                          {"decoder_start_id", decoder_start_id}})
    CPUFORMER_CHECK(id >= 0 && id < tgt_vocab_size, name, ": expected an id in [0, ", tgt_vocab_size, "), got ", id);
}

std::vector<WeightSpec> Seq2SeqModel::weight_specs(const Seq2SeqConfig& c) {
  std::vector<WeightSpec> s = TransformerModel::weight_specs(c.transformer, TransformerPart::kFull);
  const Index d = c.transformer.d_model;
  s.push_back({"src_embedding.weight", {c.src_vocab_size, d}});
  if (!c.shared_embeddings) s.push_back({"tgt_embedding.weight", {c.tgt_vocab_size, d}});
  if (!c.tied_output) s.push_back({"output_projection.weight", {c.tgt_vocab_size, d}});
  if (c.final_logits_bias) s.push_back({"final_logits_bias", {c.tgt_vocab_size}});
  return s;
}

Seq2SeqModel::Seq2SeqModel(const Seq2SeqConfig& config, const WeightMap& weights) : config_(config) {
  config_.validate();
  weights.validate(weight_specs(config_), "sequence-to-sequence");
  stacks_ = std::make_unique<TransformerModel>(config_.transformer, weights, TransformerPart::kFull, false);
  const Index d = config_.transformer.d_model;
  src_embedding_ = std::make_unique<Embedding>(weights.get("src_embedding.weight"), config_.src_vocab_size, d,
                                               config_.embedding_scale, config_.positional, config_.max_positions);
  if (!config_.shared_embeddings)
    tgt_embedding_ = std::make_unique<Embedding>(weights.get("tgt_embedding.weight"), config_.tgt_vocab_size, d,
                                                 config_.embedding_scale, config_.positional, config_.max_positions);
  const Embedding& tgt = tgt_embedding_ ? *tgt_embedding_ : *src_embedding_;
  const float* projection = config_.tied_output ? tgt.table() : weights.get("output_projection.weight");
  output_ = std::make_unique<PackedWeight>(active_kernels(), projection, d, d, config_.tgt_vocab_size, true);
  if (config_.final_logits_bias) {
    const float* b = weights.get("final_logits_bias");
    logits_bias_.assign(b, b + config_.tgt_vocab_size);
  }
}

void Seq2SeqModel::check_source(const std::int64_t* ids, Index batch, Index len, const Index* lengths) const {
  CPUFORMER_CHECK(batch > 0, "source_ids: expected at least one sentence");
  CPUFORMER_CHECK(len <= config_.max_positions, "source_ids: sentences of ", len,
                  " tokens exceed the model's max_positions = ", config_.max_positions);
  for (Index b = 0; b < batch; ++b) {
    const Index n = lengths ? lengths[b] : len;
    CPUFORMER_CHECK(n >= 1 && n <= len, "source_ids: sentence ", b, " has length ", n, ", expected 1..", len);
    src_embedding_->check_ids(ids + b * len, n, "source_ids");
  }
}

void Seq2SeqModel::embed(const Embedding& e, const std::int64_t* ids, const Index* positions, Index count,
                         float* out) const {
  e.forward(ids, positions, count, out);
}

void Seq2SeqModel::forward_log_probs(const std::int64_t* src_ids, Index batch, Index src_len,
                                     const Index* src_lengths, const std::int64_t* tgt_ids, Index tgt_len,
                                     const Index* tgt_lengths, float* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Index d = config_.transformer.d_model, v = config_.tgt_vocab_size;
  const Embedding& tgt_e = tgt_embedding_ ? *tgt_embedding_ : *src_embedding_;
  CPUFORMER_CHECK(tgt_len <= config_.max_positions, "target_ids: ", tgt_len,
                  " tokens exceed the model's max_positions = ", config_.max_positions);
  const SequenceBatch src = SequenceBatch::make(batch, src_len, src_lengths);
  const SequenceBatch tgt = SequenceBatch::make(batch, tgt_len, tgt_lengths);
  for (Index b = 0; b < batch; ++b) tgt_e.check_ids(tgt_ids + b * tgt_len, tgt.lengths[b], "target_ids");

  // Packed ids and positions of the real tokens.
  auto gather = [](const std::int64_t* ids, Index len, const SequenceBatch& s, std::vector<std::int64_t>& pid,
                   std::vector<Index>& pos) {
    pid.resize(s.total);
    pos.resize(s.total);
    for (Index b = 0; b < s.batch(); ++b)
      for (Index i = 0; i < s.lengths[b]; ++i) {
        pid[s.offsets[b] + i] = ids[b * len + i];
        pos[s.offsets[b] + i] = i;
      }
  };
  std::vector<std::int64_t> ids;
  std::vector<Index> pos;
  AlignedBuffer memory, x;
  float* mem = memory.reserve(static_cast<std::size_t>(std::max<Index>(1, src.total * d)));
  gather(src_ids, src_len, src, ids, pos);
  embed(*src_embedding_, ids.data(), pos.data(), src.total, mem);
  stacks_->run_encoder(mem, src, AttentionMask{}, ws_);
  const Index layers = config_.transformer.num_decoder_layers;
  float* kv = Workspace::get(ws_.memory_kv, layers * src.total * 2 * d);
  stacks_->project_memory(mem, src, kv);
  float* xt = x.reserve(static_cast<std::size_t>(std::max<Index>(1, tgt.total * d)));
  gather(tgt_ids, tgt_len, tgt, ids, pos);
  embed(tgt_e, ids.data(), pos.data(), tgt.total, xt);
  AttentionMask causal;
  causal.causal = true;
  stacks_->run_decoder(xt, tgt, causal, kv, src, AttentionMask{}, ws_);
  AlignedBuffer logits;
  float* lg = logits.reserve(static_cast<std::size_t>(std::max<Index>(1, tgt.total * v)));
  gemm(xt, d, tgt.total, *output_, GemmOutput{lg, v, logits_bias_.empty() ? nullptr : logits_bias_.data()},
       stacks_->num_threads());
  log_softmax_rows(lg, lg, tgt.total, v, stacks_->num_threads());
  for (Index b = 0; b < batch; ++b) {
    float* dst = out + b * tgt_len * v;
    std::memcpy(dst, lg + tgt.offsets[b] * v, sizeof(float) * static_cast<std::size_t>(tgt.lengths[b] * v));
    std::memset(dst + tgt.lengths[b] * v, 0, sizeof(float) * static_cast<std::size_t>((tgt_len - tgt.lengths[b]) * v));
  }
}

double Seq2SeqModel::log_probs_bytes(Index batch, Index src_len, Index tgt_len) const {
  const double d = static_cast<double>(config_.transformer.d_model);
  const double src = static_cast<double>(batch) * static_cast<double>(src_len);
  const double tgt = static_cast<double>(batch) * static_cast<double>(tgt_len);
  const double memory_kv = static_cast<double>(config_.transformer.num_decoder_layers) * src * 2.0 * d;
  return (src + tgt) * activation_bytes_per_token(config_.transformer) +
         sizeof(float) * (memory_kv + 2.0 * tgt * static_cast<double>(config_.tgt_vocab_size));
}

void Seq2SeqModel::start(DecodeState& st, const std::int64_t* src_ids, Index batch, Index src_len,
                         const Index* src_lengths, Index hyps_per_sentence, Index max_steps,
                         Index max_hyps_per_sentence) {
  CPUFORMER_CHECK(max_steps <= config_.max_positions, "max_length: ", max_steps,
                  " exceeds the model's max_positions = ", config_.max_positions);
  const Index d = config_.transformer.d_model;
  const Index layers = config_.transformer.num_decoder_layers;
  // Caches sized for the widest the search gets: growing them at its first reorder gathered every cache
  // into a new buffer, and kept the old one too (for batch-32 beam-4 decoding, ~50 MB more at the peak).
  // Checked against memory before any work (with the logits of those rows).
  st.kernels = &active_kernels();
  const int nr = st.kernels->gemm.nr;
  const Index widest = std::max(hyps_per_sentence, max_hyps_per_sentence);
  const Index steps = std::max<Index>(1, max_steps);
  const Index cache_stride = packed_keys_size(steps, d, nr);
  check_fits_in_memory(sizeof(float) * static_cast<double>(batch) * static_cast<double>(widest) *
                           (2.0 * layers * static_cast<double>(cache_stride) + config_.tgt_vocab_size),
                       detail::concat("decoding ", batch, " sentence(s) x ", widest,
                                      " hypotheses (beam_size, num_hypotheses) over ", max_steps,
                                      " steps (max_length)"),
                       "for its key/value caches");
  st.src = SequenceBatch::make(batch, src_len, src_lengths);
  std::vector<std::int64_t> ids(st.src.total);
  std::vector<Index> pos(st.src.total);
  for (Index b = 0; b < batch; ++b)
    for (Index i = 0; i < st.src.lengths[b]; ++i) {
      ids[st.src.offsets[b] + i] = src_ids[b * src_len + i];
      pos[st.src.offsets[b] + i] = i;
    }
  float* mem = Workspace::get(st.source, st.src.total * d);
  embed(*src_embedding_, ids.data(), pos.data(), st.src.total, mem);
  stacks_->run_encoder(mem, st.src, AttentionMask{}, ws_);
  float* kv = Workspace::get(st.memory_kv, layers * st.src.total * 2 * d);
  stacks_->project_memory(mem, st.src, kv);

  // The source keys in panel layout, once for all steps.
  const Index heads = config_.transformer.nhead;
  st.memory_k_offsets.resize(batch);
  st.memory_k_layer = 0;
  for (Index b = 0; b < batch; ++b) {
    st.memory_k_offsets[b] = st.memory_k_layer;
    st.memory_k_layer += packed_keys_size(st.src.lengths[b], d, nr);
  }
  float* mk = Workspace::get(st.memory_k, layers * st.memory_k_layer);
  parallel_for(layers * batch, [&](Index t0, Index t1) {
    for (Index t = t0; t < t1; ++t) {
      const Index l = t / batch, b = t % batch;
      pack_keys(*st.kernels, kv + l * st.src.total * 2 * d + st.src.offsets[b] * 2 * d, 2 * d, st.src.lengths[b],
                heads, d / heads, mk + l * st.memory_k_layer + st.memory_k_offsets[b]);
    }
  }, stacks_->num_threads());

  st.max_steps = steps;
  st.cache_stride = cache_stride;
  st.rows = batch * hyps_per_sentence;
  st.capacity_rows = batch * widest;
  st.step = 0;
  st.hyp_sentence.resize(st.rows);
  for (Index r = 0; r < st.rows; ++r) st.hyp_sentence[r] = r / hyps_per_sentence;
  st.slots.resize(st.rows);
  for (Index r = 0; r < st.rows; ++r) st.slots[r] = r;
  const Index cache = layers * st.capacity_rows * st.cache_stride;
  Workspace::get(st.k_cache, cache);
  Workspace::get(st.v_cache, cache);
}

void Seq2SeqModel::step(DecodeState& st, const std::int64_t* tokens) {
  const Index d = config_.transformer.d_model, v = config_.tgt_vocab_size;
  CPUFORMER_CHECK(st.step < st.max_steps, "decoding: no room for step ", st.step, " (max ", st.max_steps, ")");
  const Embedding& tgt_e = tgt_embedding_ ? *tgt_embedding_ : *src_embedding_;
  tgt_e.check_ids(tokens, st.rows, "tokens");
  float* x = Workspace::get(st.x, st.rows * d);
  std::vector<Index> positions(st.rows, st.step);
  embed(tgt_e, tokens, positions.data(), st.rows, x);
  const Index layers = config_.transformer.num_decoder_layers;
  const Index layer_stride = st.capacity_rows * st.cache_stride;
  st.views.resize(layers);
  for (Index l = 0; l < layers; ++l) {
    LayerStepCache& c = st.views[l];
    c.kernels = st.kernels;
    c.self_k = st.k_cache.data() + l * layer_stride;
    c.self_v = st.v_cache.data() + l * layer_stride;
    c.self_stride = st.cache_stride;
    c.slots = st.slots.data();
    c.position = st.step;
    c.memory_kv = st.memory_kv.data() + l * st.src.total * 2 * d;
    c.memory_k = st.memory_k.data() + l * st.memory_k_layer;
    c.memory_k_offsets = st.memory_k_offsets.data();
    c.memory_offsets = st.src.offsets.data();
    c.memory_lengths = st.src.lengths.data();
    c.hyp_sentence = st.hyp_sentence.data();
  }
  stacks_->decoder_step(x, st.rows, st.views.data(), ws_);
  float* lg = Workspace::get(st.logits, st.rows * v);
  gemm(x, d, st.rows, *output_, GemmOutput{lg, v, logits_bias_.empty() ? nullptr : logits_bias_.data()},
       stacks_->num_threads());
  log_softmax_rows(lg, lg, st.rows, v, stacks_->num_threads());
  ++st.step;
}

void Seq2SeqModel::reorder(DecodeState& st, const std::vector<Index>& sources) {
  const Index d = config_.transformer.d_model;
  const Index layers = config_.transformer.num_decoder_layers;
  const Index n = static_cast<Index>(sources.size());
  bool identity = n == st.rows;
  for (Index r = 0; identity && r < n; ++r) identity = sources[r] == r;
  if (identity) return;
  std::vector<Index> sentence(n);
  for (Index r = 0; r < n; ++r) sentence[r] = st.hyp_sentence[sources[r]];
  const Index stride = st.cache_stride;
  // The filled part of each cache, keys (ops/packed_keys.h key caches) and values alike: the first step · D
  // floats.
  const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(st.step * d);
  const int threads = stacks_->num_threads();
  CPUFORMER_CHECK(n <= st.capacity_rows, "decoding: ", n, " hypotheses exceed the ", st.capacity_rows,
                  " the caches were sized for at start");
  // In place, through the slot table: the first row taken from a hypothesis keeps its cache slot, and
  // only further rows from the same hypothesis copy its cache, into slots nobody keeps. (Moving caches
  // to follow row order instead copied every row that changed, and saved rows still needed first: a
  // finished sentence shifted all the rows after it.)
  std::vector<Index> slots(n, -1);
  std::vector<char> kept(st.capacity_rows, 0), parent_done(st.rows, 0);
  for (Index r = 0; r < n; ++r)
    if (!parent_done[sources[r]]) {
      parent_done[sources[r]] = 1;
      slots[r] = st.slots[sources[r]];
      kept[slots[r]] = 1;
    }
  std::vector<std::pair<Index, Index>> copies;  // (from slot, to slot)
  Index next_free = 0;
  for (Index r = 0; r < n; ++r) {
    if (slots[r] >= 0) continue;
    while (kept[next_free]) ++next_free;
    slots[r] = next_free++;
    copies.emplace_back(st.slots[sources[r]], slots[r]);
  }
  const Index layer = st.capacity_rows * stride, count = static_cast<Index>(copies.size());
  if (count > 0 && bytes > 0) {
    float* k = st.k_cache.data();
    float* v = st.v_cache.data();
    parallel_for(layers * count, [&](Index t0, Index t1) {
      for (Index t = t0; t < t1; ++t) {
        const Index l = t / count;
        const auto [from, to] = copies[t % count];
        std::memcpy(k + l * layer + to * stride, k + l * layer + from * stride, bytes);
        std::memcpy(v + l * layer + to * stride, v + l * layer + from * stride, bytes);
      }
    }, threads);
  }
  st.slots = std::move(slots);
  st.rows = n;
  st.hyp_sentence = std::move(sentence);
}

}  // namespace cpuformer
