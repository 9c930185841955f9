// NAT: translation and incremental checksums vs from-scratch checksums,
// pool partitioning (no duplicate pair across cores), exhaustion, release.
#include <atomic>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "dyssect/checksum.h"
#include "dyssect/flow_hash.h"
#include "dyssect/flow_table.h"
#include "dyssect/nat.h"
#include "packet_builder.h"
#include "test.h"

using namespace dyssect;

TEST(checksum_incremental_matches_scratch) {
  std::mt19937 rng(21);
  for (int i = 0; i < 200000; i++) {
    uint8_t buf[40];
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    const uint16_t c0 = static_cast<uint16_t>(~CsumFold(CsumPartial(buf, 40, 0)));
    const uint32_t pos = (rng() % 10) * 4;
    const uint32_t old_v = LoadBe32(buf + pos), new_v = rng();
    StoreBe32(buf + pos, new_v);
    const uint16_t c1 = static_cast<uint16_t>(~CsumFold(CsumPartial(buf, 40, 0)));
    const uint16_t inc = CsumUpdate32(c0, old_v, new_v);
    // One's complement has two zeros; RFC 1624 eqn. 3 never yields 0x0000 for
    // a checksum that is itself != 0xFFFF, so the only admissible mismatch is
    // the 0/0xFFFF pair, which verifies identically.
    CHECK(inc == c1 || (inc == 0xFFFF && c1 == 0) || (inc == 0 && c1 == 0xFFFF));
    const uint32_t pos16 = (rng() % 20) * 2;
    const uint16_t o16 = LoadBe16(buf + pos16), n16 = static_cast<uint16_t>(rng());
    StoreBe16(buf + pos16, n16);
    const uint16_t c2 = static_cast<uint16_t>(~CsumFold(CsumPartial(buf, 40, 0)));
    const uint16_t inc2 = CsumUpdate16(c1, o16, n16);
    CHECK(inc2 == c2 || (inc2 == 0xFFFF && c2 == 0) || (inc2 == 0 && c2 == 0xFFFF));
  }
}

namespace {

// Checks a frame's IPv4 header and L4 checksums against from-scratch values.
bool ChecksumsValid(const std::vector<uint8_t>& p, bool expect_udp_zero) {
  ParsedPacket pp;
  if (ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp) != ParseStatus::kOk) return false;
  const uint8_t* ip = p.data() + pp.l3_offset;
  const uint8_t* l4 = p.data() + pp.l4_offset;
  if (LoadBe16(ip + 10) != Ipv4HeaderChecksum(ip)) return false;
  const uint32_t l4_len = pp.ip_total_len - (pp.l4_offset - pp.l3_offset);
  const uint16_t have = LoadBe16(l4 + (pp.key.proto == kProtoTcp ? 16 : 6));
  if (expect_udp_zero) return have == 0;
  return have == L4ChecksumFromScratch(ip, l4, l4_len, pp.key.proto);
}

}  // namespace

TEST(nat_translation_vs_scratch_checksums) {
  NfRegistry reg;
  NatPortPool pool;
  const uint32_t ext[] = {0xC6336401, 0xC6336402, 0xC6336403};
  REQUIRE(pool.Init(ext, 3, 1024, 65535, 4) == nullptr);
  Nat nat;
  REQUIRE(nat.Init(&reg, &pool, "nat", 50000));
  FlowTable table(50000);
  std::mt19937 rng(99);
  std::set<std::pair<uint32_t, uint16_t>> used;
  uint32_t udp_zero = 0;
  for (int i = 0; i < 30000; i++) {
    dtest::PacketSpec s;
    s.src_ip = rng();
    s.dst_ip = rng();
    s.src_port = static_cast<uint16_t>(rng());
    s.dst_port = static_cast<uint16_t>(rng());
    s.proto = (rng() & 1) ? kProtoTcp : kProtoUdp;
    s.payload_len = rng() % 300;
    s.ihl_words = static_cast<uint8_t>(5 + (rng() % 4 == 0 ? rng() % 11 : 0));
    s.tcp_doff_words = static_cast<uint8_t>(5 + rng() % 3);
    s.udp_zero_csum = s.proto == kProtoUdp && rng() % 5 == 0;
    s.seed = rng();
    auto p = dtest::BuildPacket(s);
    REQUIRE(ChecksumsValid(p, s.udp_zero_csum));
    ParsedPacket pp;
    REQUIRE(ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kOk);
    bool ins;
    FlowEntry* f = table.FindOrInsert(pp.key, FlowHashCrc32c(pp.key), 0, &ins);
    REQUIRE(f != nullptr);
    const auto before = p;
    CHECK(nat.Process(p.data(), pp, f, static_cast<uint32_t>(i % 4)) == Nat::Verdict::kForward);
    const NatFlowState* st = nat.state().Lookup(f);
    REQUIRE(st != nullptr);
    if (ins) CHECK(used.insert({st->ext_ip, st->ext_port}).second);  // never handed out twice
    CHECK(st->ext_port >= 1024);
    CHECK(st->ext_ip == ext[0] || st->ext_ip == ext[1] || st->ext_ip == ext[2]);
    // Rewritten fields.
    ParsedPacket after;
    REQUIRE(ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &after) == ParseStatus::kOk);
    CHECK_EQ(after.key.src_ip, st->ext_ip);
    CHECK_EQ(after.key.src_port, st->ext_port);
    CHECK_EQ(after.key.dst_ip, s.dst_ip);
    CHECK_EQ(after.key.dst_port, s.dst_port);
    // Incremental checksums equal the from-scratch ones (UDP 0 stays 0).
    CHECK(ChecksumsValid(p, s.udp_zero_csum));
    if (s.udp_zero_csum) udp_zero++;
    // Nothing else changed: compare byte by byte outside the rewritten fields.
    const uint32_t l3 = pp.l3_offset, l4 = pp.l4_offset;
    const uint32_t csum = l4 + (s.proto == kProtoTcp ? 16 : 6);
    for (size_t k = 0; k < p.size(); k++) {
      const bool rewritten = (k >= l3 + 10 && k < l3 + 16) || k == l4 || k == l4 + 1 ||
                             k == csum || k == csum + 1;
      if (!rewritten && p[k] != before[k]) {
        CHECK(false);
        break;
      }
    }
  }
  CHECK(udp_zero > 0);
  CHECK_EQ(nat.counters().new_mappings, 30000u);
  CHECK_EQ(nat.counters().translated, 30000u);
  // A second packet of a flow reuses its mapping.
  CHECK_EQ(pool.available(), pool.total() - 30000u);
}

TEST(nat_drops_fragments_and_passes_other_non_flow_packets) {
  NfRegistry reg;
  NatPortPool pool;
  const uint32_t ext = 0xC6336401;
  REQUIRE(pool.Init(&ext, 1, 20000, 20009, 1) == nullptr);
  Nat nat;
  REQUIRE(nat.Init(&reg, &pool, "nat", 64));
  CHECK(nat.ProcessNonFlow(ParseStatus::kFragment) == Nat::Verdict::kDrop);
  CHECK(nat.ProcessNonFlow(ParseStatus::kFragment) == Nat::Verdict::kDrop);
  CHECK_EQ(nat.counters().fragment_drops, 2u);
  for (ParseStatus st : {ParseStatus::kNotIpv4, ParseStatus::kTruncated, ParseStatus::kBadIpHeader,
                         ParseStatus::kOtherProto, ParseStatus::kBadL4Header}) {
    CHECK(nat.ProcessNonFlow(st) == Nat::Verdict::kForward);
  }
  CHECK_EQ(nat.counters().fragment_drops, 2u);
}

TEST(nat_pool_rejects_bad_config) {
  NatPortPool p;
  const uint32_t a[] = {1, 2, 1};
  CHECK(p.Init(a, 3, 1024, 2000, 1) != nullptr);  // duplicate address
  CHECK(p.Init(a, 1, 0, 2000, 1) != nullptr);     // port 0 allowed by range
  CHECK(p.Init(a, 1, 2000, 1024, 1) != nullptr);
  CHECK(p.Init(a, 0, 1024, 2000, 1) != nullptr);
  CHECK(p.Init(a, 1, 1024, 2000, 0) != nullptr);
  CHECK(p.Init(a, 1, 1, 65535, 3) == nullptr);
  CHECK_EQ(p.total(), 65535u);
}

TEST(nat_pool_exhaustion_counted_and_release) {
  NfRegistry reg;
  NatPortPool pool;
  const uint32_t ext[] = {0x01010101};
  REQUIRE(pool.Init(ext, 1, 1, 8, 2) == nullptr);  // 8 pairs, ports 1..8
  Nat nat;
  REQUIRE(nat.Init(&reg, &pool, "nat", 64));
  FlowTable table(64);
  std::vector<FlowEntry*> flows;
  std::set<uint16_t> ports;
  for (uint32_t i = 0; i < 12; i++) {
    dtest::PacketSpec s;
    s.src_port = static_cast<uint16_t>(1000 + i);
    auto p = dtest::BuildPacket(s);
    ParsedPacket pp;
    REQUIRE(ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kOk);
    bool ins;
    FlowEntry* f = table.FindOrInsert(pp.key, FlowHashCrc32c(pp.key), /*now=*/i, &ins);
    const auto before = p;
    const Nat::Verdict v = nat.Process(p.data(), pp, f, i);
    if (i < 8) {
      CHECK(v == Nat::Verdict::kForward);
      const uint16_t port = nat.state().Lookup(f)->ext_port;
      CHECK(port >= 1 && port <= 8);
      CHECK(ports.insert(port).second);
    } else {
      CHECK(v == Nat::Verdict::kDrop);      // empty pool: drop, no crash
      CHECK(nat.state().Lookup(f) == nullptr);
      CHECK(p == before);                    // untouched
    }
    flows.push_back(f);
  }
  CHECK_EQ(nat.counters().pool_empty_drops, 4u);
  CHECK_EQ(pool.available(), 0u);
  // Delete one flow's state: its pair goes back and the next new flow gets it.
  const uint16_t freed = nat.state().Lookup(flows[3])->ext_port;
  CHECK(nat.state().Delete(flows[3]));
  CHECK_EQ(pool.available(), 1u);
  dtest::PacketSpec s;
  s.src_port = 999;
  auto p = dtest::BuildPacket(s);
  ParsedPacket pp;
  ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp);
  bool ins;
  FlowEntry* f = table.FindOrInsert(pp.key, FlowHashCrc32c(pp.key), 100, &ins);
  CHECK(nat.Process(p.data(), pp, f, 0) == Nat::Verdict::kForward);
  CHECK_EQ(nat.state().Lookup(f)->ext_port, freed);
  // Expiry of idle flows releases their pairs.
  table.ExpireSome(/*now=*/50, /*idle=*/20, 64, [&](FlowEntry* e) { reg.ReleaseFlow(e); });
  CHECK_EQ(pool.available(), 7u);  // 7 mapped flows with last_seen < 30; flow at t=100 kept
  // NF state pool exhaustion is its own counter.
  NfRegistry reg2;
  NatPortPool pool2;
  REQUIRE(pool2.Init(ext, 1, 1000, 1100, 1) == nullptr);
  Nat small;
  REQUIRE(small.Init(&reg2, &pool2, "nat", 1));
  FlowTable t2(4);
  for (uint32_t i = 0; i < 2; i++) {
    dtest::PacketSpec q;
    q.src_port = static_cast<uint16_t>(1 + i);
    auto pk = dtest::BuildPacket(q);
    ParsedPacket qq;
    ParsePacket(pk.data(), static_cast<uint32_t>(pk.size()), &qq);
    FlowEntry* e = t2.FindOrInsert(qq.key, FlowHashCrc32c(qq.key), 0, &ins);
    CHECK(small.Process(pk.data(), qq, e, 0) == (i == 0 ? Nat::Verdict::kForward : Nat::Verdict::kDrop));
  }
  CHECK_EQ(small.counters().state_full_drops, 1u);
  CHECK_EQ(pool2.available(), pool2.total() - 1);  // the pair taken for the failed insert went back
}

TEST(mt_nat_pool_no_duplicate_across_cores) {
  // 4 "cores" allocate and release concurrently (with stealing once their
  // partition is empty, and cross-core releases). Each pair id carries an
  // ownership flag: allocating an id someone else holds would be caught.
  NatPortPool pool;
  const uint32_t ext[] = {0x0A0A0A01, 0x0A0A0A02};
  REQUIRE(pool.Init(ext, 2, 60000, 65535, 4) == nullptr);  // 2 x 5536 pairs
  const uint32_t total = pool.total();
  std::unique_ptr<std::atomic<uint8_t>[]> held(new std::atomic<uint8_t>[total]);
  for (uint32_t i = 0; i < total; i++) held[i].store(0);
  std::atomic<uint64_t> dup{0}, bad_port{0}, empty{0}, allocs{0};
  // Released ids travel to another thread, which releases them: cross-core release.
  constexpr int kThreads = 4;
  std::vector<std::thread> th;
  std::atomic<int> go{0};
  for (int t = 0; t < kThreads; t++) {
    th.emplace_back([&, t] {
      while (go.load() == 0) {
      }
      std::mt19937 rng(t + 1);
      std::vector<uint32_t> mine;
      for (int i = 0; i < 60000; i++) {
        if (mine.size() < 4000 && rng() % 3 != 0) {
          uint32_t addr, id;
          uint16_t port;
          if (pool.Alloc(t, &addr, &port, &id)) {
            allocs.fetch_add(1, std::memory_order_relaxed);
            if (held[id].exchange(1) != 0) dup.fetch_add(1);
            if (port < 60000 || (addr != ext[0] && addr != ext[1])) bad_port.fetch_add(1);
            mine.push_back(id);
          } else {
            empty.fetch_add(1);
          }
        } else if (!mine.empty()) {
          const size_t k = rng() % mine.size();
          const uint32_t id = mine[k];
          mine[k] = mine.back();
          mine.pop_back();
          if (held[id].exchange(0) != 1) dup.fetch_add(1);
          pool.Release(id);
        }
      }
      for (uint32_t id : mine) {
        held[id].store(0);
        pool.Release(id);
      }
    });
  }
  go.store(1);
  for (auto& x : th) x.join();
  CHECK_EQ(dup.load(), 0u);
  CHECK_EQ(bad_port.load(), 0u);
  CHECK(allocs.load() > 40000u);  // the run did exercise the pool
  CHECK(empty.load() > 0u);  // 4 x 4000 held > 11072 pairs: exhaustion and stealing exercised
  CHECK_EQ(pool.available(), total);
  // Drained pool hands out every pair exactly once.
  std::set<std::pair<uint32_t, uint16_t>> all;
  uint32_t addr, id;
  uint16_t port;
  while (pool.Alloc(0, &addr, &port, &id)) CHECK(all.insert({addr, port}).second);
  CHECK_EQ(all.size(), total);
}
