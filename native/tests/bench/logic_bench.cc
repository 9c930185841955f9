// Micro-benchmark of the per-packet Dyssect bookkeeping on one core, without
// BESS: parse + flow hash (the NIC's, or CRC32C in software) + RouteIngress +
// Classify (ranking, per-flow and per-shard counters) against parse + CRC32C +
// a plain flow-table lookup, all followed by the NAT rewrite. Not a test; `make -C native bench-logic`.
#include <time.h>

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../packet_builder.h"
#include "dyssect/flow_hash.h"
#include "dyssect/migration.h"
#include "dyssect/nat.h"
#include "dyssect/toeplitz.h"

using namespace dyssect;

int main() {
  constexpr uint32_t kFlows = 20000, kPkts = 1 << 16, kRounds = 60, kShards = 16;
  std::mt19937 rng(1);
  std::vector<std::vector<uint8_t>> pkts;
  for (uint32_t i = 0; i < kPkts; i++) {
    dtest::PacketSpec s;
    const uint32_t f = rng() % (rng() % kFlows + 1);
    s.src_ip = 0x0A000000 + f;
    s.src_port = static_cast<uint16_t>(1024 + f % 50000);
    s.proto = (f & 1) ? kProtoUdp : kProtoTcp;
    s.payload_len = 18;  // 64-byte frames
    pkts.push_back(dtest::BuildPacket(s));  // 64 bytes < the 128-byte scratch copy
  }
  ToeplitzHasher hasher;
  // The hash a NIC with RSS would deliver in the mbuf (hardware steering).
  std::vector<uint32_t> nic_hash;
  for (auto& p : pkts) {
    ParsedPacket pp;
    ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp);
    nic_hash.push_back(hasher.HashFlow(pp.key));
  }
  const uint32_t ext[] = {0xC6336401, 0xC6336402, 0xC6336403, 0xC6336404};

  auto time_it = [&](auto&& per_packet) {
    // Thread CPU time, not wall time: the machine may be shared.
    timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (uint32_t r = 0; r < kRounds; r++)
      for (uint32_t i = 0; i < kPkts; i++) per_packet(r, i);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) /
           (static_cast<double>(kRounds) * kPkts);
  };

  // The NAT rewrites in place: each packet is parsed from a copy, so every round sees the
  // original flows (the same copy in both variants). Returns its length, 0 if unparsable.
  auto copy_and_parse = [&](uint32_t i, uint8_t* buf, ParsedPacket* pp) -> uint32_t {
    const std::vector<uint8_t>& orig = pkts[i];
    std::memcpy(buf, orig.data(), orig.size());
    const uint32_t n = static_cast<uint32_t>(orig.size());
    return ParsePacket(buf, n, pp) == ParseStatus::kOk ? n : 0;
  };
  // Plain: parse + one flow table + NAT.
  auto plain = [&]() {
    double plain_ns;
    NfRegistry reg;
    NatPortPool pool;
    pool.Init(ext, 4, 1024, 65535, 1);
    Nat nat;
    nat.Init(&reg, &pool, "nat", kFlows * 2);
    FlowTable table(kFlows * 2);
    plain_ns = time_it([&](uint32_t r, uint32_t i) {
      ParsedPacket pp;
      uint8_t buf[128];
      const uint32_t len = copy_and_parse(i, buf, &pp);
      if (len == 0) return;
      bool ins;
      FlowEntry* f = table.FindOrInsert(pp.key, FlowHashCrc32c(pp.key), r, &ins);
      nat.Process(buf, pp, f, 0);
    });
    return plain_ns;
  };
  // Dyssect: parse + hash + shard + RouteIngress + Classify + NAT.
  uint64_t offloaded = 0;
  auto dyssect = [&](double ratio, bool sw_hash) {
    double dys_ns;
    offloaded = 0;
    NfRegistry reg;
    NatPortPool pool;
    pool.Init(ext, 4, 1024, 65535, 1);
    Nat nat;
    nat.Init(&reg, &pool, "nat", kFlows * 2);
    ShardSet set;
    ShardConfig cfg;
    cfg.flow_capacity = kFlows * 2 / kShards;  // same total capacity as the plain table
    set.Init(kShards, cfg);
    for (uint32_t s = 0; s < kShards; s++) {
      AssignOwner(set[s], 0);
      set[s].set_offload_ratio(ratio);
    }
    uint64_t batch = 0;
    dys_ns = time_it([&](uint32_t r, uint32_t i) {
      if ((i & 31) == 0) batch++;
      if (i == 0 && r % 10 == 9) set.AdvanceWindow();  // re-rank every 10 rounds
      ParsedPacket pp;
      uint8_t buf[128];
      const uint32_t len = copy_and_parse(i, buf, &pp);
      if (len == 0) return;
      const uint32_t h = sw_hash ? FlowHashCrc32c(pp.key) : nic_hash[i];
      Shard& s = set.ForHash(h);
      if (RouteIngress(s, 0) != Ingress::kProcess) return;
      FlowEntry* f;
      const Path path = Classify(set, s, pp.key, h, len, r, batch, 0, &f);
      nat.Process(buf, pp, f, 0);
      if (path == Path::kOffload) {  // no offloading core here: finish at once
        offloaded++;
        FinishOffloaded(OffloadItem{nullptr, f, &s});
      }
    });
    return dys_ns;
  };
  double plain_ns = 1e18, dys_ns = 1e18, dys0_ns = 1e18, sw_ns = 1e18, off_share = 0;
  for (int rep = 0; rep < 3; rep++) {  // interleaved, minimum: robust to a shared machine
    plain_ns = std::min(plain_ns, plain());
    dys0_ns = std::min(dys0_ns, dyssect(0.0, false));
    dys_ns = std::min(dys_ns, dyssect(0.3, false));
    off_share = 100.0 * offloaded / (static_cast<double>(kRounds) * kPkts);
    sw_ns = std::min(sw_ns, dyssect(0.0, true));
  }
  std::printf("per packet (64 B frames, %u flows, skewed), CPU time: plain %.1f ns; "
              "dyssect, NIC hash: r=0 %.1f ns (rate ratio %.2f), r=0.3 %.1f ns (rate ratio %.2f, "
              "offloaded %.0f%%); dyssect, software CRC32C, r=0: %.1f ns (rate ratio %.2f)\n",
              kFlows, plain_ns, dys0_ns, plain_ns / dys0_ns, dys_ns, plain_ns / dys_ns,
              off_share, sw_ns, plain_ns / sw_ns);
  return 0;
}
