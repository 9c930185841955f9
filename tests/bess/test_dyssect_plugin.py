"""The Dyssect BESS plugin against a real bessd (runs when DYSSECT_BESS_SRC names a BESS tree)."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.bess import harness
from tests.bess.harness import apply_plan, get_stats, wait_not_migrating, wait_until

pytestmark = [
    pytest.mark.bess,
    pytest.mark.timeout(120, func_only=True),  # the session setup builds the plugin
]

EXT = {"198.51.100.1", "198.51.100.2"}


def socket_pipeline(b: Any, shards: int = 16, kind: str = "") -> Any:
    """UnixSocketPort -> dispatcher (wid 0) -> one working core (wid 1) -> chain -> same port."""
    b.add_worker(0, 0)
    b.add_worker(1, 1)
    arg: dict[str, Any] = {"shards": shards, "cores": [1]}
    if kind:
        arg["hash"] = kind
    b.create_module("DyssectShardManager", "dyssect", arg)
    sock = harness.unix_port(b, "dy0")
    b.create_module("DyssectDispatcher", "disp", {"port": "dy0"})
    b.attach_task("disp", wid=0)
    b.create_module("DyssectWorkingCore", "w0", {"slot": 0})
    b.create_module("PortOut", "out", {"port": "dy0"})
    harness.chain(b, "w0", "w0", "out")
    b.attach_task("w0", wid=1)
    return sock


def test_nat_output_byte_by_byte(bess: Any) -> None:
    sock = socket_pipeline(bess)
    flows = [
        ("10.0.0.1", "192.0.2.10", 17, 1111, 53, True),
        ("10.0.0.2", "192.0.2.11", 17, 2222, 53, False),  # UDP without checksum
        ("10.0.0.3", "192.0.2.12", 6, 3333, 80, True),
    ]
    sent: list[bytes] = []
    with harness.running(bess):
        for i in range(4):
            for k, (src, dst, proto, sp, dp, ck) in enumerate(flows):
                pkt = harness.ipv4_packet(
                    src, dst, proto, sp, dp, bytes([k, i]) * 20, ck, ident=100 + i
                )
                sent.append(pkt)
                sock.send(pkt)
        arp = bytes.fromhex("ffffffffffff020000000001" + "0806") + bytes(28)
        sock.send(arp)
        got = harness.recv_all(sock, len(sent) + 1, timeout_s=20)
    assert len(got) == len(sent) + 1
    assert arp in got  # non-IP passes through untouched
    got = [g for g in got if g != arp]
    mapping: dict[tuple[str, int], tuple[str, int]] = {}
    by_orig = {p[34:36] + p[26:30] + p[-2:]: p for p in sent}  # sport, src ip, payload tag
    for out in got:
        o = harness.parse(out)
        assert o.ip_ok, "IPv4 header checksum wrong"
        assert o.l4_ok, "L4 checksum wrong"
        assert o.src in EXT
        assert 20000 <= o.sport <= 29999
        tag = out[-2:]
        k = tag[0]
        src, dst, proto, sp, dp, ck = flows[k]
        orig = by_orig[sp.to_bytes(2, "big") + harness.ip2int(src).to_bytes(4, "big") + tag]
        i = harness.parse(orig)
        assert (o.dst, o.proto, o.dport, o.payload) == (i.dst, i.proto, i.dport, i.payload)
        if proto == 17 and not ck:
            assert o.l4_csum == 0  # "no checksum" stays so
        # every byte except source address, source port and the checksums is unchanged
        changed = {26, 27, 28, 29, 34, 35, 24, 25}
        changed |= {40, 41} if proto == 17 else {50, 51}
        assert all(out[j] == orig[j] for j in range(len(orig)) if j not in changed)
        assert len(out) == len(orig)
        key = (src, sp)
        mapping.setdefault(key, (o.src, o.sport))
        assert mapping[key] == (o.src, o.sport), "a flow changed its mapping"
    assert len(set(mapping.values())) == len(flows), "two flows share an external address:port"
    st = get_stats(bess)
    assert st.packets_in == len(sent) + 1
    assert st.packets_out == len(sent) + 1
    assert harness.total_drops(st) == 0


@pytest.mark.parametrize("kind", ["", "crc32c", "toeplitz"])
def test_stats_snapshot_matches_what_was_sent(bess: Any, kind: str) -> None:
    """Per-shard counts against shards computed independently in Python: the default flow
    hash (CRC32C of the key) and the selectable Toeplitz (the NIC's)."""
    shards = 16
    sock = socket_pipeline(bess, shards, kind)
    rnd = random.Random(7)
    flows = [(f"10.1.0.{i + 1}", "192.0.2.99", 17, 4000 + i, 53) for i in range(24)]
    per_shard_pkts: dict[int, int] = defaultdict(int)
    per_shard_bytes: dict[int, int] = defaultdict(int)
    per_flow_bytes: dict[int, int] = defaultdict(int)
    per_shard_flows: dict[int, set[int]] = defaultdict(set)
    n = 0
    with harness.running(bess):
        for _ in range(150):
            f = rnd.randrange(len(flows))
            src, dst, proto, sp, dp = flows[f]
            pkt = harness.ipv4_packet(src, dst, proto, sp, dp, bytes(rnd.randrange(10, 200)))
            s = harness.shard_of(src, dst, sp, dp, shards, proto, kind or "crc32c")
            per_shard_pkts[s] += 1
            per_shard_bytes[s] += len(pkt)
            per_flow_bytes[f] += len(pkt)
            per_shard_flows[s].add(f)
            sock.send(pkt)
            n += 1
        assert len(harness.recv_all(sock, n, 20)) == n
        st = get_stats(bess)
        assert st.steering == "software"
        assert len(st.shards) == shards
        assert st.packets_in == n and st.packets_out == n
        assert st.packets_inline == 0  # working core on another worker: RX ring only
        for s, sh in enumerate(st.shards):
            assert sh.packets == per_shard_pkts[s], f"shard {s} packets"
            assert sh.bytes == per_shard_bytes[s], f"shard {s} bytes"
            assert sh.flows == len(per_shard_flows[s]), f"shard {s} flows"
            assert sh.owner == 0 and sh.pending_owner == -1
        # Next window: one packet per active shard makes its owner rank the closed window.
        trigger = []
        active = {s: fs for s, fs in per_shard_flows.items() if fs}
        for fs in active.values():
            f = min(fs)
            src, dst, proto, sp, dp = flows[f]
            trigger.append(harness.ipv4_packet(src, dst, proto, sp, dp, b"x" * 10))
        for pkt in trigger:
            sock.send(pkt)
        assert len(harness.recv_all(sock, len(trigger), 20)) == len(trigger)
        st2 = get_stats(bess)
    assert st2.epoch == st.epoch + 1
    assert sum(sh.packets for sh in st2.shards) == len(trigger)
    for s, fs in active.items():
        total = per_shard_bytes[s]
        want = sorted((per_flow_bytes[f] / total for f in fs), reverse=True)[:16]
        got = list(st2.shards[s].top_flow_shares)
        assert got == pytest.approx(want), f"shard {s} top shares"


def test_apply_plan_rejects_invalid_plans_whole(bess: Any) -> None:
    bess.add_worker(0, 0)
    bess.create_module("DyssectShardManager", "dyssect", {"shards": 4, "cores": [0, 1]})
    bess.create_module("DyssectWorkingCore", "w0", {"slot": 0})
    bess.create_module("Sink", "sink", {})
    bess.connect_modules("w0", "sink")
    bad = [
        {
            "working": 1,
            "offloading": 0,
            "assignment": [0, 0, 0],
            "pairing": [-1],
            "offload": [0] * 4,
        },
        {
            "working": 1,
            "offloading": 0,
            "assignment": [0, 0, 0, 1],
            "pairing": [-1],
            "offload": [0] * 4,
        },
        {
            "working": 2,
            "offloading": 0,
            "assignment": [0, 0, 1, 1],
            "pairing": [-1, -1],
            "offload": [0] * 4,
        },  # slot 1 has no working core module
        {
            "working": 1,
            "offloading": 1,
            "assignment": [0] * 4,
            "pairing": [0],
            "offload": [0] * 4,
        },  # offloading slot 0 has no module
        {
            "working": 1,
            "offloading": 0,
            "assignment": [0] * 4,
            "pairing": [-1],
            "offload": [0, 0, 1.5, 0],
        },
        {
            "working": 3,
            "offloading": 0,
            "assignment": [0] * 4,
            "pairing": [-1] * 3,
            "offload": [0] * 4,
        },
    ]
    before = get_stats(bess)
    for plan in bad:
        with pytest.raises(bess.Error) as err:
            apply_plan(bess, plan)
        assert err.value.code == 22  # EINVAL
    after = get_stats(bess)
    assert after.plan_id == before.plan_id
    assert [s.owner for s in after.shards] == [0, 0, 0, 0]
    ok = apply_plan(
        bess,
        {"working": 1, "offloading": 0, "assignment": [0] * 4, "pairing": [-1], "offload": [0] * 4},
    )
    assert ok.plan_id == before.plan_id + 1 and ok.migrations == 0
    r = harness.cmd(
        bess,
        "dyssect",
        "set_params",
        "DyssectCommandSetParamsArg",
        {"window_s": 0.05, "flow_idle_timeout_ms": 2000},
    )
    assert r.flow_idle_timeout_ms == 2000 and r.window_s == pytest.approx(0.05)


def stop_source(b: Any) -> None:
    """Cuts the generator off its source: what was sent so far can then be accounted for."""
    b.disconnect_modules("tmpl", 0)


def test_migrations_lose_nothing_and_keep_flow_order(bess: Any) -> None:
    shards, flows = 16, 256
    harness.seq_pipeline(
        bess,
        shards,
        working=2,
        offloading=1,
        flows=flows,
        rate_pps=20000,
        workers=[(0, 0), (1, 1), (2, 0)],
        slot_wids=[0, 1, 2],  # working slot 0 with the dispatcher, slot 1 behind its RX ring
    )
    rnd = random.Random(11)
    migrations = 0
    plans = 0
    with harness.running(bess):
        deadline = time.monotonic() + 40
        while migrations < 100 and time.monotonic() < deadline:
            assignment = [rnd.randrange(2) for _ in range(shards)]
            offload = [rnd.choice([0.0, 0.3, 0.8]) for _ in range(shards)]
            pairing = [rnd.choice([0, -1]), 0]
            r = apply_plan(
                bess,
                {
                    "working": 2,
                    "offloading": 1,
                    "assignment": assignment,
                    "pairing": pairing,
                    "offload": offload,
                },
            )
            migrations += r.migrations
            plans += 1
            assert wait_not_migrating(bess, 10), "a migration did not finish"
            get_stats(bess)  # closes the window: owners re-rank, flows get (re)classified
        stop_source(bess)
        sent, check, st = harness.wait_accounted(bess)
        offloaded = int(bess.get_module_info("eg_o0").ogates[0].pkts)
    print(
        f"sent={sent} received={check.received} migrations={migrations} plans={plans} "
        f"offloaded={offloaded} reclassified={st.reconfigurations} inline={st.packets_inline} "
        f"drops={dict(st.drops)}"
    )
    # flows start local, so offloaded packets mean flows were reclassified local -> offloaded
    assert offloaded > 0, "nothing went through the offloading core"
    assert st.reconfigurations > 0, "no shard was ever re-ranked"
    # working core 0 shares worker 0 with the dispatcher: its bursts between migrations are
    # classified run to completion, offloading included
    assert st.packets_inline > 0, "no burst was handed over run to completion"
    assert migrations >= 100, f"only {migrations} migrations in {plans} plans"
    assert st.migrations_done >= migrations
    assert sent > 0
    assert check.bad == 0
    assert check.reordered == 0, "a flow was reordered"
    assert check.gaps == 0, "packets were lost"
    assert sent == check.received + harness.total_drops(st)
    assert st.packets_in == sent
    assert st.packets_out == check.received


def test_pause_one_worker_while_another_runs(bess: Any) -> None:
    shards, flows = 8, 64
    harness.seq_pipeline(
        bess,
        shards,
        working=2,
        offloading=0,
        flows=flows,
        rate_pps=20000,
        workers=[(0, 0), (1, 1), (2, 0)],
    )
    half = [i % 2 for i in range(shards)]

    def out_of(m: str) -> int:
        return int(bess.get_module_info(m).ogates[0].pkts)

    with harness.running(bess):
        r = apply_plan(bess, harness.working_plan(half))
        assert r.migrations == shards // 2
        assert wait_not_migrating(bess, 10)
        assert wait_until(lambda: out_of("eg_w1") > 0, 10)
        bess.pause_worker(2)
        workers = {w.wid: w.running for w in bess.list_workers().workers_status}
        assert workers[2] is False and workers[1] is True and workers[0] is True
        w0_before, w1_before = out_of("eg_w0"), out_of("eg_w1")
        time.sleep(0.3)
        assert out_of("eg_w0") > w0_before, "worker 1 stopped while worker 2 was paused"
        assert out_of("eg_w1") == w1_before, "paused worker 2 still processed packets"
        bess.resume_worker(2)
        assert wait_until(lambda: out_of("eg_w1") > w1_before, 10)
        stop_source(bess)
        sent, check, st = harness.wait_accounted(bess)
    assert check.reordered == 0 and check.gaps == 0
    assert sent == check.received + harness.total_drops(st)


RTC_RATE = 200_000


def test_run_to_completion_keeps_order_under_migrations(bess: Any) -> None:
    """Working core 0 shares the dispatcher's worker, so the dispatcher hands it each burst
    directly (no RX ring) while nothing older is queued and no migration is active; working
    core 1 is on another worker (RX ring). Over 100+ migrations between them the two hand-offs
    alternate, and nothing is lost or reordered."""
    # Few flows in random order: consecutive bursts share flows, so a burst overtaking an
    # older one shows up as reordering.
    shards, flows = 16, 64
    b = bess
    harness.seq_pipeline(
        b,
        shards,
        2,
        0,
        flows=flows,
        rate_pps=RTC_RATE,
        workers=[(0, 0), (1, 1)],
        slot_wids=[0, 1],
        random_order=True,
    )
    rnd = random.Random(5)
    migrations = 0
    with harness.running(b):
        # All shards start on working core 0: every burst is run to completion.
        assert wait_until(lambda: get_stats(b).packets_in >= 2000, 10)
        b.pause_all()  # counters at rest (packets_in is counted before the hand-off)
        st0 = get_stats(b)
        b.resume_all()
        assert st0.packets_inline == st0.packets_in
        deadline = time.monotonic() + 40
        while migrations < 100 and time.monotonic() < deadline:
            assignment = [rnd.randrange(2) for _ in range(shards)]
            r = apply_plan(b, harness.working_plan(assignment))
            migrations += r.migrations
            assert wait_not_migrating(b, 10), "a migration did not finish"
            time.sleep(0.01)  # steady state between plans: bursts for core 0 go inline again
        mid = get_stats(b)
        stop_source(b)
        sent, check, st = harness.wait_accounted(b)
    print(
        f"sent={sent} received={check.received} migrations={migrations} "
        f"inline={st.packets_inline} ring={st.packets_in - st.packets_inline} "
        f"drops={dict(st.drops)}"
    )
    assert migrations >= 100
    assert mid.packets_inline > st0.packets_inline, "no run-to-completion hand-off after plans"
    assert st.packets_in - st.packets_inline > 0, "nothing went through the RX rings"
    assert check.bad == 0
    assert check.reordered == 0, "a flow was reordered"
    assert check.gaps == 0, "packets were lost"
    assert harness.total_drops(st) == 0
    assert sent == check.received
    assert st.packets_in == sent
    assert st.packets_out == check.received


def fragment(pkt: bytes, flags_offset: int) -> bytes:
    """`pkt` with the IPv4 flags/fragment-offset field set (header checksum recomputed)."""
    ip = bytearray(pkt[14:34])
    ip[6:8] = flags_offset.to_bytes(2, "big")
    ip[10:12] = b"\0\0"
    ip[10:12] = harness.csum(bytes(ip)).to_bytes(2, "big")
    return pkt[:14] + bytes(ip) + pkt[34:]


def test_nat_drops_fragments_instead_of_leaking_private_addresses(bess: Any) -> None:
    sock = socket_pipeline(bess)
    whole = harness.ipv4_packet("10.0.0.7", "192.0.2.10", 17, 4444, 53, b"w" * 40)
    first = fragment(harness.ipv4_packet("10.0.0.8", "192.0.2.10", 17, 5555, 53, b"f" * 40), 0x2000)
    later = fragment(harness.ipv4_packet("10.0.0.8", "192.0.2.10", 17, 5555, 53, b"l" * 40), 0x0005)
    tcp_first = fragment(
        harness.ipv4_packet("10.0.0.9", "192.0.2.10", 6, 6666, 80, b"t" * 40), 0x2000
    )
    with harness.running(bess):
        for pkt in (first, whole, later, tcp_first):
            sock.send(pkt)
        got = harness.recv_all(sock, 4, timeout_s=3)
        st = get_stats(bess)
    assert len(got) == 1, f"{len(got)} out, expected only the unfragmented one; {st}"
    out = harness.parse(got[0])
    assert out.src in EXT and out.payload == b"w" * 40
    assert st.drops["fragment"] == 3
    assert st.packets_in == 4 and st.packets_out == 1
    assert st.packets_in == st.packets_out + harness.total_drops(st) + st.packets_held


def test_nat_rejects_bad_external_addresses(bess: Any) -> None:
    bess.create_module("DyssectShardManager", "dyssect", {"shards": 4, "cores": [0]})
    for bad in ["198.51.100", "198.51.100.256", "198.51.100.1x", "", "::1"]:
        with pytest.raises(bess.Error) as err:
            bess.create_module("DyssectNAT", "nat_bad", {"ext_addrs": [bad]})
        assert err.value.code == 22, bad  # EINVAL
    bess.create_module("DyssectNAT", "nat_ok", {"ext_addrs": ["198.51.100.1"]})


def test_manager_rejects_unknown_hash(bess: Any) -> None:
    for bad in ["crc32", "Toeplitz", "rss"]:
        with pytest.raises(bess.Error) as err:
            bess.create_module("DyssectShardManager", "dyssect", {"shards": 4, "hash": bad})
        assert err.value.code == 22, bad  # EINVAL
    bess.create_module("DyssectShardManager", "dyssect", {"shards": 4, "hash": "toeplitz"})
