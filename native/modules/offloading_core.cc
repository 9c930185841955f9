// Offloading core: drains the offload rings it consumes and runs the chain.
#include "dyssect_plugin.h"

#include <algorithm>

#include "manager_link.h"

namespace dyssect_bess {

const Commands DyssectOffloadingCore::cmds = {};

// A mark must fit in the first segment of the largest frame.
static constexpr uint32_t kMaxClassMarkOffset = 9000;

CommandResponse DyssectOffloadingCore::Init(const dyssect::pb::DyssectOffloadingCoreArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return NoManager(mgr_name_);
  }
  plane_ = &mgr_->plane();
  slot_ = arg.slot();
  if (slot_ >= plane_->num_cores()) {
    return CommandFailure(EINVAL, "slot %u out of range (%u cores)", slot_, plane_->num_cores());
  }
  if (plane_->oslots[slot_].has_module.exchange(true)) {
    return CommandFailure(EEXIST, "offloading slot %u already has a module", slot_);
  }
  if (arg.burst()) {
    burst_ = std::min<uint32_t>(arg.burst(), bess::PacketBatch::kMaxBurst);
  }
  if (arg.has_class_mark_offset()) {
    if (arg.class_mark_offset() > kMaxClassMarkOffset) {
      return CommandFailure(EINVAL, "class_mark_offset must be <= %u", kMaxClassMarkOffset);
    }
    class_mark_ = static_cast<int32_t>(arg.class_mark_offset());
  }
  if (RegisterTask(nullptr) == INVALID_TASK_ID) {
    return CommandFailure(ENOMEM, "task creation failed");
  }
  return CommandSuccess();
}

void DyssectOffloadingCore::DeInit() {
  if (DyssectShardManager *m = DyssectShardManager::Find(mgr_name_)) {
    if (m == mgr_) {
      plane_->oslots[slot_].has_module = false;
    }
  }
}

std::string DyssectOffloadingCore::GetDesc() const {
  if (class_mark_ < 0) {
    return "slot " + std::to_string(slot_);
  }
  return "slot " + std::to_string(slot_) + ", class mark at " + std::to_string(class_mark_) +
         ", " + std::to_string(too_short_.load(std::memory_order_relaxed)) + " too short";
}

// Class "offloaded" for a receiver that splits on this byte; a packet too short to hold it
// goes on unmarked and is counted.
void DyssectOffloadingCore::MarkClass(bess::PacketBatch *batch) {
  const uint32_t off = static_cast<uint32_t>(class_mark_);
  uint64_t short_n = 0;
  for (int i = 0; i < batch->cnt(); i++) {
    bess::Packet *pkt = batch->pkts()[i];
    if (static_cast<uint32_t>(pkt->head_len()) > off) {
      pkt->head_data<uint8_t *>()[off] = 1;
    } else {
      short_n++;
    }
  }
  if (short_n != 0) {
    too_short_.store(too_short_.load(std::memory_order_relaxed) + short_n,
                     std::memory_order_relaxed);
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
  const uint64_t t0 = rdtsc();  // busy time: see BusyClock
  Complete();
  const uint32_t m = plane_->num_cores();
  uint32_t got = 0;
  // Visit every ring (a pending hand-off away from this core happens at a
  // visit), dequeue from the first one with packets, round robin.
  for (uint32_t k = 0; k < m; k++) {
    uint32_t w = next_ring_ + k;
    if (w >= m) {
      w -= m;
    }
    dyssect::OffloadRing *ring = plane_->wslots[w].offl.get();
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
  if (class_mark_ >= 0) {
    MarkClass(batch);
  }
  plane_->busy_clock[ctx->wid].Open(&plane_->oslots[slot_].busy, t0, got);
  RunNextModule(ctx, batch);
  return {.block = false, .packets = got, .bits = 0};
}

}  // namespace dyssect_bess

using dyssect_bess::DyssectOffloadingCore;

ADD_MODULE(DyssectOffloadingCore, "dyssect_o", "Dyssect offloading core")
