// Refusing a request that cannot fit: an allocation larger than the machine's physical memory fails here
// with a message naming what asked for it, instead of being granted by the kernel's overcommit and ending,
// pages later, in the OOM killer (beam_size=10**6 killed the process that way).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace cpuformer {

// Thrown when a request exceeds physical memory; the bindings raise it as Python's MemoryError.
class OutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bytes of physical memory, or 0 where the platform does not say.
std::size_t physical_memory_bytes();

// Throws OutOfMemory ("<what> needs X GB ..., more than this machine's Y GB of memory") when `bytes` (a
// double: the product of absurd sizes must not wrap) exceeds physical memory.
void check_fits_in_memory(double bytes, const std::string& what, const char* purpose);

}  // namespace cpuformer
