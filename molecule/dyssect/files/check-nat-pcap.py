#!/usr/bin/python3
"""Check what the Dyssect chain sent, as written by DPDK's net_pcap TX dumper.

Usage: check-nat-pcap.py OUT.pcap FLOWS ROUNDS EXT_ADDR [EXT_ADDR ...]

The input was playbooks/files/lab-flows.py FLOWS ROUNDS: flow i is 10.x.y.z -> 198.51.100.1,
UDP (odd i) or TCP (even i), IP id i. Prints one JSON object and exits 1 when any check fails:
every packet came out; each is IPv4 with a valid IP and TCP/UDP checksum; its source address is
one of EXT_ADDR (the NAT rewrote it: no private address leaves); every packet of a flow has the
same external address and port (a stable mapping); no two flows share one (no collision).
Standard library only: it runs inside the test host.
"""

import ipaddress
import json
import struct
import sys


# Written here again, not imported from lab-flows.py: the check stays independent of the code
# that made the packets, so a checksum bug there cannot pass here.
def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frames(path: str):
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or struct.unpack("<I", head[:4])[0] not in (0xA1B2C3D4, 0xA1B23C4D):
            raise SystemExit(f"{path}: not a little-endian pcap file")
        while rec := f.read(16):
            _, _, incl, _ = struct.unpack("<IIII", rec)
            yield f.read(incl)


def main() -> int:
    path, flows, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ext = {ipaddress.IPv4Address(a) for a in sys.argv[4:]}
    errors: list[str] = []
    mapping: dict[int, set[tuple[int, str, int]]] = {}
    count = 0
    for frame in frames(path):
        count += 1
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            errors.append(f"packet {count}: not IPv4")
            continue
        ihl = (frame[14] & 15) * 4
        ip = frame[14 : 14 + ihl]
        total = struct.unpack("!H", ip[2:4])[0]
        ident, proto = struct.unpack("!H", ip[4:6])[0], ip[9]
        src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
        l4 = frame[14 + ihl : 14 + total]
        if checksum(ip) != 0:
            errors.append(f"packet {count}: bad IP checksum")
        if proto not in (6, 17) or src not in ext or str(dst) != "198.51.100.1":
            errors.append(f"packet {count}: proto {proto} {src} -> {dst} (not NATed)")
            continue
        pseudo = ip[12:20] + struct.pack("!BBH", 0, proto, len(l4))
        if checksum(pseudo + l4) != 0:
            errors.append(f"packet {count}: bad L4 checksum")
        sport = struct.unpack("!H", l4[0:2])[0]
        mapping.setdefault(ident, set()).add((proto, str(src), sport))
    if count != flows * rounds:
        errors.append(f"{count} packets out, {flows * rounds} in")
    if len(mapping) != flows:
        errors.append(f"{len(mapping)} flows out, {flows} in")
    unstable = [i for i, m in mapping.items() if len(m) != 1]
    if unstable:
        errors.append(f"{len(unstable)} flows mapped to more than one external address and port")
    external = [next(iter(m)) for m in mapping.values() if len(m) == 1]
    if len(set(external)) != len(external):
        errors.append("two flows share an external address and port")
    print(json.dumps({"packets": count, "flows": len(mapping),
                      "ext_addrs": sorted({e[1] for e in external}), "errors": errors[:20]}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
