#include "kernels/registry.h"

#include <atomic>

#include "core/check.h"

namespace cpuformer {
namespace {
std::atomic<const KernelTable*> g_active{nullptr};
}  // namespace

const KernelTable& kernels_for(Isa isa) {
  CPUFORMER_CHECK(isa_supported(isa), "isa: '", isa_name(isa), "' is not ",
                  isa_compiled(isa) ? "supported by this CPU" : "compiled into this build");
  switch (isa) {
#ifdef CPUFORMER_HAVE_AVX512
    case Isa::kAvx512: return avx512::kKernelTable;
#endif
#ifdef CPUFORMER_HAVE_AVX2
    case Isa::kAvx2: return avx2::kKernelTable;
#endif
    default: return scalar::kKernelTable;
  }
}

const KernelTable& active_kernels() {
  const KernelTable* table = g_active.load(std::memory_order_acquire);
  if (table == nullptr) {
    table = &kernels_for(startup_isa());
    g_active.store(table, std::memory_order_release);
  }
  return *table;
}

void set_active_isa(Isa isa) { g_active.store(&kernels_for(isa), std::memory_order_release); }

}  // namespace cpuformer
