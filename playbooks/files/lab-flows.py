#!/usr/bin/python3
"""Write the lab's test traffic: a pcap with one 64-byte IPv4 packet per flow, FLOWS flows.

Usage: lab-flows.py OUT.pcap FLOWS [ROUNDS]

ROUNDS (default 1) writes the FLOWS packets that many times, round after round, so that every
flow has ROUNDS packets; every packet of flow i carries IP id i mod 65536, which names its flow
after a NAT rewrote its addresses and ports.

The dut's pipeline reads it through DPDK's net_pcap vdev with infinite_rx=1 (replayed in a loop),
so the Dyssect shards see real TCP and UDP flows: the lab has no link from gen to dut, and the
all-zero frames of net_null are not IP, so they load no shard. Standard library only (it runs
before any role installed anything); the same FLOWS always give the same bytes.
"""

import os
import struct
import sys


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def packet(i: int) -> bytes:
    src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    dst = bytes([198, 51, 100, 1])
    sport = 1024 + i % 60000
    payload = b"dyssect-lab"
    if i % 2:  # UDP to port 53
        proto = 17
        l4 = struct.pack("!HHHH", sport, 53, 8 + len(payload), 0) + payload
    else:  # TCP ACK to port 80
        proto = 6
        l4 = struct.pack("!HHIIBBHHH", sport, 80, i, 0, 5 << 4, 0x10, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    csum = checksum(pseudo + l4)
    off = 6 if proto == 17 else 16
    l4 = l4[:off] + struct.pack("!H", csum or 0xFFFF) + l4[off + 2 :]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i & 0xFFFF, 0, 64, proto, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002" + "020000000001") + struct.pack("!H", 0x0800)  # dst, src
    frame = eth + ip + l4
    return frame + b"\0" * max(0, 60 - len(frame))


def main() -> None:
    out, flows = sys.argv[1], int(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    with open(out + ".tmp", "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # pcap, Ethernet
        for n in range(flows * rounds):
            frame = packet(n % flows)
            f.write(struct.pack("<IIII", n // 1000000, n % 1000000, len(frame), len(frame)))
            f.write(frame)
    # Whole or absent: the play creates the file only when it is missing.
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
