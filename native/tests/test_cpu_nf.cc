// CPU-bound NF: reads only the payload (guard page + ASan), cost scales with
// the per-byte parameter, work is not optimised away.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <vector>

#include "dyssect/cpu_nf.h"
#include "packet_builder.h"
#include "test.h"

using namespace dyssect;

TEST(cpu_nf_never_reads_past_packet) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  uint8_t* mem = static_cast<uint8_t*>(
      mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(mem != MAP_FAILED);
  REQUIRE(mprotect(mem + page, page, PROT_NONE) == 0);  // any over-read faults
  CpuNf nf(3);
  std::mt19937 rng(4);
  for (int i = 0; i < 2000; i++) {
    dtest::PacketSpec s;
    s.proto = (rng() & 1) ? kProtoTcp : kProtoUdp;
    s.payload_len = rng() % 1400;
    s.seed = rng();
    auto p = dtest::BuildPacket(s);
    // Frame ends exactly at the guard page.
    uint8_t* frame = mem + page - p.size();
    std::memcpy(frame, p.data(), p.size());
    ParsedPacket pp;
    REQUIRE(ParsePacket(frame, static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kOk);
    nf.Process(frame, pp);
  }
  // A packet whose payload ends where the (lying) frame ends: the parser
  // refuses a total length beyond the frame, so the NF is never asked to read it.
  dtest::PacketSpec s;
  s.payload_len = 100;
  auto p = dtest::BuildPacket(s);
  StoreBe16(&p[16], static_cast<uint16_t>(p.size()));  // claims 14 bytes more than present
  uint8_t* frame = mem + page - p.size();
  std::memcpy(frame, p.data(), p.size());
  ParsedPacket pp;
  CHECK(ParsePacket(frame, static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kTruncated);
  munmap(mem, 2 * page);
  CHECK(nf.bytes() > 0);
}

TEST(cpu_nf_digest_covers_payload_only) {
  dtest::PacketSpec s;
  s.payload_len = 64;
  s.eth_padding = 32;
  auto p = dtest::BuildPacket(s);
  ParsedPacket pp;
  REQUIRE(ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kOk);
  CpuNf nf(2);
  const uint64_t d0 = nf.Process(p.data(), pp);
  for (size_t k = p.size() - 32; k < p.size(); k++) p[k] ^= 0xFF;  // padding changes
  CHECK_EQ(nf.Process(p.data(), pp), d0);
  p[pp.payload_offset + 10] ^= 1;  // a payload byte changes
  CHECK(nf.Process(p.data(), pp) != d0);
  CpuNf zero(0);
  const uint64_t z = zero.Process(p.data(), pp);
  p[pp.payload_offset] ^= 1;
  CHECK_EQ(zero.Process(p.data(), pp), z);  // cost 0: no work at all
  CpuNf other(3);
  CHECK(other.Process(p.data(), pp) != nf.Process(p.data(), pp));
}

TEST(cpu_nf_cost_scales_with_parameter) {
  dtest::PacketSpec s;
  s.payload_len = 1400;
  auto p = dtest::BuildPacket(s);
  ParsedPacket pp;
  REQUIRE(ParsePacket(p.data(), static_cast<uint32_t>(p.size()), &pp) == ParseStatus::kOk);
  auto run = [&](uint32_t iters) {
    CpuNf nf(iters);
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t d = 0;
    for (int i = 0; i < 100; i++) d = nf.Process(p.data(), pp);
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    CHECK(d != 0xCBF29CE484222325ull);  // the digest moved off its seed: work was done
    return us;
  };
  run(1);  // warm-up
  // Minimum of several runs: robust against preemption on a shared machine.
  double low = 1e18, high = 1e18;
  for (int r = 0; r < 5; r++) {
    low = std::min(low, run(2));
    high = std::min(high, run(64));
  }
  std::printf("    cpu_nf 100 x 1400 B: 2 iter/B %.0f us, 64 iter/B %.0f us (x%.1f)\n", low, high,
              high / low);
  CHECK(high > 8 * low);  // 32x more work; loose bound against a noisy shared machine
}
