// Bounded per-shard flow table.
//
// One FlowTable per shard, preallocated at init: a fixed array of FlowEntry
// (stable addresses: a packet handed to an offloading core carries a pointer
// to its entry) and an open-addressing index (linear probing, backward-shift
// deletion, so no tombstones) of at least twice the capacity. The index is
// keyed by the flow hash (flow_hash.h: the one hash per packet that also picks
// the shard), stored in the entry, through Mix: every flow of a shard shares
// the hash's low log2(S) bits, which clustered the original's hash maps when
// it indexed them with the RSS hash directly (reference §8).
//
// Full table: FindOrInsert returns nullptr and counts it (insert_failures);
// the caller drops the packet with its own counter. Never grows, never crashes.
//
// Expiry: ExpireSome() visits a bounded number of entries per call (an
// incremental sweep) and removes flows idle for longer than the timeout whose
// in-flight count is zero; the callback runs first so NF state is released
// (NfRegistry::ReleaseFlow) before the entry is reused.
//
// Thread rules: only the shard's current owner calls the mutating methods
// (FindOrInsert, Remove, ExpireSome, Rank...). An offloading core touches only
// the entry it was handed (nf_state slots, then `inflight` decrement), never
// the index. Ownership passes with the shard hand-off (migration.h).
#ifndef DYSSECT_FLOW_TABLE_H_
#define DYSSECT_FLOW_TABLE_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common.h"
#include "flow_key.h"

namespace dyssect {

// Maximum number of NFs in a chain that keep per-flow state (NF handles).
constexpr uint32_t kMaxNfSlots = 8;

constexpr uint16_t kNoRing = 0xFFFF;

// Two cache lines, aligned: the first holds everything a packet reads (the
// lookup's key, what classification reads, and the first NF's state pointer,
// so the lookup's one prefetch also serves the first NF); the second holds
// the other NF slots and what only ranking reads. What the owner writes for
// every packet is in FlowCounters, apart: a local packet leaves its entry's
// lines clean.
struct alignas(64) FlowEntry {
  // --- line 0: per packet ---
  FlowKey key;
  uint64_t last_seen = 0;    // caller's time unit (ns or TSC), for idle expiry
  // Packets of this flow handed to an offloading core and not yet finished
  // there. Incremented by the owner at classification, decremented (release)
  // by the offloading core after the whole chain ran. Reclassification to
  // local, expiry and shard hand-off wait for it to be zero.
  std::atomic<uint32_t> inflight{0};
  uint32_t flow_hash = 0;  // flow_hash.h; the index is keyed by Mix(flow_hash)
  uint16_t offload_ring = kNoRing;  // ring of the last offloaded packet
  uint8_t offloaded = 0;     // current path: 1 = offloading core (owner-written)
  uint8_t want_offload = 0;  // ranking decision (owner-written)
  uint8_t used = 0;
  void* nf_state[kMaxNfSlots] = {};  // per-NF state objects (nf_state.h); [0] on line 0
  // --- line 1 ---
  uint64_t last_win_bytes = 0;  // bytes in the previous window (set by ranking)
};
static_assert(sizeof(FlowEntry) == 128, "FlowEntry: two cache lines");
static_assert(offsetof(FlowEntry, nf_state) + sizeof(void*) <= 64,
              "the first NF's state pointer shares the lookup's cache line");

// The per-packet writes of a flow, one per entry in a dense array beside the
// entries (same index). With many flows in random order, writing them into
// the entries dirtied one entry line per packet (1024 flows: 64 KiB of lines,
// more than L1, each written back on eviction); here they fill 16 bytes a
// flow, four flows a line. Owner only.
struct FlowCounters {
  uint64_t win_bytes = 0;    // bytes in the current stats window
  uint64_t local_batch = 0;  // id of the last owner batch this flow went local in
};
static_assert(sizeof(FlowCounters) == 16, "FlowCounters: four flows per cache line");

class FlowTable {
 public:
  explicit FlowTable(uint32_t capacity)
      : capacity_(capacity == 0 ? 1 : capacity),
        index_size_(static_cast<uint32_t>(NextPowerOfTwo(2ull * capacity_))),
        index_mask_(index_size_ - 1),
        entries_(new FlowEntry[capacity_]),
        counters_(new FlowCounters[capacity_]),
        index_(new uint64_t[index_size_]()),
        free_(new uint32_t[capacity_]),
        scratch_(new RankItem[capacity_]) {
    for (uint32_t i = 0; i < capacity_; i++) {
      free_[i] = capacity_ - 1 - i;  // pop from the end: low indices first
    }
    free_count_ = capacity_;
  }

  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  uint32_t capacity() const { return capacity_; }
  uint32_t size() const { return capacity_ - free_count_; }
  uint64_t insert_failures() const { return insert_failures_; }
  uint64_t inserts() const { return inserts_; }
  uint64_t removals() const { return removals_; }
  uint64_t expirations() const { return expirations_; }

  // The per-packet counters of a live entry of this table.
  FlowCounters& Counters(const FlowEntry* e) { return counters_[e - &entries_[0]]; }

  // The flow's entry or nullptr. flow_hash: the hash the flow was inserted with.
  FlowEntry* Lookup(const FlowKey& key, uint32_t flow_hash) {
    uint32_t pos;
    return Find(key, Mix(flow_hash), &pos);
  }

  // Index key of a flow hash: the high half of a multiplication by an odd
  // 64-bit constant (Fibonacci hashing) depends on every bit of the hash, so
  // flows that share the shard bits still spread over the whole index.
  static uint32_t Mix(uint32_t flow_hash) {
    return static_cast<uint32_t>((flow_hash * 0x9E3779B97F4A7C15ull) >> 32);
  }

  // Batch lookups hide the two dependent cache misses of a lookup (index
  // slot, then entry): PrefetchIndex for every packet of a batch, then
  // PrefetchEntry for each (reads the slot, now arriving), then
  // FindOrInsertMixed, each with m = Mix(flow hash). PrefetchIndex is only a
  // hint and may be called by any thread; PrefetchEntry reads the index, so
  // only the table's owner may call it.
  void PrefetchIndex(uint32_t m) const { __builtin_prefetch(&index_[m & index_mask_], 0, 3); }
  void PrefetchEntry(uint32_t m) const {
    const uint64_t s = index_[m & index_mask_];
    if (s != 0 && SlotHash(s) == m) {
      __builtin_prefetch(&entries_[SlotIdx(s)], 1, 3);
    }
  }
  // PrefetchEntry, and the flow's counters (the owner's per-packet writes).
  void PrefetchFlow(uint32_t m) const {
    const uint64_t s = index_[m & index_mask_];
    if (s != 0 && SlotHash(s) == m) {
      __builtin_prefetch(&entries_[SlotIdx(s)], 0, 3);
      __builtin_prefetch(&counters_[SlotIdx(s)], 1, 3);
    }
  }

  // Returns the flow's entry, inserting it (all per-flow fields zero,
  // last_seen = now) if absent. *inserted says which. nullptr when the table
  // is full (counted in insert_failures). A flow must always come with the
  // same flow_hash (it is a function of its key).
  FlowEntry* FindOrInsert(const FlowKey& key, uint32_t flow_hash, uint64_t now, bool* inserted) {
    return FindOrInsertMixed(key, flow_hash, Mix(flow_hash), now, inserted);
  }

  // FindOrInsert with m = Mix(flow_hash) already computed (batch prefetch).
  FlowEntry* FindOrInsertMixed(const FlowKey& key, uint32_t flow_hash, uint32_t m, uint64_t now,
                               bool* inserted) {
    uint32_t pos;
    FlowEntry* e = Find(key, m, &pos);
    if (DYSSECT_LIKELY(e != nullptr)) {
      *inserted = false;
      return e;
    }
    if (DYSSECT_UNLIKELY(free_count_ == 0)) {
      insert_failures_++;
      *inserted = false;
      return nullptr;
    }
    const uint32_t idx = free_[--free_count_];
    e = &entries_[idx];
    e->key = key;
    e->flow_hash = flow_hash;
    e->last_seen = now;
    counters_[idx] = FlowCounters{};
    e->last_win_bytes = 0;
    e->inflight.store(0, std::memory_order_relaxed);
    e->offload_ring = kNoRing;
    e->offloaded = 0;
    e->want_offload = 0;  // new flows stay local until ranked
    e->used = 1;
    for (uint32_t i = 0; i < kMaxNfSlots; i++) e->nf_state[i] = nullptr;
    index_[pos] = MakeSlot(m, idx);  // pos is the first empty slot of the probe
    inserts_++;
    *inserted = true;
    return e;
  }

  // Removes e from the table. The caller has released its NF state and
  // checked e->inflight == 0. Returns false if e is not a live entry of this table.
  bool Remove(FlowEntry* e) {
    if (e < &entries_[0] || e >= &entries_[capacity_] || !e->used) return false;
    const uint32_t idx = static_cast<uint32_t>(e - &entries_[0]);
    uint32_t pos = Mix(e->flow_hash) & index_mask_;
    while (true) {
      const uint64_t s = index_[pos];
      if (s == 0) return false;  // not found: inconsistent, refuse
      if (SlotIdx(s) == idx) break;
      pos = (pos + 1) & index_mask_;
    }
    // Backward-shift deletion keeps every probe chain unbroken.
    uint32_t hole = pos;
    uint32_t j = pos;
    while (true) {
      j = (j + 1) & index_mask_;
      const uint64_t s = index_[j];
      if (s == 0) break;
      const uint32_t home = SlotHash(s) & index_mask_;
      // Move s into the hole if its home is not in (hole, j] (cyclically).
      const bool home_in_range =
          (hole <= j) ? (home > hole && home <= j) : (home > hole || home <= j);
      if (!home_in_range) {
        index_[hole] = s;
        hole = j;
      }
    }
    index_[hole] = 0;
    e->used = 0;
    for (uint32_t i = 0; i < kMaxNfSlots; i++) e->nf_state[i] = nullptr;
    free_[free_count_++] = idx;
    removals_++;
    return true;
  }

  // Visits up to `budget` entry positions from the sweep cursor; each live
  // entry with now - last_seen > idle_timeout and inflight == 0 is passed to
  // on_expire(FlowEntry*) and then removed. Returns the number expired.
  template <typename F>
  uint32_t ExpireSome(uint64_t now, uint64_t idle_timeout, uint32_t budget, F&& on_expire) {
    uint32_t n = 0;
    if (budget > capacity_) budget = capacity_;
    for (uint32_t i = 0; i < budget; i++) {
      FlowEntry* e = &entries_[cursor_];
      cursor_ = (cursor_ + 1 == capacity_) ? 0 : cursor_ + 1;
      if (!e->used) continue;
      if (now - e->last_seen <= idle_timeout || now < e->last_seen) continue;
      if (e->inflight.load(std::memory_order_acquire) != 0) continue;
      on_expire(e);
      Remove(e);
      expirations_++;
      n++;
    }
    return n;
  }

  // Calls f(FlowEntry*) for every live entry (owner only; O(capacity)).
  template <typename F>
  void ForEach(F&& f) {
    for (uint32_t i = 0; i < capacity_; i++)
      if (entries_[i].used) f(&entries_[i]);
  }

  // Ranks the flows by bytes and marks the heaviest ones for offloading:
  // flows are taken in decreasing order of window bytes while the cumulative
  // share (including the flow) stays <= ratio; flows idle in the window are
  // not offloaded. With roll_window (a new stats window began) it first ends
  // the current window (win_bytes -> last_win_bytes, win_bytes = 0); without
  // it (only r_s changed) it re-marks on the last window's bytes. Only sets
  // want_offload: the path switch itself is done per packet by Classify
  // (migration.h), which waits for in-flight packets. Owner only; uses a
  // preallocated scratch array, O(n log n) in the active flows. Returns the
  // number of flows marked.
  uint32_t Rank(double ratio, bool roll_window) {
    uint32_t n = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < capacity_; i++) {
      FlowEntry& e = entries_[i];
      if (!e.used) continue;
      if (roll_window) {
        e.last_win_bytes = counters_[i].win_bytes;
        counters_[i].win_bytes = 0;
      }
      e.want_offload = 0;
      if (e.last_win_bytes > 0) {
        scratch_[n++] = RankItem{e.last_win_bytes, i};
        total += e.last_win_bytes;
      }
    }
    if (ratio <= 0.0 || total == 0) return 0;
    std::sort(scratch_.get(), scratch_.get() + n, [](const RankItem& a, const RankItem& b) {
      return a.bytes != b.bytes ? a.bytes > b.bytes : a.idx < b.idx;
    });
    const double limit = ratio * static_cast<double>(total);
    uint64_t cum = 0;
    uint32_t marked = 0;
    for (uint32_t k = 0; k < n; k++) {
      cum += scratch_[k].bytes;
      if (static_cast<double>(cum) > limit) break;
      entries_[scratch_[k].idx].want_offload = 1;
      marked++;
    }
    return marked;
  }

  FlowEntry* EntryAt(uint32_t idx) { return idx < capacity_ ? &entries_[idx] : nullptr; }

 private:
  struct RankItem {
    uint64_t bytes;
    uint32_t idx;
  };

  // Slot layout: high 32 bits = Mix(flow hash), low 32 bits = entry index + 1
  // (0 means empty).
  static uint64_t MakeSlot(uint32_t m, uint32_t idx) {
    return (static_cast<uint64_t>(m) << 32) | (idx + 1ull);
  }
  static uint32_t SlotHash(uint64_t s) { return static_cast<uint32_t>(s >> 32); }
  static uint32_t SlotIdx(uint64_t s) { return static_cast<uint32_t>(s) - 1; }

  // Returns the entry or nullptr; *pos is the slot where it was found or the
  // first empty slot of its probe sequence.
  FlowEntry* Find(const FlowKey& key, uint32_t m, uint32_t* pos) {
    uint32_t p = m & index_mask_;
    const uint32_t tag = m;
    while (true) {
      const uint64_t s = index_[p];
      if (s == 0) {
        *pos = p;
        return nullptr;
      }
      if (SlotHash(s) == tag) {
        FlowEntry* e = &entries_[SlotIdx(s)];
        if (e->key == key) {
          *pos = p;
          return e;
        }
      }
      p = (p + 1) & index_mask_;  // terminates: load factor <= 1/2
    }
  }

  const uint32_t capacity_;
  const uint32_t index_size_;
  const uint32_t index_mask_;
  std::unique_ptr<FlowEntry[]> entries_;
  std::unique_ptr<FlowCounters[]> counters_;  // per entry
  std::unique_ptr<uint64_t[]> index_;
  std::unique_ptr<uint32_t[]> free_;
  std::unique_ptr<RankItem[]> scratch_;
  uint32_t free_count_ = 0;
  uint32_t cursor_ = 0;
  uint64_t insert_failures_ = 0;
  uint64_t inserts_ = 0;
  uint64_t removals_ = 0;
  uint64_t expirations_ = 0;
};

}  // namespace dyssect

#endif  // DYSSECT_FLOW_TABLE_H_
