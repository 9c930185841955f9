// Test and benchmark aids for the Dyssect plugin (not part of a production
// chain): DyssectSeqGen stamps per-flow sequence numbers into packets and
// DyssectSeqCheck verifies them after the chain, so loss and reordering can be
// measured at line rate inside bessd (a Python capture could not keep up).
//
// Stamp: 4-byte flow id then 4-byte sequence number (host order) at
// seq_offset, which must lie in the payload (default 42 = Ethernet + IPv4 +
// UDP headers). The generator also sets the L4 source port to base_port +
// flow id and the UDP checksum to 0 (no checksum), so each stamp is valid.
#include <cstring>
#include <memory>

#include "module.h"
#include "packet.h"
#include "pb/dyssect_msg.pb.h"

namespace dyssect_bess {

class DyssectSeqGen final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectSeqGenArg &arg) {
    flows_ = arg.flows() ? arg.flows() : 64;
    base_port_ = arg.base_port() ? arg.base_port() : 10000;
    off_ = arg.seq_offset() ? arg.seq_offset() : 42;
    if (base_port_ + flows_ > 65536) {
      return CommandFailure(EINVAL, "base_port + flows must be <= 65536");
    }
    seq_.reset(new uint32_t[flows_]());
    random_ = arg.random_order();
    return CommandSuccess();
  }

  CommandResponse CommandGet(const dyssect::pb::DyssectSeqGenCommandGetArg &) {
    dyssect::pb::DyssectSeqGenCommandGetResponse r;
    r.set_sent(sent_.load(std::memory_order_relaxed));
    return CommandSuccess(r);
  }

  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override {
    const int cnt = batch->cnt();
    for (int i = 0; i < cnt; i++) {
      bess::Packet *pkt = batch->pkts()[i];
      uint8_t *d = pkt->head_data<uint8_t *>();
      if (static_cast<uint32_t>(pkt->head_len()) < off_ + 8 || pkt->head_len() < 42) {
        DropPacket(ctx, pkt);
        continue;
      }
      uint32_t f;
      if (random_) {
        rng_ ^= rng_ << 13;  // xorshift64
        rng_ ^= rng_ >> 7;
        rng_ ^= rng_ << 17;
        f = static_cast<uint32_t>(((rng_ >> 32) * flows_) >> 32);
      } else {
        f = next_;
        next_ = next_ + 1 == flows_ ? 0 : next_ + 1;
      }
      const uint16_t port = static_cast<uint16_t>(base_port_ + f);
      d[34] = static_cast<uint8_t>(port >> 8);  // L4 source port (IHL 5)
      d[35] = static_cast<uint8_t>(port);
      if (d[23] == 17) {  // UDP: no checksum
        d[40] = 0;
        d[41] = 0;
      }
      const uint32_t seq = ++seq_[f];
      memcpy(d + off_, &f, 4);
      memcpy(d + off_ + 4, &seq, 4);
    }
    sent_.store(sent_.load(std::memory_order_relaxed) + cnt, std::memory_order_relaxed);
    RunNextModule(ctx, batch);
  }

 private:
  uint32_t flows_ = 64;
  uint32_t base_port_ = 10000;
  uint32_t off_ = 42;
  uint32_t next_ = 0;
  bool random_ = false;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
  std::unique_ptr<uint32_t[]> seq_;
  std::atomic<uint64_t> sent_{0};
};

const Commands DyssectSeqGen::cmds = {
    {"get", "DyssectSeqGenCommandGetArg", MODULE_CMD_FUNC(&DyssectSeqGen::CommandGet),
     Command::THREAD_SAFE},
};

class DyssectSeqCheck final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  CommandResponse Init(const dyssect::pb::DyssectSeqCheckArg &arg) {
    flows_ = arg.flows() ? arg.flows() : 64;
    off_ = arg.seq_offset() ? arg.seq_offset() : 42;
    last_.reset(new uint32_t[flows_]());
    return CommandSuccess();
  }

  CommandResponse CommandGet(const dyssect::pb::DyssectSeqCheckCommandGetArg &) {
    dyssect::pb::DyssectSeqCheckCommandGetResponse r;
    r.set_received(received_.load(std::memory_order_relaxed));
    r.set_reordered(reordered_.load(std::memory_order_relaxed));
    r.set_gaps(gaps_.load(std::memory_order_relaxed));
    r.set_bad(bad_.load(std::memory_order_relaxed));
    return CommandSuccess(r);
  }

  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override {
    const int cnt = batch->cnt();
    uint64_t reordered = 0, gaps = 0, bad = 0;
    for (int i = 0; i < cnt; i++) {
      bess::Packet *pkt = batch->pkts()[i];
      if (static_cast<uint32_t>(pkt->head_len()) < off_ + 8) {
        bad++;
        continue;
      }
      const uint8_t *d = pkt->head_data<const uint8_t *>();
      uint32_t f, seq;
      memcpy(&f, d + off_, 4);
      memcpy(&seq, d + off_ + 4, 4);
      if (f >= flows_) {
        bad++;
        continue;
      }
      if (seq <= last_[f]) {
        reordered++;
      } else {
        gaps += seq - last_[f] - 1;
        last_[f] = seq;
      }
    }
    Bump(received_, static_cast<uint64_t>(cnt));
    Bump(reordered_, reordered);
    Bump(gaps_, gaps);
    Bump(bad_, bad);
    RunNextModule(ctx, batch);
  }

 private:
  static void Bump(std::atomic<uint64_t> &c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint32_t flows_ = 64;
  uint32_t off_ = 42;
  std::unique_ptr<uint32_t[]> last_;
  std::atomic<uint64_t> received_{0};
  std::atomic<uint64_t> reordered_{0};
  std::atomic<uint64_t> gaps_{0};
  std::atomic<uint64_t> bad_{0};
};

const Commands DyssectSeqCheck::cmds = {
    {"get", "DyssectSeqCheckCommandGetArg", MODULE_CMD_FUNC(&DyssectSeqCheck::CommandGet),
     Command::THREAD_SAFE},
};

}  // namespace dyssect_bess

using dyssect_bess::DyssectSeqCheck;
using dyssect_bess::DyssectSeqGen;

ADD_MODULE(DyssectSeqGen, "dyssect_seqgen", "test aid: per-flow sequence stamps")
ADD_MODULE(DyssectSeqCheck, "dyssect_seqcheck", "test aid: checks per-flow sequence stamps")
