#!/usr/bin/env python3
"""Load the Dyssect pipeline into a running bessd (run by dyssect-pipeline.service).

Usage: dyssect-pipeline.py CONFIG.json

The config (rendered by the dyssect role) names the pybess directory, bessd's gRPC address, the
ports, the shard manager's arguments, the core list and the NF chain. The script resets bessd (so
a rerun never stacks a second pipeline), then builds:

  workers      one BESS worker per core of the core list (wid = CPU id, as the controller
               expects), plus the dispatcher's worker (the lowest free id, on its own CPU)
               under software steering;
  manager      DyssectShardManager <module> with the shards and the core list;
  steering     software: DyssectDispatcher polling the RX port; hardware: every working core
               polls its own RX queue of that port (RSS with RETA updates);
  per core k   DyssectWorkingCore (slot k) and DyssectOffloadingCore (slot M-1-k) attached to
               worker cores[k], both feeding one chain of that core:
               NFs in order -> DyssectEgress -> QueueOut(tx port, queue k).

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

    for core in cores:
        bess.add_worker(wid=core, core=core)

    for name, port in ports.items():
        arg = {"pci": port["pci"]} if "pci" in port else {"vdev": port["vdev"]}
        # Queues: one RX queue per core under hardware steering (one otherwise), one TX queue
        # per core so every chain sends on its own queue.
        arg["num_inc_q"] = m if hardware and name == rx else 1
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
        bess.create_module(
            "DyssectDispatcher", manager + "_dispatch", {"manager": manager, "port": rx, "qid": 0}
        )
        bess.attach_task(manager + "_dispatch", wid=wid)

    for k, core in enumerate(cores):
        w_name = f"{manager}_w{k}"
        o_name = f"{manager}_o{m - 1 - k}"
        w_arg = {"manager": manager, "slot": k}
        if hardware:
            w_arg.update({"port": rx, "qid": k})
        bess.create_module("DyssectWorkingCore", w_name, w_arg)
        bess.create_module("DyssectOffloadingCore", o_name, {"manager": manager, "slot": m - 1 - k})

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
