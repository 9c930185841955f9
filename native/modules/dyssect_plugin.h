// Dyssect BESS plugin: module classes.
//
// The logic that needs no BESS headers (flow key, Toeplitz, flow table, shard
// data, NF state, NAT, CPU NF) lives in native/dyssect/*.h and is unit-tested
// without BESS; these modules only wire it into BESS tasks and gates.
//
// Modules (one file each in native/modules/, linked into one shared object,
// dyssect.so, so that they share the manager's data):
//   DyssectShardManager   the S shards, working/offloading slots, commands
//   DyssectDispatcher     software steering (flow hash of the key) for
//                         ports without RETA updates (virtual devices)
//   DyssectWorkingCore    one per working slot: classify, offload, run chain
//   DyssectOffloadingCore one per offloading slot: drain offload rings
//   DyssectNAT, DyssectCpuNF  NFs using the NF state API
//   DyssectEgress         counts packets leaving the chain (packets_out)
//
// Per-packet context: the working core writes a PacketCtx into the packet's
// scratchpad (BESS uses it only inside the VPort driver), so every NF on the
// working or the offloading core finds the flow entry and the parse result at
// the same place whatever the metadata layout of its pipeline.
#ifndef DYSSECT_PLUGIN_H_
#define DYSSECT_PLUGIN_H_

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "module.h"
#include "packet.h"
#include "pb/dyssect_msg.pb.h"
#include "port.h"
#include "utils/time.h"
#include "worker.h"

#include "dyssect/cpu_nf.h"
#include "dyssect/flow_hash.h"
#include "dyssect/flow_key.h"
#include "dyssect/flow_table.h"
#include "dyssect/migration.h"
#include "dyssect/nat.h"
#include "dyssect/nf_state.h"
#include "dyssect/shard.h"
#include "dyssect/spsc_ring.h"
#include "dyssect/toeplitz.h"

namespace dyssect_bess {

// Drops counted by modules (shard-level drops are counted in dyssect::Shard).
enum ModuleDrop : uint32_t {
  kDropNonFlow = 0,    // not IPv4 TCP/UDP and drop_non_flow is set
  kDropRxRingFull,     // software steering: working core's RX ring full
  kDropNatPoolEmpty,   // NAT: no free (address, port)
  kDropNfStateFull,    // NF state pool empty
  kDropFragment,       // NAT: IPv4 fragment (cannot be translated)
  kNumModuleDrops
};

inline const char* ModuleDropName(uint32_t d) {
  static const char* const kNames[kNumModuleDrops] = {"non_ip", "rx_ring_full", "nat_pool_empty",
                                                      "nf_state_full", "fragment"};
  return d < kNumModuleDrops ? kNames[d] : "unknown";
}

// One per module instance; written by the worker running that module only.
struct alignas(64) CounterBlock {
  std::atomic<uint64_t> in{0};   // packets entering Dyssect (dispatcher or HW RX)
  std::atomic<uint64_t> out{0};  // packets leaving the chain (egress)
  std::atomic<uint64_t> reclassified{0};
  std::atomic<uint64_t> inline_pkts{0};  // dispatcher: handed to a working core directly
  std::atomic<uint64_t> stuck_handoffs{0};  // take-overs resolved by DrainOrphanedRing
  std::atomic<uint64_t> drops[kNumModuleDrops] = {};
  static void Bump(std::atomic<uint64_t> &c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

constexpr uint8_t kCtxMagic = 0xD5;   // written by a working core
constexpr uint8_t kCtxParsed = 0xD6;  // written by the dispatcher (parse + hash done)

struct PacketCtx {
  dyssect::FlowEntry *flow;  // nullptr: no flow (pass-through packet)
  dyssect::ParsedPacket pp;
  uint32_t shard;
  uint32_t hash;
  uint8_t status;  // dyssect::ParseStatus
  uint8_t magic;
};
static_assert(sizeof(PacketCtx) <= SNBUF_SCRATCHPAD, "PacketCtx must fit the scratchpad");

inline PacketCtx *Ctx(bess::Packet *pkt) { return pkt->scratchpad<PacketCtx *>(); }

// Fence markers travel in the software RX rings between packets: odd values
// are never valid Packet pointers (packets are 64-byte aligned).
inline bess::Packet *MakeFence(uint32_t shard) {
  return reinterpret_cast<bess::Packet *>((static_cast<uintptr_t>(shard) << 1) | 1);
}
inline bool IsFence(const bess::Packet *p) {
  return (reinterpret_cast<uintptr_t>(p) & 1) != 0;
}
inline uint32_t FenceShard(const bess::Packet *p) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) >> 1);
}

class DyssectWorkingCore;

// Busy time of one working or offloading slot (docs/dataplane.md): cumulative
// TSC cycles from the start of a RunTask that took packets to the end of the
// chain's processing of that batch, and the packets of those batches. Written
// only on the worker running the slot's module (its RunTask or its chain's
// DyssectEgress), read by get_stats.
struct alignas(64) BusyCount {
  std::atomic<uint64_t> cycles{0};
  std::atomic<uint64_t> packets{0};
};

// The batch being timed on one worker. BESS runs a task's downstream modules
// after RunTask returns, so the core opens the record and the chain's
// DyssectEgress (or the core itself, for a batch with nothing left for the
// chain) closes it. Touched only by that worker's thread.
struct alignas(64) BusyClock {
  uint64_t t0 = 0;
  uint64_t packets = 0;
  BusyCount *to = nullptr;  // nullptr: nothing open

  void Open(BusyCount *c, uint64_t start, uint64_t pkts) {
    to = c;
    t0 = start;
    packets = pkts;
  }
  void Close(uint64_t end) {
    if (to != nullptr) {
      to->cycles.store(to->cycles.load(std::memory_order_relaxed) + (end - t0),
                       std::memory_order_relaxed);
      to->packets.store(to->packets.load(std::memory_order_relaxed) + packets,
                        std::memory_order_relaxed);
      to = nullptr;
    }
  }
  void Discard() { to = nullptr; }
};

// Working slot: RX ring (software steering) and offload ring.
struct alignas(64) WorkSlot {
  std::unique_ptr<dyssect::SpscRing<bess::Packet *>> rx;
  // Packets (not fences) into and out of rx, for the held count in get_stats:
  // written by the dispatcher and by the slot's working core respectively.
  std::atomic<uint64_t> rx_enq{0};
  std::atomic<uint64_t> rx_deq{0};
  std::unique_ptr<dyssect::OffloadRing> offl;
  // The working core's hand-off backlog (owned by the module), for get_stats.
  std::atomic<dyssect::SpscRing<bess::Packet *> *> backlog{nullptr};
  std::atomic<bool> has_module{false};
  // The slot's module, for the dispatcher's run-to-completion hand-off:
  // published at the end of its Init (modules may be created while workers
  // run), cleared in its DeInit (workers paused).
  std::atomic<DyssectWorkingCore *> module{nullptr};
  BusyCount busy;
};

struct alignas(64) OffSlot {
  std::atomic<bool> has_module{false};
  BusyCount busy;
};

// What a shard manager shares with its sibling modules, owned by the manager
// and reached through DyssectShardManager::plane(). The configuration is
// fixed at the manager's Init and read-only to the siblings (getters); the
// shared state below it follows the thread rules of each part (shard.h,
// migration.h, the slots above).
class SharedPlane {
 public:
  // Top flow shares published by each shard's owner after ranking.
  struct alignas(64) TopShares {
    std::atomic<uint32_t> n{0};
    std::atomic<double> share[16];
  };

  uint32_t num_shards() const { return num_shards_; }
  uint32_t num_cores() const { return num_cores_; }
  uint32_t flow_capacity() const { return flow_capacity_; }  // flows per shard
  bool hardware() const { return hardware_; }  // hardware RSS (RETA), else software steering
  bool drop_non_flow() const { return drop_non_flow_; }
  // The flow hash computed in software (flow_hash.h): the dispatcher's, and a
  // working core's under hardware RSS for a packet the NIC did not hash (then
  // always the Toeplitz, the NIC's).
  dyssect::HashKind hash_kind() const { return hash_kind_; }
  const dyssect::ToeplitzHasher &hasher() const { return hasher_; }
  // The software dispatcher's Toeplitz: the shard needs 16 bits.
  const dyssect::ToeplitzLow16 &shard_hasher() const { return shard_hasher_; }
  uint32_t SoftwareHash(const dyssect::FlowKey &k) const {
    return hash_kind_ == dyssect::HashKind::kCrc32c ? dyssect::FlowHashCrc32c(k)
                                                    : hasher_.HashFlow(k);
  }

  dyssect::ShardSet shards;
  std::unique_ptr<WorkSlot[]> wslots;  // num_cores() slots
  std::unique_ptr<OffSlot[]> oslots;   // num_cores() slots
  std::unique_ptr<TopShares[]> top;    // num_shards() entries
  std::atomic<uint64_t> plan_gen{0};   // bumped by every applied plan
  std::atomic<uint64_t> idle_timeout_ns{10ull * 1000 * 1000 * 1000};
  dyssect::NfRegistry nf;
  BusyClock busy_clock[Worker::kMaxWorkers];  // by worker id (Context::wid)

 private:
  friend class DyssectShardManager;

  uint32_t num_shards_ = 0;
  uint32_t num_cores_ = 0;
  uint32_t flow_capacity_ = 0;
  bool hardware_ = false;
  bool drop_non_flow_ = false;
  dyssect::HashKind hash_kind_ = dyssect::HashKind::kCrc32c;
  dyssect::ToeplitzHasher hasher_;
  dyssect::ToeplitzLow16 shard_hasher_;
};

class DyssectShardManager final : public Module {
 public:
  static const gate_idx_t kNumIGates = 0;
  static const gate_idx_t kNumOGates = 0;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectShardManagerArg &arg);
  void DeInit() override;
  std::string GetDesc() const override;

  CommandResponse CommandGetStats(const dyssect::pb::DyssectCommandGetStatsArg &arg);
  CommandResponse CommandApplyPlan(const dyssect::pb::DyssectCommandApplyPlanArg &arg);
  CommandResponse CommandSetParams(const dyssect::pb::DyssectCommandSetParamsArg &arg);

  static DyssectShardManager *Find(const std::string &name);

  void Register(CounterBlock *b);
  void Unregister(CounterBlock *b);
  // NAT pools are shared by every NAT instance with the same name.
  dyssect::NatPortPool *NatPool(const std::string &name, const std::vector<uint32_t> &addrs,
                                uint16_t port_min, uint16_t port_max, std::string *err);

  // The shared plane, for the sibling modules.
  SharedPlane &plane() { return p_; }

 private:
  int ProgramReta();
  CommandResponse ValidatePlan(const dyssect::pb::DyssectCommandApplyPlanArg &arg) const;

  SharedPlane p_;
  uint16_t dpdk_port_ = 0;
  uint32_t reta_size_ = 0;
  std::mutex mu_;
  std::vector<CounterBlock *> blocks_;
  std::map<std::string, std::unique_ptr<dyssect::NatPortPool>> nat_pools_;
  std::map<std::string, std::string> nat_conf_;
  dyssect::StatsWindow window_;
  std::vector<dyssect::StatsWindow::Delta> deltas_;
  uint32_t n_working_ = 1;
  uint32_t n_offloading_ = 0;
  std::vector<int32_t> pairing_;
  uint64_t plan_id_ = 0;
  uint64_t instance_ = 0;  // see DyssectCommandGetStatsResponse.instance
  double last_ts_ = 0;
  double window_s_ = 0.1;
};

class DyssectDispatcher final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 0;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectDispatcherArg &arg);
  void DeInit() override;
  struct task_result RunTask(Context *ctx, bess::PacketBatch *batch, void *arg) override;
  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override;

 private:
  void ApplySteering();
  // `spare` may be reused as the output batch of a run-to-completion
  // hand-off: pkts is no longer read once the packets are sorted by slot.
  void Dispatch(Context *ctx, bess::Packet **pkts, uint32_t cnt, bess::PacketBatch *spare);
  template <dyssect::HashKind kKind>
  uint32_t Steer(Context *ctx, bess::Packet **pkts, uint32_t cnt, bess::Packet **keep,
                 uint16_t *slot_of, uint64_t *slots, uint64_t *non_flow_drops);

  DyssectShardManager *mgr_ = nullptr;
  SharedPlane *plane_ = nullptr;  // mgr_->plane()
  std::string mgr_name_;
  Port *port_ = nullptr;
  uint32_t qid_ = 0;
  uint64_t seen_gen_ = ~0ull;
  bool steering_pending_ = false;
  bool ring_only_ = false;
  std::vector<uint16_t> steer_;
  // per working slot burst when a batch goes to several slots
  bess::Packet *out_[Worker::kMaxWorkers][bess::PacketBatch::kMaxBurst];
  CounterBlock cnt_;
};

class DyssectWorkingCore final : public Module {
 public:
  static const gate_idx_t kNumIGates = 0;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectWorkingCoreArg &arg);
  void DeInit() override;
  std::string GetDesc() const override;
  struct task_result RunTask(Context *ctx, bess::PacketBatch *batch, void *arg) override;

  // Run to completion: called by the dispatcher with a burst steered to this
  // core. Classifies it and hands it to this core's chain inside the
  // dispatcher's task, as RunTask would have done had the burst gone through
  // the RX ring, when that is equivalent: this core's task runs on the
  // dispatcher's worker (so the two never run at once), the RX ring and the
  // hand-off backlog are empty (nothing older is queued: per-flow order
  // holds) and no migration is active (no fence, buffering or release to do
  // first). Returns false, touching nothing, otherwise: the caller enqueues.
  bool RunToCompletion(Context *ctx, bess::Packet **pkts, uint32_t cnt, bess::PacketBatch *batch);

 private:
  struct Fence {
    uint32_t shard;
    bool armed;  // false: hardware steering, waiting for an empty poll
  };

  void PublishTop(uint32_t shard);
  void MigrationWork(Context *ctx, bess::PacketBatch *batch);
  void Classify(Context *ctx, bess::Packet **pkts, uint32_t cnt, bess::PacketBatch *batch,
                bool from_handoff);
  bool ClassifyOwned(Context *ctx, bess::Packet **pkts, uint32_t cnt, bess::PacketBatch *batch);
  void PrepareOwnedShard(dyssect::Shard &sh);
  uint32_t ClassifyOwnedPacket(Context *ctx, bess::Packet *pkt, dyssect::Shard &sh,
                               uint32_t mixed, bess::PacketBatch *batch, bool to_backlog);
  void PassNonFlow(Context *ctx, bess::Packet *pkt, bess::PacketBatch *batch, bool to_backlog);
  void SendLocal(bess::Packet *pkt, bess::PacketBatch *batch, bool to_backlog);
  void Flush(Context *ctx);
  void ResolveStuckTakeOver(dyssect::Shard &sh, uint32_t old_owner);

  DyssectShardManager *mgr_ = nullptr;
  SharedPlane *plane_ = nullptr;  // mgr_->plane()
  std::string mgr_name_;
  uint32_t slot_ = 0;
  WorkSlot *ws_ = nullptr;
  Port *port_ = nullptr;  // hardware steering
  uint32_t qid_ = 0;
  uint32_t burst_ = bess::PacketBatch::kMaxBurst;
  uint64_t batch_id_ = 1;
  uint64_t seen_epoch_ = 0;
  uint64_t seen_gen_ = ~0ull;
  uint32_t expire_cursor_ = 0;
  uint64_t last_expire_ns_ = 0;
  uint64_t now_ns_ = 0;
  std::vector<Fence> fences_;
  std::vector<uint32_t> fences_new_;
  std::vector<uint64_t> fence_t0_;
  // per shard: when this core first found its take-over waiting on in-flight
  // packets (0: not waiting)
  std::vector<uint64_t> takeover_t0_;
  // Local packets classified during a hand-off drain wait here and go to the
  // chain one batch per RunTask, before any new RX packet is classified.
  std::unique_ptr<dyssect::SpscRing<bess::Packet *>> backlog_;
  dyssect::OffloadItem off_[bess::PacketBatch::kMaxBurst];
  uint32_t off_n_ = 0;
  bool in_handoff_drain_ = false;
  CounterBlock cnt_;
};

class DyssectOffloadingCore final : public Module {
 public:
  static const gate_idx_t kNumIGates = 0;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectOffloadingCoreArg &arg);
  void DeInit() override;
  std::string GetDesc() const override;
  struct task_result RunTask(Context *ctx, bess::PacketBatch *batch, void *arg) override;

 private:
  void Complete();
  void MarkClass(bess::PacketBatch *batch);

  DyssectShardManager *mgr_ = nullptr;
  SharedPlane *plane_ = nullptr;  // mgr_->plane()
  std::string mgr_name_;
  uint32_t slot_ = 0;
  uint32_t burst_ = bess::PacketBatch::kMaxBurst;
  uint32_t next_ring_ = 0;
  // the batch handed to the chain in the previous RunTask: BESS runs the
  // downstream modules after RunTask returns, so completion is published at
  // the start of the next RunTask.
  dyssect::OffloadItem pend_[bess::PacketBatch::kMaxBurst];
  uint32_t pend_n_ = 0;
  // class_mark_offset: -1 when not set; packets too short to hold the mark (read by GetDesc
  // on the control thread, written by this core only).
  int32_t class_mark_ = -1;
  std::atomic<uint64_t> too_short_{0};
};

class DyssectEgress final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectEgressArg &arg);
  void DeInit() override;
  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override;

 private:
  DyssectShardManager *mgr_ = nullptr;
  std::string mgr_name_;
  SharedPlane *plane_ = nullptr;  // mgr_->plane()
  CounterBlock cnt_;
};

class DyssectNAT final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectNATArg &arg);
  void DeInit() override;
  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override;

 private:
  DyssectShardManager *mgr_ = nullptr;
  SharedPlane *plane_ = nullptr;  // mgr_->plane()
  std::string mgr_name_;
  dyssect::Nat nat_;
  CounterBlock cnt_;
  uint64_t seen_pool_empty_ = 0;
  uint64_t seen_state_full_ = 0;
  uint64_t seen_fragment_ = 0;
};

class DyssectCpuNF final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectCpuNFArg &arg);
  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override;
  CommandResponse CommandSetCost(const dyssect::pb::DyssectCpuNFCommandSetCostArg &arg);

 private:
  dyssect::CpuNf nf_;
  std::atomic<uint32_t> iters_{0};
};

// Benchmark baseline: parse + one flow-table lookup, PacketCtx written as a
// working core would, then the chain. None of the Dyssect bookkeeping.
class DyssectPlainClassifier final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectPlainClassifierArg &arg);
  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override;

 private:
  DyssectShardManager *mgr_ = nullptr;
  SharedPlane *plane_ = nullptr;  // mgr_->plane()
  std::string mgr_name_;
  std::unique_ptr<dyssect::FlowTable> table_;
};

}  // namespace dyssect_bess

#endif  // DYSSECT_PLUGIN_H_
