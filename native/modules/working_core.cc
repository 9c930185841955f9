// Working core: routes each packet by its shard's ownership, classifies it
// (local or offloaded), runs the chain, and does its part of migrations.
#include "dyssect_plugin.h"

#include <rte_mbuf.h>

#include <algorithm>

#include "task.h"
#include "traffic_class.h"

#include "manager_link.h"

namespace dyssect_bess {

using dyssect::FlowEntry;
using dyssect::Ingress;
using dyssect::Ownership;
using dyssect::ParseStatus;
using dyssect::Path;
using dyssect::Shard;
using dyssect::ShardPhase;

namespace {

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

}  // namespace

const Commands DyssectWorkingCore::cmds = {};

CommandResponse DyssectWorkingCore::Init(const dyssect::pb::DyssectWorkingCoreArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return NoManager(mgr_name_);
  }
  plane_ = &mgr_->plane();
  slot_ = arg.slot();
  if (slot_ >= plane_->num_cores()) {
    return CommandFailure(EINVAL, "slot %u out of range (%u cores)", slot_, plane_->num_cores());
  }
  ws_ = &plane_->wslots[slot_];
  if (ws_->has_module.exchange(true)) {
    return CommandFailure(EEXIST, "working slot %u already has a module", slot_);
  }
  if (arg.burst()) {
    burst_ = std::min<uint32_t>(arg.burst(), bess::PacketBatch::kMaxBurst);
  }
  if (plane_->hardware()) {
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
      plane_->shards[0].handoff.capacity() + bess::PacketBatch::kMaxBurst));
  fences_.reserve(plane_->num_shards());
  fences_new_.reserve(plane_->num_shards());
  fence_t0_.assign(plane_->num_shards(), 0);
  takeover_t0_.assign(plane_->num_shards(), 0);
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
  plane_->shards[s].table.ForEach([&](FlowEntry *f) {
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
  auto &t = plane_->top[s];
  for (uint32_t i = 0; i < n; i++) {
    t.share[i].store(static_cast<double>(best[i]) / static_cast<double>(total),
                     std::memory_order_relaxed);
  }
  t.n.store(n, std::memory_order_release);
}

void DyssectWorkingCore::Classify(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                  bess::PacketBatch *batch, bool from_handoff) {
  dyssect::ShardSet &set = plane_->shards;
  const uint32_t mask = plane_->num_shards() - 1;
  const bool to_backlog = from_handoff || !backlog_->Empty();
  // Software steering: the dispatcher already parsed and hashed every
  // packet, so the flow-table lookups of the whole batch can be prefetched
  // (index slots, then entries) before the first one is needed.
  static_assert(bess::PacketBatch::kMaxBurst <= 64, "prefetched bitmask is 64 bits");
  uint32_t mixed[bess::PacketBatch::kMaxBurst];
  uint64_t prefetched = 0;
  if (port_ == nullptr && !from_handoff) {
    for (uint32_t i = 0; i < cnt; i++) {
      if (IsFence(pkts[i])) {
        continue;
      }
      const PacketCtx *c = Ctx(pkts[i]);
      if (c->magic == kCtxParsed && c->status == static_cast<uint8_t>(ParseStatus::kOk)) {
        mixed[i] = dyssect::FlowTable::Mix(c->hash);
        set[c->hash & mask].table.PrefetchIndex(mixed[i]);
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
          sh.table.PrefetchFlow(mixed[i]);
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
        h = plane_->SoftwareHash(c->pp.key);  // the Toeplitz under hardware RSS
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
    const uint32_t m = (prefetched & (1ull << i)) ? mixed[i] : dyssect::FlowTable::Mix(h);
    PrepareOwnedShard(sh);
    const uint32_t bytes = ClassifyOwnedPacket(ctx, pkt, sh, m, batch, to_backlog);
    if (bytes != 0) {
      dyssect::CountShard(sh, 1, bytes);
    }
  }
  Flush(ctx);
}

// Ranks shard sh if a new window began or r_s changed (the shard's first
// packet in a batch), and publishes its top shares after a new window.
void DyssectWorkingCore::PrepareOwnedShard(Shard &sh) {
  const uint64_t ranked = sh.ranked_epoch;
  if (DYSSECT_UNLIKELY(dyssect::PrepareShard(plane_->shards, sh)) && sh.ranked_epoch != ranked) {
    PublishTop(sh.id());
    CounterBlock::Bump(cnt_.reclassified);
  }
}

// A packet without a flow (not IPv4 TCP/UDP, fragment, truncated): through the
// chain untouched by the NFs, or dropped (counted) with drop_non_flow.
void DyssectWorkingCore::PassNonFlow(Context *ctx, bess::Packet *pkt, bess::PacketBatch *batch,
                                     bool to_backlog) {
  PacketCtx *c = Ctx(pkt);
  c->magic = kCtxMagic;
  c->flow = nullptr;
  if (plane_->drop_non_flow()) {
    CounterBlock::Bump(cnt_.drops[kDropNonFlow]);
    DropPacket(ctx, pkt);
  } else {
    SendLocal(pkt, batch, to_backlog);
  }
}

// A packet that runs this core's chain: in this batch, or, behind a hand-off
// backlog (per-flow order), at the end of the backlog.
inline void DyssectWorkingCore::SendLocal(bess::Packet *pkt, bess::PacketBatch *batch,
                                          bool to_backlog) {
  if (to_backlog) {
    backlog_->Enqueue(pkt);  // sized for a full hand-off buffer plus a burst
  } else {
    batch->add(pkt);
  }
}

// A packet of shard sh, which this core owns and has prepared
// (PrepareOwnedShard) in this batch: its flow (found or created, counted),
// then its path: this core's chain (SendLocal), the offload ring, or a
// counted drop. Returns the packet's bytes for the shard's counters, 0 when
// it was dropped (the caller counts the shard: CountShard).
// Inlined into the batch loops: a call per packet costs more than its body.
__attribute__((always_inline)) inline uint32_t DyssectWorkingCore::ClassifyOwnedPacket(
    Context *ctx, bess::Packet *pkt, Shard &sh, uint32_t mixed, bess::PacketBatch *batch,
    bool to_backlog) {
  PacketCtx *c = Ctx(pkt);
  c->magic = kCtxMagic;
  FlowEntry *f = nullptr;
  // last_seen on a ~1 ms clock: most packets then leave it as it is, so the
  // entry is written once per flow per millisecond instead of per packet.
  const uint64_t seen_ns = now_ns_ & ~kSeenGranuleMask;
  const uint32_t bytes = pkt->total_len();
  const Path path = dyssect::ClassifyFlow(sh, c->pp.key, c->hash, mixed, bytes, seen_ns,
                                          batch_id_, static_cast<uint16_t>(slot_), &f);
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
    return 0;
  }
  return bytes;
}

// The run-to-completion burst (see RunToCompletion): every packet was parsed
// and hashed by the dispatcher, which also prefetched its flow-table index
// slot, and no fence travels with it. When every packet's shard is owned by
// this core (and not released, which only this core can do, at its next
// RunTask), the per-packet routing of Classify has nothing to decide. What a
// batch's packets share is then done once per shard, not per packet: the
// ownership check and the ranking, the shard's packet and byte counters at
// the end. Returns false, having changed nothing, when a packet needs the
// general path (its shard is being taken over by this core, or it reached a
// core that does not own it) or when there are more than 64 shards (the
// burst's shards are a 64-bit set).
bool DyssectWorkingCore::ClassifyOwned(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                       bess::PacketBatch *batch) {
  constexpr uint32_t kBurst = bess::PacketBatch::kMaxBurst;
  constexpr uint8_t kNoShard = 0xFF;  // a packet without a flow
  dyssect::ShardSet &set = plane_->shards;
  const uint32_t mask = plane_->num_shards() - 1;
  if (mask >= 64) {
    return false;
  }
  // Each packet's shard and index key, and the set of the burst's shards.
  uint8_t shard_of[kBurst];
  uint32_t mixed[kBurst];
  uint64_t in_burst = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    const PacketCtx *c = Ctx(pkts[i]);
    if (c->status != static_cast<uint8_t>(ParseStatus::kOk)) {
      shard_of[i] = kNoShard;
      continue;
    }
    const uint32_t sid = c->hash & mask;
    shard_of[i] = static_cast<uint8_t>(sid);
    mixed[i] = dyssect::FlowTable::Mix(c->hash);
    in_burst |= 1ull << sid;
  }
  // Once per shard: ownership (before any read of its index), then ranking.
  Shard *shards[64];
  for (uint64_t b = in_burst; b != 0; b &= b - 1) {
    const uint32_t sid = static_cast<uint32_t>(__builtin_ctzll(b));
    shards[sid] = &set[sid];
    if (DYSSECT_UNLIKELY(!dyssect::Processes(shards[sid]->ownership(), slot_))) {
      return false;
    }
  }
  // The index slots the dispatcher prefetched have had the pass above to
  // arrive; their reads (independent of each other) overlap.
  for (uint32_t i = 0; i < cnt; i++) {
    if (shard_of[i] != kNoShard) {
      shards[shard_of[i]]->table.PrefetchFlow(mixed[i]);
    }
  }
  uint64_t shard_bytes[64];
  uint32_t shard_pkts[64];
  for (uint64_t b = in_burst; b != 0; b &= b - 1) {
    const uint32_t sid = static_cast<uint32_t>(__builtin_ctzll(b));
    PrepareOwnedShard(*shards[sid]);
    shard_pkts[sid] = 0;
    shard_bytes[sid] = 0;
  }
  for (uint32_t i = 0; i < cnt; i++) {
    const uint32_t sid = shard_of[i];
    if (sid == kNoShard) {
      PassNonFlow(ctx, pkts[i], batch, false);
      continue;
    }
    const uint32_t bytes = ClassifyOwnedPacket(ctx, pkts[i], *shards[sid], mixed[i], batch, false);
    shard_pkts[sid] += bytes != 0 ? 1 : 0;
    shard_bytes[sid] += bytes;
  }
  for (uint64_t b = in_burst; b != 0; b &= b - 1) {
    const uint32_t sid = static_cast<uint32_t>(__builtin_ctzll(b));
    if (shard_pkts[sid] != 0) {
      dyssect::CountShard(*shards[sid], shard_pkts[sid], shard_bytes[sid]);
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
  dyssect::ShardSet &set = plane_->shards;
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
  for (uint32_t s = 0; s < plane_->num_shards(); s++) {
    Shard &sh = set[s];
    const Ownership o = sh.ownership();
    if (o.phase == ShardPhase::kOwned) {
      continue;
    }
    if (plane_->hardware() && o.owner == slot_ && o.phase == ShardPhase::kMigrating &&
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
  if (now_ns_ - t0 < kStuckTakeOverNs || old_owner >= plane_->num_cores()) {
    return;
  }
  t0 = now_ns_;
  const uint32_t n = dyssect::DrainOrphanedRing(*plane_->wslots[old_owner].offl,
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
  const uint64_t t0 = rdtsc();  // busy time: see BusyClock
  now_ns_ = ctx->current_ns;
  if (!fences_.empty() ||
      plane_->shards.active_migrations.load(std::memory_order_acquire) != 0) {
    MigrationWork(ctx, batch);
  }

  // Expire idle flows of one shard at most every kExpireEveryNs (bounded
  // work, and no sweep of cold table memory on every batch).
  if (now_ns_ - last_expire_ns_ >= kExpireEveryNs) {
    last_expire_ns_ = now_ns_;
    const uint32_t s = expire_cursor_;
    expire_cursor_ = (expire_cursor_ + 1) & (plane_->num_shards() - 1);
    Shard &sh = plane_->shards[s];
    const Ownership o = sh.ownership();
    if (dyssect::Processes(o, slot_) && backlog_->Empty()) {
      dyssect::ExpireShard(sh, &plane_->nf, now_ns_,
                           plane_->idle_timeout_ns.load(std::memory_order_relaxed), 64);
    }
  }

  // A hand-off backlog goes first, one batch per call, and no new packet is
  // classified (batch id frozen) until it is empty: this keeps per-flow order.
  if (!backlog_->Empty()) {
    const uint32_t n = backlog_->DequeueBurst(batch->pkts(), burst_);
    batch->set_cnt(static_cast<int>(n));
    plane_->busy_clock[ctx->wid].Open(&ws_->busy, t0, n);
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
    if (plane_->shards.active_migrations.load(std::memory_order_acquire) != 0) {
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
  BusyClock &clock = plane_->busy_clock[ctx->wid];
  clock.Open(&ws_->busy, t0, cnt);
  if (batch->cnt() == 0) {
    clock.Close(rdtsc());  // all offloaded, buffered or dropped: no chain to wait for
  }
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
      !ws_->rx->Empty() || plane_->shards.active_migrations.load(std::memory_order_acquire) != 0) {
    return false;
  }
  now_ns_ = ctx->current_ns;
  // Not timed: several slots' bursts may share the dispatcher's task, and
  // their chains run after it in no fixed order (docs/dataplane.md).
  plane_->busy_clock[ctx->wid].Discard();
  batch_id_++;
  batch->clear();
  if (!ClassifyOwned(ctx, pkts, cnt, batch)) {
    Classify(ctx, pkts, cnt, batch, false);  // no fence: fences travel only in the ring
  }
  RunNextModule(ctx, batch);
  return true;
}

}  // namespace dyssect_bess

using dyssect_bess::DyssectWorkingCore;

ADD_MODULE(DyssectWorkingCore, "dyssect_w", "Dyssect working core")
