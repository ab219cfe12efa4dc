// The AVX2 + FMA path (16 ymm registers): a 6 × 16 tile uses 12 accumulators, 2 B vectors and one
// broadcast, the classic Haswell sgemm shape; kc × 16 B panel = 16 KiB in L1.
#include "kernels/impl/make_table.h"
#include "kernels/vec/vec_avx2.h"

namespace cpuformer::avx2 {

constexpr KernelTable kKernelTable =
    impl::make_kernel_table<Vec, /*MR=*/6, /*NR=*/16>(Isa::kAvx2, "avx2", {/*kc=*/256, /*mc=*/144, /*nc=*/64, /*mb=*/1008});

}  // namespace cpuformer::avx2
