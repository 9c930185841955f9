// The shard manager: the S shards, the working and offloading slots, the
// commands (get_stats, apply_plan, set_params) and the registry by name.
#include "dyssect_plugin.h"

#include <rte_ethdev.h>
#include <time.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <random>

namespace dyssect_bess {

using dyssect::Ownership;
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

}  // namespace

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
  p_.num_shards_ = arg.shards() ? arg.shards() : 16;
  if (const char *err = dyssect::CheckShardConfig(p_.num_shards_, 0)) {
    return CommandFailure(EINVAL, "%s", err);
  }
  std::vector<uint32_t> cores(arg.cores().begin(), arg.cores().end());
  if (cores.empty()) {
    cores.push_back(0);
  }
  if (cores.size() > static_cast<size_t>(Worker::kMaxWorkers)) {
    return CommandFailure(EINVAL, "at most %d cores", Worker::kMaxWorkers);
  }
  p_.num_cores_ = static_cast<uint32_t>(cores.size());
  const uint32_t working = arg.working() ? arg.working() : 1;
  if (working > p_.num_cores_) {
    return CommandFailure(EINVAL, "working (%u) exceeds the core list (%u)", working,
                          p_.num_cores_);
  }
  p_.flow_capacity_ = arg.flow_table_size() ? arg.flow_table_size()
                                             : std::max<uint32_t>(256, 65536 / p_.num_shards_);
  dyssect::ShardConfig cfg;
  cfg.flow_capacity = p_.flow_capacity_;
  cfg.handoff_capacity = arg.migration_buffer() ? arg.migration_buffer() : 4096;
  if (const char *err = p_.shards.Init(p_.num_shards_, cfg)) {
    return CommandFailure(EINVAL, "%s", err);
  }
  for (uint32_t s = 0; s < p_.num_shards_; s++) {
    dyssect::AssignOwner(p_.shards[s], s % working);
  }
  p_.drop_non_flow_ = arg.drop_non_flow();
  if (arg.flow_idle_timeout_ms()) {
    p_.idle_timeout_ns = static_cast<uint64_t>(arg.flow_idle_timeout_ms()) * 1000000ull;
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
  p_.hardware_ = false;
  if (steering != "software" && arg.has_dpdk_port()) {
    rte_eth_dev_info info;
    dpdk_port_ = static_cast<uint16_t>(arg.dpdk_port());
    if (rte_eth_dev_is_valid_port(dpdk_port_) && rte_eth_dev_info_get(dpdk_port_, &info) == 0 &&
        info.reta_size > 0 && info.nb_rx_queues >= p_.num_cores_ &&
        dyssect::CheckShardConfig(p_.num_shards_, info.reta_size) == nullptr) {
      reta_size_ = info.reta_size;
      p_.hardware_ = true;
    }
  }
  if (steering == "hardware" && !p_.hardware_) {
    return CommandFailure(EINVAL,
                          "hardware steering needs dpdk_port with a RETA whose size is a "
                          "multiple of the shard count and one RX queue per core");
  }
  // The NIC's hash under hardware RSS (its software stand-in is the Toeplitz);
  // the configured one under software steering.
  if (!dyssect::ParseHashKind(arg.hash().c_str(), &p_.hash_kind_)) {
    return CommandFailure(EINVAL, "hash must be crc32c or toeplitz");
  }
  if (p_.hardware_) {
    p_.hash_kind_ = dyssect::HashKind::kToeplitz;
  }

  const uint32_t rx_cap = arg.rx_ring() ? arg.rx_ring() : 16384;
  const uint32_t off_cap = arg.offload_ring() ? arg.offload_ring() : 16384;
  p_.wslots.reset(new WorkSlot[p_.num_cores_]);
  p_.oslots.reset(new OffSlot[p_.num_cores_]);
  for (uint32_t i = 0; i < p_.num_cores_; i++) {
    if (!p_.hardware_) {
      p_.wslots[i].rx.reset(new dyssect::SpscRing<bess::Packet *>(rx_cap));
    }
    p_.wslots[i].offl.reset(new dyssect::OffloadRing(static_cast<uint16_t>(i), off_cap));
  }
  p_.top.reset(new SharedPlane::TopShares[p_.num_shards_]);
  window_.Init(p_.num_shards_);
  deltas_.resize(p_.num_shards_);
  n_working_ = working;
  n_offloading_ = 0;
  pairing_.assign(working, -1);
  last_ts_ = MonotonicSeconds();

  if (p_.hardware_ && ProgramReta() != 0) {
    return CommandFailure(EIO, "RETA update failed on DPDK port %u", dpdk_port_);
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
  for (uint32_t i = 0; p_.wslots && i < p_.num_cores_; i++) {
    bess::Packet *p;
    while (p_.wslots[i].rx && p_.wslots[i].rx->Dequeue(&p)) {
      if (!IsFence(p)) {
        bess::Packet::Free(p);
      }
    }
    dyssect::OffloadItem it;
    while (p_.wslots[i].offl && p_.wslots[i].offl->ring.Dequeue(&it)) {
      bess::Packet::Free(static_cast<bess::Packet *>(it.pkt));
    }
  }
  for (uint32_t s = 0; s < p_.shards.size(); s++) {
    dyssect::PacketRef ref;
    while (p_.shards[s].handoff.Dequeue(&ref)) {
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
  const char *steering = p_.hardware_ ? "hardware RSS"
                         : p_.hash_kind_ == dyssect::HashKind::kCrc32c
                             ? "software steering (crc32c)"
                             : "software steering (toeplitz)";
  return std::to_string(p_.num_shards_) + " shards, " + std::to_string(p_.num_cores_) +
         " cores, " + steering;
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
                                 port_max, p_.num_cores_)) {
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
  std::vector<uint16_t> shard_queue(p_.num_shards_);
  for (uint32_t s = 0; s < p_.num_shards_; s++) {
    const Ownership o = p_.shards[s].ownership();
    shard_queue[s] = static_cast<uint16_t>(
        o.phase != ShardPhase::kOwned && o.pending != dyssect::kNoCore16 ? o.pending : o.owner);
  }
  std::vector<uint16_t> reta(reta_size_);
  if (!dyssect::BuildReta(shard_queue.data(), p_.num_shards_, reta.data(), reta_size_)) {
    return -EINVAL;
  }
  std::vector<rte_eth_rss_reta_entry64> conf(reta_size_ / RTE_ETH_RETA_GROUP_SIZE);
  for (uint32_t k = 0; k < reta_size_; k++) {
    auto &g = conf[k / RTE_ETH_RETA_GROUP_SIZE];
    g.mask = ~0ull;
    g.reta[k % RTE_ETH_RETA_GROUP_SIZE] = reta[k];
  }
  return rte_eth_dev_rss_reta_update(dpdk_port_, conf.data(), static_cast<uint16_t>(reta_size_));
}

CommandResponse DyssectShardManager::CommandGetStats(
    const dyssect::pb::DyssectCommandGetStatsArg &) {
  std::lock_guard<std::mutex> lock(mu_);
  dyssect::pb::DyssectCommandGetStatsResponse r;
  const double now = MonotonicSeconds();
  // Closing the window: owners re-rank their flows on the next packet of each
  // shard, and the per-window packets/bytes are differences of cumulative
  // counters (no reset race).
  p_.shards.AdvanceWindow();
  window_.Swap(p_.shards, deltas_.data());
  r.set_epoch(p_.shards.epoch());
  r.set_timestamp_s(now);
  r.set_window_s(now - last_ts_);
  last_ts_ = now;

  // Every packet that entered is out, dropped (counted), held in a queue, or
  // in a burst a worker is running. Read downstream first (out and drops,
  // then the queues from the last to the first a packet can pass, `in`
  // last): a packet moving meanwhile may be missed, never counted twice.
  uint64_t shard_drops[dyssect::kNumShardDrops] = {};
  uint64_t reclassified = 0;
  for (uint32_t s = 0; s < p_.num_shards_; s++) {
    Shard &sh = p_.shards[s];
    const dyssect::ShardStats st = dyssect::ReadShardStats(sh);
    auto *out = r.add_shards();
    out->set_packets(deltas_[s].packets);
    out->set_bytes(deltas_[s].bytes);
    out->set_owner(st.owner);
    out->set_pending_owner(st.pending == dyssect::kNoCore16 ? -1
                                                            : static_cast<int32_t>(st.pending));
    out->set_offload(st.offload_ratio);
    out->set_flows(st.flows);
    const uint32_t n = std::min<uint32_t>(p_.top[s].n.load(std::memory_order_acquire), 16);
    for (uint32_t i = 0; i < n; i++) {
      out->add_top_flow_shares(p_.top[s].share[i].load(std::memory_order_relaxed));
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
  for (uint32_t i = 0; i < p_.num_cores_; i++) {
    held_offload += p_.wslots[i].offl->ring.SizeApprox();
  }
  for (uint32_t i = 0; i < p_.num_cores_; i++) {
    if (const auto *bl = p_.wslots[i].backlog.load(std::memory_order_acquire)) {
      held_backlog += bl->SizeApprox();
    }
  }
  for (uint32_t s = 0; s < p_.num_shards_; s++) {
    held_handoff += p_.shards[s].handoff.SizeApprox();
  }
  for (uint32_t i = 0; i < p_.num_cores_; i++) {
    const uint64_t deq = p_.wslots[i].rx_deq.load(std::memory_order_acquire);
    held_rx += p_.wslots[i].rx_enq.load(std::memory_order_acquire) - deq;
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
  for (uint32_t i = 0; i < p_.num_cores_; i++) {
    const BusyCount &w = p_.wslots[i].busy;
    const BusyCount &o = p_.oslots[i].busy;
    r.add_working_busy_cycles(w.cycles.load(std::memory_order_relaxed));
    r.add_working_busy_packets(w.packets.load(std::memory_order_relaxed));
    r.add_offloading_busy_cycles(o.cycles.load(std::memory_order_relaxed));
    r.add_offloading_busy_packets(o.packets.load(std::memory_order_relaxed));
  }
  r.set_tsc_hz(static_cast<double>(tsc_hz));
  r.set_packets_in(in);
  r.set_packets_out(out);
  r.set_packets_inline(inline_pkts);
  bool migrating = p_.shards.active_migrations.load(std::memory_order_acquire) != 0;
  for (uint32_t i = 0; i < p_.num_cores_ && !migrating; i++) {
    migrating = p_.wslots[i].offl->handoff_pending();
  }
  // Offloaded packets still in flight for a working core that no longer has
  // an offloading core: its old offloading core must keep running until they
  // are done, so report it as part of the hand-off.
  for (uint32_t s = 0; s < p_.num_shards_ && !migrating; s++) {
    const uint32_t owner = p_.shards[s].ownership().owner;
    const bool unpaired = owner >= pairing_.size() || pairing_[owner] < 0;
    migrating = unpaired && p_.shards[s].inflight.load(std::memory_order_acquire) != 0;
  }
  r.set_migrating(migrating);
  r.set_plan_id(plan_id_);
  r.set_steering(p_.hardware_ ? "hardware" : "software");
  uint64_t done = 0;
  for (uint32_t s = 0; s < p_.num_shards_; s++) {
    done += p_.shards[s].migrations.load(std::memory_order_relaxed);
  }
  r.set_migrations_done(done);
  r.set_reconfigurations(reclassified);
  r.set_instance(instance_);
  return CommandSuccess(r);
}

// A plan is applied whole or not at all: every check comes before any change.
CommandResponse DyssectShardManager::ValidatePlan(
    const dyssect::pb::DyssectCommandApplyPlanArg &arg) const {
  const uint32_t w = arg.working();
  const uint32_t e = arg.offloading();
  if (w == 0 || w + e > p_.num_cores_) {
    return CommandFailure(EINVAL, "working (%u) + offloading (%u) must be in [1, %u]", w, e,
                          p_.num_cores_);
  }
  if (static_cast<uint32_t>(arg.assignment_size()) != p_.num_shards_) {
    return CommandFailure(EINVAL, "assignment has %d entries, expected %u",
                          arg.assignment_size(), p_.num_shards_);
  }
  if (static_cast<uint32_t>(arg.offload_size()) != p_.num_shards_) {
    return CommandFailure(EINVAL, "offload has %d entries, expected %u", arg.offload_size(),
                          p_.num_shards_);
  }
  if (static_cast<uint32_t>(arg.pairing_size()) != w) {
    return CommandFailure(EINVAL, "pairing has %d entries, expected %u", arg.pairing_size(), w);
  }
  for (uint32_t s = 0; s < p_.num_shards_; s++) {
    if (arg.assignment(s) >= w) {
      return CommandFailure(EINVAL, "shard %u assigned to working slot %u (working = %u)", s,
                            arg.assignment(s), w);
    }
    if (!p_.wslots[arg.assignment(s)].has_module.load()) {
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
    if (p >= 0 && !p_.oslots[p].has_module.load()) {
      return CommandFailure(EINVAL, "offloading slot %d has no DyssectOffloadingCore", p);
    }
  }
  if (p_.shards.active_migrations.load(std::memory_order_acquire) != 0) {
    return CommandFailure(EBUSY, "a migration is still in progress; retry");
  }
  for (uint32_t i = 0; i < p_.num_cores_; i++) {
    if (p_.wslots[i].offl->handoff_pending()) {
      return CommandFailure(EBUSY, "an offload ring hand-off is still in progress; retry");
    }
  }
  return CommandSuccess();
}

CommandResponse DyssectShardManager::CommandApplyPlan(
    const dyssect::pb::DyssectCommandApplyPlanArg &arg) {
  std::lock_guard<std::mutex> lock(mu_);
  CommandResponse invalid = ValidatePlan(arg);
  if (invalid.has_error()) {
    return invalid;
  }
  const uint32_t w = arg.working();
  const uint32_t e = arg.offloading();

  // Consumers first (an offloading core takes a ring at its next visit).
  for (uint32_t i = 0; i < w; i++) {
    const int32_t p = arg.pairing(i);
    if (p >= 0) {
      p_.wslots[i].offl->RequestConsumer(static_cast<uint32_t>(p));
    }
  }
  uint32_t migrations = 0;
  for (uint32_t s = 0; s < p_.num_shards_; s++) {
    Shard &sh = p_.shards[s];
    const uint32_t to = arg.assignment(s);
    const uint32_t from = sh.ownership().owner;
    // A working core without an offloading core must not offload: r_s = 0.
    const uint32_t ratio = Shard::RatioPpm(arg.pairing(to) >= 0 ? arg.offload(s) : 0.0);
    if (from == to || from >= p_.num_cores_) {
      sh.takeover_ratio_ppm.store(Shard::kNoRatio, std::memory_order_relaxed);
      sh.ratio_ppm.store(ratio, std::memory_order_relaxed);
      continue;
    }
    // Until its fence the old owner classifies the shard with ratio_ppm and
    // offloads into its own ring: r_s > 0 there only if that ring is drained.
    // The new owner applies the plan's r_s when it takes the shard over.
    sh.takeover_ratio_ppm.store(ratio, std::memory_order_relaxed);
    sh.ratio_ppm.store(p_.wslots[from].offl->has_consumer() ? ratio : 0,
                       std::memory_order_relaxed);
    if (dyssect::BeginMigration(p_.shards, sh, to)) {
      migrations++;
    } else {
      sh.takeover_ratio_ppm.store(Shard::kNoRatio, std::memory_order_relaxed);
      sh.ratio_ppm.store(ratio, std::memory_order_relaxed);
    }
  }
  if (p_.hardware_ && migrations > 0) {
    const int ret = ProgramReta();
    if (ret != 0) {
      LOG(ERROR) << "dyssect: RETA update failed: " << ret;
    }
  }
  n_working_ = w;
  n_offloading_ = e;
  pairing_.assign(arg.pairing().begin(), arg.pairing().end());
  plan_id_++;
  p_.plan_gen.fetch_add(1, std::memory_order_release);

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
    p_.idle_timeout_ns.store(static_cast<uint64_t>(arg.flow_idle_timeout_ms()) * 1000000ull,
                             std::memory_order_relaxed);
  }
  dyssect::pb::DyssectCommandSetParamsResponse r;
  r.set_window_s(window_s_);
  r.set_flow_idle_timeout_ms(
      static_cast<uint32_t>(p_.idle_timeout_ns.load(std::memory_order_relaxed) / 1000000ull));
  return CommandSuccess(r);
}

}  // namespace dyssect_bess

using dyssect_bess::DyssectShardManager;

ADD_MODULE(DyssectShardManager, "dyssect", "Dyssect shards, plans and stats")
