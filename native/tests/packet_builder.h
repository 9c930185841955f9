// Test helper: builds Ethernet/IPv4/TCP|UDP frames with correct checksums.
#ifndef DYSSECT_TESTS_PACKET_BUILDER_H_
#define DYSSECT_TESTS_PACKET_BUILDER_H_

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "dyssect/checksum.h"
#include "dyssect/flow_key.h"

namespace dtest {

struct PacketSpec {
  uint32_t src_ip = 0x0A000001;
  uint32_t dst_ip = 0x0A000002;
  uint16_t src_port = 1234;
  uint16_t dst_port = 80;
  uint8_t proto = dyssect::kProtoTcp;
  uint32_t payload_len = 0;
  bool vlan = false;
  uint8_t ihl_words = 5;        // > 5 adds IP options (zero bytes)
  uint8_t tcp_doff_words = 5;   // > 5 adds TCP options
  uint16_t frag = 0;            // flags+offset field (host order)
  bool udp_zero_csum = false;   // UDP without checksum
  uint32_t eth_padding = 0;     // bytes after the IP packet (Ethernet padding)
  uint32_t seed = 1;            // payload bytes
};

inline uint32_t L4HeaderLen(const PacketSpec& s) {
  if (s.proto == dyssect::kProtoTcp) return s.tcp_doff_words * 4u;
  if (s.proto == dyssect::kProtoUdp) return 8;
  return 0;
}

inline std::vector<uint8_t> BuildPacket(const PacketSpec& s) {
  using namespace dyssect;
  const uint32_t l2 = kEtherHdrLen + (s.vlan ? kVlanHdrLen : 0);
  const uint32_t ihl = s.ihl_words * 4u;
  const uint32_t l4h = L4HeaderLen(s);
  const uint32_t ip_total = ihl + l4h + s.payload_len;
  std::vector<uint8_t> p(l2 + ip_total + s.eth_padding, 0);
  // Ethernet
  for (int i = 0; i < 6; i++) p[i] = static_cast<uint8_t>(0x02 + i);
  for (int i = 0; i < 6; i++) p[6 + i] = static_cast<uint8_t>(0x12 + i);
  if (s.vlan) {
    StoreBe16(&p[12], kEtherTypeVlan);
    StoreBe16(&p[14], 42);
    StoreBe16(&p[16], kEtherTypeIpv4);
  } else {
    StoreBe16(&p[12], kEtherTypeIpv4);
  }
  uint8_t* ip = &p[l2];
  ip[0] = static_cast<uint8_t>(0x40 | s.ihl_words);
  StoreBe16(ip + 2, static_cast<uint16_t>(ip_total));
  StoreBe16(ip + 4, 0x1234);
  StoreBe16(ip + 6, s.frag);
  ip[8] = 64;
  ip[9] = s.proto;
  StoreBe32(ip + 12, s.src_ip);
  StoreBe32(ip + 16, s.dst_ip);
  uint8_t* l4 = ip + ihl;
  std::mt19937 rng(s.seed);
  for (uint32_t i = 0; i < s.payload_len; i++) l4[l4h + i] = static_cast<uint8_t>(rng());
  if (s.proto == kProtoTcp) {
    StoreBe16(l4, s.src_port);
    StoreBe16(l4 + 2, s.dst_port);
    StoreBe32(l4 + 4, rng());
    StoreBe32(l4 + 8, rng());
    l4[12] = static_cast<uint8_t>(s.tcp_doff_words << 4);
    l4[13] = 0x18;
    StoreBe16(l4 + 14, 0xFFFF);
    StoreBe16(l4 + 16, L4ChecksumFromScratch(ip, l4, l4h + s.payload_len, kProtoTcp));
  } else if (s.proto == kProtoUdp) {
    StoreBe16(l4, s.src_port);
    StoreBe16(l4 + 2, s.dst_port);
    StoreBe16(l4 + 4, static_cast<uint16_t>(8 + s.payload_len));
    if (!s.udp_zero_csum)
      StoreBe16(l4 + 6, L4ChecksumFromScratch(ip, l4, 8 + s.payload_len, kProtoUdp));
  }
  StoreBe16(ip + 10, Ipv4HeaderChecksum(ip));
  return p;
}

}  // namespace dtest

#endif  // DYSSECT_TESTS_PACKET_BUILDER_H_
