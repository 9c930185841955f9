// Flow key parsing and the Toeplitz hash against published vectors.
#include <arpa/inet.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "dyssect/flow_hash.h"
#include "dyssect/flow_key.h"
#include "dyssect/toeplitz.h"
#include "packet_builder.h"
#include "test.h"

using namespace dyssect;

namespace {

uint32_t Ip(const char* s) {
  in_addr a;
  inet_pton(AF_INET, s, &a);
  return ntohl(a.s_addr);
}

// Microsoft "Verifying the RSS Hash Calculation" IPv4 table (also in Intel's
// 82599 datasheet and DPDK's test_thash.c): default key, input order
// source address, destination address, source port, destination port.
struct RssVector {
  const char* src;
  const char* dst;
  uint16_t sport, dport;
  uint32_t hash_ip, hash_ip_l4;
};
const RssVector kVectors[] = {
    {"66.9.149.187", "161.142.100.80", 2794, 1766, 0x323e8fc2, 0x51ccc178},
    {"199.92.111.2", "65.69.140.83", 14230, 4739, 0xd718262a, 0xc626b0ea},
    {"24.19.198.95", "12.22.207.184", 12898, 38024, 0xd2d0a5de, 0x5c2b394a},
    {"38.27.205.30", "209.142.163.6", 48228, 2217, 0x82989176, 0xafc7327f},
    {"153.39.163.191", "202.188.127.2", 44251, 1303, 0x5d1809c5, 0x10e828a2},
};

}  // namespace

TEST(toeplitz_microsoft_vectors) {
  ToeplitzHasher h;
  for (const RssVector& v : kVectors) {
    CHECK_EQ(h.HashIpv4(Ip(v.src), Ip(v.dst)), v.hash_ip);
    CHECK_EQ(h.HashIpv4L4(Ip(v.src), Ip(v.dst), v.sport, v.dport), v.hash_ip_l4);
    CHECK_EQ(h.HashFlow(MakeFlowKey(Ip(v.src), Ip(v.dst), v.sport, v.dport, kProtoTcp)),
             v.hash_ip_l4);
    CHECK_EQ(h.HashFlow(MakeFlowKey(Ip(v.src), Ip(v.dst), v.sport, v.dport, kProtoUdp)),
             v.hash_ip_l4);
    // Other protocols hash on the addresses only, like a NIC set for IP|TCP|UDP.
    CHECK_EQ(h.HashFlow(MakeFlowKey(Ip(v.src), Ip(v.dst), 0, 0, 47)), v.hash_ip);
    // The bitwise reference agrees.
    uint8_t in[12];
    StoreBe32(in, Ip(v.src));
    StoreBe32(in + 4, Ip(v.dst));
    StoreBe16(in + 8, v.sport);
    StoreBe16(in + 10, v.dport);
    CHECK_EQ(ToeplitzHashRef(kDefaultRssKey, kRssKeyLen, in, 8), v.hash_ip);
    CHECK_EQ(ToeplitzHashRef(kDefaultRssKey, kRssKeyLen, in, 12), v.hash_ip_l4);
  }
}

TEST(toeplitz_custom_key_matches_reference) {
  std::mt19937 rng(7);
  for (int k = 0; k < 20; k++) {
    uint8_t key[kRssKeyLen];
    for (auto& b : key) b = static_cast<uint8_t>(rng());
    ToeplitzHasher h(key, kRssKeyLen);
    ToeplitzLow16 low(key, kRssKeyLen);  // the dispatcher's: the low half of the same hash
    for (int i = 0; i < 200; i++) {
      uint8_t in[12];
      for (auto& b : in) b = static_cast<uint8_t>(rng());
      CHECK_EQ(h.Hash(in, 12), ToeplitzHashRef(key, kRssKeyLen, in, 12));
      CHECK_EQ(h.Hash(in, 8), ToeplitzHashRef(key, kRssKeyLen, in, 8));
      CHECK_EQ(low.Hash(in, 12), ToeplitzHashRef(key, kRssKeyLen, in, 12) & 0xFFFF);
    }
  }
  // The symmetric key (0x6d5a repeated) gives the same hash both directions.
  uint8_t sym[kRssKeyLen];
  for (uint32_t i = 0; i < kRssKeyLen; i += 2) {
    sym[i] = 0x6d;
    sym[i + 1] = 0x5a;
  }
  ToeplitzHasher hs(sym, kRssKeyLen);
  CHECK_EQ(hs.HashIpv4L4(0x01020304, 0x05060708, 1000, 2000),
           hs.HashIpv4L4(0x05060708, 0x01020304, 2000, 1000));
  // Too short a key is refused.
  CHECK(!hs.SetKey(sym, 8));
}

TEST(toeplitz_low16_is_the_low_half_of_the_hash) {
  // The dispatcher's 16-bit tables: the same shard as the full hash (and the
  // NIC) for the published vectors and other protocols (random keys: above).
  ToeplitzLow16 low;
  ToeplitzHasher full;
  for (const RssVector& v : kVectors) {
    for (uint8_t proto : {kProtoTcp, kProtoUdp, static_cast<uint8_t>(47)}) {
      const FlowKey k = MakeFlowKey(Ip(v.src), Ip(v.dst), v.sport, v.dport, proto);
      CHECK_EQ(low.HashFlow(k), full.HashFlow(k) & 0xFFFF);
    }
  }
}

TEST(shard_config_and_reta) {
  CHECK(CheckShardConfig(kMaxShards, 0) == nullptr);
  CHECK(CheckShardConfig(2 * kMaxShards, 0) != nullptr);  // more than 16 hash bits
  CHECK(CheckShardConfig(16, 512) == nullptr);
  CHECK(CheckShardConfig(16, 0) == nullptr);
  CHECK(CheckShardConfig(12, 512) != nullptr);   // not a power of two
  CHECK(CheckShardConfig(1024, 512) != nullptr); // does not divide
  CHECK(CheckShardConfig(16, 100) != nullptr);
  CHECK(CheckShardConfig(0, 512) != nullptr);
  uint16_t owner_q[8] = {0, 1, 2, 3, 0, 1, 2, 3};
  owner_q[5] = 7;
  std::vector<uint16_t> reta(2048, 0xEEEE);  // larger than the original's fixed 512
  CHECK(BuildReta(owner_q, 8, reta.data(), 2048));
  ToeplitzHasher h;
  std::mt19937 rng(3);
  for (int i = 0; i < 10000; i++) {
    const uint32_t hash = h.HashIpv4L4(rng(), rng(), static_cast<uint16_t>(rng()),
                                       static_cast<uint16_t>(rng()));
    // NIC: queue = reta[hash & (R-1)]; software: shard = hash & (S-1).
    CHECK_EQ(reta[hash & 2047], owner_q[ShardOf(hash, 8)]);
  }
  std::vector<uint16_t> bad(100, 9);
  CHECK(!BuildReta(owner_q, 8, bad.data(), 100));
  CHECK_EQ(bad[0], 9u);
}

TEST(parse_tcp_udp) {
  dtest::PacketSpec s;
  s.src_ip = 0xC0A80001;
  s.dst_ip = 0x08080808;
  s.src_port = 40000;
  s.dst_port = 443;
  s.payload_len = 100;
  for (uint8_t proto : {kProtoTcp, kProtoUdp}) {
    for (bool vlan : {false, true}) {
      s.proto = proto;
      s.vlan = vlan;
      s.ihl_words = vlan ? 7 : 5;
      s.tcp_doff_words = 8;
      s.eth_padding = vlan ? 6 : 0;
      auto p = dtest::BuildPacket(s);
      ParsedPacket pp;
      std::memset(&pp, 0xAB, sizeof(pp));  // the parser must zero the key's padding itself
      REQUIRE(ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kOk);
      CHECK(pp.key == MakeFlowKey(s.src_ip, s.dst_ip, 40000, 443, proto));
      const FlowKey mk = MakeFlowKey(s.src_ip, s.dst_ip, 40000, 443, proto);
      CHECK(std::memcmp(&pp.key, &mk, sizeof(FlowKey)) == 0);  // byte-wise, padding included
      const uint32_t l3 = vlan ? 18 : 14;
      CHECK_EQ(pp.l3_offset, l3);
      CHECK_EQ(pp.l4_offset, l3 + s.ihl_words * 4u);
      CHECK_EQ(pp.payload_len, 100u);  // padding excluded
      CHECK_EQ(pp.payload_offset, pp.l4_offset + dtest::L4HeaderLen(s));
    }
  }
  // The protocol is part of the key.
  CHECK(MakeFlowKey(1, 2, 3, 4, kProtoTcp) != MakeFlowKey(1, 2, 3, 4, kProtoUdp));
  CHECK(FlowHashCrc32c(MakeFlowKey(1, 2, 3, 4, kProtoTcp)) !=
        FlowHashCrc32c(MakeFlowKey(1, 2, 3, 4, kProtoUdp)));
}

TEST(parse_rejects_without_misparsing) {
  dtest::PacketSpec s;
  s.payload_len = 20;
  auto good = dtest::BuildPacket(s);
  ParsedPacket pp;
  // Every strict prefix of a valid frame is truncated (never kOk, never a read
  // past the end: each prefix lives in its own exact-size heap block, so ASan
  // catches any over-read).
  for (size_t n = 0; n < good.size(); n++) {
    std::unique_ptr<uint8_t[]> buf(new uint8_t[n == 0 ? 1 : n]);
    std::memcpy(buf.get(), good.data(), n);
    const ParseStatus st = ParsePacket(buf.get(), static_cast<uint32_t>(n), &pp);
    CHECK(st == ParseStatus::kTruncated);
  }
  // Non-IPv4.
  auto arp = good;
  StoreBe16(&arp[12], 0x0806);
  CHECK(ParsePacket(arp.data(), static_cast<uint32_t>(arp.size()), &pp) == ParseStatus::kNotIpv4);
  auto v6 = good;
  StoreBe16(&v6[12], 0x86DD);
  CHECK(ParsePacket(v6.data(), static_cast<uint32_t>(v6.size()), &pp) == ParseStatus::kNotIpv4);
  // Bad IP headers.
  auto bad = good;
  bad[14] = 0x45 ^ 0x10;  // version 5
  CHECK(ParsePacket(bad.data(), static_cast<uint32_t>(bad.size()), &pp) ==
        ParseStatus::kBadIpHeader);
  bad = good;
  bad[14] = 0x44;  // IHL 4
  CHECK(ParsePacket(bad.data(), static_cast<uint32_t>(bad.size()), &pp) ==
        ParseStatus::kBadIpHeader);
  bad = good;
  StoreBe16(&bad[16], 19);  // total length < header
  CHECK(ParsePacket(bad.data(), static_cast<uint32_t>(bad.size()), &pp) ==
        ParseStatus::kBadIpHeader);
  bad = good;
  StoreBe16(&bad[16], static_cast<uint16_t>(good.size()));  // claims more than the frame has
  CHECK(ParsePacket(bad.data(), static_cast<uint32_t>(bad.size()), &pp) ==
        ParseStatus::kTruncated);
  bad = good;
  bad[14 + 20 + 12] = 0x40;  // TCP data offset 4 words
  CHECK(ParsePacket(bad.data(), static_cast<uint32_t>(bad.size()), &pp) ==
        ParseStatus::kBadL4Header);
  bad = good;
  bad[14 + 20 + 12] = 0xF0;  // TCP data offset 60 bytes > what the IP packet holds
  CHECK(ParsePacket(bad.data(), static_cast<uint32_t>(bad.size()), &pp) ==
        ParseStatus::kTruncated);
  // Fragments: first (MF) and later (offset) fragments.
  for (uint16_t frag : {uint16_t{0x2000}, uint16_t{0x0010}, uint16_t{0x2010}}) {
    dtest::PacketSpec f = s;
    f.frag = frag;
    auto p = dtest::BuildPacket(f);
    CHECK(ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kFragment);
  }
  // DF alone is not a fragment.
  dtest::PacketSpec df = s;
  df.frag = 0x4000;
  auto pdf = dtest::BuildPacket(df);
  CHECK(ParsePacket(pdf.data(), static_cast<uint32_t>(pdf.size()), &pp) == ParseStatus::kOk);
  // Other protocols (ICMP): addresses and protocol in the key, ports 0.
  dtest::PacketSpec icmp = s;
  icmp.proto = 1;
  icmp.payload_len = 8;
  auto pi = dtest::BuildPacket(icmp);
  CHECK(ParsePacket(pi.data(), static_cast<uint32_t>(pi.size()), &pp) == ParseStatus::kOtherProto);
  CHECK(pp.key == MakeFlowKey(s.src_ip, s.dst_ip, 0, 0, 1));
  CHECK_EQ(pp.payload_len, 8u);
  // UDP header cut by the IP total length.
  dtest::PacketSpec u = s;
  u.proto = kProtoUdp;
  u.payload_len = 0;
  auto pu = dtest::BuildPacket(u);
  StoreBe16(&pu[16], 20 + 7);
  CHECK(ParsePacket(pu.data(), static_cast<uint32_t>(pu.size()), &pp) == ParseStatus::kTruncated);
}

TEST(parse_random_bytes_never_overreads) {
  // Random garbage and random mutations of valid frames: whatever the status,
  // a kOk result must have offsets inside the frame.
  std::mt19937 rng(11);
  int ok = 0;
  for (int i = 0; i < 20000; i++) {
    dtest::PacketSpec s;
    s.proto = (rng() & 1) ? kProtoTcp : kProtoUdp;
    s.payload_len = rng() % 64;
    auto p = dtest::BuildPacket(s);
    const int mutations = 1 + rng() % 3;
    for (int m = 0; m < mutations; m++) p[rng() % p.size()] = static_cast<uint8_t>(rng());
    const size_t n = rng() % (p.size() + 1);
    std::unique_ptr<uint8_t[]> buf(new uint8_t[n == 0 ? 1 : n]);
    std::memcpy(buf.get(), p.data(), n);
    ParsedPacket pp;
    if (ParsePacket(buf.get(), static_cast<uint32_t>(n), &pp) == ParseStatus::kOk) {
      ok++;
      CHECK(pp.payload_offset + pp.payload_len <= n);
      CHECK(pp.l4_offset < pp.payload_offset);
    }
  }
  CHECK(ok > 0);  // the mutation mix does produce parseable frames
}
