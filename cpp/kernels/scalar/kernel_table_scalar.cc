// The portable path: the generic kernels on one float at a time. Compiled with baseline flags on any
// architecture; a 4 × 4 tile keeps 16 accumulators in FP registers.
#include "kernels/impl/make_table.h"
#include "kernels/vec/vec_scalar.h"

namespace cpuformer::scalar {

constexpr KernelTable kKernelTable =
    impl::make_kernel_table<Vec, /*MR=*/4, /*NR=*/4>(Isa::kScalar, "scalar", {/*kc=*/256, /*mc=*/64, /*nc=*/256, /*mb=*/1024});

}  // namespace cpuformer::scalar
