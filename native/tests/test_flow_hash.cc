// Flow hash: the standard CRC32C, the key's byte order (pinned against values
// computed independently in Python, as tests/bess/harness.py does), the
// SSE4.2 path against the portable one, and FlowTable::Mix spreading hashes
// that share the shard bits.
#include <cstring>
#include <random>
#include <set>

#include "dyssect/flow_hash.h"
#include "dyssect/flow_table.h"
#include "test.h"

using namespace dyssect;

namespace {
FlowKey KeyOf(const char* src, const char* dst, uint16_t sp, uint16_t dp, uint8_t proto) {
  auto ip = [](const char* a) {
    uint32_t b[4] = {};
    std::sscanf(a, "%u.%u.%u.%u", &b[0], &b[1], &b[2], &b[3]);
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
  };
  return MakeFlowKey(ip(src), ip(dst), sp, dp, proto);
}
}  // namespace

TEST(crc32c_standard_check_value) {
  const char* s = "123456789";
  CHECK_EQ(Crc32cPortable(reinterpret_cast<const uint8_t*>(s), 9), 0xE3069283u);
  CHECK_EQ(Crc32cPortable(nullptr, 0), 0u);
}

TEST(flow_hash_is_crc32c_of_the_key_bytes) {
  // Values from an independent Python CRC32C over
  // struct.pack("<IIHHB3x", src, dst, sport, dport, proto).
  CHECK_EQ(FlowHashCrc32c(KeyOf("10.0.0.1", "192.0.2.1", 10000, 53, kProtoUdp)), 0xB7A578FAu);
  CHECK_EQ(FlowHashCrc32c(KeyOf("10.1.0.1", "192.0.2.99", 4000, 53, kProtoTcp)), 0xE9D0D8E6u);
  std::mt19937 rng(5);
  for (int i = 0; i < 10000; i++) {
    const FlowKey k = MakeFlowKey(rng(), rng(), static_cast<uint16_t>(rng()),
                                  static_cast<uint16_t>(rng()), i & 1 ? kProtoTcp : kProtoUdp);
    uint8_t bytes[sizeof(FlowKey)];
    std::memcpy(bytes, &k, sizeof(k));  // little-endian host: the documented order
    CHECK_EQ(FlowHashCrc32c(k), Crc32cPortable(bytes, sizeof(bytes)));
  }
}

TEST(flow_hash_sse42_matches_portable) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("sse4.2")) {
    std::printf("  (no SSE4.2 on this CPU: portable path only)\n");
    return;
  }
  std::mt19937_64 rng(9);
  for (int i = 0; i < 10000; i++) {
    const uint64_t w[2] = {rng(), rng()};
    uint8_t bytes[16];
    std::memcpy(bytes, w, sizeof(w));
    CHECK_EQ(Crc32cWordsSse42(w[0], w[1]), Crc32cPortable(bytes, sizeof(bytes)));
  }
#endif
}

TEST(hash_kind_parses_known_names_only) {
  HashKind k = HashKind::kToeplitz;
  CHECK(ParseHashKind("", &k) && k == HashKind::kCrc32c);
  CHECK(ParseHashKind("toeplitz", &k) && k == HashKind::kToeplitz);
  CHECK(ParseHashKind("crc32c", &k) && k == HashKind::kCrc32c);
  CHECK(!ParseHashKind("crc32", &k));
  CHECK(!ParseHashKind("toeplitzz", &k));
  CHECK(!ParseHashKind("Toeplitz", &k));
}

// One shard of 16 sees flow hashes with equal low 4 bits; the table index
// (Mix) must still use the whole index: 4096 such flows over 8192 slots.
TEST(table_mix_spreads_flows_of_one_shard) {
  std::set<uint32_t> slots;
  for (uint32_t i = 0; i < 4096; i++) {
    const uint32_t h = FlowHashCrc32c(MakeFlowKey(0x0A000000 + i, 0xC0000201, 1024 + i, 80,
                                                  kProtoTcp));
    slots.insert(FlowTable::Mix((h & ~15u) | 5u) & 8191u);
  }
  // Uniform hashing fills 8192 * (1 - e^-0.5) = 3223 slots on average; the
  // low hash bits themselves would give at most 8192 / 16 = 512.
  CHECK(slots.size() > 3000u);
}
