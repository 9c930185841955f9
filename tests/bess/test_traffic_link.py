"""The generator through the dut pipeline over a real link: a veth pair in a network namespace
this test makes, DPDK's net_af_packet on both ends, one bessd (in that namespace) running the
dyssect role's pipeline loader's pipeline on one end and the generator on the other.

This is the lab's wiring (playbooks/lab_up.yml) without the containers: what gen sends crosses
the kernel link, the Dyssect chain (NAT, CPU NF, MAC swap) and comes back to be measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.traffic import pipeline
from dyssect_ctrl.traffic.profile import Profile, parse_profile
from dyssect_ctrl.traffic.run import run_profile
from tests.bess import harness
from tests.test_dyssect_pipeline import LOADER
from tests.test_dyssect_pipeline import config as pipeline_config

pytestmark = [
    pytest.mark.bess,
    pytest.mark.timeout(180, func_only=True),
]

GEN_IF, DUT_IF = "tg-gen0", "tg-dut0"
# A larger kernel ring per socket (default 512 frames): the workers share 2 vCPUs and are
# descheduled for milliseconds at a time.
RING = "framecnt=4096"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture()
def link_bessd(bess_tree: Path, plugin: Path) -> Iterator[tuple[Any, harness.Daemon]]:
    """A bessd inside a fresh network namespace holding a veth pair; gRPC on a unix socket (the
    test stays in its own namespace)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace")
    ns = f"dytg{os.getpid()}"
    _ip("netns", "add", ns)
    # no IPv6 autoconfiguration chatter on the link
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        check=True,
        timeout=10,
    )
    tmp = Path(tempfile.mkdtemp(prefix="dytg-"))
    log = tmp / "bessd.log"
    try:
        _ip("-n", ns, "link", "add", GEN_IF, "type", "veth", "peer", "name", DUT_IF)
        for dev in ("lo", GEN_IF, DUT_IF):
            _ip("-n", ns, "link", "set", "dev", dev, "up")
        url = f"unix:{tmp}/grpc.sock"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    "ip", "netns", "exec", ns,  # execs bessd: the PID is bessd's
                    str(bess_tree / "core" / "bessd"),
                    "-f", "-m", "0", "--buffers=65536", f"-i={tmp}/bessd.pid",
                    f"--grpc_url={url}", f"--modules={plugin.parent}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        daemon = harness.Daemon(proc, url, log)
        try:
            b = harness.connect(harness.import_pybess(bess_tree), daemon)
            try:
                yield b, daemon
            finally:
                b.pause_all()
                b.reset_all()
                b.disconnect()
        finally:
            daemon.stop()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def link_dut(bess_tree: Path, daemon: harness.Daemon) -> dict[str, Any]:
    """The pipeline on dut's end of the link: two cores on CPU 1 (a 2-CPU machine), qpairs=2
    (one TX queue per core), the seed's chain at cost 0."""
    return {
        "pybess_path": str(bess_tree),
        "grpc_url": daemon.url,
        "timeout_s": 30,
        "cores": [1, 2],
        "worker_cpus": {"2": 1},
        "ports": [{"name": "dut0", "vdev": f"net_af_packet0,iface={DUT_IF},{RING},qpairs=2"}],
        "rx_port": "dut0",
        "tx_port": "dut0",
        "chain": [
            {"kind": "nat", "ext_addrs": ["192.0.2.1"]},
            {"kind": "cpu", "cost_per_byte": 0.0},
            {"kind": "macswap"},
        ],
    }


def load_dut(tmp_path: Path, **cfg: Any) -> None:
    """Load the dyssect role's pipeline (its loader, as the unit runs it) with `cfg`."""
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(pipeline_config(**cfg)))
    done = subprocess.run(
        [sys.executable, str(LOADER), str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def add_generator(b: Any, profile: Profile) -> Callable[[], dict[str, int]]:
    """The generator on the link's other end (worker 5, CPU 0); returns the drop reader for
    the reconciliation: both ports, dut's drops by reason and what the link lost."""
    b.pause_all()
    b.add_worker(5, 0)
    b.create_port("PMDPort", "gen0", {"vdev": f"net_af_packet1,iface={GEN_IF},{RING}"})
    b.create_module("PortOut", "gen_out", {"port": "gen0"})
    b.create_module("PortInc", "gen_in", {"port": "gen0"})
    b.attach_task("gen_in", wid=5)
    pipeline.build_sender(b, profile, out="gen_out", wid=5)
    pipeline.build_receiver(b, profile, head="gen_in")

    def drops() -> dict[str, int]:
        gen, dut = b.get_port_stats("gen0"), b.get_port_stats("dut0")
        return {
            "gen_port": int(gen.out.dropped + gen.inc.dropped),
            "dut_port": int(dut.out.dropped + dut.inc.dropped),
            **{f"dut_{k}": int(v) for k, v in harness.get_stats(b).drops.items()},
            # what gen sent and dut's port never saw: lost in the kernel between the sockets
            "link": int(gen.out.packets - dut.inc.packets),
        }

    return drops


def test_generator_measures_the_dut_pipeline_over_af_packet(
    link_bessd: tuple[Any, harness.Daemon], bess_tree: Path, tmp_path: Path
) -> None:
    b, daemon = link_bessd
    # Two cores, so qpairs=2 (a TX queue per core): net_af_packet then opens two sockets in a
    # fanout group and the kernel spreads what dut receives over both; the loader polls both RX
    # queues (before it did, the second socket's ring filled and framecnt packets were lost).
    load_dut(tmp_path, **link_dut(bess_tree, daemon))
    profile = parse_profile(
        {"flows": 256, "zipf_alpha": 1.0, "phases": [{"rate_pps": 5000, "seconds": 2}]}
    )
    drops = add_generator(b, profile)
    b.resume_all()
    record = run_profile(b, profile, period_s=0.5, drops=drops, drain_s=3.0)
    rec = record.reconciliation
    phase = record.phases[0]
    print(f"link: {phase}; {rec.to_dict()}")
    dut_port = b.get_port_stats("dut0")
    assert int(dut_port.inc.packets) >= rec.sent  # all of it crossed the link to dut ...
    assert int(dut_port.out.packets) >= rec.received  # ... and came back through its chain
    assert rec.sent > 9000
    assert rec.unexplained == 0
    assert rec.received >= 0.95 * rec.sent
    assert abs(phase.offered_pps - 5000) / 5000 < 0.05
    assert phase.latency.p50_us is not None and phase.latency.p50_us > 0
