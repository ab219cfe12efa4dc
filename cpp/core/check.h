// Argument checks that throw std::invalid_argument with a message naming the argument and the shapes.
// The bindings translate std::invalid_argument into Python's ValueError; nothing here includes pybind11.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace cpuformer {

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

}  // namespace cpuformer

// CPUFORMER_CHECK(cond, "a: expected ", n, " columns, got ", k): throws std::invalid_argument when false.
#define CPUFORMER_CHECK(cond, ...)                                                  \
  do {                                                                              \
    if (!(cond)) throw std::invalid_argument(::cpuformer::detail::concat(__VA_ARGS__)); \
  } while (0)
