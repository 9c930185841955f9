// The flow hash: one 32-bit hash per packet that picks both the packet's shard
// (its low bits, hash & (S - 1)) and its flow-table slot (the table mixes all
// 32 bits, see FlowTable::Mix, so the low bits every flow of a shard shares do
// not cluster that shard's table).
//
// Which hash:
//   - hardware RSS: the NIC's Toeplitz hash, carried in the mbuf, so the RETA
//     and the shard agree (toeplitz.h computes the same value in software for
//     packets the NIC did not hash);
//   - software steering: no NIC has to agree, so by default CRC32C of the
//     16-byte FlowKey (the SSE4.2 crc32 instruction, two of them; a portable
//     table otherwise), about a quarter of the Toeplitz's 12 table lookups.
//     The Toeplitz stays selectable (HashKind::kToeplitz), e.g. to check
//     agreement with a NIC.
//
// Both are pure functions of the directional 5-tuple (no symmetry: the NAT
// translates one direction only), so tests can compute a packet's shard
// independently. The CRC32C is the standard one (Castagnoli, reflected,
// initial value and final XOR 0xFFFFFFFF) over the key's 16 bytes in memory
// order: src_ip, dst_ip, src_port, dst_port as little-endian host-order
// integers, proto, three zero bytes.
#ifndef DYSSECT_FLOW_HASH_H_
#define DYSSECT_FLOW_HASH_H_

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "flow_key.h"

namespace dyssect {

enum class HashKind : uint8_t { kCrc32c = 0, kToeplitz = 1 };

// Byte-at-a-time CRC32C table (reflected polynomial 0x82F63B78).
struct Crc32cTable {
  uint32_t t[256];
  constexpr Crc32cTable() : t() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[i] = c;
    }
  }
};
inline constexpr Crc32cTable kCrc32cTable{};

// Standard CRC32C of n bytes (portable; the reference the tests check against).
inline uint32_t Crc32cPortable(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = kCrc32cTable.t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return ~c;
}

#if defined(__x86_64__)
// CRC32C of two little-endian 64-bit words with the SSE4.2 instruction. Only
// for CPUs that have it: the plugin is built for one (-march), the unit tests
// check __builtin_cpu_supports("sse4.2") first.
__attribute__((target("sse4.2"))) inline uint32_t Crc32cWordsSse42(uint64_t w0, uint64_t w1) {
  uint64_t c = 0xFFFFFFFFu;
  c = _mm_crc32_u64(c, w0);
  c = _mm_crc32_u64(c, w1);
  return ~static_cast<uint32_t>(c);
}
#endif

// CRC32C of the key's 16 bytes. The two 64-bit words are built from the
// fields in registers: the parser has just written the key field by field,
// and 8-byte loads of those narrow stores would stall store forwarding.
inline uint32_t FlowHashCrc32c(const FlowKey& k) {
  const uint64_t w0 = static_cast<uint64_t>(k.src_ip) | (static_cast<uint64_t>(k.dst_ip) << 32);
  const uint64_t w1 = static_cast<uint64_t>(k.src_port) |
                      (static_cast<uint64_t>(k.dst_port) << 16) |
                      (static_cast<uint64_t>(k.proto) << 32);
#if defined(__x86_64__) && defined(__SSE4_2__)
  return Crc32cWordsSse42(w0, w1);
#else
  uint8_t b[16];
  for (int i = 0; i < 8; i++) {
    b[i] = static_cast<uint8_t>(w0 >> (8 * i));
    b[8 + i] = static_cast<uint8_t>(w1 >> (8 * i));
  }
  return Crc32cPortable(b, 16);
#endif
}

// Parses "crc32c" / "toeplitz" (empty: the default, crc32c). False if unknown.
inline bool ParseHashKind(const char* s, HashKind* out) {
  const auto eq = [](const char* a, const char* b) {
    while (*a != 0 && *a == *b) {
      a++;
      b++;
    }
    return *a == *b;
  };
  if (s == nullptr || *s == 0 || eq(s, "crc32c")) {
    *out = HashKind::kCrc32c;
    return true;
  }
  if (eq(s, "toeplitz")) {
    *out = HashKind::kToeplitz;
    return true;
  }
  return false;
}

}  // namespace dyssect

#endif  // DYSSECT_FLOW_HASH_H_
