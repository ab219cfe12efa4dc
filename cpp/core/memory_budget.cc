#include "core/memory_budget.h"

#include <cstdio>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace cpuformer {

std::size_t physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page);
#endif
  return 0;
}

void check_fits_in_memory(double bytes, const std::string& what, const char* purpose) {
  const std::size_t total = physical_memory_bytes();
  if (total == 0 || bytes <= static_cast<double>(total)) return;
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, " needs %.1f GB ", bytes / 1e9);
  std::string message = what + numbers + purpose;  // "<what> needs 49.3 GB for its key/value caches"
  std::snprintf(numbers, sizeof numbers, ", more than this machine's %.1f GB of memory", static_cast<double>(total) / 1e9);
  throw OutOfMemory(message + numbers);
}

}  // namespace cpuformer
