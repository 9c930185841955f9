// Shards: slots of the RSS hash space (shard = hash & (S - 1)), each with an
// owner (a working core), an optional pending owner (migration target), a
// flow table, a hand-off buffer and cumulative counters.
//
// Ownership word: owner, pending owner and phase are packed into one 64-bit
// atomic so every core reads a consistent triple (a torn read could let the
// old and new owner both believe they own the shard). Transitions are in
// migration.h; this header only holds the data and the stats.
//
// Counters are cumulative and never reset. The controller gets per-window
// figures by subtracting two snapshots (StatsWindow), so there is no reset
// race and no double bookkeeping (reference §8). packets/bytes are written
// by the shard's current processor only (single writer, hand-off ordered by
// the ownership word), so they use relaxed load+store, no locked add; drop
// counters can have two writers (old owner: stragglers, new owner: hand-off
// buffer) and use fetch_add.
#ifndef DYSSECT_SHARD_H_
#define DYSSECT_SHARD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common.h"
#include "flow_table.h"
#include "spsc_ring.h"

namespace dyssect {

enum class ShardPhase : uint32_t {
  kOwned = 0,      // owner processes; no migration
  kMigrating = 1,  // pending owner set; owner still processes what it receives
  kReleased = 2,   // old owner drained everything it received before the switch
};

// Every place the shard logic drops a packet has its own counter.
enum ShardDrop : uint32_t {
  kDropTableFull = 0,     // new flow, flow table full
  kDropOffloadRingFull,   // offload ring full
  kDropHandoffFull,       // pending owner's hand-off buffer full
  kDropStraggler,         // reached the old owner after it released the shard (HW RSS only)
  kDropMisrouted,         // reached a core that neither owns nor takes over the shard
  kDropOffloadOrphaned,   // in an offload ring without consumer, dropped to end a hand-off
  kNumShardDrops
};

inline const char* ShardDropName(uint32_t d) {
  static const char* const kNames[kNumShardDrops] = {"table_full", "offload_ring_full",
                                                     "handoff_full", "straggler", "misrouted",
                                                     "offload_orphaned"};
  return d < kNumShardDrops ? kNames[d] : "unknown";
}

constexpr uint32_t kNoCore16 = 0xFFFF;  // "none" in the packed ownership word
constexpr uint32_t kMaxCores = 0xFFF0;

struct Ownership {
  uint32_t owner;    // kNoCore16 if none
  uint32_t pending;  // kNoCore16 if none
  ShardPhase phase;

  static uint64_t Pack(uint32_t owner, uint32_t pending, ShardPhase ph) {
    return (static_cast<uint64_t>(owner & 0xFFFF) << 32) |
           (static_cast<uint64_t>(pending & 0xFFFF) << 16) | static_cast<uint64_t>(ph);
  }
  static Ownership Unpack(uint64_t v) {
    return Ownership{static_cast<uint32_t>((v >> 32) & 0xFFFF),
                     static_cast<uint32_t>((v >> 16) & 0xFFFF),
                     static_cast<ShardPhase>(v & 0xFF)};
  }
};

// Packet reference buffered during a hand-off: opaque to this code (a
// bess::Packet* in the plugin, a test packet in the tests).
using PacketRef = void*;

struct ShardConfig {
  uint32_t flow_capacity = 16384;     // max flows per shard
  uint32_t handoff_capacity = 4096;   // packets buffered at the new owner per migration
};

class alignas(kCacheLine) Shard {
 public:
  Shard(uint32_t id, const ShardConfig& cfg)
      : id_(id), table(cfg.flow_capacity), handoff(cfg.handoff_capacity) {}

  uint32_t id() const { return id_; }

  Ownership ownership() const { return Ownership::Unpack(own.load(std::memory_order_acquire)); }

  // r_s, the fraction of the shard's bytes to offload, set by the controller.
  void set_offload_ratio(double r) {
    if (r < 0) r = 0;
    if (r > 1) r = 1;
    ratio_ppm.store(static_cast<uint32_t>(r * 1e6 + 0.5), std::memory_order_relaxed);
  }
  double offload_ratio() const { return ratio_ppm.load(std::memory_order_relaxed) / 1e6; }
  static uint32_t RatioPpm(double r) {
    if (r < 0) r = 0;
    if (r > 1) r = 1;
    return static_cast<uint32_t>(r * 1e6 + 0.5);
  }

  // Single-writer counter update (current processor only).
  static void Bump(std::atomic<uint64_t>& c, uint64_t v) {
    c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }
  void CountDrop(ShardDrop d, uint64_t n = 1) { drops[d].fetch_add(n, std::memory_order_relaxed); }

  // --- shared, atomically accessed ---
  std::atomic<uint64_t> own{Ownership::Pack(kNoCore16, kNoCore16, ShardPhase::kOwned)};
  std::atomic<uint32_t> inflight{0};   // offloaded packets of this shard not finished yet
  std::atomic<uint32_t> ratio_ppm{0};  // r_s in millionths
  // r_s the new owner applies when it takes the shard over (kNoRatio: keep
  // ratio_ppm): the old owner classifies with ratio_ppm until its fence.
  static constexpr uint32_t kNoRatio = 0xFFFFFFFFu;
  std::atomic<uint32_t> takeover_ratio_ppm{kNoRatio};
  // cumulative counters (see header comment)
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> offloaded_packets{0};
  std::atomic<uint64_t> migrations{0};
  std::atomic<uint64_t> drops[kNumShardDrops] = {};
  std::atomic<uint32_t> flows{0};  // table size, published by the owner

  // --- owner-only ---
  uint64_t ranked_epoch = 0;
  uint32_t applied_ratio_ppm = 0;

 private:
  const uint32_t id_;

 public:
  FlowTable table;                // owner only
  SpscRing<PacketRef> handoff;    // producer and consumer: the pending owner
};

// All S shards plus the stats window epoch. Built at init.
class ShardSet {
 public:
  // Returns nullptr on success, else an error (S not a power of two...).
  const char* Init(uint32_t num_shards, const ShardConfig& cfg) {
    if (!IsPowerOfTwo(num_shards)) return "number of shards must be a power of two";
    shards_.clear();
    for (uint32_t i = 0; i < num_shards; i++) shards_.emplace_back(new Shard(i, cfg));
    mask_ = num_shards - 1;
    return nullptr;
  }

  uint32_t size() const { return static_cast<uint32_t>(shards_.size()); }
  Shard& operator[](uint32_t i) { return *shards_[i]; }
  Shard& ForHash(uint32_t rss_hash) { return *shards_[rss_hash & mask_]; }

  // Controller: starts a new stats window; owners re-rank their shards'
  // flows lazily on the next packet of each shard.
  void AdvanceWindow() { window_epoch.fetch_add(1, std::memory_order_release); }
  uint64_t epoch() const { return window_epoch.load(std::memory_order_acquire); }

  std::atomic<uint64_t> window_epoch{1};
  // Number of migrations begun and not yet completed; cores scan the shards
  // for hand-off work only while it is non-zero (one load per batch otherwise).
  std::atomic<uint32_t> active_migrations{0};

 private:
  std::vector<std::unique_ptr<Shard>> shards_;
  uint32_t mask_ = 0;
};

// Cumulative view of one shard, safe to read from any thread at any time.
struct ShardStats {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t offloaded_packets = 0;
  uint64_t migrations = 0;
  uint64_t drops[kNumShardDrops] = {};
  uint32_t flows = 0;
  uint32_t owner = kNoCore16;
  uint32_t pending = kNoCore16;
  ShardPhase phase = ShardPhase::kOwned;
  double offload_ratio = 0;
};

inline ShardStats ReadShardStats(const Shard& s) {
  ShardStats st;
  st.packets = s.packets.load(std::memory_order_relaxed);
  st.bytes = s.bytes.load(std::memory_order_relaxed);
  st.offloaded_packets = s.offloaded_packets.load(std::memory_order_relaxed);
  st.migrations = s.migrations.load(std::memory_order_relaxed);
  for (uint32_t d = 0; d < kNumShardDrops; d++) st.drops[d] = s.drops[d].load(std::memory_order_relaxed);
  st.flows = s.flows.load(std::memory_order_relaxed);
  const Ownership o = s.ownership();
  st.owner = o.owner;
  st.pending = o.pending;
  st.phase = o.phase;
  // r_s of the plan: the one the new owner applies at the take-over, if any
  const uint32_t next = s.takeover_ratio_ppm.load(std::memory_order_relaxed);
  st.offload_ratio = next != Shard::kNoRatio ? next / 1e6 : s.offload_ratio();
  return st;
}

// Reader-side window: Swap() returns, per shard, what was counted since the
// previous Swap() (the controller's per-epoch packets/bytes/drops) together
// with the elapsed time it is given. Single reader (the stats command).
class StatsWindow {
 public:
  struct Delta {
    uint64_t packets, bytes, offloaded_packets;
    uint64_t drops[kNumShardDrops];
  };

  void Init(uint32_t num_shards) { prev_.assign(num_shards, ShardStats{}); }

  // Fills out[0..S) with deltas since the previous call (or since start).
  void Swap(ShardSet& set, Delta* out) {
    for (uint32_t i = 0; i < set.size() && i < prev_.size(); i++) {
      const ShardStats cur = ReadShardStats(set[i]);
      out[i].packets = cur.packets - prev_[i].packets;
      out[i].bytes = cur.bytes - prev_[i].bytes;
      out[i].offloaded_packets = cur.offloaded_packets - prev_[i].offloaded_packets;
      for (uint32_t d = 0; d < kNumShardDrops; d++) out[i].drops[d] = cur.drops[d] - prev_[i].drops[d];
      prev_[i] = cur;
    }
  }

 private:
  std::vector<ShardStats> prev_;
};

}  // namespace dyssect

#endif  // DYSSECT_SHARD_H_
