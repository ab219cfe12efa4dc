#include "decode/search.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/check.h"
#include "decode/beam_search.h"
#include "decode/logits_processing.h"
#include "ops/rowwise.h"

namespace cpuformer {
namespace {

// Samples from softmax(row / temperature) restricted to the top-k, then to the top-p mass.
Index sample(const float* row, Index n, const DecodingOptions& o, std::mt19937_64& rng, std::vector<Index>& order,
             std::vector<double>& probs) {
  order.resize(n);
  std::iota(order.begin(), order.end(), Index{0});
  Index keep = o.sampling_topk > 0 ? std::min<Index>(o.sampling_topk, n) : n;
  auto by_score = [&](Index a, Index b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
  if (keep < n) {
    std::nth_element(order.begin(), order.begin() + keep, order.end(), by_score);
    order.resize(keep);
  }
  std::sort(order.begin(), order.end(), by_score);
  const double top = row[order[0]];
  probs.resize(order.size());
  double total = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    probs[i] = std::exp((row[order[i]] - top) / o.temperature);
    total += probs[i];
  }
  if (o.sampling_topp < 1.0f) {
    double mass = 0;
    std::size_t cut = order.size();
    for (std::size_t i = 0; i < order.size(); ++i) {
      mass += probs[i] / total;
      if (mass >= o.sampling_topp) {
        cut = i + 1;
        break;
      }
    }
    order.resize(cut);
    probs.resize(cut);
    total = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  if (!(total > 0) || !std::isfinite(total)) return order[0];
  std::uniform_real_distribution<double> uniform(0.0, total);
  double u = uniform(rng), acc = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    acc += probs[i];
    if (u < acc) return order[i];
  }
  return order.back();
}

// Greedy and sampling: one hypothesis per sentence; finished sentences leave the batch.
DecodingResult greedy_or_sample(Seq2SeqModel& model, const std::int64_t* src_ids, Index batch, Index src_len,
                                const Index* src_lengths, const DecodingOptions& o) {
  const Index vocab = model.config().tgt_vocab_size;
  DecodeState& st = model.reusable_state();  // generate() holds the model's mutex
  model.start(st, src_ids, batch, src_len, src_lengths, 1, o.max_length);
  DecodingResult result(batch, std::vector<Hypothesis>(1));
  std::vector<Index> sentence(batch);  // live row -> sentence
  std::iota(sentence.begin(), sentence.end(), Index{0});
  std::vector<std::int64_t> tokens(batch, o.decoder_start_id);
  std::vector<std::mt19937_64> rngs;
  if (o.sampling) {
    for (Index b = 0; b < batch; ++b) {
      std::seed_seq seq{static_cast<std::uint64_t>(o.seed), static_cast<std::uint64_t>(b)};
      rngs.emplace_back(seq);
    }
  }
  std::vector<Index> order;
  std::vector<double> probs;
  std::vector<Index> best(batch);  // greedy choice per live row
  for (Index t = 0; t < o.max_length && st.rows > 0; ++t) {
    model.step(st, tokens.data());
    std::vector<Index> keep;
    std::vector<std::int64_t> next;
    for (Index r = 0; r < st.rows; ++r) process_log_probs(st.logits.data() + r * vocab, vocab, t, o);
    if (!o.sampling) argmax_rows(st.logits.data(), st.rows, vocab, best.data(), model.num_threads());
    for (Index r = 0; r < st.rows; ++r) {
      float* row = st.logits.data() + r * vocab;
      const Index b = sentence[r];
      const Index id = o.sampling ? sample(row, vocab, o, rngs[b], order, probs) : best[r];
      Hypothesis& h = result[b][0];
      h.score += row[id];
      if (id == o.eos_id) continue;
      h.tokens.push_back(id);
      keep.push_back(r);
      next.push_back(id);
    }
    if (static_cast<Index>(keep.size()) != st.rows) {
      std::vector<Index> live(keep.size());
      for (std::size_t i = 0; i < keep.size(); ++i) live[i] = sentence[keep[i]];
      sentence = std::move(live);
      model.reorder(st, keep);
    }
    tokens = std::move(next);
  }
  return result;
}

}  // namespace

DecodingResult generate(Seq2SeqModel& model, const std::int64_t* src_ids, Index batch, Index src_len,
                        const Index* src_lengths, const DecodingOptions& options) {
  options.validate(model.config().tgt_vocab_size);
  model.check_source(src_ids, batch, src_len, src_lengths);
  std::lock_guard<std::mutex> lock(model.mutex());
  if (options.beam_size > 1) return beam_search(model, src_ids, batch, src_len, src_lengths, options);
  return greedy_or_sample(model, src_ids, batch, src_len, src_lengths, options);
}

}  // namespace cpuformer
