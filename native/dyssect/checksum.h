// Internet checksum helpers: from-scratch computation (RFC 1071) and
// incremental update (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
// All 16-bit words are taken as big-endian numbers (the values on the wire).
#ifndef DYSSECT_CHECKSUM_H_
#define DYSSECT_CHECKSUM_H_

#include <cstdint>

#include "flow_key.h"

namespace dyssect {

// One's-complement sum of data[0..len) (odd tail padded with zero) added to sum.
inline uint32_t CsumPartial(const uint8_t* data, uint32_t len, uint32_t sum) {
  uint64_t s = sum;
  uint32_t i = 0;
  for (; i + 1 < len; i += 2) s += LoadBe16(data + i);
  if (i < len) s += static_cast<uint32_t>(data[i]) << 8;
  while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
  return static_cast<uint32_t>(s);
}

inline uint16_t CsumFold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// IPv4 header checksum computed from scratch (the checksum field counts as 0).
inline uint16_t Ipv4HeaderChecksum(const uint8_t* ip) {
  const uint32_t ihl = static_cast<uint32_t>(ip[0] & 0x0F) * 4;
  uint32_t sum = CsumPartial(ip, 10, 0);
  sum = CsumPartial(ip + 12, ihl - 12, sum);
  return static_cast<uint16_t>(~CsumFold(sum));
}

// TCP or UDP checksum from scratch over the pseudo-header and l4[0..l4_len),
// the checksum field (at csum_off inside l4) counting as 0. For UDP a result
// of 0 is sent as 0xFFFF (0 means "no checksum").
inline uint16_t L4ChecksumFromScratch(const uint8_t* ip, const uint8_t* l4, uint32_t l4_len,
                                      uint8_t proto) {
  const uint32_t csum_off = proto == kProtoTcp ? 16 : 6;
  uint32_t sum = CsumPartial(ip + 12, 8, 0);  // src + dst address
  sum += proto;
  sum += l4_len;
  sum = CsumPartial(l4, csum_off, sum);
  sum = CsumPartial(l4 + csum_off + 2, l4_len - csum_off - 2, sum);
  uint16_t c = static_cast<uint16_t>(~CsumFold(sum));
  if (proto == kProtoUdp && c == 0) c = 0xFFFF;
  return c;
}

// RFC 1624 incremental update for one 16-bit word changing old -> new.
inline uint16_t CsumUpdate16(uint16_t hc, uint16_t old_w, uint16_t new_w) {
  uint32_t s = static_cast<uint16_t>(~hc);
  s += static_cast<uint16_t>(~old_w);
  s += new_w;
  return static_cast<uint16_t>(~CsumFold(s));
}

// RFC 1624 incremental update for a 32-bit field (two words) changing old -> new.
inline uint16_t CsumUpdate32(uint16_t hc, uint32_t old_v, uint32_t new_v) {
  uint32_t s = static_cast<uint16_t>(~hc);
  s += static_cast<uint16_t>(~(old_v >> 16));
  s += static_cast<uint16_t>(~old_v);
  s += new_v >> 16;
  s += new_v & 0xFFFF;
  return static_cast<uint16_t>(~CsumFold(s));
}

}  // namespace dyssect

#endif  // DYSSECT_CHECKSUM_H_
