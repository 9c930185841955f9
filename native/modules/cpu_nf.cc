// A CPU-bound NF with a cost per byte (logic in dyssect/cpu_nf.h).
#include "dyssect_plugin.h"

namespace dyssect_bess {

using dyssect::ParseStatus;

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

}  // namespace dyssect_bess

using dyssect_bess::DyssectCpuNF;

ADD_MODULE(DyssectCpuNF, "dyssect_cpu", "Dyssect CPU-bound NF (cost per byte)")
