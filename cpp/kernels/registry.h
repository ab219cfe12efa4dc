// The only place that knows every ISA's kernel table. The active table is chosen once (best supported,
// or CPUFORMER_ISA) and can be switched in-process for tests; objects that packed data with a table keep
// a pointer to that table, so a switch never mixes layouts.
#pragma once

#include "cpu/isa.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

const KernelTable& kernels_for(Isa isa);  // throws std::invalid_argument when not supported here
const KernelTable& active_kernels();
void set_active_isa(Isa isa);

}  // namespace cpuformer
