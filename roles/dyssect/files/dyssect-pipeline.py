#!/usr/bin/env python3
"""Load the Dyssect pipeline into a running bessd (run by dyssect-pipeline.service).

Usage: dyssect-pipeline.py CONFIG.json

The config (rendered by the dyssect role) names the pybess directory, bessd's gRPC address (the
bess role's unix socket, unix:/run/bess/grpc.sock by default, which only members of its group may
use: the loader's unit runs with that group), the ports, the shard manager's arguments, the core
list and the NF chain. The script resets bessd (so
a rerun never stacks a second pipeline), then builds:

  workers      one BESS worker per core of the core list (wid = CPU id, as the controller
               expects), plus the dispatcher's worker (the lowest free id, on its own CPU)
               under software steering;
  manager      DyssectShardManager <module> with the shards and the core list;
  steering     software: DyssectDispatcher polling the RX port's queue 0, and a QueueInc per
               further RX queue feeding it on the same worker (a vdev such as net_af_packet
               with qpairs=N spreads what it receives over N queues); hardware: every working
               core polls its own RX queue of that port (RSS with RETA updates);
  per core k   DyssectWorkingCore (slot k) and DyssectOffloadingCore (slot M-1-k) attached to
               worker cores[k], both feeding one chain of that core:
               NFs in order -> DyssectEgress -> QueueOut(tx port, queue k);
  test traffic (optional, software steering) Source -> Rewrite (a UDP frame) -> DyssectSeqGen
               (one source port per flow) -> the dispatcher, on the dispatcher's worker under
               the rate-limited traffic class dyssect_traffic (`dyssect-ctrl load` changes it);
               the dispatcher then does not poll the RX port.

A worker id listed in worker_cpus runs on that CPU instead of the CPU of the same number (a lab
with fewer CPUs than cores).

Every NF instance belongs to one core, so its counters have a single writer; the NAT port pool is
shared through the manager. Exits non-zero with the failing step named.
"""

import itertools
import json
import sys
import time


def connect(bess_cls, url, timeout_s):
    deadline = time.monotonic() + timeout_s
    while True:
        bess = bess_cls()
        try:
            bess.connect(grpc_url=url)
            return bess
        except bess_cls.RPCError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def nf_module(nf, manager):
    """(BESS class, argument dict) of one chain entry."""
    kind = nf["kind"]
    if kind == "nat":
        arg = {"manager": manager, "ext_addrs": nf["ext_addrs"]}
        for key in ("port_min", "port_max"):
            if key in nf:
                arg[key] = int(nf[key])
        return "DyssectNAT", arg
    if kind == "cpu":
        return "DyssectCpuNF", {
            "manager": manager,
            "cost_per_byte": float(nf.get("cost_per_byte", 0.0)),
        }
    if kind == "macswap":
        return "MACSwap", {}
    raise ValueError(f"unknown NF kind {kind!r}")


TRAFFIC_TC = "dyssect_traffic"


def rx_queue_count(port):
    """RX queues to poll under software steering: the port's `rx_queues`, else the vdev's queue
    pairs. net_af_packet opens one socket per queue pair and joins them in a fanout group, so
    the kernel spreads received packets over all of them: a queue nobody polls loses its share."""
    if "rx_queues" in port:
        return int(port["rx_queues"])
    for part in port.get("vdev", "").split(",")[1:]:
        key, _, value = part.partition("=")
        if key.strip() == "qpairs":
            return int(value)
    return 1


def udp_frame(size):
    """An Ethernet/IPv4/UDP frame of `size` bytes (10.0.0.1:10000 -> 198.51.100.10:53)."""
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    ip = bytearray(
        bytes.fromhex("4500")
        + (size - 14).to_bytes(2, "big")
        + bytes.fromhex("00010000" "4011" "0000")
        + bytes([10, 0, 0, 1, 198, 51, 100, 10])
    )
    total = sum(int.from_bytes(ip[i : i + 2], "big") for i in range(0, 20, 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    ip[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
    # UDP checksum 0: none (IPv4), so the per-flow source port needs no checksum update.
    udp = (10000).to_bytes(2, "big") + (53).to_bytes(2, "big") + (size - 34).to_bytes(2, "big")
    udp += b"\0\0"
    return eth + bytes(ip) + udp + bytes(size - 42)


def add_test_traffic(bess, manager, wid, traffic):
    """The optional in-pipeline source feeding the dispatcher, rate-limited by TRAFFIC_TC."""
    size = int(traffic.get("pkt_size", 64))
    src, tmpl, gen = f"{manager}_tsrc", f"{manager}_ttmpl", f"{manager}_tgen"
    bess.create_module("Source", src, {"pkt_size": size})
    bess.create_module("Rewrite", tmpl, {"templates": [udp_frame(size)]})
    bess.create_module("DyssectSeqGen", gen, {"flows": int(traffic.get("flows", 1024))})
    bess.connect_modules(src, tmpl)
    bess.connect_modules(tmpl, gen)
    bess.connect_modules(gen, manager + "_dispatch")
    bess.add_tc(
        TRAFFIC_TC,
        policy="rate_limit",
        wid=wid,
        resource="packet",
        limit={"packet": int(traffic["rate_pps"])},
    )
    bess.attach_task(src, parent=TRAFFIC_TC)


def build(bess, cfg):
    manager = cfg["module"]
    cores = cfg["cores"]
    m = len(cores)
    ports = {p["name"]: p for p in cfg["ports"]}
    rx, tx = cfg["rx_port"], cfg["tx_port"]

    # "auto": the RX port's RSS RETA is programmed on a NIC, software steering on a vdev.
    steering = cfg["steering"]
    if steering == "auto":
        steering = "software" if "vdev" in ports[rx] else "hardware"
    hardware = steering == "hardware"

    bess.pause_all()
    bess.reset_all()

    cpus = {int(k): int(v) for k, v in cfg.get("worker_cpus", {}).items()}
    for core in cores:
        bess.add_worker(wid=core, core=cpus.get(core, core))

    for name, port in ports.items():
        arg = {"pci": port["pci"]} if "pci" in port else {"vdev": port["vdev"]}
        # Queues: one RX queue per core under hardware steering (every queue the vdev opens
        # otherwise), one TX queue per core so every chain sends on its own queue.
        if name == rx:
            arg["num_inc_q"] = m if hardware else rx_queue_count(port)
        else:
            arg["num_inc_q"] = 1
        arg["num_out_q"] = m if name == tx else 1
        bess.create_port("PMDPort", name, arg)

    mgr_arg = {
        "shards": cfg["shards"],
        "cores": cores,
        "window_s": cfg["window_s"],
        "flow_table_size": cfg["flow_table_size"],
        "flow_idle_timeout_ms": cfg["flow_idle_timeout_ms"],
        "steering": steering,
        "working": cfg["working"],
        "drop_non_flow": cfg["drop_non_flow"],
    }
    if hardware and cfg.get("dpdk_port") is not None:
        mgr_arg["dpdk_port"] = cfg["dpdk_port"]
    bess.create_module("DyssectShardManager", manager, mgr_arg)

    if not hardware:
        # Worker ids of the core list are its CPU ids; the dispatcher takes the lowest free id.
        wid = min(set(range(64)) - set(cores))
        bess.add_worker(wid=wid, core=cfg["dispatcher_core"])
        # With the test source the dispatcher takes only its packets: a virtual RX port (net_null)
        # would flood it with packets no flow owns.
        disp_arg = {"manager": manager}
        if not cfg.get("test_traffic"):
            disp_arg.update({"port": rx, "qid": 0})
        bess.create_module("DyssectDispatcher", manager + "_dispatch", disp_arg)
        bess.attach_task(manager + "_dispatch", wid=wid)
        if not cfg.get("test_traffic"):
            for qid in range(1, rx_queue_count(ports[rx])):
                inc = f"{manager}_rxq{qid}"
                bess.create_module("QueueInc", inc, {"port": rx, "qid": qid})
                bess.connect_modules(inc, manager + "_dispatch")
                bess.attach_task(inc, wid=wid)
        if cfg.get("test_traffic"):
            add_test_traffic(bess, manager, wid, cfg["test_traffic"])

    for k, core in enumerate(cores):
        w_name = f"{manager}_w{k}"
        o_name = f"{manager}_o{m - 1 - k}"
        w_arg = {"manager": manager, "slot": k}
        if hardware:
            w_arg.update({"port": rx, "qid": k})
        bess.create_module("DyssectWorkingCore", w_name, w_arg)
        o_arg = {"manager": manager, "slot": m - 1 - k}
        if "class_mark_offset" in cfg:
            o_arg["class_mark_offset"] = int(cfg["class_mark_offset"])
        bess.create_module("DyssectOffloadingCore", o_name, o_arg)

        chain = []
        for i, nf in enumerate(cfg["chain"]):
            mclass, arg = nf_module(nf, manager)
            name = f"{manager}_c{k}_{nf['kind']}{i}"
            bess.create_module(mclass, name, arg)
            chain.append(name)
        egress = f"{manager}_c{k}_egress"
        bess.create_module("DyssectEgress", egress, {"manager": manager})
        out = f"{manager}_c{k}_out"
        bess.create_module("QueueOut", out, {"port": tx, "qid": k})
        chain += [egress, out]

        bess.connect_modules(w_name, chain[0])
        bess.connect_modules(o_name, chain[0])
        for a, b in itertools.pairwise(chain):
            bess.connect_modules(a, b)
        bess.attach_task(w_name, wid=core)
        bess.attach_task(o_name, wid=core)

    bess.resume_all()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: dyssect-pipeline.py CONFIG.json")
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    sys.path.insert(0, cfg["pybess_path"])
    from pybess.bess import BESS  # the path is known only from the config

    bess = connect(BESS, cfg["grpc_url"], cfg["timeout_s"])
    try:
        build(bess, cfg)
    except BESS.Error as err:
        sys.exit(f"dyssect-pipeline: {err}")
    names = sorted(mod.name for mod in bess.list_modules().modules)
    cores = len(cfg["cores"])
    print(f"dyssect-pipeline: loaded {len(names)} modules on {cores} cores: {' '.join(names)}")


if __name__ == "__main__":
    main()
