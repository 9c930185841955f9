// CPU-bound NF with a cost-per-byte parameter.
//
// For each payload byte it runs `iters_per_byte` rounds of a dependent
// integer mix (a chain the compiler cannot vectorise away or fold), so the
// cost is proportional to payload length x iters_per_byte; 0 means no work.
// It reads only payload bytes inside the packet: [payload_offset,
// payload_offset + payload_len) from ParsePacket, which bounds both by the
// IPv4 total length and the frame length (the original's scan ran until a NUL
// byte, past the packet end). The digest is written to a sink so the work is
// observable and never dead code.
#ifndef DYSSECT_CPU_NF_H_
#define DYSSECT_CPU_NF_H_

#include <cstdint>

#include "flow_key.h"

namespace dyssect {

inline uint64_t CpuBurn(const uint8_t* data, uint32_t len, uint32_t iters_per_byte,
                        uint64_t acc) {
  if (iters_per_byte == 0) return acc;
  for (uint32_t i = 0; i < len; i++) {
    uint64_t x = acc ^ data[i];
    for (uint32_t k = 0; k < iters_per_byte; k++) {
      x = x * 0x9E3779B97F4A7C15ull + 0x7F4A7C15ull;
      x ^= x >> 29;
    }
    acc = x;
  }
  return acc;
}

class CpuNf {
 public:
  explicit CpuNf(uint32_t iters_per_byte = 0) : iters_per_byte_(iters_per_byte) {}

  void set_iters_per_byte(uint32_t v) { iters_per_byte_ = v; }
  uint32_t iters_per_byte() const { return iters_per_byte_; }

  // pkt: the frame; pp: a kOk or kOtherProto parse result of that frame.
  // Returns the packet's digest (also folded into sink()).
  uint64_t Process(const uint8_t* pkt, const ParsedPacket& pp) {
    const uint64_t d = CpuBurn(pkt + pp.payload_offset, pp.payload_len, iters_per_byte_,
                               0xCBF29CE484222325ull);
    sink_ ^= d;
    bytes_ += pp.payload_len;
    return d;
  }

  uint64_t sink() const { return sink_; }
  uint64_t bytes() const { return bytes_; }

 private:
  uint32_t iters_per_byte_;
  uint64_t sink_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace dyssect

#endif  // DYSSECT_CPU_NF_H_
