// Source NAT over the NF state API (logic in dyssect/nat.h).
#include "dyssect_plugin.h"

#include <cstdio>

#include "manager_link.h"

namespace dyssect_bess {

using dyssect::ParseStatus;

const Commands DyssectNAT::cmds = {};

CommandResponse DyssectNAT::Init(const dyssect::pb::DyssectNATArg &arg) {
  mgr_ = FindManager(arg, &mgr_name_);
  if (mgr_ == nullptr) {
    return NoManager(mgr_name_);
  }
  plane_ = &mgr_->plane();
  std::vector<uint32_t> addrs;
  // Not bess::utils::ParseIpv4Address: it accepts trailing characters
  // ("198.51.100.1x"), which this rejects.
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
  if (!nat_.Init(&plane_->nf, pool, "nat", plane_->num_shards() * plane_->flow_capacity())) {
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

}  // namespace dyssect_bess

using dyssect_bess::DyssectNAT;

ADD_MODULE(DyssectNAT, "dyssect_nat", "Dyssect source NAT (shared port pool)")
