// Beam search as Hugging Face transformers' generate() runs it (num_beams > 1, no sampling), so that
// outputs can be compared token for token: at each step the 2·beam best continuations of all live beams
// are ranked; those among the first `beam` that end (EOS, or the length limit) are scored
// sum(log p) / length^length_penalty and kept among the sentence's best `beam` finished hypotheses; the
// best `beam` that do not end continue. A sentence stops when no live beam can beat its worst finished
// hypothesis (length_penalty heuristic of early_stopping=False), or when `beam` hypotheses have
// finished (early_stopping=True), or at max_length. Finished sentences leave the batch.
#pragma once

#include <cstdint>

#include "decode/decoding_options.h"
#include "model/seq2seq.h"

namespace cpuformer {

DecodingResult beam_search(Seq2SeqModel& model, const std::int64_t* src_ids, Index batch, Index src_len,
                           const Index* src_lengths, const DecodingOptions& options);

}  // namespace cpuformer
