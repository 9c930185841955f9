// Toeplitz RSS hash (the Microsoft RSS algorithm NICs implement), shard
// selection and RETA construction.
//
// The software hash must give the NIC's value for the same input so that
// software steering (virtual devices) and hardware RSS agree; it is checked
// against Microsoft's published RSS verification vectors in the tests.
//
// Shard of a packet: hash & (S - 1), with S a power of two. A NIC picks RETA
// entry hash & (R - 1) (low bits of the hash) for a RETA of R entries; when S
// divides R, entry k serves exactly shard k & (S - 1), so pointing every such
// entry at the shard owner's queue keeps NIC steering and software sharding
// consistent. CheckShardConfig enforces S power of two and S | R (the original
// never checked it, and its RETA array was fixed at 512 entries).
#ifndef DYSSECT_TOEPLITZ_H_
#define DYSSECT_TOEPLITZ_H_

#include <cstdint>
#include <cstring>

#include "common.h"
#include "flow_key.h"

namespace dyssect {

constexpr uint32_t kRssKeyLen = 40;
// The shard is the low bits of the hash; the dispatcher keeps 16 of them.
constexpr uint32_t kMaxShards = 65536;

// Microsoft's verification key; also DPDK's default (testpmd, many PMDs).
inline constexpr uint8_t kDefaultRssKey[kRssKeyLen] = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

// Bit-by-bit reference implementation. Requires key_len >= input_len + 4.
// Input bytes are in network order (as they appear in the packet).
inline uint32_t ToeplitzHashRef(const uint8_t* key, uint32_t key_len, const uint8_t* input,
                                uint32_t input_len) {
  if (key_len < input_len + 4) return 0;
  uint32_t result = 0;
  // window = key bits [i, i+32)
  uint32_t window = LoadBe32(key);
  uint32_t next_bit_idx = 32;
  for (uint32_t i = 0; i < input_len; i++) {
    for (int b = 7; b >= 0; b--) {
      if (input[i] & (1u << b)) result ^= window;
      uint32_t byte = next_bit_idx / 8;
      uint32_t bit = 7 - (next_bit_idx % 8);
      uint32_t nb = byte < key_len ? (key[byte] >> bit) & 1u : 0u;
      window = (window << 1) | nb;
      next_bit_idx++;
    }
  }
  return result;
}

// Table-driven Toeplitz for the IPv4 inputs used by RSS (8 or 12 bytes).
// Construction precomputes 12 x 256 entries; hashing is 8 or 12 lookups. Not
// thread-safe to re-key while hashing; build once at init. Word is the table
// entry: uint32_t gives the whole hash (12 KiB of tables); uint16_t its low 16
// bits (6 KiB), all a shard needs (S <= kMaxShards), for the software
// dispatcher, whose tables share the L1 cache with the packets it steers.
template <typename Word>
class BasicToeplitz {
 public:
  static constexpr uint32_t kMaxInput = 12;

  BasicToeplitz() { SetKey(kDefaultRssKey, kRssKeyLen); }
  BasicToeplitz(const uint8_t* key, uint32_t key_len) { SetKey(key, key_len); }

  // key_len must be >= 16 (12 input bytes + 4); RSS keys are 40 (or 52) bytes.
  // Returns false (and keeps the previous key) if too short.
  bool SetKey(const uint8_t* key, uint32_t key_len) {
    if (key_len < kMaxInput + 4) return false;
    for (uint32_t pos = 0; pos < kMaxInput; pos++) {
      for (uint32_t v = 0; v < 256; v++) {
        uint32_t h = 0;
        for (int b = 7; b >= 0; b--) {
          if (v & (1u << b)) {
            // key bits starting at bit offset pos*8 + (7-b)
            const uint32_t off = pos * 8 + (7 - b);
            const uint32_t byte = off / 8, shift = off % 8;
            uint64_t w = (static_cast<uint64_t>(LoadBe32(key + byte)) << 8) |
                         (byte + 4 < key_len ? key[byte + 4] : 0);
            h ^= static_cast<uint32_t>(w >> (8 - shift));
          }
        }
        table_[pos][v] = static_cast<Word>(h);
      }
    }
    return true;
  }

  // Hash of up to 12 network-order bytes.
  uint32_t Hash(const uint8_t* in, uint32_t n) const {
    uint32_t h = 0;
    for (uint32_t i = 0; i < n && i < kMaxInput; i++) h ^= table_[i][in[i]];
    return h;
  }

  // RSS "IPv4" hash type: src addr, dst addr (host order arguments). The
  // bytes are taken from the words in registers (no byte-array round trip:
  // byte stores followed by loads stall store forwarding).
  uint32_t HashIpv4(uint32_t src_ip, uint32_t dst_ip) const {
    return Of(0, src_ip) ^ Of(4, dst_ip);
  }

  // RSS "IPv4 + TCP/UDP" hash type: src addr, dst addr, src port, dst port.
  uint32_t HashIpv4L4(uint32_t src_ip, uint32_t dst_ip, uint16_t sport, uint16_t dport) const {
    return Of(0, src_ip) ^ Of(4, dst_ip) ^ Of(8, (static_cast<uint32_t>(sport) << 16) | dport);
  }

  // What a NIC configured for IPv4|TCP|UDP RSS computes for this flow: the
  // 4-tuple hash for TCP and UDP, the 2-tuple hash otherwise.
  uint32_t HashFlow(const FlowKey& k) const {
    if (k.proto == kProtoTcp || k.proto == kProtoUdp)
      return HashIpv4L4(k.src_ip, k.dst_ip, k.src_port, k.dst_port);
    return HashIpv4(k.src_ip, k.dst_ip);
  }

 private:
  // Contribution of the big-endian word v at input byte positions pos..pos+3.
  uint32_t Of(uint32_t pos, uint32_t v) const {
    return table_[pos][v >> 24] ^ table_[pos + 1][(v >> 16) & 0xFF] ^
           table_[pos + 2][(v >> 8) & 0xFF] ^ table_[pos + 3][v & 0xFF];
  }

  Word table_[kMaxInput][256];
};

using ToeplitzHasher = BasicToeplitz<uint32_t>;
using ToeplitzLow16 = BasicToeplitz<uint16_t>;

inline uint32_t ShardOf(uint32_t rss_hash, uint32_t num_shards) {
  return rss_hash & (num_shards - 1);  // num_shards is a power of two (CheckShardConfig)
}

// Checks S (shards) and R (RETA size, 0 = no RETA, e.g. software steering).
// Returns nullptr when valid, else a static message.
inline const char* CheckShardConfig(uint32_t num_shards, uint32_t reta_size) {
  if (!IsPowerOfTwo(num_shards)) return "number of shards must be a power of two";
  if (num_shards > kMaxShards) return "number of shards must be at most 65536";
  if (reta_size != 0) {
    if (!IsPowerOfTwo(reta_size)) return "RETA size must be a power of two";
    if (reta_size % num_shards != 0)
      return "number of shards must divide the RETA size (use fewer shards)";
  }
  return nullptr;
}

// Fills reta[0..reta_size) so that entry k points at shard_queue[k % S].
// Returns false (reta untouched) if CheckShardConfig fails.
inline bool BuildReta(const uint16_t* shard_queue, uint32_t num_shards, uint16_t* reta,
                      uint32_t reta_size) {
  if (CheckShardConfig(num_shards, reta_size) != nullptr || reta_size == 0) return false;
  for (uint32_t k = 0; k < reta_size; k++) reta[k] = shard_queue[k & (num_shards - 1)];
  return true;
}

}  // namespace dyssect

#endif  // DYSSECT_TOEPLITZ_H_
