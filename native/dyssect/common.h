// Small shared definitions for the Dyssect data-plane logic.
// Plain C++17, no BESS or DPDK headers: everything here is unit-tested by
// `make -C native test` and wrapped by the BESS modules in native/modules/.
#ifndef DYSSECT_COMMON_H_
#define DYSSECT_COMMON_H_

#include <cstddef>
#include <cstdint>

#if defined(__GNUC__)
#define DYSSECT_LIKELY(x) __builtin_expect(!!(x), 1)
#define DYSSECT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define DYSSECT_LIKELY(x) (x)
#define DYSSECT_UNLIKELY(x) (x)
#endif

namespace dyssect {

// Cache line size assumed for padding hot fields written by different cores.
constexpr size_t kCacheLine = 64;

// "No core" marker for owner / pending-owner / consumer fields.
constexpr uint32_t kNoCore = 0xFFFFFFFFu;

inline constexpr bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

inline constexpr uint64_t NextPowerOfTwo(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace dyssect

#endif  // DYSSECT_COMMON_H_
