"""Drive a real bessd with the Dyssect plugin: build, start, pipelines, packets.

Modelled on BESS's own module-test harness (bessctl/module_tests): bessd runs with ``-m 0``
(no hugepages), packets go in and out through UnixSocketPorts (SOCK_SEQPACKET, nothing needed
from the kernel) or come from BESS's Source module for rates Python cannot reach.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NATIVE = REPO / "native"
# Outside native/build (which `make clean` wipes) so a concurrent clean cannot break a run;
# one folder per checkout so two clones tested at once never load each other's plugin.
_CHECKOUT = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
PLUGIN_DIR = Path(
    os.environ.get("DYSSECT_PLUGIN_OUT", f"/tmp/dyssect-plugin-{os.getuid()}-{_CHECKOUT}")
)
SOCKET_PREFIX = "dyssect_test_"


def bess_src() -> Path:
    """The built BESS tree the tests run: DYSSECT_BESS_SRC when it names a directory, else the
    tree scripts/bess-tree.sh builds (once, cached outside the repository) from the vendored
    archive, or from the archive DYSSECT_BESS_SRC names."""
    value = os.environ.get("DYSSECT_BESS_SRC", "")
    if value and Path(value).is_dir():
        return Path(value)
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "bess-tree.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"no BESS tree: scripts/bess-tree.sh failed: {done.stderr.strip()}")
    return Path(done.stdout.strip())


def build_plugin(src: Path) -> Path:
    """Builds native/build/plugin/dyssect.so against the tree; returns the .so."""
    env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    subprocess.run(
        ["make", "-C", str(NATIVE), "plugin", f"BESS_DIR={src}", f"PLUGIN_OUT={PLUGIN_DIR}"],
        check=True,
        env=env,
        capture_output=True,
        timeout=900,
    )
    so = PLUGIN_DIR / "dyssect.so"
    if not so.exists():
        raise RuntimeError(f"{so} was not built")
    return so


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def import_pybess(src: Path) -> Any:
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from pybess.bess import BESS  # type: ignore[import-not-found]

    return BESS


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


def start_bessd(src: Path, modules_dir: Path, log: Path, port: int | None = None) -> Daemon:
    """bessd of `src` with -m 0 on 127.0.0.1:`port` (default a free one, never 10514:
    build.py stops whatever listens there), its output appended to `log`."""
    port = port or free_port()
    url = f"127.0.0.1:{port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(src / "core" / "bessd"),
                "-f",
                "-m",
                "0",
                "--buffers=65536",
                f"-i={log}.pid",  # own pid file: other bessd instances may run on the machine
                f"--grpc_url={url}",
                f"--modules={modules_dir}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Daemon(proc, url, log)


def connect(bess_cls: Any, daemon: Daemon, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"bessd exited early, see {daemon.log}")
        b = bess_cls()
        try:
            b.connect(grpc_url=daemon.url)
            return b
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# ---------------------------------------------------------------- commands


def cmd(b: Any, module: str, name: str, arg_type: str, arg: dict[str, Any] | None = None) -> Any:
    return b.run_module_command(module, name, arg_type, arg or {})


def get_stats(b: Any, mgr: str = "dyssect") -> Any:
    return cmd(b, mgr, "get_stats", "DyssectCommandGetStatsArg")


def apply_plan(b: Any, plan: dict[str, Any], mgr: str = "dyssect") -> Any:
    return cmd(b, mgr, "apply_plan", "DyssectCommandApplyPlanArg", plan)


def working_plan(assignment: list[int], working: int = 2) -> dict[str, Any]:
    """apply_plan's argument for `working` working cores, no offloading core, no offload."""
    return {
        "working": working,
        "offloading": 0,
        "assignment": list(assignment),
        "pairing": [-1] * working,
        "offload": [0.0] * len(assignment),
    }


def wait_until(pred: Any, timeout_s: float, step_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step_s)
    return bool(pred())


def wait_not_migrating(b: Any, timeout_s: float = 10.0, mgr: str = "dyssect") -> bool:
    return wait_until(lambda: not get_stats(b, mgr).migrating, timeout_s, 0.002)


# ---------------------------------------------------------------- packets


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip2int(a: str) -> int:
    return int.from_bytes(socket.inet_aton(a), "big")


MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")


def ipv4_packet(
    src: str,
    dst: str,
    proto: int,
    sport: int,
    dport: int,
    payload: bytes,
    udp_checksum: bool = True,
    ident: int = 1,
) -> bytes:
    """Ethernet + IPv4 + UDP/TCP with correct checksums (computed from scratch)."""
    saddr, daddr = socket.inet_aton(src), socket.inet_aton(dst)
    if proto == 17:
        length = 8 + len(payload)
        l4 = struct.pack("!HHHH", sport, dport, length, 0) + payload
        if udp_checksum:
            c = l4_checksum(saddr, daddr, proto, l4) or 0xFFFF
            l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
    else:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x10, 8192, 0, 0) + payload
        c = l4_checksum(saddr, daddr, proto, l4)
        l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
    total = 20 + len(l4)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0, 64, proto, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return MAC_DST + MAC_SRC + b"\x08\x00" + ip + l4


def l4_checksum(saddr: bytes, daddr: bytes, proto: int, l4: bytes) -> int:
    pseudo = saddr + daddr + struct.pack("!BBH", 0, proto, len(l4))
    return csum(pseudo + l4)


@dataclass
class Parsed:
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    ip_ok: bool
    l4_ok: bool
    l4_csum: int
    payload: bytes


def parse(frame: bytes) -> Parsed:
    ip = frame[14:34]
    total = struct.unpack("!H", ip[2:4])[0]
    proto = ip[9]
    l4 = frame[34 : 14 + total]
    ip_ok = csum(ip) == 0
    if proto == 17:
        c = struct.unpack("!H", l4[6:8])[0]
        l4_ok = c == 0 or l4_checksum(ip[12:16], ip[16:20], 17, l4) == 0
        payload = l4[8:]
    else:
        c = struct.unpack("!H", l4[16:18])[0]
        l4_ok = l4_checksum(ip[12:16], ip[16:20], 6, l4) == 0
        payload = l4[20:]
    sport, dport = struct.unpack("!HH", l4[:4])
    return Parsed(
        socket.inet_ntoa(ip[12:16]),
        socket.inet_ntoa(ip[16:20]),
        proto,
        sport,
        dport,
        ip_ok,
        l4_ok,
        c,
        payload,
    )


# Toeplitz with the Microsoft/DPDK default key, written independently of the C++ code.
RSS_KEY = bytes.fromhex(
    "6d5a56da255a0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"
)


def toeplitz(data: bytes, key: bytes = RSS_KEY) -> int:
    key_int = int.from_bytes(key, "big")
    key_bits = len(key) * 8
    result = 0
    for i, byte in enumerate(data):
        for b in range(8):
            if byte & (0x80 >> b):
                bit = i * 8 + b
                result ^= (key_int >> (key_bits - 32 - bit)) & 0xFFFFFFFF
    return result


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """Standard CRC32C (Castagnoli, reflected, init and final XOR 0xFFFFFFFF), written
    independently of the C++ code."""
    c = 0xFFFFFFFF
    for byte in data:
        c = _CRC32C_TABLE[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def flow_hash(
    src: str, dst: str, sport: int, dport: int, proto: int = 17, kind: str = "crc32c"
) -> int:
    """The plugin's flow hash of a TCP/UDP packet: CRC32C of its 16-byte flow key (host-order
    fields, little-endian, as the plugin lays them out: src, dst, sport, dport, proto, 3 zero
    bytes), or the NIC's Toeplitz of the 4-tuple (kind="toeplitz")."""
    if kind == "toeplitz":
        data = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        return toeplitz(data)
    if kind != "crc32c":
        raise ValueError(f"unknown hash {kind!r}")
    return crc32c(struct.pack("<IIHHB3x", ip2int(src), ip2int(dst), sport, dport, proto))


def shard_of(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    shards: int,
    proto: int = 17,
    kind: str = "crc32c",
) -> int:
    return flow_hash(src, dst, sport, dport, proto, kind) & (shards - 1)


# ---------------------------------------------------------------- sockets


def unix_port(b: Any, name: str, timeout_s: float = 5.0) -> socket.socket:
    """UnixSocketPort `name` plus the connected test-side socket (as BESS's test_utils)."""
    path = SOCKET_PREFIX + name + str(os.getpid())
    b.create_port("UnixSocketPort", name, {"path": "@" + path, "confirm_connect": True})
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(timeout_s)
    s.connect("\0" + path)
    if s.recv(2048) != b"yes\0":
        raise AssertionError("unix socket port did not confirm the connection")
    return s


def recv_all(s: socket.socket, count: int, timeout_s: float) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            out.append(s.recv(4096))
        except TimeoutError:
            break
    return out


# ---------------------------------------------------------------- pipelines


def chain(b: Any, head: str, suffix: str, out: str, cost: float = 0.0) -> None:
    """head -> DyssectNAT -> DyssectCpuNF -> DyssectEgress -> out."""
    b.create_module(
        "DyssectNAT",
        f"nat_{suffix}",
        {"ext_addrs": ["198.51.100.1", "198.51.100.2"], "port_min": 20000, "port_max": 29999},
    )
    b.create_module("DyssectCpuNF", f"cpu_{suffix}", {"cost_per_byte": cost})
    b.create_module("DyssectEgress", f"eg_{suffix}", {})
    b.connect_modules(head, f"nat_{suffix}")
    b.connect_modules(f"nat_{suffix}", f"cpu_{suffix}")
    b.connect_modules(f"cpu_{suffix}", f"eg_{suffix}")
    b.connect_modules(f"eg_{suffix}", out)


@contextmanager
def running(b: Any) -> Iterator[None]:
    b.resume_all()
    try:
        yield
    finally:
        b.pause_all()


def udp_template(size: int = 64) -> bytes:
    pkt = ipv4_packet("10.0.0.1", "192.0.2.1", 17, 10000, 53, b"\0" * (size - 42), False)
    return pkt


def seq_pipeline(
    b: Any,
    shards: int,
    working: int,
    offloading: int,
    flows: int,
    rate_pps: int,
    workers: list[tuple[int, int]],
    slot_wids: list[int] | None = None,
    random_order: bool = False,
) -> None:
    """Source -> SeqGen -> dispatcher -> W slots (+O) -> chains -> Queue -> SeqCheck -> Sink.

    Worker 0 runs the source, the dispatcher task and the checker. The manager's core list is
    `slot_wids` (default [1..M]): working slot i runs on worker slot_wids[i], offloading slot j
    on worker slot_wids[M-1-j].
    """
    m = working + offloading
    cores = slot_wids if slot_wids is not None else list(range(1, m + 1))
    for wid, core in workers:
        b.add_worker(wid, core)
    b.create_module(
        "DyssectShardManager",
        "dyssect",
        {"shards": shards, "cores": cores},  # all shards start on slot 0
    )
    b.create_module("Source", "src", {"pkt_size": 64})
    b.create_module("Rewrite", "tmpl", {"templates": [udp_template()]})
    b.create_module("DyssectSeqGen", "gen", {"flows": flows, "random_order": random_order})
    b.create_module("DyssectDispatcher", "disp", {})
    b.connect_modules("src", "tmpl")
    b.connect_modules("tmpl", "gen")
    b.connect_modules("gen", "disp")
    b.add_tc("rl", policy="rate_limit", wid=0, resource="packet", limit={"packet": rate_pps})
    b.attach_task("src", parent="rl")
    b.attach_task("disp", wid=0)
    b.create_module("Queue", "outq", {"size": 16384})
    b.create_module("DyssectSeqCheck", "check", {"flows": flows})
    b.create_module("Sink", "sink", {})
    b.connect_modules("outq", "check")
    b.connect_modules("check", "sink")
    b.attach_task("outq", wid=0)
    for i in range(working):
        b.create_module("DyssectWorkingCore", f"w{i}", {"slot": i})
        chain(b, f"w{i}", f"w{i}", "outq")
        b.attach_task(f"w{i}", wid=cores[i])
    for j in range(offloading):
        b.create_module("DyssectOffloadingCore", f"o{j}", {"slot": j})
        chain(b, f"o{j}", f"o{j}", "outq")
        b.attach_task(f"o{j}", wid=cores[m - 1 - j])


def seq_totals(b: Any) -> tuple[int, Any, Any]:
    sent = cmd(b, "gen", "get", "DyssectSeqGenCommandGetArg").sent
    check = cmd(b, "check", "get", "DyssectSeqCheckCommandGetArg")
    return sent, check, get_stats(b)


def total_drops(stats: Any) -> int:
    return int(sum(stats.drops.values()))


def wait_accounted(b: Any, timeout_s: float = 30.0) -> tuple[int, Any, Any]:
    """Waits until every packet the sequence generator sent is out or counted as dropped and no
    migration is running; returns the last (sent, check, stats) read, settled or not."""
    last: list[Any] = []

    def settled() -> bool:
        sent, check, st = seq_totals(b)
        last[:] = [sent, check, st]
        return sent == check.received + total_drops(st) and not st.migrating

    wait_until(settled, timeout_s, 0.1)
    return last[0], last[1], last[2]
