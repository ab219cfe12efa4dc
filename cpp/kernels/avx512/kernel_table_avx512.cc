// The AVX-512 path (32 zmm registers): a 14 × 32 tile uses 28 accumulators, 2 B vectors and a broadcast
// folded into the FMA's memory operand; two FMA ports need ≥ 8 independent chains, 28 hide latency well.
#include "kernels/impl/make_table.h"
#include "kernels/vec/vec_avx512.h"

namespace cpuformer::avx512 {

constexpr KernelTable kKernelTable =
    impl::make_kernel_table<Vec, /*MR=*/14, /*NR=*/32, /*KC=*/256, /*MC=*/98>(Isa::kAvx512, "avx512");

}  // namespace cpuformer::avx512
