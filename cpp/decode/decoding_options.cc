#include "decode/decoding_options.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"

namespace cpuformer {

void DecodingOptions::validate(Index vocab_size) const {
  CPUFORMER_CHECK(beam_size >= 1, "beam_size: expected an integer >= 1, got ", beam_size);
  CPUFORMER_CHECK(max_length >= 1, "max_length: expected an integer >= 1, got ", max_length);
  CPUFORMER_CHECK(min_length >= 0 && min_length <= max_length, "min_length: expected 0..max_length (", max_length,
                  "), got ", min_length);
  CPUFORMER_CHECK(num_hypotheses >= 1 && num_hypotheses <= beam_size, "num_hypotheses: expected 1..beam_size (",
                  beam_size, "), got ", num_hypotheses);
  CPUFORMER_CHECK(!sampling || beam_size == 1, "sampling: only with beam_size = 1, got beam_size = ", beam_size);
  CPUFORMER_CHECK(sampling_topk >= 0, "sampling_topk: expected an integer >= 0, got ", sampling_topk);
  CPUFORMER_CHECK(sampling_topp > 0.0f && sampling_topp <= 1.0f, "sampling_topp: expected a number in (0, 1], got ",
                  sampling_topp);
  CPUFORMER_CHECK(temperature > 0.0f, "temperature: expected a positive number, got ", temperature);
  CPUFORMER_CHECK(eos_id >= 0 && eos_id < vocab_size, "eos_id: expected an id in [0, ", vocab_size, "), got ", eos_id);
  CPUFORMER_CHECK(decoder_start_id >= 0 && decoder_start_id < vocab_size, "decoder_start_id: expected an id in [0, ",
                  vocab_size, "), got ", decoder_start_id);
  CPUFORMER_CHECK(std::isfinite(length_penalty), "length_penalty: expected a finite number, got ", length_penalty);
  std::vector<char> suppressed(static_cast<std::size_t>(vocab_size), 0);
  for (std::int64_t id : suppress_ids) {
    CPUFORMER_CHECK(id >= 0 && id < vocab_size, "suppress_ids: id ", id, " is out of range for a vocabulary of ",
                    vocab_size);
    suppressed[static_cast<std::size_t>(id)] = 1;
  }
  // Every token suppressed: every score would be -inf and the search would have nothing to choose.
  CPUFORMER_CHECK(std::count(suppressed.begin(), suppressed.end(), 0) > 0, "suppress_ids: all ", vocab_size,
                  " tokens of the vocabulary are suppressed, nothing could be generated");
}

}  // namespace cpuformer
