// A BERT-family encoder for sentence embeddings: word + learned absolute position + token-type
// embeddings, an embedding LayerNorm, post-LN encoder layers (TransformerModel's encoder stack), and
// pooling over each sentence's real tokens (mean, CLS or max) with optional L2 normalisation — all in C++.
//
// Weight names: the encoder stack's ("layers.{i}.self_attn.in_proj_weight", ...) plus
// "word_embeddings.weight" [V, D], "position_embeddings.weight" [P, D], "token_type_embeddings.weight"
// [types, D], "embeddings_norm.weight"/".bias" [D]. Inputs are padded ids [B, L] with lengths; padded
// positions are never computed (packed sequences).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/dims.h"
#include "model/transformer.h"
#include "model/weight_map.h"
#include "nn/layer_norm.h"
#include "nn/workspace.h"

namespace cpuformer {

enum class Pooling { kMean = 0, kCls = 1, kMax = 2 };

struct BertConfig {
  TransformerConfig transformer;  // encoder layers only (num_decoder_layers ignored), post-LN
  Index vocab_size = 0;
  Index max_positions = 512;
  Index type_vocab_size = 2;

  void validate() const;
};

class BertModel {
 public:
  BertModel(const BertConfig& config, const WeightMap& weights);
  static std::vector<WeightSpec> weight_specs(const BertConfig& config);

  const BertConfig& config() const { return config_; }
  void set_num_threads(int threads) { encoder_->set_num_threads(threads); }
  int num_threads() const { return encoder_->num_threads(); }

  // ids [B, L] padded, lengths [B] (each 1..L), token_types [B, L] or null (all 0).
  // out [B, D]: pooled sentence embeddings, L2-normalised when `normalize`.
  void embed(const std::int64_t* ids, const std::int64_t* token_types, Index batch, Index len,
             const Index* lengths, Pooling pooling, bool normalize, float* out);

 private:
  BertConfig config_;
  std::unique_ptr<TransformerModel> encoder_;
  std::vector<float> word_, position_, token_type_;
  std::unique_ptr<LayerNorm> embeddings_norm_;
  Workspace ws_;
  AlignedBuffer x_;
  std::mutex mutex_;
};

}  // namespace cpuformer
