// The shard migration hand-off, flow classification (local or offloaded) and
// the offload rings, as a lock-free state machine.
//
// Roles: the controller (BeginMigration, RequestConsumer, set r_s,
// AdvanceWindow), working cores (RouteIngress, Classify, ReleaseShard,
// TryTakeOver, ExpireShard), offloading cores (AcquireForConsume, then
// FinishOffloaded after the chain ran for each packet).
//
// Shard migration A -> B (no loss, no reordering; fixes reference §4.5):
//  1. Controller: BeginMigration(s, B): {A, -, kOwned} -> {A, B, kMigrating},
//     then switches steering (RETA entry or software dispatcher) to B.
//  2. B: RouteIngress says kBuffer for s: B stores packets in s.handoff, in
//     arrival order, processing none of them (full buffer: counted drop).
//  3. A: keeps processing s normally (RouteIngress: kProcess) until it has
//     processed everything it received before the switch: with the software
//     dispatcher, a marker the dispatcher puts in A's queue right after the
//     switch; with hardware RSS, its RX queue seen empty after a grace time.
//     After the batch containing the last such packet has run through the
//     whole chain, A calls ReleaseShard(s, A): -> {A, B, kReleased}.
//     Late packets A still gets for s are counted drops (kDropStraggler).
//  4. B: TryTakeOver(s, B) (between batches) succeeds once the phase is
//     kReleased AND s.inflight == 0 (every packet A offloaded for s has been
//     finished by its offloading core). B then applies the plan's r_s
//     (s.takeover_ratio_ppm), processes the buffered packets in order through
//     the normal path, and only then publishes {B, -, kOwned}; B's next RX
//     batch comes after the buffer.
// Until its fence A classifies s with s.ratio_ppm and offloads into its own
// ring, so the controller leaves r_s > 0 there only if A's ring has a
// consumer (OffloadRing::has_consumer) and defers the plan's r_s to step 4.
// Should in-flight packets still sit in a ring without consumer (nothing
// would finish them), B drops them, counted, after a bound
// (DrainOrphanedRing) instead of waiting forever.
// So every packet of s received before the switch is finished before any
// packet received after it starts, and A and B never touch the shard's table
// or its flows' state at the same time.
//
// Flow classification (owner, per packet, Classify):
//  - New flows are local (the original offloaded them by default).
//  - Ranking (FlowTable::Rank) runs lazily on the first packet of the shard
//    in a new stats window or after r_s changed; it sets want_offload for the
//    heaviest flows whose cumulative byte share stays <= r_s.
//  - local -> offloaded: only if no packet of the flow went local in the
//    current batch (local packets of a batch run after the offload batch is
//    enqueued, so switching mid-batch could reorder).
//  - offloaded -> local: only once the flow's in-flight count is 0; until
//    then its packets keep going to the same offload ring (FIFO).
//
// Offload ring consumer change E1 -> E2 (RequestConsumer): E1 hands the ring
// over at its next visit, i.e. after finishing every packet it dequeued
// before; E2 consumes only after seeing itself as consumer. FIFO order holds.
#ifndef DYSSECT_MIGRATION_H_
#define DYSSECT_MIGRATION_H_

#include <atomic>
#include <cstdint>

#include "common.h"
#include "flow_table.h"
#include "nf_state.h"
#include "shard.h"
#include "spsc_ring.h"

namespace dyssect {

// ---------------------------------------------------------------- controller

// Starts migrating s to new_owner. Fails (false) if s is already migrating,
// has no owner, or new_owner already owns it. The caller then switches
// steering to new_owner and makes sure the old owner learns when it has
// drained (marker or RX-queue check).
inline bool BeginMigration(ShardSet& set, Shard& s, uint32_t new_owner) {
  if (new_owner >= kMaxCores) return false;
  uint64_t cur = s.own.load(std::memory_order_acquire);
  const Ownership o = Ownership::Unpack(cur);
  if (o.phase != ShardPhase::kOwned || o.owner == kNoCore16 || o.owner == new_owner) return false;
  set.active_migrations.fetch_add(1, std::memory_order_acq_rel);
  if (!s.own.compare_exchange_strong(cur,
                                     Ownership::Pack(o.owner, new_owner, ShardPhase::kMigrating),
                                     std::memory_order_acq_rel, std::memory_order_acquire)) {
    set.active_migrations.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  return true;
}

// Initial assignment (pipeline start, nothing flowing for s yet).
inline void AssignOwner(Shard& s, uint32_t owner) {
  s.own.store(Ownership::Pack(owner, kNoCore16, ShardPhase::kOwned), std::memory_order_release);
}

// ------------------------------------------------------------- working core

enum class Ingress : uint8_t {
  kProcess,  // this core owns the shard: Classify and run
  kBuffer,   // this core is taking the shard over: s.handoff.Enqueue (else kDropHandoffFull)
  kDrop,     // counted already (straggler or misrouted)
};

// Whether `core` processes the shard's packets and owns its table: it is the
// owner and has not released it to a new owner.
inline bool Processes(const Ownership& o, uint32_t core) {
  return o.owner == core && o.phase != ShardPhase::kReleased;
}

// Where a packet of shard s that arrived at `core` goes.
inline Ingress RouteIngress(Shard& s, uint32_t core) {
  const Ownership o = s.ownership();
  if (DYSSECT_LIKELY(Processes(o, core))) return Ingress::kProcess;
  if (o.owner == core) {
    s.CountDrop(kDropStraggler);
    return Ingress::kDrop;
  }
  if (o.pending == core) return Ingress::kBuffer;
  s.CountDrop(kDropMisrouted);
  return Ingress::kDrop;
}

// Buffers a packet at the pending owner. false = full (counted; caller frees it).
inline bool BufferForHandoff(Shard& s, PacketRef pkt) {
  if (DYSSECT_LIKELY(s.handoff.Enqueue(pkt))) return true;
  s.CountDrop(kDropHandoffFull);
  return false;
}

// Old owner: everything it received for s before the switch has been
// processed (its batch finished the chain). Returns false if `core` is not
// the owner of a migrating shard.
inline bool ReleaseShard(Shard& s, uint32_t core) {
  uint64_t cur = s.own.load(std::memory_order_acquire);
  const Ownership o = Ownership::Unpack(cur);
  if (o.owner != core || o.phase != ShardPhase::kMigrating) return false;
  s.flows.store(s.table.size(), std::memory_order_relaxed);
  return s.own.compare_exchange_strong(cur,
                                       Ownership::Pack(o.owner, o.pending, ShardPhase::kReleased),
                                       std::memory_order_acq_rel, std::memory_order_acquire);
}

// New owner, between batches. If the old owner has released s and nothing of
// s is in flight at an offloading core, calls drain(s) -- which must process
// every packet in s.handoff in order through the normal path (Classify and
// the chain), as the new owner -- and then publishes ownership. Returns true
// if the shard was taken over.
template <typename Drain>
inline bool TryTakeOver(ShardSet& set, Shard& s, uint32_t core, Drain&& drain) {
  const Ownership o = s.ownership();
  if (o.pending != core || o.phase != ShardPhase::kReleased) return false;
  if (s.inflight.load(std::memory_order_acquire) != 0) return false;
  const uint32_t ratio = s.takeover_ratio_ppm.exchange(Shard::kNoRatio, std::memory_order_acq_rel);
  if (ratio != Shard::kNoRatio) s.ratio_ppm.store(ratio, std::memory_order_relaxed);
  drain(s);
  s.own.store(Ownership::Pack(core, kNoCore16, ShardPhase::kOwned), std::memory_order_release);
  s.migrations.fetch_add(1, std::memory_order_relaxed);
  set.active_migrations.fetch_sub(1, std::memory_order_acq_rel);
  return true;
}

// Result of Classify for one packet.
enum class Path : uint8_t { kLocal, kOffload, kDrop };

// Owner, once per shard per batch before its packets are classified: ranks
// the shard's flows when a new stats window began or r_s changed. Returns
// true when it ranked (the caller may publish the new top shares).
inline bool PrepareShard(ShardSet& set, Shard& s) {
  const uint64_t epoch = set.window_epoch.load(std::memory_order_relaxed);
  const uint32_t ratio = s.ratio_ppm.load(std::memory_order_relaxed);
  if (DYSSECT_LIKELY(s.ranked_epoch == epoch && s.applied_ratio_ppm == ratio)) return false;
  s.table.Rank(ratio / 1e6, s.ranked_epoch != epoch);
  s.ranked_epoch = epoch;
  s.applied_ratio_ppm = ratio;
  return true;
}

// Owner, per packet, after PrepareShard(s) in the same batch: finds or creates
// the flow (mixed = FlowTable::Mix(flow_hash), computed once for the batch
// prefetch), updates the flow's counters and decides the packet's path. The
// shard's packet and byte counters are the caller's to bump (CountShard), once
// per batch for every packet whose path is not kDrop.
inline Path ClassifyFlow(Shard& s, const FlowKey& key, uint32_t flow_hash, uint32_t mixed,
                         uint32_t bytes, uint64_t now, uint64_t batch_id, uint16_t my_ring,
                         FlowEntry** flow_out) {
  bool inserted;
  FlowEntry* f = s.table.FindOrInsertMixed(key, flow_hash, mixed, now, &inserted);
  if (DYSSECT_UNLIKELY(f == nullptr)) {
    s.CountDrop(kDropTableFull);
    *flow_out = nullptr;
    return Path::kDrop;
  }
  if (DYSSECT_UNLIKELY(inserted)) s.flows.store(s.table.size(), std::memory_order_relaxed);
  // A caller on a coarse clock (the plugin's is ~1 ms) mostly finds last_seen
  // current and leaves the entry's line unwritten by it.
  if (f->last_seen != now) f->last_seen = now;
  // The counters are apart from the entry (flow_table.h): a local packet
  // writes only them.
  FlowCounters& fc = s.table.Counters(f);
  fc.win_bytes += bytes;
  if (f->offloaded) {
    if (!f->want_offload && f->inflight.load(std::memory_order_acquire) == 0) f->offloaded = 0;
  } else if (f->want_offload && fc.local_batch != batch_id) {
    f->offloaded = 1;
  }
  *flow_out = f;
  if (f->offloaded) {
    f->inflight.fetch_add(1, std::memory_order_relaxed);  // published by the ring enqueue
    s.inflight.fetch_add(1, std::memory_order_relaxed);
    f->offload_ring = my_ring;
    Shard::Bump(s.offloaded_packets, 1);
    return Path::kOffload;
  }
  fc.local_batch = batch_id;
  return Path::kLocal;
}

// Owner: the shard's packet and byte counters, for packets ClassifyFlow did
// not drop.
inline void CountShard(Shard& s, uint64_t packets, uint64_t bytes) {
  Shard::Bump(s.packets, packets);
  Shard::Bump(s.bytes, bytes);
}

// Owner only. One packet, all of the above: PrepareShard, ClassifyFlow and
// CountShard. kOffload: the caller enqueues {pkt, flow, &s} on its offload
// ring (my_ring), calling OffloadFailed if that fails. kDrop: flow table full
// (counted). batch_id must be unique per (core, batch), e.g.
// (core << 48) | batch_counter.
inline Path Classify(ShardSet& set, Shard& s, const FlowKey& key, uint32_t flow_hash,
                     uint32_t bytes, uint64_t now, uint64_t batch_id, uint16_t my_ring,
                     FlowEntry** flow_out) {
  PrepareShard(set, s);
  const Path p = ClassifyFlow(s, key, flow_hash, FlowTable::Mix(flow_hash), bytes, now, batch_id,
                              my_ring, flow_out);
  if (p != Path::kDrop) CountShard(s, 1, bytes);
  return p;
}

// The offload ring refused the packet: undo the in-flight accounting and
// count the drop. The caller frees the packet.
inline void OffloadFailed(Shard& s, FlowEntry* f) {
  f->inflight.fetch_sub(1, std::memory_order_release);
  s.inflight.fetch_sub(1, std::memory_order_release);
  s.CountDrop(kDropOffloadRingFull);
}

// Owner: incremental idle-flow expiry for one shard, releasing NF state
// (hooks run: e.g. NAT ports go back to the pool). Returns flows expired.
inline uint32_t ExpireShard(Shard& s, NfRegistry* reg, uint64_t now, uint64_t idle_timeout,
                            uint32_t budget) {
  const uint32_t n = s.table.ExpireSome(now, idle_timeout, budget, [reg](FlowEntry* f) {
    if (reg != nullptr) reg->ReleaseFlow(f);
  });
  if (n != 0) s.flows.store(s.table.size(), std::memory_order_relaxed);
  return n;
}

// ---------------------------------------------------------- offload rings

struct OffloadItem {
  PacketRef pkt;
  FlowEntry* flow;
  Shard* shard;
};

// One per working core (that core is the only producer).
class OffloadRing {
 public:
  static constexpr uint32_t kNone = 0xFFFF;    // no consumer / no pending hand-off
  static constexpr uint32_t kDetach = 0xFFFE;  // pending: hand over to nobody
  static constexpr uint32_t kRescuer = 0xFFFD;  // consumer: a working core (DrainOrphanedRing)

  OffloadRing(uint16_t id, uint32_t capacity) : id_(id), ring(capacity) {}

  uint16_t id() const { return id_; }

  // Controller: make `core` (an offloading core, or kNone to detach) the
  // consumer. With no current consumer it takes effect at once; otherwise the
  // current consumer hands over at its next visit. false if a hand-off is
  // already pending. Before detaching, set r_s = 0 for the producer's shards
  // and wait for their in-flight counts to reach 0, else the ring fills up
  // (counted drops).
  bool RequestConsumer(uint32_t core) {
    uint32_t cur = state_.load(std::memory_order_acquire);
    while (true) {
      const uint32_t consumer = cur >> 16, pending = cur & 0xFFFF;
      if (pending != kNone) return false;
      if (consumer == core) return true;
      if (consumer == kNone && core == kNone) return true;
      const uint32_t next = consumer == kNone ? Pack(core, kNone)
                                              : Pack(consumer, core == kNone ? kDetach : core);
      if (state_.compare_exchange_weak(cur, next, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        return true;
    }
  }

  // Offloading core, at the start of each visit (after finishing everything
  // it dequeued before). Returns true if `core` may dequeue now. Performs a
  // pending hand-off away from `core`.
  bool AcquireForConsume(uint32_t core) {
    uint32_t cur = state_.load(std::memory_order_acquire);
    const uint32_t consumer = cur >> 16, pending = cur & 0xFFFF;
    if (consumer != core) return false;
    if (DYSSECT_UNLIKELY(pending != kNone)) {
      state_.store(Pack(pending == kDetach ? kNone : pending, kNone), std::memory_order_release);
      return false;
    }
    return true;
  }

  // Whether something drains the ring: a consumer, or one requested.
  bool has_consumer() const {
    const uint32_t cur = state_.load(std::memory_order_acquire);
    const uint32_t consumer = cur >> 16, pending = cur & 0xFFFF;
    return (consumer != kNone && consumer != kRescuer) || (pending != kNone && pending != kDetach);
  }

  // A working core whose take-over waits on packets in this ring while it
  // has no consumer and none requested: become its consumer for one drain.
  bool ClaimOrphan() {
    uint32_t cur = Pack(kNone, kNone);
    return state_.compare_exchange_strong(cur, Pack(kRescuer, kNone), std::memory_order_acq_rel,
                                          std::memory_order_acquire);
  }

  // After the drain: a consumer the controller requested meanwhile (pending)
  // takes the ring, else it has none again.
  void ReleaseOrphan() {
    uint32_t cur = state_.load(std::memory_order_acquire);
    while (true) {
      const uint32_t pending = cur & 0xFFFF;
      const uint32_t next = Pack(pending == kDetach ? kNone : pending, kNone);
      if (state_.compare_exchange_weak(cur, next, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        return;
    }
  }

  uint32_t consumer() const { return state_.load(std::memory_order_acquire) >> 16; }
  bool handoff_pending() const { return (state_.load(std::memory_order_acquire) & 0xFFFF) != kNone; }

 private:
  static uint32_t Pack(uint32_t consumer, uint32_t pending) {
    return ((consumer & 0xFFFF) << 16) | (pending & 0xFFFF);
  }
  const uint16_t id_;
  std::atomic<uint32_t> state_{Pack(kNone, kNone)};

 public:
  SpscRing<OffloadItem> ring;
};

// Offloading core: after the whole chain ran for an offloaded packet (its
// last touch of the flow's NF state). Releases the flow to the owner.
inline void FinishOffloaded(const OffloadItem& it) {
  it.flow->inflight.fetch_sub(1, std::memory_order_release);
  it.shard->inflight.fetch_sub(1, std::memory_order_release);
}

// New owner of a shard whose take-over has waited too long for in-flight
// packets: if they sit in ring r and r has no consumer (none would ever
// finish them), drops everything queued in r (counted per shard as
// kDropOffloadOrphaned), finishing each packet as an offloading core would.
// free(pkt) frees a packet. Returns the packets dropped (0 if r has a
// consumer, which will finish them).
template <typename Free>
inline uint32_t DrainOrphanedRing(OffloadRing& r, Free&& free) {
  if (!r.ClaimOrphan()) return 0;
  uint32_t n = 0;
  OffloadItem it;
  while (r.ring.Dequeue(&it)) {
    it.shard->CountDrop(kDropOffloadOrphaned);
    free(it.pkt);
    FinishOffloaded(it);
    n++;
  }
  r.ReleaseOrphan();
  return n;
}

}  // namespace dyssect

#endif  // DYSSECT_MIGRATION_H_
