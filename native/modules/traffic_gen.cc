// DyssectTrafficGen: a task that makes IPv4 UDP/TCP packets from a profile.
//
// What BESS's Source and FlowGen lack: flow popularity with Zipf skew, a hot
// set that moves to other flows (so to other shards), flow churn, a TCP/UDP
// mix, a size mix, a per-flow sequence stamp for loss and reordering at the
// receiver, and a seed that fixes the packet sequence. Rate comes from the
// traffic class the task is attached to (rate_limit, update_tc_params), and
// the send timestamp from BESS's Timestamp module placed after this one.
//
// Every decision is drawn from one xorshift64* stream seeded by `seed` and
// every move (hot-set shift, churn) is counted in packets, so the packets
// depend on the seed and the profile only, never on timing.
//
// Frame: Ethernet, IPv4 (20 bytes, checksum set), UDP (checksum 0: none) or
// TCP (ACK, checksum 0: the stamps are written after it). At stamp_offset:
// 4-byte flow slot, 4-byte per-slot sequence number (host order, the layout
// DyssectSeqCheck reads); the rest of the payload is zero.
#include <cmath>
#include <cstring>
#include <memory>

#include "module.h"
#include "packet.h"
#include "packet_pool.h"
#include "pb/traffic_msg.pb.h"
#include "worker.h"

namespace dyssect_bess {

namespace {

constexpr uint32_t kMaxFlows = 1u << 20;
constexpr uint32_t kMaxSizes = 16;
constexpr uint32_t kMinFrame = 60;
constexpr uint32_t kMaxFrame = 1514;
constexpr uint32_t kL4End = 54;  // Ethernet + IPv4 + TCP headers

inline uint64_t SplitMix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline void Put16(uint8_t *p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

inline void Put32(uint8_t *p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}

inline uint16_t Ipv4Checksum(const uint8_t *h) {
  uint32_t s = 0;
  for (int i = 0; i < 20; i += 2) {
    s += (static_cast<uint32_t>(h[i]) << 8) | h[i + 1];
  }
  while (s >> 16) {
    s = (s & 0xFFFF) + (s >> 16);
  }
  return static_cast<uint16_t>(~s);
}

}  // namespace

class DyssectTrafficGen final : public Module {
 public:
  static const gate_idx_t kNumIGates = 0;
  static const gate_idx_t kNumOGates = 1;
  static const Commands cmds;

  DyssectTrafficGen() : Module() { is_task_ = true; }

  CommandResponse Init(const dyssect::pb::DyssectTrafficGenArg &arg) {
    if (RegisterTask(nullptr) == INVALID_TASK_ID) {
      return CommandFailure(ENOMEM, "task creation failed");
    }
    flows_ = arg.flows() ? arg.flows() : 64;
    if (flows_ > kMaxFlows) {
      return CommandFailure(EINVAL, "flows must be <= %u", kMaxFlows);
    }
    const double alpha = arg.zipf_alpha();
    if (!(alpha >= 0.0) || alpha > 10.0) {
      return CommandFailure(EINVAL, "zipf_alpha must be in [0, 10]");
    }
    const double tcp = arg.tcp_fraction();
    if (!(tcp >= 0.0) || tcp > 1.0) {
      return CommandFailure(EINVAL, "tcp_fraction must be in [0, 1]");
    }
    tcp_cut_ = static_cast<uint32_t>(std::min(tcp * 65536.0, 65536.0));
    off_ = arg.stamp_offset() ? arg.stamp_offset() : kL4End;
    if (off_ < kL4End) {
      return CommandFailure(EINVAL, "stamp_offset must be >= %u (after any L4 header)", kL4End);
    }
    if (arg.sizes_size() > static_cast<int>(kMaxSizes)) {
      return CommandFailure(EINVAL, "at most %u sizes", kMaxSizes);
    }
    if (arg.size_weights_size() && arg.size_weights_size() != arg.sizes_size()) {
      return CommandFailure(EINVAL, "size_weights must have one weight per size");
    }
    n_sizes_ = arg.sizes_size() ? arg.sizes_size() : 1;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n_sizes_; i++) {
      const uint32_t sz = arg.sizes_size() ? arg.sizes(i) : 128;
      if (sz < kMinFrame || sz > kMaxFrame || sz < off_ + 8) {
        return CommandFailure(EINVAL, "size %u outside [max(%u, stamp_offset + 8), %u]", sz,
                              kMinFrame, kMaxFrame);
      }
      const uint32_t w = arg.size_weights_size() ? arg.size_weights(i) : 1;
      total += w;
      sizes_[i] = sz;
      size_cum_[i] = total;
    }
    if (total == 0) {
      return CommandFailure(EINVAL, "size_weights must not all be zero");
    }
    size_total_ = total;
    if (!arg.eth_dst().empty() && arg.eth_dst().size() != 6) {
      return CommandFailure(EINVAL, "eth_dst must be 6 bytes");
    }
    if (!arg.eth_src().empty() && arg.eth_src().size() != 6) {
      return CommandFailure(EINVAL, "eth_src must be 6 bytes");
    }
    static const uint8_t kDst[6] = {2, 0, 0, 0, 0, 2};
    static const uint8_t kSrc[6] = {2, 0, 0, 0, 0, 1};
    memcpy(eth_, arg.eth_dst().empty() ? kDst : reinterpret_cast<const uint8_t *>(arg.eth_dst().data()), 6);
    memcpy(eth_ + 6, arg.eth_src().empty() ? kSrc : reinterpret_cast<const uint8_t *>(arg.eth_src().data()), 6);
    src_base_ = arg.src_ip_base() ? arg.src_ip_base() : 0x0A000000u;  // 10.0.0.0
    dst_base_ = arg.dst_ip_base() ? arg.dst_ip_base() : 0xC6120000u;  // 198.18.0.0
    burst_ = arg.burst() ? arg.burst() : 32;
    if (burst_ > bess::PacketBatch::kMaxBurst) {
      return CommandFailure(EINVAL, "burst must be <= %zu", bess::PacketBatch::kMaxBurst);
    }
    limit_ = arg.packets();
    shift_every_ = arg.shift_every_packets();
    shift_stride_ = arg.shift_stride() ? arg.shift_stride() % flows_ : flows_ / 2;
    churn_every_ = arg.churn_every_packets();
    seed_ = arg.seed();
    rng_ = SplitMix(seed_) | 1;  // xorshift state must not be 0

    seq_.reset(new uint32_t[flows_]());
    gen_.reset(new uint32_t[flows_]());
    // Popularity CDF over ranks, scaled to 2^32 so a draw is one integer compare per step.
    cdf_.reset(new uint64_t[flows_]);
    double sum = 0.0;
    for (uint32_t k = 0; k < flows_; k++) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), alpha);
    }
    double acc = 0.0;
    for (uint32_t k = 0; k < flows_; k++) {
      acc += 1.0 / std::pow(static_cast<double>(k + 1), alpha);
      cdf_[k] = static_cast<uint64_t>(acc / sum * 4294967296.0);
    }
    cdf_[flows_ - 1] = 1ull << 32;
    return CommandSuccess();
  }

  // Thread safe: the control thread only posts values; the task applies them
  // between two batches, so a running generator never sees a half update.
  CommandResponse CommandSet(const dyssect::pb::DyssectTrafficGenCommandSetArg &arg) {
    posted_shift_.store(arg.shift_every_packets(), std::memory_order_relaxed);
    posted_churn_.store(arg.churn_every_packets(), std::memory_order_relaxed);
    posted_.fetch_add(1, std::memory_order_release);
    return CommandSuccess();
  }

  CommandResponse CommandStop(const dyssect::pb::DyssectTrafficGenCommandStopArg &) {
    stopped_.store(true, std::memory_order_release);
    return CommandSuccess();
  }

  CommandResponse CommandGet(const dyssect::pb::DyssectTrafficGenCommandGetArg &) {
    dyssect::pb::DyssectTrafficGenCommandGetResponse r;
    r.set_sent(sent_.load(std::memory_order_relaxed));
    r.set_bytes(bytes_.load(std::memory_order_relaxed));
    r.set_tcp(tcp_.load(std::memory_order_relaxed));
    r.set_new_flows(new_flows_.load(std::memory_order_relaxed));
    r.set_shifts(shifts_.load(std::memory_order_relaxed));
    r.set_alloc_failed(alloc_failed_.load(std::memory_order_relaxed));
    return CommandSuccess(r);
  }

  struct task_result RunTask(Context *ctx, bess::PacketBatch *batch, void *) override {
    if (stopped_.load(std::memory_order_acquire) || children_overload() > 0) {
      return {.block = true, .packets = 0, .bits = 0};
    }
    const uint64_t posted = posted_.load(std::memory_order_acquire);
    if (posted != applied_) {
      applied_ = posted;
      shift_every_ = posted_shift_.load(std::memory_order_relaxed);
      churn_every_ = posted_churn_.load(std::memory_order_relaxed);
      since_shift_ = 0;
      since_churn_ = 0;
    }
    const uint64_t sent = sent_.load(std::memory_order_relaxed);
    uint32_t cnt = burst_;
    if (limit_) {
      if (sent >= limit_) {
        return {.block = true, .packets = 0, .bits = 0};
      }
      cnt = static_cast<uint32_t>(std::min<uint64_t>(cnt, limit_ - sent));
    }
    if (!current_worker.packet_pool()->AllocBulk(batch->pkts(), cnt, kMinFrame)) {
      Bump(alloc_failed_, 1);
      return {.block = true, .packets = 0, .bits = 0};
    }
    batch->set_cnt(cnt);
    uint64_t bytes = 0, tcp = 0;
    for (uint32_t i = 0; i < cnt; i++) {
      const uint32_t len = Fill(batch->pkts()[i], &tcp);
      bytes += len;
    }
    Bump(sent_, cnt);
    Bump(bytes_, bytes);
    Bump(tcp_, tcp);
    RunNextModule(ctx, batch);
    return {.block = false, .packets = cnt, .bits = (bytes + 24 * cnt) * 8};
  }

 private:
  static void Bump(std::atomic<uint64_t> &c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  uint64_t Next() {  // xorshift64*
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1Dull;
  }

  uint32_t DrawRank(uint32_t u) const {
    uint32_t lo = 0, hi = flows_ - 1;
    while (lo < hi) {  // first rank whose cdf exceeds u
      const uint32_t mid = (lo + hi) / 2;
      if (cdf_[mid] > u) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return lo;
  }

  uint32_t DrawSize(uint32_t u) const {
    const uint64_t x = (static_cast<uint64_t>(u) * size_total_) >> 32;
    for (uint32_t i = 0; i + 1 < n_sizes_; i++) {
      if (x < size_cum_[i]) {
        return sizes_[i];
      }
    }
    return sizes_[n_sizes_ - 1];
  }

  void Advance() {
    if (shift_every_ && ++since_shift_ >= shift_every_) {
      since_shift_ = 0;
      hot_ = (hot_ + shift_stride_) % flows_;
      Bump(shifts_, 1);
    }
    if (churn_every_ && ++since_churn_ >= churn_every_) {
      since_churn_ = 0;
      gen_[churn_next_]++;
      churn_next_ = churn_next_ + 1 == flows_ ? 0 : churn_next_ + 1;
      Bump(new_flows_, 1);
    }
  }

  // Writes one packet; returns its length.
  uint32_t Fill(bess::Packet *pkt, uint64_t *tcp) {
    const uint64_t r = Next();
    const uint32_t rank = DrawRank(static_cast<uint32_t>(r >> 32));
    const uint32_t len = DrawSize(static_cast<uint32_t>(r));
    const uint32_t slot = static_cast<uint32_t>((rank + hot_) % flows_);
    // The flow's identity: its slot and how many times churn replaced it.
    const uint64_t h = SplitMix(seed_ ^ (static_cast<uint64_t>(slot) << 32) ^ gen_[slot]);
    const bool is_tcp = static_cast<uint32_t>(h >> 48) < tcp_cut_;
    const uint32_t seq = ++seq_[slot];
    Advance();

    pkt->set_data_len(static_cast<uint16_t>(len));
    pkt->set_total_len(len);
    uint8_t *d = pkt->head_data<uint8_t *>();
    memcpy(d, eth_, 12);
    d[12] = 0x08;
    d[13] = 0x00;
    uint8_t *ip = d + 14;
    ip[0] = 0x45;
    ip[1] = 0;
    Put16(ip + 2, static_cast<uint16_t>(len - 14));
    Put16(ip + 4, static_cast<uint16_t>(seq));
    Put16(ip + 6, 0);
    ip[8] = 64;
    ip[9] = is_tcp ? 6 : 17;
    Put16(ip + 10, 0);
    Put32(ip + 12, src_base_ | static_cast<uint32_t>(h & 0xFFFF));
    Put32(ip + 16, dst_base_ | static_cast<uint32_t>((h >> 16) & 0xFFFF));
    Put16(ip + 10, Ipv4Checksum(ip));
    uint8_t *l4 = ip + 20;
    Put16(l4, static_cast<uint16_t>(1024 + ((h >> 32) % 64512)));
    Put16(l4 + 2, static_cast<uint16_t>(1024 + (SplitMix(h) % 64512)));
    if (is_tcp) {
      Put32(l4 + 4, seq);
      Put32(l4 + 8, 0);
      l4[12] = 5 << 4;
      l4[13] = 0x10;  // ACK
      Put16(l4 + 14, 8192);
      Put16(l4 + 16, 0);
      Put16(l4 + 18, 0);
      (*tcp)++;
    } else {
      Put16(l4 + 4, static_cast<uint16_t>(len - 34));
      Put16(l4 + 6, 0);
      memset(l4 + 8, 0, 12);  // up to kL4End
    }
    memset(d + kL4End, 0, off_ - kL4End);
    memcpy(d + off_, &slot, 4);
    memcpy(d + off_ + 4, &seq, 4);
    memset(d + off_ + 8, 0, len - off_ - 8);
    return len;
  }

  uint32_t flows_ = 64;
  uint32_t tcp_cut_ = 0;
  uint32_t off_ = kL4End;
  uint32_t n_sizes_ = 1;
  uint32_t sizes_[kMaxSizes] = {};
  uint64_t size_cum_[kMaxSizes] = {};
  uint64_t size_total_ = 1;
  uint8_t eth_[12] = {};
  uint32_t src_base_ = 0;
  uint32_t dst_base_ = 0;
  uint32_t burst_ = 32;
  uint64_t limit_ = 0;
  uint64_t shift_every_ = 0;
  uint32_t shift_stride_ = 0;
  uint64_t churn_every_ = 0;
  uint64_t seed_ = 0;
  uint64_t rng_ = 1;
  uint64_t since_shift_ = 0;
  uint64_t since_churn_ = 0;
  uint32_t hot_ = 0;
  uint32_t churn_next_ = 0;
  uint64_t applied_ = 0;
  std::atomic<uint64_t> posted_{0};
  std::atomic<uint64_t> posted_shift_{0};
  std::atomic<uint64_t> posted_churn_{0};
  std::atomic<bool> stopped_{false};
  std::unique_ptr<uint32_t[]> seq_;
  std::unique_ptr<uint32_t[]> gen_;
  std::unique_ptr<uint64_t[]> cdf_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> tcp_{0};
  std::atomic<uint64_t> new_flows_{0};
  std::atomic<uint64_t> shifts_{0};
  std::atomic<uint64_t> alloc_failed_{0};
};

const Commands DyssectTrafficGen::cmds = {
    {"set", "DyssectTrafficGenCommandSetArg", MODULE_CMD_FUNC(&DyssectTrafficGen::CommandSet),
     Command::THREAD_SAFE},
    {"stop", "DyssectTrafficGenCommandStopArg", MODULE_CMD_FUNC(&DyssectTrafficGen::CommandStop),
     Command::THREAD_SAFE},
    {"get", "DyssectTrafficGenCommandGetArg", MODULE_CMD_FUNC(&DyssectTrafficGen::CommandGet),
     Command::THREAD_SAFE},
};

}  // namespace dyssect_bess

using dyssect_bess::DyssectTrafficGen;

ADD_MODULE(DyssectTrafficGen, "dyssect_trafficgen",
           "generates packets from a seeded profile: Zipf flows, hot set, churn, mix")
