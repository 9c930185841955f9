// Software steering: the dispatcher parses and hashes each packet (the flow
// hash, flow_hash.h: CRC32C by default), steers it to its shard's working
// core (RX ring, or run to completion on its own worker) and places the
// fences of migrating shards.
#include "dyssect_plugin.h"

#include "manager_link.h"

namespace dyssect_bess {

using dyssect::Ownership;
using dyssect::ParseStatus;
using dyssect::ShardPhase;

const Commands DyssectDispatcher::cmds = {};

CommandResponse DyssectDispatcher::Init(const dyssect::pb::DyssectDispatcherArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return NoManager(mgr_name_);
  }
  plane_ = &mgr_->plane();
  if (plane_->hardware()) {
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
  steer_.resize(plane_->num_shards());
  for (uint32_t s = 0; s < plane_->num_shards(); s++) {
    steer_[s] = static_cast<uint16_t>(plane_->shards[s].ownership().owner);
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
  const uint64_t gen = plane_->plan_gen.load(std::memory_order_acquire);
  if (gen == seen_gen_ && !steering_pending_) {
    return;
  }
  seen_gen_ = gen;
  steering_pending_ = false;
  for (uint32_t s = 0; s < plane_->num_shards(); s++) {
    const Ownership o = plane_->shards[s].ownership();
    if (o.phase != ShardPhase::kMigrating || o.pending == dyssect::kNoCore16 ||
        steer_[s] == o.pending) {
      continue;
    }
    if (plane_->wslots[steer_[s]].rx->Enqueue(MakeFence(s))) {
      steer_[s] = static_cast<uint16_t>(o.pending);
    } else {
      steering_pending_ = true;  // old owner's queue full: retry on the next call
    }
  }
}

// Parses and hashes each packet, writes the result into its scratchpad (the
// working core does not parse again) and picks its working slot. Packets
// kept go to keep[], their slots to slot_of[], the set of slots to *slots.
// The hash is a template argument: chosen once per batch, not per packet.
template <dyssect::HashKind kKind>
uint32_t DyssectDispatcher::Steer(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                  bess::Packet **keep, uint16_t *slot_of, uint64_t *slots,
                                  uint64_t *non_flow_drops) {
  const uint32_t mask = plane_->num_shards() - 1;
  // Locals: the scratchpad stores below may alias anything, so members read
  // through `this` would be reloaded for every packet.
  const dyssect::ToeplitzLow16 &toeplitz = plane_->shard_hasher();
  dyssect::ShardSet &set = plane_->shards;
  const uint16_t *steer = steer_.data();
  const bool drop_non_flow = plane_->drop_non_flow();
  uint64_t used = 0;
  uint64_t drops = 0;
  uint32_t n = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    bess::Packet *pkt = pkts[i];
    PacketCtx *c = Ctx(pkt);
    const ParseStatus st =
        dyssect::ParsePacket(pkt->head_data<const uint8_t *>(), pkt->head_len(), &c->pp);
    uint32_t h = 0;  // packets without a flow go with shard 0
    if (DYSSECT_LIKELY(st == ParseStatus::kOk)) {
      h = kKind == dyssect::HashKind::kCrc32c ? dyssect::FlowHashCrc32c(c->pp.key)
                                              : toeplitz.HashFlow(c->pp.key);
      // The working core reads this index slot next (a prefetch is only a
      // hint: any thread may issue it), a whole batch later.
      set[h & mask].table.PrefetchIndex(dyssect::FlowTable::Mix(h));
    } else if (drop_non_flow) {
      drops++;
      DropPacket(ctx, pkt);
      continue;
    }
    c->status = static_cast<uint8_t>(st);
    c->hash = h;
    c->magic = kCtxParsed;
    const uint16_t slot = steer[h & mask];
    used |= 1ull << slot;
    keep[n] = pkt;
    slot_of[n++] = slot;
  }
  *slots = used;
  *non_flow_drops = drops;
  return n;
}

void DyssectDispatcher::Dispatch(Context *ctx, bess::Packet **pkts, uint32_t cnt,
                                 bess::PacketBatch *spare) {
  CounterBlock::Bump(cnt_.in, cnt);
  bess::Packet *keep[bess::PacketBatch::kMaxBurst];
  uint16_t slot_of[bess::PacketBatch::kMaxBurst];
  static_assert(Worker::kMaxWorkers <= 64, "slot bitmask is 64 bits");
  uint64_t slots = 0;  // working slots this batch goes to
  uint64_t non_flow_drops = 0;
  const uint32_t n =
      plane_->hash_kind() == dyssect::HashKind::kCrc32c
          ? Steer<dyssect::HashKind::kCrc32c>(ctx, pkts, cnt, keep, slot_of, &slots,
                                              &non_flow_drops)
          : Steer<dyssect::HashKind::kToeplitz>(ctx, pkts, cnt, keep, slot_of, &slots,
                                                &non_flow_drops);
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
      DyssectWorkingCore *wc = plane_->wslots[w].module.load(std::memory_order_acquire);
      if (wc != nullptr && wc->RunToCompletion(ctx, out, m, spare)) {
        spare_free = false;
        inline_pkts += m;
        continue;
      }
    }
    const uint32_t k = plane_->wslots[w].rx->EnqueueBurst(out, m);
    CounterBlock::Bump(plane_->wslots[w].rx_enq, k);
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

}  // namespace dyssect_bess

using dyssect_bess::DyssectDispatcher;

ADD_MODULE(DyssectDispatcher, "dyssect_dispatch",
           "Dyssect software steering (CRC32C or Toeplitz) to working cores")
