#include "decode/beam_search.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "decode/logits_processing.h"
#include "kernels/kernel_table.h"

namespace cpuformer {
namespace {

struct Beam {
  std::vector<std::int64_t> tokens;
  float score = 0.0f;  // sum of log-probabilities
  Index row = 0;       // its row in the decode state
};

struct Candidate {
  float score;     // running sum of log-probabilities
  Index beam;      // which live beam it extends
  Index token;
};

struct Sentence {
  std::vector<Beam> live;
  std::vector<Hypothesis> finished;  // best first, at most beam_size
  bool done = false;
};

// The k best (score desc, then flat index asc) of the live beams' continuations.
// Once k candidates are held, a chunk of the vocabulary whose largest entry (the vectorised argmax
// kernel; NaN never counts, as below) cannot beat the k-th is skipped whole: float addition is
// monotonic, so no entry of it would pass the element test either. The element-by-element scan of
// 4 × 32k log-probabilities per sentence cost ~2.4% of a batch-32 beam-4 step.
constexpr Index kCandidateChunk = 256;

void top_candidates(const KernelTable& kernels, const Sentence& s, const float* logits, Index vocab, Index k,
                    std::vector<Candidate>& out) {
  out.clear();
  for (Index bi = 0; bi < static_cast<Index>(s.live.size()); ++bi) {
    const float* row = logits + s.live[bi].row * vocab;
    const float base = s.live[bi].score;
    for (Index j0 = 0; j0 < vocab; j0 += kCandidateChunk) {
      const Index j1 = std::min<Index>(vocab, j0 + kCandidateChunk);
      if (static_cast<Index>(out.size()) == k) {
        const Index top = j0 + kernels.argmax_row(row + j0, j1 - j0);
        if (!(base + row[top] > out.back().score)) continue;
      }
      for (Index j = j0; j < j1; ++j) {
        const float score = base + row[j];
        if (static_cast<Index>(out.size()) == k && !(score > out.back().score)) continue;
        Candidate c{score, bi, j};
        auto pos = std::upper_bound(out.begin(), out.end(), c,
                                    [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
        out.insert(pos, c);
        if (static_cast<Index>(out.size()) > k) out.pop_back();
      }
    }
  }
}

float penalised(float score, Index length, float penalty) {
  return score / std::pow(static_cast<float>(length), penalty);
}

void add_finished(Sentence& s, Hypothesis h, Index beam_size) {
  auto pos = std::upper_bound(s.finished.begin(), s.finished.end(), h,
                              [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
  s.finished.insert(pos, std::move(h));
  if (static_cast<Index>(s.finished.size()) > beam_size) s.finished.pop_back();
}

}  // namespace

DecodingResult beam_search(Seq2SeqModel& model, const std::int64_t* src_ids, Index batch, Index src_len,
                           const Index* src_lengths, const DecodingOptions& o) {
  const Index vocab = model.config().tgt_vocab_size;
  const Index beam = o.beam_size;
  DecodeState& st = model.reusable_state();  // generate() holds the model's mutex
  model.start(st, src_ids, batch, src_len, src_lengths, 1, o.max_length, beam);
  std::vector<Sentence> sentences(batch);
  for (Index b = 0; b < batch; ++b) sentences[b].live.push_back(Beam{{}, 0.0f, b});
  std::vector<std::int64_t> tokens(batch, o.decoder_start_id);
  std::vector<std::vector<Candidate>> candidates(batch);

  for (Index t = 0; t < o.max_length && st.rows > 0; ++t) {
    model.step(st, tokens.data());
    float* logits = st.logits.data();
    for (Index r = 0; r < st.rows; ++r) process_log_probs(logits + r * vocab, vocab, t, o);
    // Rank continuations per live sentence (independent: split across the model's threads, not the
    // process default, so that a model set to one thread never starts a parallel region).
    parallel_for(batch, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b)
        if (!sentences[b].done) top_candidates(*st.kernels, sentences[b], logits, vocab, 2 * beam, candidates[b]);
    }, model.num_threads());
    const bool at_limit = t + 1 >= o.max_length;
    std::vector<Index> sources;
    std::vector<std::int64_t> next_tokens;
    for (Index b = 0; b < batch; ++b) {
      Sentence& s = sentences[b];
      if (s.done) continue;
      std::vector<Beam> next;
      const bool full = static_cast<Index>(s.finished.size()) == beam;
      for (Index i = 0; i < static_cast<Index>(candidates[b].size()); ++i) {
        const Candidate& c = candidates[b][i];
        const bool ends = c.token == o.eos_id || at_limit;
        const Beam& parent = s.live[c.beam];
        if (ends) {
          // Only the first `beam` ranked continuations may finish (HF's top_num_beam_mask), and not once
          // the sentence is full under early_stopping.
          if (i < beam && !(o.early_stopping && full) && std::isfinite(c.score)) {
            Hypothesis h;
            h.tokens = parent.tokens;
            if (c.token != o.eos_id) h.tokens.push_back(c.token);
            h.score = penalised(c.score, t + 1, o.length_penalty);
            add_finished(s, std::move(h), beam);
          }
        } else if (static_cast<Index>(next.size()) < beam) {
          Beam nb{parent.tokens, c.score, parent.row};
          nb.tokens.push_back(c.token);
          next.push_back(std::move(nb));
        }
      }
      // Stop when no live beam can still beat the worst finished hypothesis (HF's heuristic for
      // early_stopping=False: the best live score normalised by the current length), when beam
      // hypotheses have finished under early_stopping, or when nothing can continue.
      const bool filled = static_cast<Index>(s.finished.size()) == beam;
      if (next.empty() || at_limit) {
        s.done = true;
      } else if (filled && o.early_stopping) {
        s.done = true;
      } else if (filled) {
        const float best_possible = penalised(next.front().score, t + 1, o.length_penalty);
        if (!(best_possible > s.finished.back().score)) s.done = true;
      }
      s.live = std::move(next);
      if (s.done) continue;
      for (Beam& nb : s.live) {
        const Index parent_row = nb.row;
        nb.row = static_cast<Index>(sources.size());
        sources.push_back(parent_row);
        next_tokens.push_back(nb.tokens.back());
      }
    }
    model.reorder(st, sources);
    tokens = std::move(next_tokens);
  }
  DecodingResult result(batch);
  for (Index b = 0; b < batch; ++b) {
    Sentence& s = sentences[b];
    const Index n = std::min<Index>(o.num_hypotheses, static_cast<Index>(s.finished.size()));
    result[b].assign(s.finished.begin(), s.finished.begin() + n);
  }
  return result;
}

}  // namespace cpuformer
