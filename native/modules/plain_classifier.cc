// Benchmark baseline: parse and one flow-table lookup, none of the Dyssect
// bookkeeping.
#include "dyssect_plugin.h"

#include "manager_link.h"

namespace dyssect_bess {

using dyssect::ParseStatus;

const Commands DyssectPlainClassifier::cmds = {};

CommandResponse DyssectPlainClassifier::Init(const dyssect::pb::DyssectPlainClassifierArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return NoManager(mgr_name_);
  }
  plane_ = &mgr_->plane();
  table_.reset(new dyssect::FlowTable(plane_->num_shards() * plane_->flow_capacity()));
  return CommandSuccess();
}

// Same hash (CRC32C of the key) and lookup technique as the working core
// (batch prefetch of index slots and entries), so the baseline is not slowed
// by a slower hash or a naive lookup.
void DyssectPlainClassifier::ProcessBatch(Context *ctx, bess::PacketBatch *batch) {
  const int cnt = batch->cnt();
  uint32_t h[bess::PacketBatch::kMaxBurst];
  uint32_t mixed[bess::PacketBatch::kMaxBurst];
  for (int i = 0; i < cnt; i++) {
    bess::Packet *pkt = batch->pkts()[i];
    PacketCtx *c = Ctx(pkt);
    c->magic = kCtxMagic;
    c->flow = nullptr;
    const ParseStatus st =
        dyssect::ParsePacket(pkt->head_data<const uint8_t *>(), pkt->head_len(), &c->pp);
    c->status = static_cast<uint8_t>(st);
    if (st == ParseStatus::kOk) {
      h[i] = dyssect::FlowHashCrc32c(c->pp.key);
      mixed[i] = dyssect::FlowTable::Mix(h[i]);
      table_->PrefetchIndex(mixed[i]);
    }
  }
  for (int i = 0; i < cnt; i++) {
    if (Ctx(batch->pkts()[i])->status == static_cast<uint8_t>(ParseStatus::kOk)) {
      table_->PrefetchEntry(mixed[i]);
    }
  }
  for (int i = 0; i < cnt; i++) {
    PacketCtx *c = Ctx(batch->pkts()[i]);
    if (c->status == static_cast<uint8_t>(ParseStatus::kOk)) {
      bool inserted;
      c->flow = table_->FindOrInsertMixed(c->pp.key, h[i], mixed[i], ctx->current_ns, &inserted);
    }
  }
  RunNextModule(ctx, batch);
}

}  // namespace dyssect_bess

using dyssect_bess::DyssectPlainClassifier;

ADD_MODULE(DyssectPlainClassifier, "dyssect_plain",
           "benchmark baseline: flow lookup without Dyssect bookkeeping")
