// Source NAT: rewrites the IPv4 source address and the TCP/UDP source port of
// each flow to an external (address, port) taken from a shared pool, with
// RFC 1624 incremental checksum updates.
//
// Port pool (NatPortPool): all (external address, port) pairs, ports in
// [port_min, port_max] with port_min >= 1 (port 0 is never handed out), split
// into P partitions (normally one per core). Each partition is a lock-free
// stack of pair ids; a core allocates from its own partition and steals from
// the others when it is empty. Every id is in exactly one place (a stack or
// one flow's NAT state), so no two flows ever get the same pair, across all
// cores. Release (flow Delete or expiry) pushes the id back to its home
// partition from whichever core runs it. An exhausted pool makes Process
// return kDrop and counts pool_empty_drops; it never dereferences a null state
// (the original crashed there).
//
// Forward direction only (like the original); the reverse mapping is not
// implemented. Only kOk packets (TCP/UDP) are translated; the caller applies
// its pass/drop policy to the rest.
#ifndef DYSSECT_NAT_H_
#define DYSSECT_NAT_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "checksum.h"
#include "flow_key.h"
#include "flow_table.h"
#include "nf_state.h"

namespace dyssect {

class NatPortPool {
 public:
  static constexpr uint32_t kMaxPartitions = 64;
  static constexpr uint32_t kNil = 0xFFFFFFFFu;

  // addrs: external IPv4 addresses (host order), n_addrs >= 1, no duplicates
  // (checked). Returns nullptr on success, else a static error message.
  const char* Init(const uint32_t* addrs, uint32_t n_addrs, uint16_t port_min, uint16_t port_max,
                   uint32_t partitions) {
    if (n_addrs == 0) return "NAT needs at least one external address";
    if (port_min == 0) return "NAT port_min must be >= 1 (port 0 is never allocated)";
    if (port_max < port_min) return "NAT port_max must be >= port_min";
    if (partitions == 0 || partitions > kMaxPartitions) return "NAT partitions out of range";
    for (uint32_t i = 0; i < n_addrs; i++)
      for (uint32_t j = i + 1; j < n_addrs; j++)
        if (addrs[i] == addrs[j]) return "duplicate NAT external address";
    n_addrs_ = n_addrs;
    addrs_.reset(new uint32_t[n_addrs]);
    for (uint32_t i = 0; i < n_addrs; i++) addrs_[i] = addrs[i];
    port_min_ = port_min;
    nports_ = static_cast<uint32_t>(port_max) - port_min + 1;
    total_ = n_addrs * nports_;
    partitions_ = partitions;
    part_size_ = (total_ + partitions - 1) / partitions;
    next_.reset(new std::atomic<uint32_t>[total_]);
    for (uint32_t p = 0; p < partitions; p++) {
      const uint32_t lo = p * part_size_;
      const uint32_t hi = lo + part_size_ < total_ ? lo + part_size_ : total_;
      for (uint32_t id = lo; id < hi; id++)
        next_[id].store(id + 1 < hi ? id + 1 : kNil, std::memory_order_relaxed);
      heads_[p].v.store(Pack(lo < hi ? lo : kNil, 0), std::memory_order_release);
    }
    available_.store(total_, std::memory_order_relaxed);
    return nullptr;
  }

  // Takes a free pair, preferring `partition` (taken modulo the partition
  // count). false when the whole pool is empty.
  bool Alloc(uint32_t partition, uint32_t* addr, uint16_t* port, uint32_t* id) {
    const uint32_t start = partition % partitions_;
    for (uint32_t k = 0; k < partitions_; k++) {
      uint32_t p = start + k;
      if (p >= partitions_) p -= partitions_;
      const uint32_t got = Pop(p);
      if (got != kNil) {
        available_.fetch_sub(1, std::memory_order_relaxed);
        *id = got;
        *addr = addrs_[got / nports_];
        *port = static_cast<uint16_t>(port_min_ + got % nports_);
        return true;
      }
    }
    return false;
  }

  // Returns a pair to its home partition. Any thread.
  void Release(uint32_t id) {
    Push(id / part_size_, id);
    available_.fetch_add(1, std::memory_order_relaxed);
  }

  uint32_t total() const { return total_; }
  uint32_t available() const { return available_.load(std::memory_order_relaxed); }

 private:
  struct alignas(kCacheLine) Head {
    std::atomic<uint64_t> v{Pack(kNil, 0)};
  };
  static uint64_t Pack(uint32_t idx, uint32_t tag) {
    return (static_cast<uint64_t>(tag) << 32) | idx;
  }

  uint32_t Pop(uint32_t p) {
    uint64_t old = heads_[p].v.load(std::memory_order_acquire);
    while (true) {
      const uint32_t idx = static_cast<uint32_t>(old);
      if (idx == kNil) return kNil;
      const uint32_t nxt = next_[idx].load(std::memory_order_relaxed);
      const uint64_t nv = Pack(nxt, static_cast<uint32_t>(old >> 32) + 1);
      if (heads_[p].v.compare_exchange_weak(old, nv, std::memory_order_acq_rel,
                                            std::memory_order_acquire))
        return idx;
    }
  }
  void Push(uint32_t p, uint32_t id) {
    uint64_t old = heads_[p].v.load(std::memory_order_relaxed);
    while (true) {
      next_[id].store(static_cast<uint32_t>(old), std::memory_order_relaxed);
      const uint64_t nv = Pack(id, static_cast<uint32_t>(old >> 32) + 1);
      if (heads_[p].v.compare_exchange_weak(old, nv, std::memory_order_release,
                                            std::memory_order_relaxed))
        return;
    }
  }

  std::unique_ptr<uint32_t[]> addrs_;
  uint32_t n_addrs_ = 0;
  uint32_t port_min_ = 1;
  uint32_t nports_ = 0;
  uint32_t total_ = 0;
  uint32_t partitions_ = 1;
  uint32_t part_size_ = 1;
  std::unique_ptr<std::atomic<uint32_t>[]> next_;
  Head heads_[kMaxPartitions];
  std::atomic<uint32_t> available_{0};
};

// Per-flow NAT state (lives in the NF slot pool).
struct NatFlowState {
  uint32_t ext_ip;
  uint16_t ext_port;
  uint32_t pool_id;
  uint32_t orig_ip;
  uint16_t orig_port;
};

// One Nat per core (counters are single-writer); all instances of one chain
// position share the NF slot (by name) and the NatPortPool.
class Nat {
 public:
  enum class Verdict { kForward, kDrop };

  struct Counters {
    uint64_t translated = 0;        // packets rewritten
    uint64_t new_mappings = 0;      // flows that got a pair
    uint64_t pool_empty_drops = 0;  // no free (address, port): packet dropped
    uint64_t state_full_drops = 0;  // NF state pool empty: packet dropped
    uint64_t fragment_drops = 0;    // IPv4 fragment: cannot be translated, dropped
  };

  // slot_name identifies the chain position (shared by all cores' instances).
  bool Init(NfRegistry* reg, NatPortPool* pool, const char* slot_name, uint32_t flow_capacity) {
    pool_ = pool;
    if (!state_.Init(reg, slot_name, flow_capacity)) return false;
    reg->SetReleaseHook(
        state_.handle(),
        [](void* ctx, void* obj) {
          static_cast<NatPortPool*>(ctx)->Release(static_cast<NatFlowState*>(obj)->pool_id);
        },
        pool);
    return true;
  }

  // pkt/len: the whole frame; pp: its ParsePacket result, which must be kOk;
  // partition: this core's pool partition. Rewrites in place.
  Verdict Process(uint8_t* pkt, const ParsedPacket& pp, FlowEntry* flow, uint32_t partition) {
    NatFlowState* st = state_.Lookup(flow);
    if (DYSSECT_UNLIKELY(st == nullptr)) {
      uint32_t addr, id;
      uint16_t port;
      if (!pool_->Alloc(partition, &addr, &port, &id)) {
        counters_.pool_empty_drops++;
        return Verdict::kDrop;
      }
      st = state_.Insert(flow, NatFlowState{addr, port, id, pp.key.src_ip, pp.key.src_port});
      if (st == nullptr) {
        pool_->Release(id);
        counters_.state_full_drops++;
        return Verdict::kDrop;
      }
      counters_.new_mappings++;
    }
    Rewrite(pkt, pp, st->ext_ip, st->ext_port);
    counters_.translated++;
    return Verdict::kForward;
  }

  // A packet without a flow (st: its ParsePacket status, not kOk). An IPv4
  // fragment cannot be translated (later fragments carry no ports) and
  // forwarding it would leak the private source address: dropped, counted.
  // Anything else (not IPv4, other protocols, malformed) passes untouched.
  Verdict ProcessNonFlow(ParseStatus st) {
    if (st == ParseStatus::kFragment) {
      counters_.fragment_drops++;
      return Verdict::kDrop;
    }
    return Verdict::kForward;
  }

  // Rewrites source address and port with incremental checksum updates.
  static void Rewrite(uint8_t* pkt, const ParsedPacket& pp, uint32_t new_ip, uint16_t new_port) {
    uint8_t* ip = pkt + pp.l3_offset;
    uint8_t* l4 = pkt + pp.l4_offset;
    const uint32_t old_ip = LoadBe32(ip + 12);
    const uint16_t old_port = LoadBe16(l4);
    StoreBe16(ip + 10, CsumUpdate32(LoadBe16(ip + 10), old_ip, new_ip));
    StoreBe32(ip + 12, new_ip);
    StoreBe16(l4, new_port);
    if (pp.key.proto == kProtoTcp) {
      uint16_t c = LoadBe16(l4 + 16);
      c = CsumUpdate32(c, old_ip, new_ip);  // pseudo-header address
      c = CsumUpdate16(c, old_port, new_port);
      StoreBe16(l4 + 16, c);
    } else {  // UDP
      uint16_t c = LoadBe16(l4 + 6);
      if (c != 0) {  // 0 = sender did not compute a checksum: keep it that way
        c = CsumUpdate32(c, old_ip, new_ip);
        c = CsumUpdate16(c, old_port, new_port);
        StoreBe16(l4 + 6, c == 0 ? 0xFFFF : c);
      }
    }
  }

  const Counters& counters() const { return counters_; }
  int handle() const { return state_.handle(); }
  NfState<NatFlowState>& state() { return state_; }

 private:
  NatPortPool* pool_ = nullptr;
  NfState<NatFlowState> state_;
  Counters counters_;
};

}  // namespace dyssect

#endif  // DYSSECT_NAT_H_
