// Dyssect BESS plugin: module implementations (see dyssect_plugin.h and
// docs/dataplane.md). One translation unit on purpose: BESS's --plugin build
// turns every modules/*.cc into its own .so, and these modules share the
// shard manager's data, so they must live in one shared object.
#include "dyssect_plugin.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

#include "task.h"
#include "traffic_class.h"
#include "worker.h"

namespace dyssect_bess {

using dyssect::FlowEntry;
using dyssect::Ingress;
using dyssect::Ownership;
using dyssect::ParseStatus;
using dyssect::Path;
using dyssect::Shard;
using dyssect::ShardPhase;

namespace {

std::mutex g_registry_mu;
std::map<std::string, DyssectShardManager *> g_managers;

double MonotonicSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Hardware steering: how long the old owner's RX queue must have been seen
// empty after the RETA switch before it treats the queue as drained.
constexpr uint64_t kHwFenceGraceNs = 50 * 1000;

// A take-over still waiting on in-flight packets after this long checks
// whether they sit in a ring that nobody drains (DrainOrphanedRing).
constexpr uint64_t kStuckTakeOverNs = 100ull * 1000 * 1000;

// Idle-flow expiry: one shard, 64 entries, every 100 us per working core.
constexpr uint64_t kExpireEveryNs = 100 * 1000;
// Granule of a flow's last_seen (2^20 ns, about 1 ms): flows expire at most
// that much early, against idle timeouts of seconds.
constexpr uint64_t kSeenGranuleMask = (1ull << 20) - 1;

uint32_t RssHashOf(const bess::Packet *pkt, bool *valid) {
  const rte_mbuf *m = reinterpret_cast<const rte_mbuf *>(pkt);
  *valid = (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) != 0;
  return m->hash.rss;
}

template <typename Arg>
DyssectShardManager *FindManager(const Arg &arg, std::string *name) {
  *name = arg.manager().empty() ? std::string("dyssect") : arg.manager();
  return DyssectShardManager::Find(*name);
}

// A sibling module's DeInit: unregister its counters only while the manager it
// registered with still exists (the manager may be destroyed first). True when
// it did, so the caller can undo what else it published to that manager.
bool UnregisterFromManager(const std::string &name, DyssectShardManager *mine,
                           CounterBlock *cnt) {
  DyssectShardManager *m = DyssectShardManager::Find(name);
  if (m == nullptr || m != mine) {
    return false;
  }
  m->Unregister(cnt);
  return true;
}

}  // namespace

// ============================================================ shard manager

const Commands DyssectShardManager::cmds = {
    {"get_stats", "DyssectCommandGetStatsArg",
     MODULE_CMD_FUNC(&DyssectShardManager::CommandGetStats), Command::THREAD_SAFE},
    {"apply_plan", "DyssectCommandApplyPlanArg",
     MODULE_CMD_FUNC(&DyssectShardManager::CommandApplyPlan), Command::THREAD_SAFE},
    {"set_params", "DyssectCommandSetParamsArg",
     MODULE_CMD_FUNC(&DyssectShardManager::CommandSetParams), Command::THREAD_SAFE},
};

DyssectShardManager *DyssectShardManager::Find(const std::string &name) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  auto it = g_managers.find(name);
  return it == g_managers.end() ? nullptr : it->second;
}

CommandResponse DyssectShardManager::Init(const dyssect::pb::DyssectShardManagerArg &arg) {
  std::random_device rd;
  do {
    instance_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } while (instance_ == 0);
  num_shards = arg.shards() ? arg.shards() : 16;
  if (const char *err = dyssect::CheckShardConfig(num_shards, 0)) {
    return CommandFailure(EINVAL, "%s", err);
  }
  std::vector<uint32_t> cores(arg.cores().begin(), arg.cores().end());
  if (cores.empty()) {
    cores.push_back(0);
  }
  if (cores.size() > static_cast<size_t>(Worker::kMaxWorkers)) {
    return CommandFailure(EINVAL, "at most %d cores", Worker::kMaxWorkers);
  }
  num_cores = static_cast<uint32_t>(cores.size());
  const uint32_t working = arg.working() ? arg.working() : 1;
  if (working > num_cores) {
    return CommandFailure(EINVAL, "working (%u) exceeds the core list (%u)", working, num_cores);
  }
  flow_capacity = arg.flow_table_size() ? arg.flow_table_size()
                                        : std::max<uint32_t>(256, 65536 / num_shards);
  dyssect::ShardConfig cfg;
  cfg.flow_capacity = flow_capacity;
  cfg.handoff_capacity = arg.migration_buffer() ? arg.migration_buffer() : 4096;
  if (const char *err = shards.Init(num_shards, cfg)) {
    return CommandFailure(EINVAL, "%s", err);
  }
  for (uint32_t s = 0; s < num_shards; s++) {
    dyssect::AssignOwner(shards[s], s % working);
  }
  drop_non_flow = arg.drop_non_flow();
  if (arg.flow_idle_timeout_ms()) {
    idle_timeout_ns = static_cast<uint64_t>(arg.flow_idle_timeout_ms()) * 1000000ull;
  }
  if (arg.window_s() > 0) {
    window_s_ = arg.window_s();
  }

  // Steering: hardware RSS with RETA updates when asked for (or, with
  // "auto", when a DPDK port with a RETA and enough RX queues is given);
  // otherwise the software dispatcher.
  const std::string steering = arg.steering().empty() ? "auto" : arg.steering();
  if (steering != "auto" && steering != "software" && steering != "hardware") {
    return CommandFailure(EINVAL, "steering must be auto, software or hardware");
  }
  hardware = false;
  if (steering != "software" && arg.has_dpdk_port()) {
    rte_eth_dev_info info;
    dpdk_port = static_cast<uint16_t>(arg.dpdk_port());
    if (rte_eth_dev_is_valid_port(dpdk_port) && rte_eth_dev_info_get(dpdk_port, &info) == 0 &&
        info.reta_size > 0 && info.nb_rx_queues >= num_cores &&
        dyssect::CheckShardConfig(num_shards, info.reta_size) == nullptr) {
      reta_size = info.reta_size;
      hardware = true;
    }
  }
  if (steering == "hardware" && !hardware) {
    return CommandFailure(EINVAL,
                          "hardware steering needs dpdk_port with a RETA whose size is a "
                          "multiple of the shard count and one RX queue per core");
  }

  const uint32_t rx_cap = arg.rx_ring() ? arg.rx_ring() : 16384;
  const uint32_t off_cap = arg.offload_ring() ? arg.offload_ring() : 16384;
  wslots.reset(new WorkSlot[num_cores]);
  oslots.reset(new OffSlot[num_cores]);
  for (uint32_t i = 0; i < num_cores; i++) {
    if (!hardware) {
      wslots[i].rx.reset(new dyssect::SpscRing<bess::Packet *>(rx_cap));
    }
    wslots[i].offl.reset(new dyssect::OffloadRing(static_cast<uint16_t>(i), off_cap));
  }
  top.reset(new TopShares[num_shards]);
  window_.Init(num_shards);
  deltas_.resize(num_shards);
  n_working_ = working;
  n_offloading_ = 0;
  pairing_.assign(working, -1);
  last_ts_ = MonotonicSeconds();

  if (hardware && ProgramReta() != 0) {
    return CommandFailure(EIO, "RETA update failed on DPDK port %u", dpdk_port);
  }

  std::lock_guard<std::mutex> lock(g_registry_mu);
  if (g_managers.count(name())) {
    return CommandFailure(EEXIST, "a shard manager named %s exists", name().c_str());
  }
  g_managers[name()] = this;
  return CommandSuccess();
}

void DyssectShardManager::DeInit() {
  // Workers are paused when a module is destroyed: free what is still queued.
  for (uint32_t i = 0; wslots && i < num_cores; i++) {
    bess::Packet *p;
    while (wslots[i].rx && wslots[i].rx->Dequeue(&p)) {
      if (!IsFence(p)) {
        bess::Packet::Free(p);
      }
    }
    dyssect::OffloadItem it;
    while (wslots[i].offl && wslots[i].offl->ring.Dequeue(&it)) {
      bess::Packet::Free(static_cast<bess::Packet *>(it.pkt));
    }
  }
  for (uint32_t s = 0; s < shards.size(); s++) {
    dyssect::PacketRef ref;
    while (shards[s].handoff.Dequeue(&ref)) {
      bess::Packet::Free(static_cast<bess::Packet *>(ref));
    }
  }
  std::lock_guard<std::mutex> lock(g_registry_mu);
  auto it = g_managers.find(name());
  if (it != g_managers.end() && it->second == this) {
    g_managers.erase(it);
  }
}

std::string DyssectShardManager::GetDesc() const {
  return std::to_string(num_shards) + " shards, " + std::to_string(num_cores) + " cores, " +
         (hardware ? "hardware RSS" : "software steering");
}

void DyssectShardManager::Register(CounterBlock *b) {
  std::lock_guard<std::mutex> lock(mu_);
  blocks_.push_back(b);
}

void DyssectShardManager::Unregister(CounterBlock *b) {
  std::lock_guard<std::mutex> lock(mu_);
  blocks_.erase(std::remove(blocks_.begin(), blocks_.end(), b), blocks_.end());
}

dyssect::NatPortPool *DyssectShardManager::NatPool(const std::string &pool_name,
                                                   const std::vector<uint32_t> &addrs,
                                                   uint16_t port_min, uint16_t port_max,
                                                   std::string *err) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string conf = std::to_string(port_min) + "-" + std::to_string(port_max);
  for (uint32_t a : addrs) {
    conf += "," + std::to_string(a);
  }
  auto it = nat_pools_.find(pool_name);
  if (it != nat_pools_.end()) {
    if (nat_conf_[pool_name] != conf) {
      *err = "every DyssectNAT sharing a pool must have the same addresses and ports";
      return nullptr;
    }
    return it->second.get();
  }
  std::unique_ptr<dyssect::NatPortPool> pool(new dyssect::NatPortPool());
  if (const char *e = pool->Init(addrs.data(), static_cast<uint32_t>(addrs.size()), port_min,
                                 port_max, num_cores)) {
    *err = e;
    return nullptr;
  }
  nat_conf_[pool_name] = conf;
  auto *raw = pool.get();
  nat_pools_[pool_name] = std::move(pool);
  return raw;
}

// Points every RETA entry k at the RX queue (= working slot) of the core that
// receives shard k & (S-1): the pending owner while a shard migrates.
int DyssectShardManager::ProgramReta() {
  std::vector<uint16_t> shard_queue(num_shards);
  for (uint32_t s = 0; s < num_shards; s++) {
    const Ownership o = shards[s].ownership();
    shard_queue[s] = static_cast<uint16_t>(
        o.phase != ShardPhase::kOwned && o.pending != dyssect::kNoCore16 ? o.pending : o.owner);
  }
  std::vector<uint16_t> reta(reta_size);
  if (!dyssect::BuildReta(shard_queue.data(), num_shards, reta.data(), reta_size)) {
    return -EINVAL;
  }
  std::vector<rte_eth_rss_reta_entry64> conf(reta_size / RTE_ETH_RETA_GROUP_SIZE);
  for (uint32_t k = 0; k < reta_size; k++) {
    auto &g = conf[k / RTE_ETH_RETA_GROUP_SIZE];
    g.mask = ~0ull;
    g.reta[k % RTE_ETH_RETA_GROUP_SIZE] = reta[k];
  }
  return rte_eth_dev_rss_reta_update(dpdk_port, conf.data(), static_cast<uint16_t>(reta_size));
}

CommandResponse DyssectShardManager::CommandGetStats(
    const dyssect::pb::DyssectCommandGetStatsArg &) {
  std::lock_guard<std::mutex> lock(mu_);
  dyssect::pb::DyssectCommandGetStatsResponse r;
  const double now = MonotonicSeconds();
  // Closing the window: owners re-rank their flows on the next packet of each
  // shard, and the per-window packets/bytes are differences of cumulative
  // counters (no reset race).
  shards.AdvanceWindow();
  window_.Swap(shards, deltas_.data());
  r.set_epoch(shards.epoch());
  r.set_timestamp_s(now);
  r.set_window_s(now - last_ts_);
  last_ts_ = now;

  // Every packet that entered is out, dropped (counted), held in a queue, or
  // in a burst a worker is running. Read downstream first (out and drops,
  // then the queues from the last to the first a packet can pass, `in`
  // last): a packet moving meanwhile may be missed, never counted twice.
  uint64_t shard_drops[dyssect::kNumShardDrops] = {};
  uint64_t reclassified = 0;
  for (uint32_t s = 0; s < num_shards; s++) {
    Shard &sh = shards[s];
    const dyssect::ShardStats st = dyssect::ReadShardStats(sh);
    auto *out = r.add_shards();
    out->set_packets(deltas_[s].packets);
    out->set_bytes(deltas_[s].bytes);
    out->set_owner(st.owner);
    out->set_pending_owner(st.pending == dyssect::kNoCore16 ? -1
                                                            : static_cast<int32_t>(st.pending));
    out->set_offload(st.offload_ratio);
    out->set_flows(st.flows);
    const uint32_t n = std::min<uint32_t>(top[s].n.load(std::memory_order_acquire), 16);
    for (uint32_t i = 0; i < n; i++) {
      out->add_top_flow_shares(top[s].share[i].load(std::memory_order_relaxed));
    }
    for (uint32_t d = 0; d < dyssect::kNumShardDrops; d++) {
      shard_drops[d] += st.drops[d];
    }
  }
  r.set_working(n_working_);
  r.set_offloading(n_offloading_);
  for (int32_t p : pairing_) {
    r.add_pairing(p);
  }
  auto *drops = r.mutable_drops();
  for (uint32_t d = 0; d < dyssect::kNumShardDrops; d++) {
    (*drops)[dyssect::ShardDropName(d)] = shard_drops[d];
  }
  uint64_t mdrops[kNumModuleDrops] = {};
  uint64_t in = 0, out = 0, inline_pkts = 0, stuck = 0;
  for (const CounterBlock *b : blocks_) {
    inline_pkts += b->inline_pkts.load(std::memory_order_relaxed);
    out += b->out.load(std::memory_order_relaxed);
    reclassified += b->reclassified.load(std::memory_order_relaxed);
    stuck += b->stuck_handoffs.load(std::memory_order_relaxed);
    for (uint32_t d = 0; d < kNumModuleDrops; d++) {
      mdrops[d] += b->drops[d].load(std::memory_order_relaxed);
    }
  }
  for (uint32_t d = 0; d < kNumModuleDrops; d++) {
    (*drops)[ModuleDropName(d)] = mdrops[d];
  }
  uint64_t held_offload = 0, held_backlog = 0, held_handoff = 0, held_rx = 0;
  for (uint32_t i = 0; i < num_cores; i++) {
    held_offload += wslots[i].offl->ring.SizeApprox();
  }
  for (uint32_t i = 0; i < num_cores; i++) {
    if (const auto *bl = wslots[i].backlog.load(std::memory_order_acquire)) {
      held_backlog += bl->SizeApprox();
    }
  }
  for (uint32_t s = 0; s < num_shards; s++) {
    held_handoff += shards[s].handoff.SizeApprox();
  }
  for (uint32_t i = 0; i < num_cores; i++) {
    const uint64_t deq = wslots[i].rx_deq.load(std::memory_order_acquire);
    held_rx += wslots[i].rx_enq.load(std::memory_order_acquire) - deq;
  }
  for (const CounterBlock *b : blocks_) {
    in += b->in.load(std::memory_order_acquire);
  }
  auto *held = r.mutable_held();
  (*held)["offload_ring"] = held_offload;
  (*held)["backlog"] = held_backlog;
  (*held)["handoff"] = held_handoff;
  (*held)["rx_ring"] = held_rx;
  r.set_packets_held(held_offload + held_backlog + held_handoff + held_rx);
  r.set_stuck_handoffs(stuck);
  r.set_packets_in(in);
  r.set_packets_out(out);
  r.set_packets_inline(inline_pkts);
  bool migrating = shards.active_migrations.load(std::memory_order_acquire) != 0;
  for (uint32_t i = 0; i < num_cores && !migrating; i++) {
    migrating = wslots[i].offl->handoff_pending();
  }
  // Offloaded packets still in flight for a working core that no longer has
  // an offloading core: its old offloading core must keep running until they
  // are done, so report it as part of the hand-off.
  for (uint32_t s = 0; s < num_shards && !migrating; s++) {
    const uint32_t owner = shards[s].ownership().owner;
    const bool unpaired = owner >= pairing_.size() || pairing_[owner] < 0;
    migrating = unpaired && shards[s].inflight.load(std::memory_order_acquire) != 0;
  }
  r.set_migrating(migrating);
  r.set_plan_id(plan_id_);
  r.set_steering(hardware ? "hardware" : "software");
  uint64_t done = 0;
  for (uint32_t s = 0; s < num_shards; s++) {
    done += shards[s].migrations.load(std::memory_order_relaxed);
  }
  r.set_migrations_done(done);
  r.set_reconfigurations(reclassified);
  r.set_instance(instance_);
  return CommandSuccess(r);
}

CommandResponse DyssectShardManager::CommandApplyPlan(
    const dyssect::pb::DyssectCommandApplyPlanArg &arg) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t w = arg.working();
  const uint32_t e = arg.offloading();
  // Validate everything first: a plan is applied whole or not at all.
  if (w == 0 || w + e > num_cores) {
    return CommandFailure(EINVAL, "working (%u) + offloading (%u) must be in [1, %u]", w, e,
                          num_cores);
  }
  if (static_cast<uint32_t>(arg.assignment_size()) != num_shards) {
    return CommandFailure(EINVAL, "assignment has %d entries, expected %u",
                          arg.assignment_size(), num_shards);
  }
  if (static_cast<uint32_t>(arg.offload_size()) != num_shards) {
    return CommandFailure(EINVAL, "offload has %d entries, expected %u", arg.offload_size(),
                          num_shards);
  }
  if (static_cast<uint32_t>(arg.pairing_size()) != w) {
    return CommandFailure(EINVAL, "pairing has %d entries, expected %u", arg.pairing_size(), w);
  }
  for (uint32_t s = 0; s < num_shards; s++) {
    if (arg.assignment(s) >= w) {
      return CommandFailure(EINVAL, "shard %u assigned to working slot %u (working = %u)", s,
                            arg.assignment(s), w);
    }
    if (!wslots[arg.assignment(s)].has_module.load()) {
      return CommandFailure(EINVAL, "working slot %u has no DyssectWorkingCore",
                            arg.assignment(s));
    }
    const double r = arg.offload(s);
    if (!(r >= 0.0 && r <= 1.0)) {
      return CommandFailure(EINVAL, "offload[%u] = %g is outside [0, 1]", s, r);
    }
  }
  for (uint32_t i = 0; i < w; i++) {
    const int32_t p = arg.pairing(i);
    if (p < -1 || (p >= 0 && static_cast<uint32_t>(p) >= e)) {
      return CommandFailure(EINVAL, "pairing[%u] = %d (offloading = %u)", i, p, e);
    }
    if (p >= 0 && !oslots[p].has_module.load()) {
      return CommandFailure(EINVAL, "offloading slot %d has no DyssectOffloadingCore", p);
    }
  }
  if (shards.active_migrations.load(std::memory_order_acquire) != 0) {
    return CommandFailure(EBUSY, "a migration is still in progress; retry");
  }
  for (uint32_t i = 0; i < num_cores; i++) {
    if (wslots[i].offl->handoff_pending()) {
      return CommandFailure(EBUSY, "an offload ring hand-off is still in progress; retry");
    }
  }

  // Consumers first (an offloading core takes a ring at its next visit).
  for (uint32_t i = 0; i < w; i++) {
    const int32_t p = arg.pairing(i);
    if (p >= 0) {
      wslots[i].offl->RequestConsumer(static_cast<uint32_t>(p));
    }
  }
  uint32_t migrations = 0;
  for (uint32_t s = 0; s < num_shards; s++) {
    Shard &sh = shards[s];
    const uint32_t to = arg.assignment(s);
    const uint32_t from = sh.ownership().owner;
    // A working core without an offloading core must not offload: r_s = 0.
    const uint32_t ratio = Shard::RatioPpm(arg.pairing(to) >= 0 ? arg.offload(s) : 0.0);
    if (from == to || from >= num_cores) {
      sh.takeover_ratio_ppm.store(Shard::kNoRatio, std::memory_order_relaxed);
      sh.ratio_ppm.store(ratio, std::memory_order_relaxed);
      continue;
    }
    // Until its fence the old owner classifies the shard with ratio_ppm and
    // offloads into its own ring: r_s > 0 there only if that ring is drained.
    // The new owner applies the plan's r_s when it takes the shard over.
    sh.takeover_ratio_ppm.store(ratio, std::memory_order_relaxed);
    sh.ratio_ppm.store(wslots[from].offl->has_consumer() ? ratio : 0, std::memory_order_relaxed);
    if (dyssect::BeginMigration(shards, sh, to)) {
      migrations++;
    } else {
      sh.takeover_ratio_ppm.store(Shard::kNoRatio, std::memory_order_relaxed);
      sh.ratio_ppm.store(ratio, std::memory_order_relaxed);
    }
  }
  if (hardware && migrations > 0) {
    const int ret = ProgramReta();
    if (ret != 0) {
      LOG(ERROR) << "dyssect: RETA update failed: " << ret;
    }
  }
  n_working_ = w;
  n_offloading_ = e;
  pairing_.assign(arg.pairing().begin(), arg.pairing().end());
  plan_id_++;
  plan_gen.fetch_add(1, std::memory_order_release);

  dyssect::pb::DyssectCommandApplyPlanResponse resp;
  resp.set_plan_id(plan_id_);
  resp.set_migrations(migrations);
  return CommandSuccess(resp);
}

CommandResponse DyssectShardManager::CommandSetParams(
    const dyssect::pb::DyssectCommandSetParamsArg &arg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (arg.window_s() < 0) {
    return CommandFailure(EINVAL, "window_s must be >= 0");
  }
  if (arg.window_s() > 0) {
    window_s_ = arg.window_s();
  }
  if (arg.flow_idle_timeout_ms() > 0) {
    idle_timeout_ns.store(static_cast<uint64_t>(arg.flow_idle_timeout_ms()) * 1000000ull,
                          std::memory_order_relaxed);
  }
  dyssect::pb::DyssectCommandSetParamsResponse r;
  r.set_window_s(window_s_);
  r.set_flow_idle_timeout_ms(
      static_cast<uint32_t>(idle_timeout_ns.load(std::memory_order_relaxed) / 1000000ull));
  return CommandSuccess(r);
}

// =============================================================== dispatcher

const Commands DyssectDispatcher::cmds = {};

CommandResponse DyssectDispatcher::Init(const dyssect::pb::DyssectDispatcherArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return CommandFailure(ENOENT, "no DyssectShardManager named %s", mgr_name_.c_str());
  }
  if (mgr_->hardware) {
    return CommandFailure(EINVAL, "the manager uses hardware steering: no dispatcher needed");
  }
  ring_only_ = arg.ring_only();
  if (!arg.port().empty()) {
    const auto &it = PortBuilder::all_ports().find(arg.port());
    if (it == PortBuilder::all_ports().end()) {
      return CommandFailure(ENODEV, "port %s not found", arg.port().c_str());
    }
    port_ = it->second;
    qid_ = arg.qid();
    if (qid_ >= port_->num_rx_queues()) {
      return CommandFailure(EINVAL, "port %s has no RX queue %u", arg.port().c_str(), qid_);
    }
    queue_t q = static_cast<queue_t>(qid_);
    int ret = port_->AcquireQueues(reinterpret_cast<const module *>(this), PACKET_DIR_INC, &q, 1);
    if (ret < 0) {
      port_ = nullptr;
      return CommandFailure(-ret, "cannot acquire RX queue %u", qid_);
    }
  }
  // Without a port the task still runs: it applies steering changes when no
  // packet arrives. It must share a worker with the upstream module (the
  // RX rings have a single producer).
  if (RegisterTask(nullptr) == INVALID_TASK_ID) {
    return CommandFailure(ENOMEM, "task creation failed");
  }
  steer_.resize(mgr_->num_shards);
  for (uint32_t s = 0; s < mgr_->num_shards; s++) {
    steer_[s] = static_cast<uint16_t>(mgr_->shards[s].ownership().owner);
  }
  mgr_->Register(&cnt_);
  return CommandSuccess();
}

void DyssectDispatcher::DeInit() {
  if (port_ != nullptr) {
    queue_t q = static_cast<queue_t>(qid_);
    port_->ReleaseQueues(reinterpret_cast<const module *>(this), PACKET_DIR_INC, &q, 1);
  }
  UnregisterFromManager(mgr_name_, mgr_, &cnt_);
}

// Switches a migrating shard's steering to its pending owner, right after a
// fence marker in the old owner's queue: everything before the marker was
// steered to the old owner, everything after goes to the new one.
void DyssectDispatcher::ApplySteering() {
  const uint64_t gen = mgr_->plan_gen.load(std::memory_order_acquire);
  if (gen == seen_gen_ && !steering_pending_) {
    return;
  }
  seen_gen_ = gen;
  steering_pending_ = false;
  for (uint32_t s = 0; s < mgr_->num_shards; s++) {
    const Ownership o = mgr_->shards[s].ownership();
    if (o.phase != ShardPhase::kMigrating || o.pending == dyssect::kNoCore16 ||
        steer_[s] == o.pending) {
      continue;
    }
    if (mgr_->wslots[steer_[s]].rx->Enqueue(MakeFence(s))) {
      steer_[s] = static_cast<uint16_t>(o.pending);
    } else {
      steering_pending_ = true;  // old owner's queue full: retry on the next call
    }
  }
}

void DyssectDispatcher::Dispatch(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                 bess::PacketBatch *spare) {
  const uint32_t mask = mgr_->num_shards - 1;
  // Locals: the scratchpad stores below may alias anything, so members read
  // through `this` would be reloaded for every packet.
  const dyssect::ToeplitzLow16 &hasher = mgr_->shard_hasher;
  const uint16_t *steer = steer_.data();
  const bool drop_non_flow = mgr_->drop_non_flow;
  CounterBlock::Bump(cnt_.in, cnt);
  bess::Packet *keep[bess::PacketBatch::kMaxBurst];
  uint16_t slot_of[bess::PacketBatch::kMaxBurst];
  static_assert(Worker::kMaxWorkers <= 64, "slot bitmask is 64 bits");
  uint64_t slots = 0;  // working slots this batch goes to
  uint32_t n = 0;
  uint64_t non_flow_drops = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    bess::Packet *pkt = pkts[i];
    // The parse result and hash travel in the scratchpad so the working
    // core does not parse again.
    PacketCtx *c = Ctx(pkt);
    const ParseStatus st =
        dyssect::ParsePacket(pkt->head_data<const uint8_t *>(), pkt->head_len(), &c->pp);
    uint32_t h = 0;  // packets without a flow go with shard 0
    if (DYSSECT_LIKELY(st == ParseStatus::kOk)) {
      h = hasher.HashFlow(c->pp.key);
    } else if (drop_non_flow) {
      non_flow_drops++;
      DropPacket(ctx, pkt);
      continue;
    }
    c->status = static_cast<uint8_t>(st);
    c->hash = h;
    c->magic = kCtxParsed;
    const uint16_t slot = steer[h & mask];
    slots |= 1ull << slot;
    keep[n] = pkt;
    slot_of[n++] = slot;
  }
  if (non_flow_drops != 0) {
    CounterBlock::Bump(cnt_.drops[kDropNonFlow], non_flow_drops);
  }
  // One enqueue per working slot, in arrival order; a batch for a single
  // slot (one working core, or flows of one core's shards) goes as it is.
  // A working core on this worker may instead take its burst at once (run
  // to completion, like a NIC queue polled by its core: no ring, no second
  // pass); `spare` is its output batch, so at most one slot per call.
  const bool single = (slots & (slots - 1)) == 0;
  bool spare_free = !ring_only_;
  uint64_t inline_pkts = 0;
  while (slots != 0) {
    const uint32_t w = static_cast<uint32_t>(__builtin_ctzll(slots));
    slots &= slots - 1;
    bess::Packet **out = keep;
    uint32_t m = n;
    if (!single) {
      out = out_[w];
      m = 0;
      for (uint32_t j = 0; j < n; j++) {
        if (slot_of[j] == w) {
          out[m++] = keep[j];
        }
      }
    }
    if (spare_free) {
      DyssectWorkingCore *wc = mgr_->wslots[w].module.load(std::memory_order_acquire);
      if (wc != nullptr && wc->RunToCompletion(ctx, out, m, spare)) {
        spare_free = false;
        inline_pkts += m;
        continue;
      }
    }
    const uint32_t k = mgr_->wslots[w].rx->EnqueueBurst(out, m);
    CounterBlock::Bump(mgr_->wslots[w].rx_enq, k);
    if (DYSSECT_UNLIKELY(k != m)) {
      CounterBlock::Bump(cnt_.drops[kDropRxRingFull], m - k);
      for (uint32_t i = k; i < m; i++) {
        DropPacket(ctx, out[i]);
      }
    }
  }
  if (inline_pkts != 0) {
    CounterBlock::Bump(cnt_.inline_pkts, inline_pkts);
  }
}

struct task_result DyssectDispatcher::RunTask(Context *ctx, bess::PacketBatch *batch, void *) {
  ApplySteering();
  if (port_ == nullptr) {
    return {.block = true, .packets = 0, .bits = 0};
  }
  const int cnt = port_->RecvPackets(static_cast<queue_t>(qid_), batch->pkts(),
                                     bess::PacketBatch::kMaxBurst);
  if (cnt <= 0) {
    return {.block = true, .packets = 0, .bits = 0};
  }
  uint64_t bytes = 0;
  for (int i = 0; i < cnt; i++) {
    bytes += batch->pkts()[i]->total_len();
  }
  Dispatch(ctx, batch->pkts(), static_cast<uint32_t>(cnt), batch);
  return {.block = false, .packets = static_cast<uint32_t>(cnt), .bits = (bytes + cnt * 24) * 8};
}

void DyssectDispatcher::ProcessBatch(Context *ctx, bess::PacketBatch *batch) {
  ApplySteering();
  Dispatch(ctx, batch->pkts(), static_cast<uint32_t>(batch->cnt()), batch);
}

// ============================================================= working core

const Commands DyssectWorkingCore::cmds = {};

CommandResponse DyssectWorkingCore::Init(const dyssect::pb::DyssectWorkingCoreArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return CommandFailure(ENOENT, "no DyssectShardManager named %s", mgr_name_.c_str());
  }
  slot_ = arg.slot();
  if (slot_ >= mgr_->num_cores) {
    return CommandFailure(EINVAL, "slot %u out of range (%u cores)", slot_, mgr_->num_cores);
  }
  ws_ = &mgr_->wslots[slot_];
  if (ws_->has_module.exchange(true)) {
    return CommandFailure(EEXIST, "working slot %u already has a module", slot_);
  }
  if (arg.burst()) {
    burst_ = std::min<uint32_t>(arg.burst(), bess::PacketBatch::kMaxBurst);
  }
  if (mgr_->hardware) {
    if (arg.port().empty()) {
      ws_->has_module = false;
      return CommandFailure(EINVAL, "hardware steering: 'port' (the PMDPort) is required");
    }
    const auto &it = PortBuilder::all_ports().find(arg.port());
    if (it == PortBuilder::all_ports().end()) {
      ws_->has_module = false;
      return CommandFailure(ENODEV, "port %s not found", arg.port().c_str());
    }
    port_ = it->second;
    qid_ = slot_;  // RETA entries of the slot's shards point at queue `slot`
    queue_t q = static_cast<queue_t>(qid_);
    int ret = port_->AcquireQueues(reinterpret_cast<const module *>(this), PACKET_DIR_INC, &q, 1);
    if (ret < 0) {
      port_ = nullptr;
      ws_->has_module = false;
      return CommandFailure(-ret, "cannot acquire RX queue %u", qid_);
    }
  }
  backlog_.reset(new dyssect::SpscRing<bess::Packet *>(
      mgr_->shards[0].handoff.capacity() + bess::PacketBatch::kMaxBurst));
  fences_.reserve(mgr_->num_shards);
  fences_new_.reserve(mgr_->num_shards);
  fence_t0_.assign(mgr_->num_shards, 0);
  takeover_t0_.assign(mgr_->num_shards, 0);
  if (RegisterTask(nullptr) == INVALID_TASK_ID) {
    return CommandFailure(ENOMEM, "task creation failed");
  }
  mgr_->Register(&cnt_);
  ws_->backlog.store(backlog_.get(), std::memory_order_release);
  ws_->module.store(this, std::memory_order_release);  // after RegisterTask: see RunToCompletion
  return CommandSuccess();
}

void DyssectWorkingCore::DeInit() {
  bess::Packet *p;
  while (backlog_ && backlog_->Dequeue(&p)) {
    bess::Packet::Free(p);
  }
  if (port_ != nullptr) {
    queue_t q = static_cast<queue_t>(qid_);
    port_->ReleaseQueues(reinterpret_cast<const module *>(this), PACKET_DIR_INC, &q, 1);
  }
  if (UnregisterFromManager(mgr_name_, mgr_, &cnt_)) {
    ws_->module.store(nullptr, std::memory_order_release);
    ws_->backlog.store(nullptr, std::memory_order_release);
    ws_->has_module = false;
  }
}

std::string DyssectWorkingCore::GetDesc() const {
  return "slot " + std::to_string(slot_) + (port_ ? " (RSS queue)" : " (software)");
}

// Top-16 byte shares of the window the owner just ranked.
void DyssectWorkingCore::PublishTop(uint32_t s) {
  uint64_t best[16];
  uint32_t n = 0;
  uint64_t total = 0;
  mgr_->shards[s].table.ForEach([&](FlowEntry *f) {
    const uint64_t b = f->last_win_bytes;
    if (b == 0) {
      return;
    }
    total += b;
    if (n < 16) {
      best[n++] = b;
    } else if (b > best[15]) {
      best[15] = b;
    } else {
      return;
    }
    for (uint32_t i = n - 1; i > 0 && best[i] > best[i - 1]; i--) {
      std::swap(best[i], best[i - 1]);
    }
  });
  auto &t = mgr_->top[s];
  for (uint32_t i = 0; i < n; i++) {
    t.share[i].store(static_cast<double>(best[i]) / static_cast<double>(total),
                     std::memory_order_relaxed);
  }
  t.n.store(n, std::memory_order_release);
}

void DyssectWorkingCore::Classify(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                  bess::PacketBatch *batch, bool from_handoff) {
  dyssect::ShardSet &set = mgr_->shards;
  const uint32_t mask = mgr_->num_shards - 1;
  const bool to_backlog = from_handoff || !backlog_->Empty();
  // Software steering: the dispatcher already parsed and hashed every
  // packet, so the flow-table lookups of the whole batch can be prefetched
  // (index slots, then entries) before the first one is needed.
  static_assert(bess::PacketBatch::kMaxBurst <= 64, "prefetched bitmask is 64 bits");
  uint64_t kh[bess::PacketBatch::kMaxBurst];
  uint64_t prefetched = 0;
  if (port_ == nullptr && !from_handoff) {
    for (uint32_t i = 0; i < cnt; i++) {
      if (IsFence(pkts[i])) {
        continue;
      }
      const PacketCtx *c = Ctx(pkts[i]);
      if (c->magic == kCtxParsed && c->status == static_cast<uint8_t>(ParseStatus::kOk)) {
        kh[i] = dyssect::FlowKeyHash(c->pp.key);
        set[c->hash & mask].table.PrefetchIndex(kh[i]);
        prefetched |= 1ull << i;
      }
    }
    for (uint32_t i = 0; i < cnt; i++) {
      if (prefetched & (1ull << i)) {
        Shard &sh = set[Ctx(pkts[i])->hash & mask];
        const Ownership o = sh.ownership();
        // only the owner may read the index (a released shard's table
        // belongs to its new owner)
        if (dyssect::Processes(o, slot_)) {
          sh.table.PrefetchEntry(kh[i]);
        }
      }
    }
  }
  for (uint32_t i = 0; i < cnt; i++) {
    bess::Packet *pkt = pkts[i];
    if (IsFence(pkt)) {
      fences_new_.push_back(FenceShard(pkt));
      continue;
    }
    PacketCtx *c = Ctx(pkt);
    ParseStatus st;
    uint32_t h;
    if (c->magic == kCtxParsed && (port_ == nullptr || from_handoff)) {
      // software steering (every packet came through the dispatcher) or a
      // packet this core parsed before buffering it
      st = static_cast<ParseStatus>(c->status);
      h = c->hash;
    } else {
      st = dyssect::ParsePacket(pkt->head_data<const uint8_t *>(), pkt->head_len(), &c->pp);
      c->status = static_cast<uint8_t>(st);
      bool valid = false;
      h = port_ != nullptr ? RssHashOf(pkt, &valid) : 0;  // the NIC's RSS hash
      if (!valid && st == ParseStatus::kOk) {
        h = mgr_->hasher.HashFlow(c->pp.key);
      }
      c->hash = h;
      c->magic = kCtxParsed;  // a buffered packet keeps its parse and hash
    }
    if (st != ParseStatus::kOk) {
      PassNonFlow(ctx, pkt, batch, to_backlog);
      continue;
    }
    Shard &sh = set[h & mask];
    if (!from_handoff) {
      const Ingress in = dyssect::RouteIngress(sh, slot_);
      if (in == Ingress::kBuffer) {
        if (!dyssect::BufferForHandoff(sh, pkt)) {
          DropPacket(ctx, pkt);
        }
        continue;
      }
      if (in == Ingress::kDrop) {
        DropPacket(ctx, pkt);
        continue;
      }
    }
    const uint64_t key_hash =
        (prefetched & (1ull << i)) ? kh[i] : dyssect::FlowKeyHash(c->pp.key);
    ClassifyOwnedPacket(ctx, pkt, sh, key_hash, batch, to_backlog);
  }
  Flush(ctx);
}

// A packet without a flow (not IPv4 TCP/UDP, fragment, truncated): through the
// chain untouched by the NFs, or dropped (counted) with drop_non_flow.
void DyssectWorkingCore::PassNonFlow(Context *ctx, bess::Packet *pkt, bess::PacketBatch *batch,
                                     bool to_backlog) {
  PacketCtx *c = Ctx(pkt);
  c->magic = kCtxMagic;
  c->flow = nullptr;
  if (mgr_->drop_non_flow) {
    CounterBlock::Bump(cnt_.drops[kDropNonFlow]);
    DropPacket(ctx, pkt);
  } else {
    SendLocal(pkt, batch, to_backlog);
  }
}

// A packet that runs this core's chain: in this batch, or, behind a hand-off
// backlog (per-flow order), at the end of the backlog.
void DyssectWorkingCore::SendLocal(bess::Packet *pkt, bess::PacketBatch *batch, bool to_backlog) {
  if (to_backlog) {
    backlog_->Enqueue(pkt);  // sized for a full hand-off buffer plus a burst
  } else {
    batch->add(pkt);
  }
}

// A packet of shard sh, which this core owns: its flow (found or created,
// counted), then its path: this core's chain (SendLocal), the offload ring,
// or a counted drop.
void DyssectWorkingCore::ClassifyOwnedPacket(Context *ctx, bess::Packet *pkt, Shard &sh,
                                             uint64_t key_hash, bess::PacketBatch *batch,
                                             bool to_backlog) {
  PacketCtx *c = Ctx(pkt);
  c->magic = kCtxMagic;
  c->flow = nullptr;
  const uint64_t ranked = sh.ranked_epoch;
  FlowEntry *f = nullptr;
  // last_seen on a ~1 ms clock: most packets then leave it as it is, so the
  // entry is written once per flow per millisecond instead of per packet.
  const uint64_t seen_ns = now_ns_ & ~kSeenGranuleMask;
  const Path path =
      dyssect::ClassifyHashed(mgr_->shards, sh, c->pp.key, key_hash, c->hash, pkt->total_len(),
                              seen_ns, batch_id_, static_cast<uint16_t>(slot_), &f);
  if (sh.ranked_epoch != ranked) {
    PublishTop(sh.id());
    CounterBlock::Bump(cnt_.reclassified);
  }
  c->flow = f;
  c->shard = sh.id();
  if (DYSSECT_LIKELY(path == Path::kLocal)) {
    SendLocal(pkt, batch, to_backlog);
  } else if (path == Path::kOffload) {
    off_[off_n_++] = dyssect::OffloadItem{pkt, f, &sh};
    if (off_n_ == bess::PacketBatch::kMaxBurst) {
      Flush(ctx);
    }
  } else {
    DropPacket(ctx, pkt);
  }
}

// The run-to-completion burst (see RunToCompletion): every packet was parsed
// and hashed by the dispatcher and no fence travels with it. When every
// packet's shard is owned by this core (and not released, which only this
// core can do, at its next RunTask), the per-packet routing of Classify has
// nothing to decide: one ownership check per packet while the table lines are
// fetched, then the lookups. Returns false, having changed nothing, when a
// packet needs the general path (its shard is being taken over by this core,
// or it reached a core that does not own it).
bool DyssectWorkingCore::ClassifyOwned(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                       bess::PacketBatch *batch) {
  dyssect::ShardSet &set = mgr_->shards;
  const uint32_t mask = mgr_->num_shards - 1;
  Shard *shard_of[bess::PacketBatch::kMaxBurst];
  uint64_t kh[bess::PacketBatch::kMaxBurst];
  for (uint32_t i = 0; i < cnt; i++) {
    const PacketCtx *c = Ctx(pkts[i]);
    if (c->status != static_cast<uint8_t>(ParseStatus::kOk)) {
      shard_of[i] = nullptr;
      continue;
    }
    Shard &sh = set[c->hash & mask];
    const Ownership o = sh.ownership();
    if (DYSSECT_UNLIKELY(!dyssect::Processes(o, slot_))) {
      return false;
    }
    shard_of[i] = &sh;
    kh[i] = dyssect::FlowKeyHash(c->pp.key);
    sh.table.PrefetchIndex(kh[i]);
  }
  for (uint32_t i = 0; i < cnt; i++) {
    if (shard_of[i] != nullptr) {
      shard_of[i]->table.PrefetchEntry(kh[i]);
    }
  }
  for (uint32_t i = 0; i < cnt; i++) {
    if (shard_of[i] == nullptr) {
      PassNonFlow(ctx, pkts[i], batch, false);
    } else {
      ClassifyOwnedPacket(ctx, pkts[i], *shard_of[i], kh[i], batch, false);
    }
  }
  Flush(ctx);
  return true;
}

// Enqueues the offload batch in order; what does not fit is dropped (counted).
void DyssectWorkingCore::Flush(Context *ctx) {
  if (off_n_ == 0) {
    return;
  }
  const uint32_t k = ws_->offl->ring.EnqueueBurst(off_, off_n_);
  for (uint32_t i = k; i < off_n_; i++) {
    dyssect::OffloadFailed(*off_[i].shard, off_[i].flow);
    DropPacket(ctx, static_cast<bess::Packet *>(off_[i].pkt));
  }
  off_n_ = 0;
}

// Between batches, while migrations are active: release shards this core has
// drained (the batch holding the fence has run the chain), take over shards
// the old owner released, and (hardware RSS) notice shards to drain.
void DyssectWorkingCore::MigrationWork(Context *ctx, bess::PacketBatch *batch) {
  dyssect::ShardSet &set = mgr_->shards;
  for (size_t i = 0; i < fences_.size();) {
    if (fences_[i].armed) {
      dyssect::ReleaseShard(set[fences_[i].shard], slot_);
      fences_[i] = fences_.back();
      fences_.pop_back();
    } else {
      i++;
    }
  }
  if (set.active_migrations.load(std::memory_order_acquire) == 0) {
    return;
  }
  for (uint32_t s = 0; s < mgr_->num_shards; s++) {
    Shard &sh = set[s];
    const Ownership o = sh.ownership();
    if (o.phase == ShardPhase::kOwned) {
      continue;
    }
    if (mgr_->hardware && o.owner == slot_ && o.phase == ShardPhase::kMigrating &&
        fence_t0_[s] == 0) {
      fence_t0_[s] = now_ns_ ? now_ns_ : 1;
      fences_.push_back(Fence{s, false});
    }
    if (o.pending == slot_ && o.phase == ShardPhase::kReleased &&
        sh.inflight.load(std::memory_order_acquire) != 0) {
      ResolveStuckTakeOver(sh, o.owner);
    }
    if (o.pending == slot_ && o.phase == ShardPhase::kReleased && backlog_->Empty()) {
      in_handoff_drain_ = true;
      const bool taken = dyssect::TryTakeOver(set, sh, slot_, [&](Shard &shard) {
        bess::Packet *pkts[bess::PacketBatch::kMaxBurst];
        while (true) {
          uint32_t n = 0;
          dyssect::PacketRef ref;
          while (n < bess::PacketBatch::kMaxBurst && shard.handoff.Dequeue(&ref)) {
            pkts[n++] = static_cast<bess::Packet *>(ref);
          }
          if (n == 0) {
            break;
          }
          Classify(ctx, pkts, n, batch, true);
        }
      });
      in_handoff_drain_ = false;
      if (taken) {
        takeover_t0_[s] = 0;
      }
    }
  }
}

// A take-over waiting on packets offloaded by the old owner: if it has waited
// kStuckTakeOverNs and they sit in the old owner's ring with no consumer
// (nothing would ever finish them), drop them (counted) so the take-over
// proceeds. With a consumer, they will be finished: keep waiting.
void DyssectWorkingCore::ResolveStuckTakeOver(Shard &sh, uint32_t old_owner) {
  uint64_t &t0 = takeover_t0_[sh.id()];
  if (t0 == 0) {
    t0 = now_ns_ ? now_ns_ : 1;
    return;
  }
  if (now_ns_ - t0 < kStuckTakeOverNs || old_owner >= mgr_->num_cores) {
    return;
  }
  t0 = now_ns_;
  const uint32_t n = dyssect::DrainOrphanedRing(*mgr_->wslots[old_owner].offl,
                                                [](dyssect::PacketRef p) {
                                                  bess::Packet::Free(
                                                      static_cast<bess::Packet *>(p));
                                                });
  if (n != 0) {
    CounterBlock::Bump(cnt_.stuck_handoffs);
    LOG(WARNING) << "dyssect: shard " << sh.id() << " take-over by slot " << slot_ << ": dropped "
                 << n << " packets from slot " << old_owner << "'s offload ring (no consumer)";
  }
}

struct task_result DyssectWorkingCore::RunTask(Context *ctx, bess::PacketBatch *batch, void *) {
  now_ns_ = ctx->current_ns;
  if (!fences_.empty() ||
      mgr_->shards.active_migrations.load(std::memory_order_acquire) != 0) {
    MigrationWork(ctx, batch);
  }

  // Expire idle flows of one shard at most every kExpireEveryNs (bounded
  // work, and no sweep of cold table memory on every batch).
  if (now_ns_ - last_expire_ns_ >= kExpireEveryNs) {
    last_expire_ns_ = now_ns_;
    const uint32_t s = expire_cursor_;
    expire_cursor_ = (expire_cursor_ + 1) & (mgr_->num_shards - 1);
    Shard &sh = mgr_->shards[s];
    const Ownership o = sh.ownership();
    if (dyssect::Processes(o, slot_) && backlog_->Empty()) {
      dyssect::ExpireShard(sh, &mgr_->nf, now_ns_,
                           mgr_->idle_timeout_ns.load(std::memory_order_relaxed), 64);
    }
  }

  // A hand-off backlog goes first, one batch per call, and no new packet is
  // classified (batch id frozen) until it is empty: this keeps per-flow order.
  if (!backlog_->Empty()) {
    const uint32_t n = backlog_->DequeueBurst(batch->pkts(), burst_);
    batch->set_cnt(static_cast<int>(n));
    RunNextModule(ctx, batch);
    return {.block = false, .packets = n, .bits = 0};
  }

  batch_id_++;
  bess::Packet *pkts[bess::PacketBatch::kMaxBurst];
  uint32_t cnt;
  if (port_ != nullptr) {
    cnt = static_cast<uint32_t>(port_->RecvPackets(static_cast<queue_t>(qid_), pkts, burst_));
    CounterBlock::Bump(cnt_.in, cnt);
    if (cnt == 0 && !fences_.empty()) {
      // Hardware RSS: the RX queue was seen empty long enough after the RETA
      // switch; what came before has been processed.
      for (auto &f : fences_) {
        if (!f.armed && now_ns_ - fence_t0_[f.shard] >= kHwFenceGraceNs) {
          f.armed = true;
          fence_t0_[f.shard] = 0;
        }
      }
    }
  } else {
    cnt = ws_->rx->DequeueBurst(pkts, burst_);
    // Counted before any packet moves on (see CommandGetStats). Fences
    // travel only while a migration is active.
    uint32_t pkts_n = cnt;
    if (mgr_->shards.active_migrations.load(std::memory_order_acquire) != 0) {
      for (uint32_t i = 0; i < cnt; i++) {
        pkts_n -= IsFence(pkts[i]) ? 1 : 0;
      }
    }
    CounterBlock::Bump(ws_->rx_deq, pkts_n);
  }
  if (cnt == 0) {
    return {.block = true, .packets = 0, .bits = 0};
  }
  batch->clear();
  Classify(ctx, pkts, cnt, batch, false);
  for (uint32_t s : fences_new_) {
    fences_.push_back(Fence{s, true});  // released once this batch has run
  }
  fences_new_.clear();
  RunNextModule(ctx, batch);
  return {.block = false, .packets = cnt, .bits = 0};
}

bool DyssectWorkingCore::RunToCompletion(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                         bess::PacketBatch *batch) {
  // Same worker first (everything checked after it is this core's own
  // state): both tasks' traffic classes hang off one scheduler root. Traffic
  // classes change only while every worker is paused, so this cannot go stale
  // while the dispatcher runs.
  const std::vector<const Task *> &tasks = this->tasks();
  if (tasks.empty() || tasks[0]->GetTC() == nullptr || ctx->task->GetTC() == nullptr ||
      tasks[0]->GetTC()->Root() != ctx->task->GetTC()->Root()) {
    return false;
  }
  // Anything RunTask would do before classifying a new burst (release a
  // fence, take a shard over, send the backlog, dequeue older packets) makes
  // the burst wait its turn in the ring.
  if (port_ != nullptr || cnt > burst_ || !fences_.empty() || !backlog_->Empty() ||
      !ws_->rx->Empty() || mgr_->shards.active_migrations.load(std::memory_order_acquire) != 0) {
    return false;
  }
  now_ns_ = ctx->current_ns;
  batch_id_++;
  batch->clear();
  if (!ClassifyOwned(ctx, pkts, cnt, batch)) {
    Classify(ctx, pkts, cnt, batch, false);  // no fence: fences travel only in the ring
  }
  RunNextModule(ctx, batch);
  return true;
}

// ========================================================== offloading core

const Commands DyssectOffloadingCore::cmds = {};

CommandResponse DyssectOffloadingCore::Init(const dyssect::pb::DyssectOffloadingCoreArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return CommandFailure(ENOENT, "no DyssectShardManager named %s", mgr_name_.c_str());
  }
  slot_ = arg.slot();
  if (slot_ >= mgr_->num_cores) {
    return CommandFailure(EINVAL, "slot %u out of range (%u cores)", slot_, mgr_->num_cores);
  }
  if (mgr_->oslots[slot_].has_module.exchange(true)) {
    return CommandFailure(EEXIST, "offloading slot %u already has a module", slot_);
  }
  if (arg.burst()) {
    burst_ = std::min<uint32_t>(arg.burst(), bess::PacketBatch::kMaxBurst);
  }
  if (RegisterTask(nullptr) == INVALID_TASK_ID) {
    return CommandFailure(ENOMEM, "task creation failed");
  }
  return CommandSuccess();
}

void DyssectOffloadingCore::DeInit() {
  if (DyssectShardManager *m = DyssectShardManager::Find(mgr_name_)) {
    if (m == mgr_) {
      m->oslots[slot_].has_module = false;
    }
  }
}

// The previous batch has run the whole chain: release its flows and shards.
void DyssectOffloadingCore::Complete() {
  for (uint32_t i = 0; i < pend_n_; i++) {
    dyssect::FinishOffloaded(pend_[i]);
  }
  pend_n_ = 0;
}

struct task_result DyssectOffloadingCore::RunTask(Context *ctx, bess::PacketBatch *batch,
                                                  void *) {
  Complete();
  const uint32_t m = mgr_->num_cores;
  uint32_t got = 0;
  // Visit every ring (a pending hand-off away from this core happens at a
  // visit), dequeue from the first one with packets, round robin.
  for (uint32_t k = 0; k < m; k++) {
    uint32_t w = next_ring_ + k;
    if (w >= m) {
      w -= m;
    }
    dyssect::OffloadRing *ring = mgr_->wslots[w].offl.get();
    if (!ring->AcquireForConsume(slot_)) {
      continue;
    }
    if (got == 0) {
      got = ring->ring.DequeueBurst(pend_, burst_);
      if (got != 0) {
        next_ring_ = w + 1 >= m ? 0 : w + 1;
      }
    }
  }
  if (got == 0) {
    return {.block = true, .packets = 0, .bits = 0};
  }
  pend_n_ = got;
  batch->clear();
  for (uint32_t i = 0; i < got; i++) {
    batch->add(static_cast<bess::Packet *>(pend_[i].pkt));
  }
  RunNextModule(ctx, batch);
  return {.block = false, .packets = got, .bits = 0};
}

// =================================================================== egress

const Commands DyssectEgress::cmds = {};

CommandResponse DyssectEgress::Init(const dyssect::pb::DyssectEgressArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return CommandFailure(ENOENT, "no DyssectShardManager named %s", mgr_name_.c_str());
  }
  mgr_->Register(&cnt_);
  return CommandSuccess();
}

void DyssectEgress::DeInit() {
  UnregisterFromManager(mgr_name_, mgr_, &cnt_);
}

void DyssectEgress::ProcessBatch(Context *ctx, bess::PacketBatch *batch) {
  CounterBlock::Bump(cnt_.out, static_cast<uint64_t>(batch->cnt()));
  RunNextModule(ctx, batch);
}

// ====================================================================== NAT

const Commands DyssectNAT::cmds = {};

CommandResponse DyssectNAT::Init(const dyssect::pb::DyssectNATArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return CommandFailure(ENOENT, "no DyssectShardManager named %s", mgr_name_.c_str());
  }
  std::vector<uint32_t> addrs;
  for (const auto &a : arg.ext_addrs()) {
    unsigned b0, b1, b2, b3;
    char extra;
    if (sscanf(a.c_str(), "%u.%u.%u.%u%c", &b0, &b1, &b2, &b3, &extra) != 4 || b0 > 255 ||
        b1 > 255 || b2 > 255 || b3 > 255) {
      return CommandFailure(EINVAL, "bad external address '%s'", a.c_str());
    }
    addrs.push_back((b0 << 24) | (b1 << 16) | (b2 << 8) | b3);
  }
  const uint32_t pmin = arg.port_min() ? arg.port_min() : 1024;
  const uint32_t pmax = arg.port_max() ? arg.port_max() : 65535;
  if (pmin > 65535 || pmax > 65535) {
    return CommandFailure(EINVAL, "ports must be <= 65535");
  }
  std::string err;
  // All NAT instances of a pipeline share the "nat" NF slot and its pool, so
  // a flow keeps its mapping whichever core processes it.
  dyssect::NatPortPool *pool = mgr_->NatPool("nat", addrs, static_cast<uint16_t>(pmin),
                                             static_cast<uint16_t>(pmax), &err);
  if (pool == nullptr) {
    return CommandFailure(EINVAL, "%s", err.c_str());
  }
  if (!nat_.Init(&mgr_->nf, pool, "nat", mgr_->num_shards * mgr_->flow_capacity)) {
    return CommandFailure(ENOMEM, "NF state slot 'nat' unavailable");
  }
  mgr_->Register(&cnt_);
  return CommandSuccess();
}

void DyssectNAT::DeInit() {
  UnregisterFromManager(mgr_name_, mgr_, &cnt_);
}

void DyssectNAT::ProcessBatch(Context *ctx, bess::PacketBatch *batch) {
  const int cnt = batch->cnt();
  const uint32_t partition = static_cast<uint32_t>(ctx->wid);
  for (int i = 0; i < cnt; i++) {
    bess::Packet *pkt = batch->pkts()[i];
    PacketCtx *c = Ctx(pkt);
    if (c->magic != kCtxMagic || c->flow == nullptr ||
        c->status != static_cast<uint8_t>(ParseStatus::kOk)) {
      // no flow: not translated; dropped if it would leak (fragments)
      const auto st = static_cast<ParseStatus>(c->status);
      if (c->magic == kCtxMagic && nat_.ProcessNonFlow(st) == dyssect::Nat::Verdict::kDrop) {
        DropPacket(ctx, pkt);
      } else {
        EmitPacket(ctx, pkt);
      }
      continue;
    }
    if (nat_.Process(pkt->head_data<uint8_t *>(), c->pp, c->flow, partition) ==
        dyssect::Nat::Verdict::kDrop) {
      DropPacket(ctx, pkt);
    } else {
      EmitPacket(ctx, pkt);
    }
  }
  // Mirror the NAT's own drop counters into the exported ones.
  const auto &nc = nat_.counters();
  if (nc.pool_empty_drops != seen_pool_empty_) {
    CounterBlock::Bump(cnt_.drops[kDropNatPoolEmpty], nc.pool_empty_drops - seen_pool_empty_);
    seen_pool_empty_ = nc.pool_empty_drops;
  }
  if (nc.fragment_drops != seen_fragment_) {
    CounterBlock::Bump(cnt_.drops[kDropFragment], nc.fragment_drops - seen_fragment_);
    seen_fragment_ = nc.fragment_drops;
  }
  if (nc.state_full_drops != seen_state_full_) {
    CounterBlock::Bump(cnt_.drops[kDropNfStateFull], nc.state_full_drops - seen_state_full_);
    seen_state_full_ = nc.state_full_drops;
  }
}

// =================================================================== CPU NF

const Commands DyssectCpuNF::cmds = {
    {"set_cost", "DyssectCpuNFCommandSetCostArg",
     MODULE_CMD_FUNC(&DyssectCpuNF::CommandSetCost), Command::THREAD_SAFE},
};

CommandResponse DyssectCpuNF::Init(const dyssect::pb::DyssectCpuNFArg &arg) {
  if (arg.cost_per_byte() < 0) {
    return CommandFailure(EINVAL, "cost_per_byte must be >= 0");
  }
  iters_ = static_cast<uint32_t>(arg.cost_per_byte() + 0.5);
  return CommandSuccess();
}

CommandResponse DyssectCpuNF::CommandSetCost(
    const dyssect::pb::DyssectCpuNFCommandSetCostArg &arg) {
  if (arg.cost_per_byte() < 0) {
    return CommandFailure(EINVAL, "cost_per_byte must be >= 0");
  }
  iters_.store(static_cast<uint32_t>(arg.cost_per_byte() + 0.5), std::memory_order_relaxed);
  return CommandSuccess();
}

void DyssectCpuNF::ProcessBatch(Context *ctx, bess::PacketBatch *batch) {
  nf_.set_iters_per_byte(iters_.load(std::memory_order_relaxed));
  const int cnt = batch->cnt();
  for (int i = 0; i < cnt; i++) {
    bess::Packet *pkt = batch->pkts()[i];
    PacketCtx *c = Ctx(pkt);
    if (c->magic == kCtxMagic && c->status == static_cast<uint8_t>(ParseStatus::kOk)) {
      nf_.Process(pkt->head_data<const uint8_t *>(), c->pp);
    }
  }
  RunNextModule(ctx, batch);
}

// ========================================================= plain classifier

const Commands DyssectPlainClassifier::cmds = {};

CommandResponse DyssectPlainClassifier::Init(const dyssect::pb::DyssectPlainClassifierArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return CommandFailure(ENOENT, "no DyssectShardManager named %s", mgr_name_.c_str());
  }
  table_.reset(new dyssect::FlowTable(mgr_->num_shards * mgr_->flow_capacity));
  return CommandSuccess();
}

// Same lookup technique as the working core (batch prefetch of index slots
// and entries), so the baseline is not slowed by a naive lookup.
void DyssectPlainClassifier::ProcessBatch(Context *ctx, bess::PacketBatch *batch) {
  const int cnt = batch->cnt();
  uint64_t kh[bess::PacketBatch::kMaxBurst];
  for (int i = 0; i < cnt; i++) {
    bess::Packet *pkt = batch->pkts()[i];
    PacketCtx *c = Ctx(pkt);
    c->magic = kCtxMagic;
    c->flow = nullptr;
    const ParseStatus st =
        dyssect::ParsePacket(pkt->head_data<const uint8_t *>(), pkt->head_len(), &c->pp);
    c->status = static_cast<uint8_t>(st);
    if (st == ParseStatus::kOk) {
      kh[i] = dyssect::FlowKeyHash(c->pp.key);
      table_->PrefetchIndex(kh[i]);
    }
  }
  for (int i = 0; i < cnt; i++) {
    if (Ctx(batch->pkts()[i])->status == static_cast<uint8_t>(ParseStatus::kOk)) {
      table_->PrefetchEntry(kh[i]);
    }
  }
  for (int i = 0; i < cnt; i++) {
    PacketCtx *c = Ctx(batch->pkts()[i]);
    if (c->status == static_cast<uint8_t>(ParseStatus::kOk)) {
      bool inserted;
      c->flow = table_->FindOrInsertHashed(c->pp.key, kh[i], 0, ctx->current_ns, &inserted);
    }
  }
  RunNextModule(ctx, batch);
}

}  // namespace dyssect_bess

using dyssect_bess::DyssectPlainClassifier;
using dyssect_bess::DyssectCpuNF;
using dyssect_bess::DyssectDispatcher;
using dyssect_bess::DyssectEgress;
using dyssect_bess::DyssectNAT;
using dyssect_bess::DyssectOffloadingCore;
using dyssect_bess::DyssectShardManager;
using dyssect_bess::DyssectWorkingCore;

ADD_MODULE(DyssectShardManager, "dyssect", "Dyssect shards, plans and stats")
ADD_MODULE(DyssectDispatcher, "dyssect_dispatch",
           "Dyssect software steering (Toeplitz) to working cores")
ADD_MODULE(DyssectWorkingCore, "dyssect_w", "Dyssect working core")
ADD_MODULE(DyssectOffloadingCore, "dyssect_o", "Dyssect offloading core")
ADD_MODULE(DyssectEgress, "dyssect_egress", "counts packets leaving a Dyssect chain")
ADD_MODULE(DyssectNAT, "dyssect_nat", "Dyssect source NAT (shared port pool)")
ADD_MODULE(DyssectPlainClassifier, "dyssect_plain",
           "benchmark baseline: flow lookup without Dyssect bookkeeping")
ADD_MODULE(DyssectCpuNF, "dyssect_cpu", "Dyssect CPU-bound NF (cost per byte)")
