#include "model/bert.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/check.h"
#include "core/parallel.h"

namespace cpuformer {

void BertConfig::validate() const {
  transformer.validate();
  CPUFORMER_CHECK(vocab_size > 0, "vocab_size: expected a positive integer, got ", vocab_size);
  CPUFORMER_CHECK(max_positions > 0, "max_positions: expected a positive integer, got ", max_positions);
  CPUFORMER_CHECK(type_vocab_size > 0, "type_vocab_size: expected a positive integer, got ", type_vocab_size);
}

std::vector<WeightSpec> BertModel::weight_specs(const BertConfig& c) {
  std::vector<WeightSpec> s = TransformerModel::weight_specs(c.transformer, TransformerPart::kEncoder);
  const Index d = c.transformer.d_model;
  s.push_back({"word_embeddings.weight", {c.vocab_size, d}});
  s.push_back({"position_embeddings.weight", {c.max_positions, d}});
  s.push_back({"token_type_embeddings.weight", {c.type_vocab_size, d}});
  s.push_back({"embeddings_norm.weight", {d}});
  s.push_back({"embeddings_norm.bias", {d}});
  return s;
}

BertModel::BertModel(const BertConfig& config, const WeightMap& weights) : config_(config) {
  config_.transformer.num_decoder_layers = 0;
  config_.transformer.decoder_final_norm = false;
  config_.validate();
  weights.validate(weight_specs(config_), "BERT");
  encoder_ = std::make_unique<TransformerModel>(config_.transformer, weights, TransformerPart::kEncoder, false);
  const Index d = config_.transformer.d_model;
  auto copy = [&](const char* name, Index rows, std::vector<float>& dst) {
    const float* p = weights.get(name);
    dst.assign(p, p + rows * d);
  };
  copy("word_embeddings.weight", config_.vocab_size, word_);
  copy("position_embeddings.weight", config_.max_positions, position_);
  copy("token_type_embeddings.weight", config_.type_vocab_size, token_type_);
  embeddings_norm_ = std::make_unique<LayerNorm>(weights.get("embeddings_norm.weight"),
                                                 weights.get("embeddings_norm.bias"), d,
                                                 config_.transformer.layer_norm_eps);
}

void BertModel::embed(const std::int64_t* ids, const std::int64_t* token_types, Index batch, Index len,
                      const Index* lengths, Pooling pooling, bool normalize, float* out) {
  CPUFORMER_CHECK(len <= config_.max_positions, "input_ids: sequences of ", len,
                  " tokens exceed the model's max_position_embeddings = ", config_.max_positions);
  const SequenceBatch seqs = SequenceBatch::make(batch, len, lengths);
  for (Index b = 0; b < batch; ++b) {
    CPUFORMER_CHECK(seqs.lengths[b] >= 1, "lengths: sentence ", b, " has no tokens (expected at least 1)");
    for (Index i = 0; i < seqs.lengths[b]; ++i) {
      const std::int64_t id = ids[b * len + i];
      if (id < 0 || id >= config_.vocab_size)
        throw std::out_of_range("input_ids: token id " + std::to_string(id) + " (sentence " + std::to_string(b) +
                                ", position " + std::to_string(i) + ") is out of range for a vocabulary of " +
                                std::to_string(config_.vocab_size) + " tokens");
      const std::int64_t t = token_types ? token_types[b * len + i] : 0;
      if (t < 0 || t >= config_.type_vocab_size)
        throw std::out_of_range("token_type_ids: " + std::to_string(t) + " is out of range for " +
                                std::to_string(config_.type_vocab_size) + " types");
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  const Index d = config_.transformer.d_model;
  float* x = x_.reserve(static_cast<std::size_t>(std::max<Index>(1, seqs.total * d)));
  // (word + token type) + position, in that order, as BERT's embedding layer adds them.
  parallel_for(batch, [&](Index b0, Index b1) {
    for (Index b = b0; b < b1; ++b)
      for (Index i = 0; i < seqs.lengths[b]; ++i) {
        const float* w = word_.data() + ids[b * len + i] * d;
        const float* t = token_type_.data() + (token_types ? token_types[b * len + i] : 0) * d;
        const float* p = position_.data() + i * d;
        float* row = x + (seqs.offsets[b] + i) * d;
        for (Index j = 0; j < d; ++j) row[j] = (w[j] + t[j]) + p[j];
      }
  }, encoder_->num_threads());
  embeddings_norm_->forward(x, nullptr, x, seqs.total, encoder_->num_threads());
  encoder_->run_encoder(x, seqs, AttentionMask{}, ws_);
  parallel_for(batch, [&](Index b0, Index b1) {
    for (Index b = b0; b < b1; ++b) {
      const float* rows = x + seqs.offsets[b] * d;
      const Index n = seqs.lengths[b];
      float* o = out + b * d;
      if (pooling == Pooling::kCls) {
        std::copy(rows, rows + d, o);
      } else if (pooling == Pooling::kMax) {
        std::copy(rows, rows + d, o);
        for (Index i = 1; i < n; ++i)
          for (Index j = 0; j < d; ++j) o[j] = std::max(o[j], rows[i * d + j]);
      } else {
        // Mean in double: the order of n additions then cannot matter at float precision.
        for (Index j = 0; j < d; ++j) {
          double s = 0;
          for (Index i = 0; i < n; ++i) s += rows[i * d + j];
          o[j] = static_cast<float>(s / static_cast<double>(n));
        }
      }
      if (normalize) {
        double ss = 0;
        for (Index j = 0; j < d; ++j) ss += static_cast<double>(o[j]) * o[j];
        const double norm = std::max(std::sqrt(ss), 1e-12);  // torch.nn.functional.normalize's eps
        for (Index j = 0; j < d; ++j) o[j] = static_cast<float>(o[j] / norm);
      }
    }
  }, encoder_->num_threads());
}

}  // namespace cpuformer
