"""Table 2 — failover: how long a Service IP goes unanswered when the node announcing it dies or stops.

A network-namespace lab (tests/netns.py: a bridge, 3 node namespaces and a client namespace on 198.18.110.0/24
and 2001:2:0:110::/64) runs the real thing: a real control plane (etcd, kube-apiserver, kube-controller-manager;
tests/controlplane.py) in the client namespace with kube-apiserver on the client's address, three
``python -m l2lb_agent run`` processes with their speakers in the node namespaces, one dual-stack LoadBalancer
Service (an IPv4 and an IPv6 address, on one node). The client asks for one of its IPs every 10 ms (ARP who-has,
for the IPv6 rows a Neighbor Solicitation; tests/arpprobe.py, kernel receive timestamps). Each run sends SIGKILL
(crash: no goodbye) or SIGTERM (graceful: drain and hand over) to the agent whose MAC is answering, and records
the largest gap between two answered probes around it; the agent is then restarted and the next run waits for
one node to answer steadily again. The work happens in :mod:`benchmarks.failover_driver`, run inside the client
namespace; this module builds the lab, runs it and turns its results into the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import PYTHON, JsonChild, ProcessSet, Table, log, percentile, python_env

DEFAULT = {"name": "default", "renew": 0.5, "duration": 2.0, "family": "IPv4"}
FAST = {"name": "lease 1 s", "renew": 0.25, "duration": 1.0, "family": "IPv4"}
DEFAULT6 = {**DEFAULT, "name": "default, IPv6", "family": "IPv6"}


@dataclass(frozen=True)
class Size:
    runs: int  # per kind (SIGKILL, SIGTERM) and timing
    timings: tuple[dict[str, Any], ...]


SIZES = {
    "smoke": Size(runs=1, timings=(DEFAULT, DEFAULT6)),
    "full": Size(runs=20, timings=(DEFAULT, FAST, DEFAULT6)),
}
INTERVAL_MS = 10.0
CRASH_GOAL_MS = 2500.0
GRACEFUL_GOAL_MS = 200.0


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def run(size_name: str, workdir: Path) -> Table:
    from netns import Lab, netns_capable

    size = SIZES[size_name]
    table = Table(
        key="failover",
        title="2. Failover: largest gap in ARP/NDP answers for the Service IP (3 nodes, probe every 10 ms)",
        columns=[
            "family",
            "timing",
            "stop",
            "killed node was",
            "runs",
            "p50 outage ms",
            "p95 outage ms",
            "max outage ms",
            "runs with two MACs answering",
        ],
        goal="crash (SIGKILL) p95 <= 2.5 s at default timings (renew 0.5 s, lease 2 s); "
        "graceful (SIGTERM) p95 <= 0.2 s; IPv4 and IPv6 alike",
    )
    reason = netns_capable()
    if reason is not None:
        table.verdict = f"not measured: {reason}"
        return table
    procs = ProcessSet()
    spawned: list[tuple[int, str | None]] = []
    lab = Lab(nodes=3, subnet="198.18.110.0/24", subnet6="2001:2:0:110::/64")
    result: dict[str, Any] | None = None
    try:
        lab.start()
        driver_dir = workdir / "driver"
        driver_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "workdir": str(driver_dir),
            "client": asdict(lab.client),
            "nodes": [asdict(n) for n in lab.nodes],
            "vip": lab.vip(0),
            "vip6": lab.vip6(0),
            "runs": size.runs,
            "timings": list(size.timings),
            "interval_ms": INTERVAL_MS,
        }
        spec_file = workdir / "spec.json"
        spec_file.write_text(json.dumps(spec))
        argv = ["ip", "netns", "exec", lab.client.netns, PYTHON, "-m", "benchmarks.failover_driver"]
        driver = JsonChild(procs, [*argv, "--spec", str(spec_file)], env=python_env())
        total = 2 * size.runs * len(size.timings)
        timeout = 120.0 + 60.0 * total
        position = 0
        while True:
            index = driver.out.wait_index(lambda s: s.startswith("{"), timeout, start=position)
            position = index + 1
            event = json.loads(driver.out.lines[index])
            if event["event"] == "spawned":
                spawned.append((event["pid"], event["start"]))
            elif event["event"] == "progress":
                log(
                    f"failover [{event['config']}] {event['run']}/{event['of']} {event['kind']} {event['victim']}"
                    f"{' (controller)' if event['was_controller'] else ''}: gap {event['gap_ms']:.0f} ms"
                    f" -> {event['new_node']}"
                )
            elif event["event"] == "result":
                result = event
                break
            elif event["event"] == "error":
                raise RuntimeError(f"failover driver: {event['message']}\n" + "\n".join(driver.err.lines[-20:]))
        # The driver stops its agents and the control plane before it exits; give it the time to.
        with contextlib.suppress(subprocess.TimeoutExpired):
            driver.proc.wait(timeout=60.0)
        driver.stop()
    finally:
        procs.close()
        for pid, start in spawned:  # anything the driver started and could not stop itself
            if start is not None and _proc_start(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        lab.close()
    assert result is not None
    summarize(table, result["configs"])
    return table


def summarize(table: Table, configs: list[dict[str, Any]]) -> None:
    verdicts = []
    for config in configs:
        timing = config["timing"]
        label = f"renew {timing['renew']:g} s, lease {timing['duration']:g} s"
        for kind in ("SIGKILL", "SIGTERM"):
            runs = [r for r in config["runs"] if r["kind"] == kind]
            if not runs:
                continue
            stop = "SIGKILL (crash)" if kind == "SIGKILL" else "SIGTERM (graceful)"
            groups = [
                ("announcing only", [r for r in runs if not r["was_controller"]]),
                ("announcing + controller", [r for r in runs if r["was_controller"]]),
            ]
            if all(subset for _, subset in groups):
                groups.append(("all", runs))
            for role, subset in groups:
                if not subset:
                    continue
                gaps = [r["gap_ms"] for r in subset]
                table.add(
                    timing.get("family", "IPv4"),
                    label,
                    stop,
                    f"**{role}**" if role == "all" else role,
                    len(subset),
                    f"{percentile(gaps, 50):.0f}",
                    f"{percentile(gaps, 95):.0f}",
                    f"{max(gaps):.0f}",
                    f"{sum(1 for r in subset if r['double_answers'])}/{len(subset)}",
                )
            if timing["name"].startswith("default"):
                p95 = percentile([r["gap_ms"] for r in runs], 95)
                goal = CRASH_GOAL_MS if kind == "SIGKILL" else GRACEFUL_GOAL_MS
                what = "crash" if kind == "SIGKILL" else "graceful"
                verdicts.append(
                    f"{timing.get('family', 'IPv4')} {what} p95 {p95:.0f} ms: {'met' if p95 <= goal else 'missed'} "
                    f"(goal {goal:.0f} ms, {len(runs)} runs)"
                )
    table.verdict = "; ".join(verdicts)
    table.notes.append(
        "Outage = largest interval between the send times of two consecutive answered probes, from 0.3 s before "
        "the signal to 0.2 s after the first answer from another node (an undisturbed stretch shows ~10 ms). The "
        "victim is always the node answering at that moment. Half the runs of each kind kill a node that is also "
        "the elected controller (the worst case: a new controller must take over before the IP can move); to get "
        "there the driver restarts an agent gracefully between runs when needed (not measured)."
    )
    table.notes.append(
        "Lease 1 s runs use renew 0.25 s (the agent requires lease > renew and recommends >= 3x). 'two MACs' counts "
        "runs in which some probe got answers from two nodes: with SIGTERM that is the designed make-before-break "
        "overlap (the old node answers until it hears the new node's gratuitous ARP or, for IPv6, unsolicited NA); "
        "with SIGKILL it would be a split brain. The IPv6 rows probe the IPv6 address of the same dual-stack Service "
        "with Neighbor Solicitations: detection and election are shared, only the wire differs."
    )
    table.notes.append(
        "ARP/NDP only, no TCP probe: killing the agent leaves the node's kernel and any service behind the VIP "
        "running, so TCP from a client whose ARP cache still names that node keeps working; the ARP gap is what "
        "a client that has to resolve the IP (new, or its cache expired) sees. A node that dies entirely adds no "
        "detection time (the same lease expiry), but clients' stale ARP entries then black-hole traffic until the "
        "new node's gratuitous ARP arrives (sent on takeover, i.e. at the end of the gap)."
    )
    for config in configs:
        parts = []
        for kind in ("SIGKILL", "SIGTERM"):
            chosen = sorted((r for r in config["runs"] if r["kind"] == kind), key=lambda r: r["gap_ms"])
            gaps = [f"{r['gap_ms']:.0f}{'*' if r['was_controller'] else ''}" for r in chosen]
            parts.append(f"{kind} [{', '.join(gaps)}]")
        table.notes.append(
            f"{config['timing']['name']} timings, every gap in ms (* = the victim was the controller): "
            + "; ".join(parts)
            + f"; graceful restarts between runs to reach the needed state: {config.get('shuffles', 0)}."
        )
