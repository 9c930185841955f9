// DyssectTrafficDelay: holds each packet until its send time + delay_ns. The
// send time is BESS Timestamp's stamp (marker + ns), so the latency Measure
// reports downstream is delay_ns plus only what comes after this module: a
// known added delay to test the measurement against. A task on the worker of
// its input (no spinning, no second worker); a test aid, not a link emulator.
#include <cstring>
#include <memory>

#include "module.h"
#include "packet.h"
#include "pb/traffic_msg.pb.h"
#include "utils/time.h"

namespace dyssect_bess {

class DyssectTrafficDelay final : public Module {
 public:
  static const gate_idx_t kNumIGates = 1;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  static constexpr uint32_t kMarker = 0x54C5BE55;  // BESS Timestamp::kMarker
  static constexpr uint32_t kCapacity = 16384;     // packets held at once

  DyssectTrafficDelay() : Module() { is_task_ = true; }

  CommandResponse Init(const dyssect::pb::DyssectTrafficDelayArg &arg) {
    if (RegisterTask(nullptr) == INVALID_TASK_ID) {
      return CommandFailure(ENOMEM, "task creation failed");
    }
    delay_ns_ = arg.delay_ns();
    if (delay_ns_ > 1000000000ull) {
      return CommandFailure(EINVAL, "delay_ns must be <= 1 s");
    }
    off_ = arg.offset() ? arg.offset() : 62;
    ring_.reset(new Held[kCapacity]);
    return CommandSuccess();
  }

  CommandResponse CommandGet(const dyssect::pb::DyssectTrafficDelayCommandGetArg &) {
    dyssect::pb::DyssectTrafficDelayCommandGetResponse r;
    r.set_held(held_.load(std::memory_order_relaxed));
    r.set_unstamped(unstamped_.load(std::memory_order_relaxed));
    r.set_dropped(dropped_.load(std::memory_order_relaxed));
    return CommandSuccess(r);
  }

  // Same worker only: ProcessBatch and RunTask share the ring without locks.
  void ProcessBatch(Context *ctx, bess::PacketBatch *batch) override {
    const int cnt = batch->cnt();
    uint64_t held = 0, unstamped = 0, dropped = 0;
    for (int i = 0; i < cnt; i++) {
      bess::Packet *pkt = batch->pkts()[i];
      if (tail_ - head_ == kCapacity) {
        DropPacket(ctx, pkt);
        dropped++;
        continue;
      }
      uint32_t marker = 0;
      uint64_t sent_ns = 0;
      if (static_cast<uint32_t>(pkt->head_len()) >= off_ + 12) {
        const uint8_t *d = pkt->head_data<const uint8_t *>();
        memcpy(&marker, d + off_, 4);
        memcpy(&sent_ns, d + off_ + 4, 8);
      }
      uint64_t due = 0;  // unstamped: passed on with the next release
      if (marker == kMarker) {
        due = sent_ns + delay_ns_;
        held++;
      } else {
        unstamped++;
      }
      ring_[tail_ % kCapacity] = {pkt, due};
      tail_++;
    }
    Bump(held_, held);
    Bump(unstamped_, unstamped);
    Bump(dropped_, dropped);
  }

  // Releases the packets that are due, in arrival order (one delay: due times never go back).
  struct task_result RunTask(Context *ctx, bess::PacketBatch *batch, void *) override {
    if (head_ == tail_) {
      return {.block = true, .packets = 0, .bits = 0};
    }
    const uint64_t now = tsc_to_ns(rdtsc());
    uint32_t cnt = 0;
    uint64_t bytes = 0;
    batch->clear();
    while (head_ != tail_ && cnt < bess::PacketBatch::kMaxBurst) {
      const Held &h = ring_[head_ % kCapacity];
      if (h.due > now) {
        break;
      }
      batch->add(h.pkt);
      bytes += h.pkt->total_len();
      head_++;
      cnt++;
    }
    if (cnt == 0) {
      return {.block = true, .packets = 0, .bits = 0};
    }
    RunNextModule(ctx, batch);
    return {.block = false, .packets = cnt, .bits = (bytes + 24 * cnt) * 8};
  }

 private:
  struct Held {
    bess::Packet *pkt;
    uint64_t due;
  };

  static void Bump(std::atomic<uint64_t> &c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  uint64_t delay_ns_ = 0;
  uint32_t off_ = 62;
  std::unique_ptr<Held[]> ring_;
  uint64_t head_ = 0;
  uint64_t tail_ = 0;
  std::atomic<uint64_t> held_{0};
  std::atomic<uint64_t> unstamped_{0};
  std::atomic<uint64_t> dropped_{0};
};

const Commands DyssectTrafficDelay::cmds = {
    {"get", "DyssectTrafficDelayCommandGetArg",
     MODULE_CMD_FUNC(&DyssectTrafficDelay::CommandGet), Command::THREAD_SAFE},
};

}  // namespace dyssect_bess

using dyssect_bess::DyssectTrafficDelay;

ADD_MODULE(DyssectTrafficDelay, "dyssect_trafficdelay",
           "test aid: holds each stamped packet until its send time + delay")
