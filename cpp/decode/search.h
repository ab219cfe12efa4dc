// Greedy, beam and sampling search over a Seq2SeqModel, batched over sentences of different lengths and
// run entirely in C++. Sentences that are finished leave the batch (their cache rows are dropped), so
// they stop costing compute.
#pragma once

#include <cstdint>

#include "decode/decoding_options.h"
#include "model/seq2seq.h"

namespace cpuformer {

// src_ids [batch, src_len] padded, lengths [batch] (or null: all src_len).
DecodingResult generate(Seq2SeqModel& model, const std::int64_t* src_ids, Index batch, Index src_len,
                        const Index* src_lengths, const DecodingOptions& options);

}  // namespace cpuformer
