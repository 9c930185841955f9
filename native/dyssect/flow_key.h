// 5-tuple flow key and a bounds-checked Ethernet/IPv4/TCP/UDP parser.
//
// Unlike the original Dyssect (TCP only, 4-tuple key, unchecked pointer
// arithmetic), the protocol is part of the key, UDP is handled, and every
// packet that is not a complete, unfragmented IPv4 TCP/UDP packet gets a
// distinct ParseStatus so the caller can pass it through or drop it (by
// configuration, with a counter) instead of misparsing it. The parser never
// reads a byte at or beyond data[len].
#ifndef DYSSECT_FLOW_KEY_H_
#define DYSSECT_FLOW_KEY_H_

#include <cstdint>
#include <cstring>

#include "common.h"

namespace dyssect {

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint32_t kEtherHdrLen = 14;
constexpr uint32_t kVlanHdrLen = 4;

// All fields in host byte order. Ports are 0 for protocols without ports.
struct FlowKey {
  uint32_t src_ip;
  uint32_t dst_ip;
  uint16_t src_port;
  uint16_t dst_port;
  uint8_t proto;
  uint8_t pad[3];  // always zero, so byte-wise compare and hashing are well defined

  bool operator==(const FlowKey& o) const {
    return src_ip == o.src_ip && dst_ip == o.dst_ip && src_port == o.src_port &&
           dst_port == o.dst_port && proto == o.proto;
  }
  bool operator!=(const FlowKey& o) const { return !(*this == o); }
};
static_assert(sizeof(FlowKey) == 16, "FlowKey must stay 16 bytes");

// Field by field, no memset: a 16-byte memset followed by narrow stores and
// then a 16-byte copy of the key stalled store forwarding on the fast path.
inline FlowKey MakeFlowKey(uint32_t src_ip, uint32_t dst_ip, uint16_t src_port, uint16_t dst_port,
                           uint8_t proto) {
  FlowKey k;
  k.src_ip = src_ip;
  k.dst_ip = dst_ip;
  k.src_port = src_port;
  k.dst_port = dst_port;
  k.proto = proto;
  k.pad[0] = k.pad[1] = k.pad[2] = 0;
  return k;
}

enum class ParseStatus : uint8_t {
  kOk = 0,         // IPv4 + TCP or UDP, unfragmented, headers complete: key/offsets valid
  kNotIpv4,        // EtherType is not IPv4 (after at most one 802.1Q tag)
  kTruncated,      // a header (Ethernet, IPv4, TCP, UDP) or the IPv4 total length runs past len
  kBadIpHeader,    // IPv4 version != 4, IHL < 5, or total length < header length
  kFragment,       // IPv4 fragment (MF set or offset != 0): no L4 header to trust
  kOtherProto,     // IPv4 but neither TCP nor UDP: key has addresses and proto, ports 0
  kBadL4Header,    // TCP data offset < 5 words
  kNumParseStatus
};

inline const char* ParseStatusName(ParseStatus s) {
  switch (s) {
    case ParseStatus::kOk: return "ok";
    case ParseStatus::kNotIpv4: return "not_ipv4";
    case ParseStatus::kTruncated: return "truncated";
    case ParseStatus::kBadIpHeader: return "bad_ip_header";
    case ParseStatus::kFragment: return "fragment";
    case ParseStatus::kOtherProto: return "other_proto";
    case ParseStatus::kBadL4Header: return "bad_l4_header";
    default: return "unknown";
  }
}

struct ParsedPacket {
  FlowKey key;
  uint16_t l3_offset;       // start of the IPv4 header
  uint16_t l4_offset;       // start of the TCP/UDP header
  uint16_t payload_offset;  // first payload byte
  uint16_t payload_len;     // payload bytes, bounded by IPv4 total length and by len
  uint16_t ip_total_len;    // IPv4 total length (header + payload), <= len - l3_offset
};

// Byte-order helpers reading unaligned big-endian fields.
inline uint16_t LoadBe16(const uint8_t* p) {
  return static_cast<uint16_t>((static_cast<uint16_t>(p[0]) << 8) | p[1]);
}
inline uint32_t LoadBe32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void StoreBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void StoreBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Parses data[0..len). On kOk every field of *out is valid. On kOtherProto
// key (ports 0), l3_offset, l4_offset and ip_total_len are valid. On any
// other status *out is unspecified. Never reads data[len] or beyond.
inline ParseStatus ParsePacket(const uint8_t* data, uint32_t len, ParsedPacket* out) {
  if (len < kEtherHdrLen) return ParseStatus::kTruncated;
  uint32_t l3 = kEtherHdrLen;
  uint16_t et = LoadBe16(data + 12);
  if (et == kEtherTypeVlan) {
    if (len < kEtherHdrLen + kVlanHdrLen) return ParseStatus::kTruncated;
    et = LoadBe16(data + 16);
    l3 += kVlanHdrLen;
  }
  if (et != kEtherTypeIpv4) return ParseStatus::kNotIpv4;
  if (len < l3 + 20) return ParseStatus::kTruncated;
  const uint8_t* ip = data + l3;
  if ((ip[0] >> 4) != 4) return ParseStatus::kBadIpHeader;
  const uint32_t ihl = static_cast<uint32_t>(ip[0] & 0x0F) * 4;
  if (ihl < 20) return ParseStatus::kBadIpHeader;
  const uint32_t total = LoadBe16(ip + 2);
  if (total < ihl) return ParseStatus::kBadIpHeader;
  if (l3 + total > len) return ParseStatus::kTruncated;  // also covers l3 + ihl > len
  const uint32_t ip_end = l3 + total;  // Ethernet padding beyond this is ignored
  const uint8_t proto = ip[9];
  // The key is written in place, field by field (see MakeFlowKey).
  FlowKey& key = out->key;
  key.src_ip = LoadBe32(ip + 12);
  key.dst_ip = LoadBe32(ip + 16);
  key.src_port = 0;
  key.dst_port = 0;
  key.proto = proto;
  key.pad[0] = key.pad[1] = key.pad[2] = 0;
  out->l3_offset = static_cast<uint16_t>(l3);
  out->l4_offset = static_cast<uint16_t>(l3 + ihl);
  out->ip_total_len = static_cast<uint16_t>(total);
  if ((LoadBe16(ip + 6) & 0x3FFF) != 0) return ParseStatus::kFragment;
  const uint32_t l4 = l3 + ihl;
  uint32_t l4_hdr;
  if (proto == kProtoTcp) {
    if (l4 + 20 > ip_end) return ParseStatus::kTruncated;
    l4_hdr = static_cast<uint32_t>(data[l4 + 12] >> 4) * 4;
    if (l4_hdr < 20) return ParseStatus::kBadL4Header;
    if (l4 + l4_hdr > ip_end) return ParseStatus::kTruncated;
  } else if (proto == kProtoUdp) {
    l4_hdr = 8;
    if (l4 + l4_hdr > ip_end) return ParseStatus::kTruncated;
  } else {
    out->payload_offset = static_cast<uint16_t>(l4);
    out->payload_len = static_cast<uint16_t>(ip_end - l4);
    return ParseStatus::kOtherProto;
  }
  out->key.src_port = LoadBe16(data + l4);
  out->key.dst_port = LoadBe16(data + l4 + 2);
  out->payload_offset = static_cast<uint16_t>(l4 + l4_hdr);
  out->payload_len = static_cast<uint16_t>(ip_end - (l4 + l4_hdr));
  return ParseStatus::kOk;
}

}  // namespace dyssect

#endif  // DYSSECT_FLOW_KEY_H_
