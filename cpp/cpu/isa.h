// The instruction-set paths cpuformer can run and the choice between them: the best one this CPU
// supports, unless CPUFORMER_ISA (scalar | avx2 | avx512) forces a lower one at start-up.
#pragma once

#include <string>
#include <vector>

namespace cpuformer {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);
Isa parse_isa(const std::string& name);      // throws std::invalid_argument on an unknown name
bool isa_compiled(Isa isa);                  // was this path built into the library?
bool isa_supported(Isa isa);                 // compiled, and this CPU + OS can run it
std::vector<Isa> supported_isas();           // ascending
Isa best_isa();

// The ISA at start-up: CPUFORMER_ISA when set (throws if unknown or unsupported), else best_isa().
Isa startup_isa();

}  // namespace cpuformer
