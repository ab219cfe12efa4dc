// What a search is asked to do, and what it returns. Lengths count generated tokens: the decoder start
// token is not counted and not returned; the EOS token ends a hypothesis and is not returned either.
// Semantics follow Hugging Face transformers' generate() so that results can be compared token for token
// (their max_length = ours + 1 and their min_length = ours + 1, both counting the start token).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dims.h"

namespace cpuformer {

struct DecodingOptions {
  Index beam_size = 1;
  Index max_length = 256;           // generated tokens at most (EOS included when it is generated)
  Index min_length = 0;             // EOS is forbidden before this many tokens have been generated
  float length_penalty = 1.0f;      // beam scores are sum(log p) / length^length_penalty
  bool early_stopping = false;      // beam: stop a sentence once beam_size hypotheses have finished
  Index num_hypotheses = 1;         // n-best, at most beam_size (sampling: 1)
  bool sampling = false;            // sample instead of taking the argmax (beam_size must be 1)
  Index sampling_topk = 0;          // keep the k most likely tokens (0: all)
  float sampling_topp = 1.0f;       // keep the smallest set of tokens with probability mass >= p
  float temperature = 1.0f;
  std::uint64_t seed = 0;           // sampling: sentence i uses a generator seeded from (seed, i)
  bool force_eos_at_max_length = false;  // the last allowed token must be EOS (Marian's forced_eos_token_id)
  std::vector<std::int64_t> suppress_ids;  // never generated (e.g. the padding token)
  std::int64_t eos_id = 1;
  std::int64_t decoder_start_id = 0;

  void validate(Index vocab_size) const;  // std::invalid_argument naming the bad option
};

struct Hypothesis {
  std::vector<std::int64_t> tokens;
  float score = 0.0f;  // greedy/sampling: sum of log-probabilities; beam: length-penalised
};

// One entry per sentence: its hypotheses, best first.
using DecodingResult = std::vector<std::vector<Hypothesis>>;

}  // namespace cpuformer
