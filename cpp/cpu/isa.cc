#include "cpu/isa.h"

#include <cstdlib>
#include <stdexcept>

#include "core/check.h"
#include "cpu/cpu_features.h"

namespace cpuformer {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::kScalar;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  CPUFORMER_CHECK(false, "isa: expected one of 'scalar', 'avx2', 'avx512', got '", name, "'");
  return Isa::kScalar;
}

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
#ifdef CPUFORMER_HAVE_AVX2
    case Isa::kAvx2: return true;
#endif
#ifdef CPUFORMER_HAVE_AVX512
    case Isa::kAvx512: return true;
#endif
    default: return false;
  }
}

bool isa_supported(Isa isa) {
  if (!isa_compiled(isa)) return false;
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return f.avx2;
    case Isa::kAvx512: return f.avx512;
  }
  return false;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa best_isa() { return supported_isas().back(); }

Isa startup_isa() {
  const char* forced = std::getenv("CPUFORMER_ISA");
  if (forced == nullptr || *forced == '\0') return best_isa();
  Isa isa = Isa::kScalar;
  try {
    isa = parse_isa(forced);
  } catch (const std::invalid_argument&) {
    CPUFORMER_CHECK(false, "CPUFORMER_ISA: expected one of 'scalar', 'avx2', 'avx512', got '", forced, "'");
  }
  CPUFORMER_CHECK(isa_supported(isa), "CPUFORMER_ISA=", forced, ": this ",
                  isa_compiled(isa) ? "CPU does not support it" : "build does not include it",
                  " (supported here: ", isa_name(best_isa()), " and below)");
  return isa;
}

}  // namespace cpuformer
