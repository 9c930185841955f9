// Shard migration hand-off, flow reclassification and offload rings:
// single-threaded state-machine checks, then a multi-threaded run (a "NIC"
// thread steering by a table switched mid-stream, working and offloading
// cores, a controller) checking zero loss, per-flow order and exclusive
// access over thousands of migrations. The multi-threaded case also runs
// under ThreadSanitizer, which checks that the protocol's release/acquire
// edges order every access to flow state (test bookkeeping uses relaxed
// atomics only, so it adds no ordering of its own).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "dyssect/migration.h"
#include "dyssect/nf_state.h"
#include "dyssect/shard.h"
#include "dyssect/toeplitz.h"
#include "test.h"

using namespace dyssect;

namespace {

FlowKey Key(uint32_t i) { return MakeFlowKey(0x0A000000 + i, 0x0B000001, 1000 + i, 80, kProtoUdp); }

ShardConfig SmallCfg() {
  ShardConfig c;
  c.flow_capacity = 64;
  c.handoff_capacity = 16;
  return c;
}

}  // namespace

TEST(migration_state_machine) {
  ShardSet set;
  REQUIRE(set.Init(4, SmallCfg()) == nullptr);
  CHECK(set.Init(6, SmallCfg()) != nullptr);
  REQUIRE(set.Init(4, SmallCfg()) == nullptr);
  Shard& s = set[1];
  // No owner yet: cannot migrate.
  CHECK(!BeginMigration(set, s, 2));
  AssignOwner(s, 0);
  CHECK(RouteIngress(s, 0) == Ingress::kProcess);
  CHECK(RouteIngress(s, 1) == Ingress::kDrop);  // misrouted, counted
  CHECK_EQ(s.drops[kDropMisrouted].load(), 1u);
  CHECK(!BeginMigration(set, s, 0));  // already the owner
  CHECK(!ReleaseShard(s, 0));         // nothing to release
  REQUIRE(BeginMigration(set, s, 1));
  CHECK_EQ(set.active_migrations.load(), 1u);
  CHECK(!BeginMigration(set, s, 2));  // one migration at a time per shard
  Ownership o = s.ownership();
  CHECK(o.owner == 0 && o.pending == 1 && o.phase == ShardPhase::kMigrating);
  // Old owner keeps processing; new owner buffers; a third core is misrouted.
  CHECK(RouteIngress(s, 0) == Ingress::kProcess);
  CHECK(RouteIngress(s, 1) == Ingress::kBuffer);
  CHECK(RouteIngress(s, 2) == Ingress::kDrop);
  int pk[20];
  for (int i = 0; i < 16; i++) CHECK(BufferForHandoff(s, &pk[i]));
  CHECK(!BufferForHandoff(s, &pk[16]));  // full: counted drop
  CHECK_EQ(s.drops[kDropHandoffFull].load(), 1u);
  // Not released yet: no take-over.
  int drained = 0;
  auto drain = [&](Shard& sh) {
    PacketRef p;
    int expect = 0;
    while (sh.handoff.Dequeue(&p)) {
      CHECK(p == &pk[expect]);  // FIFO
      expect++;
      drained++;
    }
  };
  CHECK(!TryTakeOver(set, s, 1, drain));
  CHECK(!ReleaseShard(s, 1));  // only the owner releases
  // Something of s still at an offloading core: take-over waits.
  s.inflight.store(1);
  CHECK(ReleaseShard(s, 0));
  CHECK(RouteIngress(s, 0) == Ingress::kDrop);  // late straggler at the old owner, counted
  CHECK_EQ(s.drops[kDropStraggler].load(), 1u);
  CHECK(!TryTakeOver(set, s, 2, drain));        // not the pending owner
  CHECK(!TryTakeOver(set, s, 1, drain));        // in flight
  CHECK_EQ(drained, 0);
  s.inflight.store(0);
  CHECK(TryTakeOver(set, s, 1, drain));
  CHECK_EQ(drained, 16);
  o = s.ownership();
  CHECK(o.owner == 1 && o.pending == kNoCore16 && o.phase == ShardPhase::kOwned);
  CHECK_EQ(set.active_migrations.load(), 0u);
  CHECK_EQ(s.migrations.load(), 1u);
  CHECK(RouteIngress(s, 1) == Ingress::kProcess);
  CHECK(RouteIngress(s, 0) == Ingress::kDrop);  // old owner now misrouted
}

TEST(classify_reclassification_waits) {
  ShardSet set;
  REQUIRE(set.Init(1, SmallCfg()) == nullptr);
  Shard& s = set[0];
  AssignOwner(s, 0);
  FlowEntry* f = nullptr;
  FlowEntry* g = nullptr;
  uint64_t batch = 1;
  // New flows are local even with r_s = 1 (the original offloaded them).
  s.set_offload_ratio(1.0);
  CHECK(Classify(set, s, Key(1), 1, 1000, 0, batch, 0, &f) == Path::kLocal);
  CHECK(Classify(set, s, Key(2), 2, 100, 0, batch, 0, &g) == Path::kLocal);
  CHECK(f->want_offload == 0);
  // New window: ranking marks the heaviest flows up to r_s = 0.95: flow 1
  // (1000 of 1100 bytes) fits, flow 1 + flow 2 does not.
  s.set_offload_ratio(0.95);
  set.AdvanceWindow();
  batch++;
  CHECK(Classify(set, s, Key(2), 2, 100, 0, batch, 0, &g) == Path::kLocal);  // ranks first
  CHECK_EQ(f->want_offload, 1u);
  CHECK_EQ(g->want_offload, 0u);
  // Flow 1 went local only in an earlier batch: it switches now.
  CHECK(Classify(set, s, Key(1), 1, 1000, 0, batch, 0, &f) == Path::kOffload);
  CHECK_EQ(f->inflight.load(), 1u);
  CHECK_EQ(s.inflight.load(), 1u);
  // Same-batch rule: r_s changes mid-batch (re-rank on the next packet); flow 2
  // already went local in this batch, so it stays local until the next batch.
  s.set_offload_ratio(1.0);
  CHECK(Classify(set, s, Key(2), 2, 100, 0, batch, 0, &g) == Path::kLocal);
  CHECK_EQ(g->want_offload, 1u);
  batch++;
  CHECK(Classify(set, s, Key(2), 2, 100, 0, batch, 0, &g) == Path::kOffload);
  // Offloaded -> local only once its in-flight packets are finished.
  s.set_offload_ratio(0.0);
  batch++;
  CHECK(Classify(set, s, Key(1), 1, 1000, 0, batch, 0, &f) == Path::kOffload);  // 1 in flight
  CHECK_EQ(f->want_offload, 0u);
  CHECK_EQ(f->inflight.load(), 2u);
  OffloadItem it{nullptr, f, &s};
  FinishOffloaded(it);
  batch++;
  CHECK(Classify(set, s, Key(1), 1, 1000, 0, batch, 0, &f) == Path::kOffload);  // still 1
  FinishOffloaded(it);
  FinishOffloaded(it);
  batch++;
  CHECK(Classify(set, s, Key(1), 1, 1000, 0, batch, 0, &f) == Path::kLocal);
  CHECK_EQ(s.inflight.load(), 1u);  // flow 2's packet
  // Ring refused: accounting undone, drop counted.
  OffloadFailed(s, g);
  CHECK_EQ(g->inflight.load(), 0u);
  CHECK_EQ(s.drops[kDropOffloadRingFull].load(), 1u);
  // Counters: every classified packet counted once.
  CHECK_EQ(s.inflight.load(), 0u);
  CHECK_EQ(s.packets.load(), 9u);
  CHECK_EQ(s.bytes.load(), 1000u * 5 + 100u * 4);
  CHECK_EQ(s.offloaded_packets.load(), 4u);
  // Table full -> counted drop.
  ShardSet tiny;
  ShardConfig c;
  c.flow_capacity = 2;
  REQUIRE(tiny.Init(1, c) == nullptr);
  AssignOwner(tiny[0], 0);
  CHECK(Classify(tiny, tiny[0], Key(1), 0, 1, 0, 1, 0, &f) == Path::kLocal);
  CHECK(Classify(tiny, tiny[0], Key(2), 0, 1, 0, 1, 0, &f) == Path::kLocal);
  CHECK(Classify(tiny, tiny[0], Key(3), 0, 1, 0, 1, 0, &f) == Path::kDrop);
  CHECK(f == nullptr);
  CHECK_EQ(tiny[0].drops[kDropTableFull].load(), 1u);
}

TEST(offload_ring_consumer_handoff) {
  OffloadRing r(0, 8);
  CHECK(r.consumer() == OffloadRing::kNone);
  CHECK(!r.AcquireForConsume(1));
  CHECK(r.RequestConsumer(1));  // no consumer: immediate
  CHECK(r.AcquireForConsume(1));
  CHECK(!r.AcquireForConsume(2));
  CHECK(r.RequestConsumer(2));
  CHECK(!r.RequestConsumer(3));  // one hand-off at a time
  CHECK(!r.AcquireForConsume(2));  // not until 1 lets go
  CHECK(!r.AcquireForConsume(1));  // 1 hands over at its next visit
  CHECK(r.AcquireForConsume(2));
  CHECK(!r.AcquireForConsume(1));
  CHECK(r.RequestConsumer(OffloadRing::kNone));  // detach
  CHECK(!r.AcquireForConsume(2));
  CHECK(r.consumer() == OffloadRing::kNone);
}

TEST(takeover_applies_the_deferred_ratio) {
  ShardSet set;
  REQUIRE(set.Init(1, SmallCfg()) == nullptr);
  Shard& s = set[0];
  AssignOwner(s, 0);
  // The controller keeps r_s = 0 while the old owner classifies (its ring has
  // no consumer) and defers the plan's 0.8 to the take-over.
  s.takeover_ratio_ppm.store(Shard::RatioPpm(0.8));
  s.ratio_ppm.store(0);
  CHECK(ReadShardStats(s).offload_ratio == 0.8);  // stats show the plan's r_s
  REQUIRE(BeginMigration(set, s, 1));
  CHECK(ReleaseShard(s, 0));
  uint32_t seen_during_drain = 0;
  CHECK(TryTakeOver(set, s, 1, [&](Shard& sh) { seen_during_drain = sh.ratio_ppm.load(); }));
  CHECK_EQ(seen_during_drain, 800000u);  // buffered packets already use the plan's r_s
  CHECK_EQ(s.ratio_ppm.load(), 800000u);
  CHECK_EQ(s.takeover_ratio_ppm.load(), Shard::kNoRatio);
}

TEST(orphaned_offload_ring_is_drained_only_without_consumer) {
  ShardSet set;
  REQUIRE(set.Init(2, SmallCfg()) == nullptr);
  FlowEntry f0, f1;
  int pk[6];
  OffloadRing r(0, 8);
  CHECK(!r.has_consumer());
  // Packets of two shards offloaded into a ring nobody drains.
  for (int i = 0; i < 6; i++) {
    FlowEntry* f = i % 2 ? &f1 : &f0;
    Shard* s = &set[static_cast<uint32_t>(i % 2)];
    f->inflight.fetch_add(1);
    s->inflight.fetch_add(1);
    REQUIRE(r.ring.Enqueue(OffloadItem{&pk[i], f, s}));
  }
  std::vector<PacketRef> freed;
  auto free_pkt = [&](PacketRef p) { freed.push_back(p); };
  CHECK_EQ(DrainOrphanedRing(r, free_pkt), 6u);
  CHECK_EQ(freed.size(), 6u);
  for (int i = 0; i < 6 && i < static_cast<int>(freed.size()); i++) CHECK(freed[i] == &pk[i]);
  CHECK_EQ(set[0].inflight.load(), 0u);
  CHECK_EQ(set[1].inflight.load(), 0u);
  CHECK_EQ(f0.inflight.load(), 0u);
  CHECK_EQ(f1.inflight.load(), 0u);
  CHECK_EQ(set[0].drops[kDropOffloadOrphaned].load(), 3u);
  CHECK_EQ(set[1].drops[kDropOffloadOrphaned].load(), 3u);
  CHECK(r.consumer() == OffloadRing::kNone);
  // With a consumer the packets will be finished: nothing is dropped.
  CHECK(r.RequestConsumer(1));
  CHECK(r.has_consumer());
  set[0].inflight.fetch_add(1);
  f0.inflight.fetch_add(1);
  REQUIRE(r.ring.Enqueue(OffloadItem{&pk[0], &f0, &set[0]}));
  CHECK_EQ(DrainOrphanedRing(r, free_pkt), 0u);
  CHECK_EQ(r.ring.SizeApprox(), 1u);
  CHECK(r.AcquireForConsume(1));
  // A consumer requested while a working core drains takes the ring after it.
  OffloadRing r2(1, 8);
  REQUIRE(r2.ClaimOrphan());
  CHECK(!r2.has_consumer());
  CHECK(!r2.ClaimOrphan());
  CHECK(r2.RequestConsumer(2));
  CHECK(r2.has_consumer());
  CHECK(!r2.AcquireForConsume(2));
  r2.ReleaseOrphan();
  CHECK(r2.AcquireForConsume(2));
}

TEST(stats_window_deltas) {
  ShardSet set;
  REQUIRE(set.Init(2, SmallCfg()) == nullptr);
  AssignOwner(set[0], 0);
  AssignOwner(set[1], 0);
  StatsWindow w;
  w.Init(2);
  StatsWindow::Delta d[2];
  FlowEntry* f;
  for (int i = 0; i < 5; i++) Classify(set, set[0], Key(1), 0, 100, 0, 1, 0, &f);
  set[1].CountDrop(kDropHandoffFull, 2);
  w.Swap(set, d);
  CHECK_EQ(d[0].packets, 5u);
  CHECK_EQ(d[0].bytes, 500u);
  CHECK_EQ(d[1].packets, 0u);
  CHECK_EQ(d[1].drops[kDropHandoffFull], 2u);
  Classify(set, set[1], Key(2), 0, 60, 0, 2, 0, &f);
  w.Swap(set, d);
  CHECK_EQ(d[0].packets, 0u);
  CHECK_EQ(d[1].packets, 1u);
  CHECK_EQ(d[1].bytes, 60u);
  CHECK_EQ(d[1].drops[kDropHandoffFull], 0u);
  const ShardStats st = ReadShardStats(set[1]);
  CHECK_EQ(st.flows, 1u);
  CHECK_EQ(st.owner, 0u);
}

// ------------------------------------------------------------ threaded run

namespace {

struct TPkt {
  uint32_t flow;
  uint32_t seq;
  uint32_t hash;
  uint16_t bytes;
  uint8_t marker;  // 1: end-of-shard marker from the dispatcher
  uint8_t shard;
};

// Per-flow checker, touched by whichever core processes the flow. Plain
// fields on purpose: only the protocol orders them (TSan checks it).
struct FlowCheck {
  std::atomic<uint32_t> busy{0};  // relaxed: detects overlap, adds no ordering
  uint32_t last_seq = 0;
  uint32_t last_path = 0;  // 1 local, 2 offloaded
  uint64_t switches = 0;
  uint64_t errors = 0;
};

struct SeqState {  // NF state through the API; may be expired and re-created
  uint64_t packets = 0;
};

struct Harness {
  static constexpr uint32_t kShards = 16;
  static constexpr uint32_t kWorkers = 3;
  static constexpr uint32_t kOffloaders = 2;
  static constexpr uint32_t kFlows = 512;
  static constexpr uint32_t kWindow = 1536;  // max packets outstanding (< every buffer)

  ShardSet set;
  NfRegistry reg;
  NfState<SeqState> seq_nf;
  std::vector<std::unique_ptr<SpscRing<TPkt*>>> rx;
  std::vector<std::unique_ptr<OffloadRing>> rings;
  std::unique_ptr<SpscRing<uint32_t>> switch_req;  // controller -> NIC: (shard << 16) | core
  std::unique_ptr<FlowCheck[]> checks;
  std::vector<uint32_t> flow_hash;
  std::unique_ptr<TPkt[]> pkts;
  uint32_t max_pkts;

  std::atomic<uint64_t> done{0};     // packets finished or dropped (relaxed)
  std::atomic<uint64_t> local_out{0}, offl_out{0}, worker_drops{0};
  std::atomic<uint64_t> consumer_handoffs{0}, expired{0}, ratio_changes{0}, windows{0};
  std::atomic<bool> stop_workers{false};

  explicit Harness(uint32_t n_pkts) : max_pkts(n_pkts) {
    ShardConfig c;
    c.flow_capacity = 256;  // > flows per shard
    c.handoff_capacity = 4096;
    set.Init(kShards, c);
    seq_nf.Init(&reg, "seq", kFlows * 2);
    for (uint32_t w = 0; w < kWorkers; w++) {
      rx.emplace_back(new SpscRing<TPkt*>(4096));
      rings.emplace_back(new OffloadRing(static_cast<uint16_t>(w), 4096));
      rings.back()->RequestConsumer(kWorkers + w % kOffloaders);
    }
    switch_req.reset(new SpscRing<uint32_t>(1024));
    checks.reset(new FlowCheck[kFlows]);
    ToeplitzHasher h;
    for (uint32_t f = 0; f < kFlows; f++) flow_hash.push_back(h.HashFlow(Key(f)));
    for (uint32_t s = 0; s < kShards; s++) AssignOwner(set[s], s % kWorkers);
    pkts.reset(new TPkt[n_pkts]);
  }

  static uint64_t NowNs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }

  // The NF chain: checks order and exclusivity, uses the NF state API.
  void RunChain(TPkt* p, FlowEntry* f, uint32_t path) {
    FlowCheck& c = checks[p->flow];
    if (c.busy.exchange(1, std::memory_order_relaxed) != 0) c.errors++;
    if (p->seq != c.last_seq + 1) c.errors++;
    c.last_seq = p->seq;
    if (c.last_path != 0 && c.last_path != path) c.switches++;
    c.last_path = path;
    SeqState* st = seq_nf.Lookup(f);
    if (st == nullptr) st = seq_nf.Insert(f);
    if (st != nullptr) st->packets++;
    c.busy.store(0, std::memory_order_relaxed);
    done.fetch_add(1, std::memory_order_relaxed);
  }

  // Classify + run one batch as the owner (normal path after RouteIngress, or
  // the hand-off drain).
  struct Batch {
    TPkt* local[64];
    FlowEntry* local_flow[64];
    uint32_t n_local = 0;
    OffloadItem off[64];
    uint32_t n_off = 0;
  };

  void ClassifyOne(uint32_t w, Shard& s, TPkt* p, uint64_t now, uint64_t batch_id, Batch& b) {
    FlowEntry* f;
    switch (Classify(set, s, Key(p->flow), p->hash, p->bytes, now, batch_id,
                     static_cast<uint16_t>(w), &f)) {
      case Path::kLocal:
        b.local[b.n_local] = p;
        b.local_flow[b.n_local++] = f;
        break;
      case Path::kOffload:
        b.off[b.n_off++] = OffloadItem{p, f, &s};
        break;
      case Path::kDrop:
        worker_drops.fetch_add(1, std::memory_order_relaxed);
        done.fetch_add(1, std::memory_order_relaxed);
        break;
    }
  }

  static thread_local uint32_t yield_tick;

  void FinishBatch(uint32_t w, Batch& b) {
    // Offload batch first, then the local batch (as the BESS module does).
    const uint32_t k = rings[w]->ring.EnqueueBurst(b.off, b.n_off);
    for (uint32_t i = k; i < b.n_off; i++) {
      OffloadFailed(*b.off[i].shard, b.off[i].flow);
      done.fetch_add(1, std::memory_order_relaxed);
    }
    // Widen the window in which an offloading core races the local batch, so
    // that a flow switched to offloaded mid-batch would show up as reordering.
    if (k != 0 && b.n_local != 0 && (++yield_tick & 3) == 0) std::this_thread::yield();
    for (uint32_t i = 0; i < b.n_local; i++) RunChain(b.local[i], b.local_flow[i], 1);
    local_out.fetch_add(b.n_local, std::memory_order_relaxed);
    b.n_local = b.n_off = 0;
  }

  void Worker(uint32_t w) {
    TPkt* burst[32];
    uint64_t counter = 0;
    Batch b;
    uint32_t to_release[32];
    uint64_t iter = 0;
    while (!stop_workers.load(std::memory_order_relaxed)) {
      const uint64_t now = NowNs();
      if (set.active_migrations.load(std::memory_order_relaxed) != 0) {
        for (uint32_t i = 0; i < kShards; i++) {
          TryTakeOver(set, set[i], w, [&](Shard& s) {
            TPkt* q;
            PacketRef ref;
            while (true) {
              uint32_t n = 0;
              const uint64_t bid = (static_cast<uint64_t>(w) << 48) | ++counter;
              while (n < 32 && s.handoff.Dequeue(&ref)) {
                q = static_cast<TPkt*>(ref);
                ClassifyOne(w, s, q, now, bid, b);
                n++;
              }
              FinishBatch(w, b);
              if (n < 32) break;
            }
          });
        }
      }
      const uint32_t n = rx[w]->DequeueBurst(burst, 32);
      if (n == 0) {
        if ((++iter & 63) == 0) Expire(w, now);
        std::this_thread::yield();
        continue;
      }
      const uint64_t bid = (static_cast<uint64_t>(w) << 48) | ++counter;
      uint32_t n_release = 0;
      for (uint32_t i = 0; i < n; i++) {
        TPkt* p = burst[i];
        if (p->marker) {
          to_release[n_release++] = p->shard;
          continue;
        }
        Shard& s = set.ForHash(p->hash);
        switch (RouteIngress(s, w)) {
          case Ingress::kProcess:
            ClassifyOne(w, s, p, now, bid, b);
            break;
          case Ingress::kBuffer:
            if (!BufferForHandoff(s, p)) done.fetch_add(1, std::memory_order_relaxed);
            break;
          case Ingress::kDrop:
            done.fetch_add(1, std::memory_order_relaxed);
            break;
        }
      }
      FinishBatch(w, b);
      // Everything received before the switch has run the chain: hand over.
      for (uint32_t i = 0; i < n_release; i++) {
        if (!ReleaseShard(set[to_release[i]], w)) worker_drops.fetch_add(1000000);  // must not happen
      }
      if ((++iter & 63) == 0) Expire(w, now);
    }
  }

  void Expire(uint32_t w, uint64_t now) {
    for (uint32_t i = 0; i < kShards; i++) {
      const Ownership o = set[i].ownership();
      if (o.owner == w && o.phase != ShardPhase::kReleased)
        expired.fetch_add(ExpireShard(set[i], &reg, now, 2'000'000 /*2 ms*/, 16),
                          std::memory_order_relaxed);
    }
  }

  void Offloader(uint32_t e) {
    OffloadItem items[32];
    while (!stop_workers.load(std::memory_order_relaxed)) {
      uint32_t got = 0;
      for (uint32_t r = 0; r < kWorkers; r++) {
        if (!rings[r]->AcquireForConsume(e)) continue;
        const uint32_t n = rings[r]->ring.DequeueBurst(items, 32);
        for (uint32_t i = 0; i < n; i++) {
          RunChain(static_cast<TPkt*>(items[i].pkt), items[i].flow, 2);
          FinishOffloaded(items[i]);
        }
        offl_out.fetch_add(n, std::memory_order_relaxed);
        got += n;
      }
      if (got == 0) std::this_thread::yield();
    }
  }

  // NIC: steers by a shard -> core table; switch requests are applied between
  // packets, followed by a marker in the old core's queue.
  std::atomic<uint64_t> sent{0};
  std::atomic<bool> stop_nic{false};
  std::vector<TPkt> markers = std::vector<TPkt>(1u << 20);  // outlive the NIC thread
  void Nic() {
    uint32_t steer[kShards];
    for (uint32_t s = 0; s < kShards; s++) steer[s] = s % kWorkers;
    std::vector<uint32_t> next_seq(kFlows, 1);
    std::mt19937 rng(1234);
    uint32_t used = 0;
    uint32_t n_markers = 0;
    auto push = [&](uint32_t core, TPkt* p) {
      while (!rx[core]->Enqueue(p)) std::this_thread::yield();  // back-pressure, no NIC loss
    };
    while (true) {
      // Switch requests are always applied, also after the last packet: a
      // begun migration completes only once the old owner sees its marker.
      uint32_t req;
      while (switch_req->Dequeue(&req)) {
        const uint32_t s = req >> 16, core = req & 0xFFFF;
        const uint32_t old = steer[s];
        steer[s] = core;
        TPkt* m = &markers[n_markers++ & ((1u << 20) - 1)];
        *m = TPkt{0, 0, 0, 0, 1, static_cast<uint8_t>(s)};
        push(old, m);
      }
      if (stop_nic.load(std::memory_order_relaxed) || used >= max_pkts) break;
      if (used - done.load(std::memory_order_relaxed) >= kWindow) {
        std::this_thread::yield();
        continue;
      }
      for (int k = 0; k < 16 && used < max_pkts; k++) {
        // Skewed: low flow ids are heavy, so ranking has something to pick.
        const uint32_t f = rng() % (rng() % kFlows + 1);
        TPkt* p = &pkts[used++];
        *p = TPkt{f, next_seq[f]++, flow_hash[f], static_cast<uint16_t>(64 + (f % 8) * 100), 0, 0};
        push(steer[p->hash & (kShards - 1)], p);
      }
      sent.store(used, std::memory_order_relaxed);
    }
    sent.store(used, std::memory_order_relaxed);
  }
};

thread_local uint32_t Harness::yield_tick = 0;

}  // namespace

TEST(mt_migration_no_loss_no_reorder) {
#if defined(__SANITIZE_THREAD__)
  // TSan runs ~20x slower: fewer hand-offs, same checks (its job is the races).
  const double kSeconds = 4.0;
  const uint32_t kTargetMigrations = 1000;
  const uint32_t kMinMigrations = 200;
#else
  const double kSeconds = 5.0;
  const uint32_t kTargetMigrations = 3000;
  const uint32_t kMinMigrations = 1000;
#endif
  std::unique_ptr<Harness> hp(new Harness(4u << 20));
  Harness& h = *hp;
  std::vector<std::thread> th;
  for (uint32_t w = 0; w < Harness::kWorkers; w++) th.emplace_back([&h, w] { h.Worker(w); });
  for (uint32_t e = 0; e < Harness::kOffloaders; e++)
    th.emplace_back([&h, e] { h.Offloader(Harness::kWorkers + e); });
  std::thread nic([&h] { h.Nic(); });

  // Controller: migrations, r_s changes, stats windows, offload-ring moves.
  std::mt19937 rng(77);
  uint64_t begun = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  uint64_t completed = 0;
  while (elapsed() < kSeconds && completed < kTargetMigrations) {
    const uint32_t s = rng() % Harness::kShards;
    const Ownership o = h.set[s].ownership();
    const uint32_t to = (o.owner + 1 + rng() % (Harness::kWorkers - 1)) % Harness::kWorkers;
    if (BeginMigration(h.set, h.set[s], to)) {
      while (!h.switch_req->Enqueue((s << 16) | to)) std::this_thread::yield();
      begun++;
    }
    switch (rng() % 8) {
      case 0:
      case 1: {
        static const double kRatios[] = {0.0, 0.3, 0.6, 0.9, 1.0};
        h.set[rng() % Harness::kShards].set_offload_ratio(kRatios[rng() % 5]);
        h.ratio_changes.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      case 2:
        h.set.AdvanceWindow();
        h.windows.fetch_add(1, std::memory_order_relaxed);
        break;
      case 3: {
        const uint32_t r = rng() % Harness::kWorkers;
        const uint32_t cur = h.rings[r]->consumer();
        const uint32_t to_e = cur == Harness::kWorkers ? Harness::kWorkers + 1 : Harness::kWorkers;
        if (h.rings[r]->RequestConsumer(to_e)) h.consumer_handoffs.fetch_add(1);
        break;
      }
      default:
        break;
    }
    completed = 0;
    for (uint32_t i = 0; i < Harness::kShards; i++)
      completed += h.set[i].migrations.load(std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  h.stop_nic.store(true);
  nic.join();
  {  // requests posted after the NIC's last pass
    uint32_t req;
    CHECK(!h.switch_req->Dequeue(&req));
  }
  // Drain: everything sent must be finished or counted as dropped.
  const uint64_t sent = h.sent.load();
  const auto t1 = std::chrono::steady_clock::now();
  while ((h.done.load() < sent || h.set.active_migrations.load() != 0) &&
         std::chrono::steady_clock::now() - t1 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  h.stop_workers.store(true);
  for (auto& t : th) t.join();

  completed = 0;
  uint64_t shard_packets = 0, shard_drops = 0, offloaded = 0;
  for (uint32_t i = 0; i < Harness::kShards; i++) {
    const ShardStats st = ReadShardStats(h.set[i]);
    completed += st.migrations;
    shard_packets += st.packets;
    offloaded += st.offloaded_packets;
    for (uint32_t d = 0; d < kNumShardDrops; d++) shard_drops += st.drops[d];
  }
  uint64_t errors = 0, switches = 0, seq_mismatch = 0;
  std::vector<uint32_t> last(Harness::kFlows, 0);
  for (uint32_t i = 0; i < sent; i++) last[h.pkts[i].flow] = h.pkts[i].seq;
  for (uint32_t f = 0; f < Harness::kFlows; f++) {
    errors += h.checks[f].errors;
    switches += h.checks[f].switches;
    if (h.checks[f].last_seq != last[f]) seq_mismatch++;
  }
  const uint64_t out = h.local_out.load() + h.offl_out.load();
  std::printf(
      "    sent %llu, out %llu (local %llu, offloaded %llu), drops %llu; migrations %llu begun "
      "%llu done; path switches %llu; ring moves %llu; r changes %llu; windows %llu; expired "
      "%llu; order/overlap errors %llu; %.1f s\n",
      (unsigned long long)sent, (unsigned long long)out, (unsigned long long)h.local_out.load(),
      (unsigned long long)h.offl_out.load(), (unsigned long long)shard_drops,
      (unsigned long long)begun, (unsigned long long)completed, (unsigned long long)switches,
      (unsigned long long)h.consumer_handoffs.load(), (unsigned long long)h.ratio_changes.load(),
      (unsigned long long)h.windows.load(), (unsigned long long)h.expired.load(),
      (unsigned long long)errors, elapsed());
  CHECK_EQ(h.done.load(), sent);
  CHECK_EQ(out + shard_drops + h.worker_drops.load() - shard_drops, sent);  // worker_drops holds every drop
  CHECK_EQ(out + h.worker_drops.load(), sent);
  CHECK_EQ(shard_drops, 0u);                 // buffers sized above the window: no loss at all
  CHECK_EQ(h.worker_drops.load(), 0u);
  CHECK_EQ(errors, 0u);                      // per-flow order kept, never two cores at once
  CHECK_EQ(seq_mismatch, 0u);                // every flow's last packet arrived
  CHECK_EQ(shard_packets, sent);             // each packet counted once (no double counting)
  CHECK_EQ(offloaded, h.offl_out.load());
  CHECK_EQ(h.set.active_migrations.load(), 0u);
  CHECK_EQ(completed, begun);
  CHECK(completed >= kMinMigrations);        // thousands of hand-offs exercised (ASan build)
  CHECK(switches >= 100);                    // flows did move between local and offloaded
  CHECK(h.consumer_handoffs.load() > 10);
  CHECK(h.offl_out.load() > 0 && h.local_out.load() > 0);
}
