"""roles/dyssect/files/dyssect-pipeline.py against a recording stand-in for pybess (the edge):
the module graph, worker placement and the optional test traffic source. A real bessd loads
it in tests/bess/test_pipeline_loader.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tests.bess.harness import parse

LOADER = Path(__file__).resolve().parents[1] / "roles" / "dyssect" / "files" / "dyssect-pipeline.py"
SPEC = importlib.util.spec_from_file_location("dyssect_pipeline", LOADER)
assert SPEC is not None and SPEC.loader is not None
pipeline = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(pipeline)


class Recorder:
    """Records the pybess calls the loader makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return call

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, k) for n, a, k in self.calls if n == name]


def config(**extra: Any) -> dict[str, Any]:
    """A pipeline.json as the dyssect role renders it (without the loader's connection keys)."""
    cfg: dict[str, Any] = {
        "module": "dyssect",
        "shards": 16,
        "cores": [1, 2, 3],
        "dispatcher_core": 0,
        "working": 1,
        "window_s": 0.1,
        "flow_table_size": 4096,
        "flow_idle_timeout_ms": 10000,
        "steering": "auto",
        "dpdk_port": None,
        "drop_non_flow": False,
        "ports": [{"name": "port0", "vdev": "net_null0"}],
        "rx_port": "port0",
        "tx_port": "port0",
        "chain": [{"kind": "nat", "ext_addrs": ["192.0.2.1"]}, {"kind": "macswap"}],
    }
    cfg.update(extra)
    return cfg


def test_udp_frame_is_a_valid_ipv4_udp_packet_of_the_size_asked() -> None:
    for size in (60, 64, 1500):
        frame = pipeline.udp_frame(size)
        assert len(frame) == size
        p = parse(frame)
        assert (p.src, p.dst, p.proto, p.sport, p.dport) == (
            "10.0.0.1",
            "198.51.100.10",
            17,
            10000,
            53,
        )
        assert p.ip_ok and p.l4_csum == 0


def test_workers_run_on_their_own_cpu_unless_mapped() -> None:
    b = Recorder()
    pipeline.build(b, config())
    assert [k for _, k in b.named("add_worker")][:3] == [
        {"wid": 1, "core": 1},
        {"wid": 2, "core": 2},
        {"wid": 3, "core": 3},
    ]
    b = Recorder()
    # JSON object keys are strings: the role renders the map through to_nice_json
    pipeline.build(b, config(worker_cpus={"2": 1, "3": 0}))
    assert [k for _, k in b.named("add_worker")][:3] == [
        {"wid": 1, "core": 1},
        {"wid": 2, "core": 1},
        {"wid": 3, "core": 0},
    ]


def test_test_traffic_feeds_the_dispatcher_under_its_rate_limit() -> None:
    b = Recorder()
    pipeline.build(b, config())
    assert not b.named("add_tc")
    disp = next(a for a, _ in b.named("create_module") if a[1] == "dyssect_dispatch")
    assert disp[2] == {"manager": "dyssect", "port": "port0", "qid": 0}
    b = Recorder()
    pipeline.build(b, config(test_traffic={"rate_pps": 5000, "flows": 256}))
    created = {a[1]: (a[0], a[2]) for a, _ in b.named("create_module")}
    # the test source replaces the RX port: a net_null port would flood the dispatcher
    assert created["dyssect_dispatch"] == ("DyssectDispatcher", {"manager": "dyssect"})
    assert created["dyssect_tsrc"] == ("Source", {"pkt_size": 64})
    assert created["dyssect_tgen"] == ("DyssectSeqGen", {"flows": 256})
    assert len(created["dyssect_ttmpl"][1]["templates"][0]) == 64
    links = [a for a, _ in b.named("connect_modules")]
    assert ("dyssect_tsrc", "dyssect_ttmpl") in links
    assert ("dyssect_ttmpl", "dyssect_tgen") in links
    assert ("dyssect_tgen", "dyssect_dispatch") in links
    ((tc_args, tc),) = b.named("add_tc")
    assert tc_args == ("dyssect_traffic",)
    dispatcher_wid = next(k["wid"] for a, k in b.named("attach_task") if a == ("dyssect_dispatch",))
    assert tc == {
        "policy": "rate_limit",
        "wid": dispatcher_wid,
        "resource": "packet",
        "limit": {"packet": 5000},
    }
    assert (("dyssect_tsrc",), {"parent": "dyssect_traffic"}) in b.named("attach_task")


def test_software_steering_polls_every_rx_queue_of_a_vdev() -> None:
    """net_af_packet with qpairs=N spreads what it receives over N sockets: all are polled."""
    vdev = "net_af_packet0,iface=veth0,qpairs=3"
    b = Recorder()
    pipeline.build(b, config(ports=[{"name": "port0", "vdev": vdev}]))
    ports = {a[1]: k for a, k in ((a, a[2]) for a, _ in b.named("create_port"))}
    assert ports["port0"]["num_inc_q"] == 3 and ports["port0"]["num_out_q"] == 3
    created = {a[1]: (a[0], a[2]) for a, _ in b.named("create_module")}
    assert created["dyssect_dispatch"][1] == {"manager": "dyssect", "port": "port0", "qid": 0}
    assert created["dyssect_rxq1"] == ("QueueInc", {"port": "port0", "qid": 1})
    assert created["dyssect_rxq2"] == ("QueueInc", {"port": "port0", "qid": 2})
    assert "dyssect_rxq3" not in created
    links = [a for a, _ in b.named("connect_modules")]
    assert ("dyssect_rxq1", "dyssect_dispatch") in links
    assert ("dyssect_rxq2", "dyssect_dispatch") in links
    tasks = {a[0]: k["wid"] for a, k in b.named("attach_task") if "wid" in k}
    assert tasks["dyssect_rxq1"] == tasks["dyssect_rxq2"] == tasks["dyssect_dispatch"]


def test_rx_queue_count_comes_from_the_port_or_its_vdev() -> None:
    assert pipeline.rx_queue_count({"name": "p", "vdev": "net_null0"}) == 1
    assert pipeline.rx_queue_count({"name": "p", "vdev": "net_af_packet0,iface=a,qpairs=4"}) == 4
    assert pipeline.rx_queue_count({"name": "p", "pci": "0000:01:00.0"}) == 1
    both = {"name": "p", "vdev": "net_af_packet0,qpairs=4", "rx_queues": 2}
    assert pipeline.rx_queue_count(both) == 2


def test_offloading_cores_mark_the_class_only_when_configured() -> None:
    def offloading_args(cfg: dict[str, Any]) -> list[dict[str, Any]]:
        b = Recorder()
        pipeline.build(b, cfg)
        return [a[2] for a, _ in b.named("create_module") if a[0] == "DyssectOffloadingCore"]

    assert offloading_args(config()) == [
        {"manager": "dyssect", "slot": 2},
        {"manager": "dyssect", "slot": 1},
        {"manager": "dyssect", "slot": 0},
    ]
    marked = offloading_args(config(class_mark_offset=74))
    assert [a["class_mark_offset"] for a in marked] == [74, 74, 74]
