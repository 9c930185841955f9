// Egress: counts the packets leaving a Dyssect chain (packets_out) and ends
// the busy time of the batch (BusyClock).
#include "dyssect_plugin.h"

#include "manager_link.h"

namespace dyssect_bess {

const Commands DyssectEgress::cmds = {};

CommandResponse DyssectEgress::Init(const dyssect::pb::DyssectEgressArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return NoManager(mgr_name_);
  }
  plane_ = &mgr_->plane();
  mgr_->Register(&cnt_);
  return CommandSuccess();
}

void DyssectEgress::DeInit() {
  UnregisterFromManager(mgr_name_, mgr_, &cnt_);
}

void DyssectEgress::ProcessBatch(Context *ctx, bess::PacketBatch *batch) {
  CounterBlock::Bump(cnt_.out, static_cast<uint64_t>(batch->cnt()));
  // The end of the chain: the batch its working or offloading core opened.
  BusyClock &clock = plane_->busy_clock[ctx->wid];
  if (clock.to != nullptr) {
    clock.Close(rdtsc());
  }
  RunNextModule(ctx, batch);
}

}  // namespace dyssect_bess

using dyssect_bess::DyssectEgress;

ADD_MODULE(DyssectEgress, "dyssect_egress", "counts packets leaving a Dyssect chain")
