"""Table 4 — IPAM and scheduling: the controller's pure logic at 1k, 10k and 50k Services over 30 nodes.

The same functions the elected controller runs every round (``controller.ipam.allocate`` and
``controller.scheduler.schedule``), fed a synthetic but varied cluster:

* 4 pools of a /17 each in 198.18.0.0/15: one per team (``serviceSelector`` team=a/b/c) and one for all;
* Services in 40 namespaces, a third each for team a/b/c; 10% share an IP in pairs (sharing key, other
  port), 5% request a specific address, 5% have ``externalTrafficPolicy: Local`` with endpoints on 3 nodes;
* 2 announcement policies: all nodes for everything, and racks r1/r2 only for team c;
* 30 nodes on 3 racks, one up interface each.

Measured per size: a first allocation + schedule (nothing assigned yet), a steady round (every Service
already holds its IP and node: what each later round costs), and the round after one node dies (its IPs
move, nothing else does). Times are the median of several repetitions (one at 50k); peak memory is
measured separately under tracemalloc (which slows the code down), for the first allocation + schedule.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.common import Table, fmt, log, setup_paths

setup_paths()

from l2lb_agent.controller.ipam import IPAMResult, allocate  # noqa: E402
from l2lb_agent.controller.scheduler import ScheduleResult, schedule  # noqa: E402
from l2lb_agent.controller.types import (  # noqa: E402
    ANNOTATION_IPS,
    ANNOTATION_SHARING_KEY,
    InterfaceInfo,
    NodeInfo,
    PoolInfo,
    ServiceInfo,
    ServicePort,
)
from l2lb_agent.model.model import Policy, parse_policy, parse_pool  # noqa: E402
from l2lb_agent.model.problems import Problems  # noqa: E402

NODES = 30
GOAL_SERVICES = 10_000
GOAL_SECONDS = 2.0


@dataclass(frozen=True)
class Size:
    services: tuple[int, ...]
    repeats: int


SIZES = {"smoke": Size(services=(1000,), repeats=1), "full": Size(services=(1000, 10_000, 50_000), repeats=3)}

POOLS = (
    ("pool-a", "198.18.0.0/17", {"matchLabels": {"team": "a"}}),
    ("pool-b", "198.18.128.0/17", {"matchLabels": {"team": "b"}}),
    ("pool-c", "198.19.0.0/17", {"matchLabels": {"team": "c"}}),
    ("pool-d", "198.19.128.0/17", None),
)
REQUEST_BASE = {"a": ("198.18", 100), "b": ("198.18", 200), "c": ("198.19", 100)}  # inside each team's pool


def make_pools() -> list[PoolInfo]:
    result = []
    for i, (name, cidr, selector) in enumerate(POOLS):
        raw: dict[str, Any] = {"name": name, "blocks": [{"cidr": cidr}]}
        if selector is not None:
            raw["serviceSelector"] = selector
        problems = Problems()
        pool = parse_pool(raw, i, problems, [])
        assert pool is not None, [str(p) for p in problems]
        result.append(PoolInfo(pool, created=f"2024-01-0{i + 1}T00:00:00Z", uid=f"pool-{i}"))
    return result


def make_policies() -> list[Policy]:
    raws = [
        {"name": "all", "interfaces": ["^eth"]},
        {
            "name": "team-c-racks",
            "serviceSelector": {"matchLabels": {"team": "c"}},
            "nodeSelector": {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r1", "r2"]}]},
            "interfaces": ["^eth"],
        },
    ]
    result = []
    for i, raw in enumerate(raws):
        problems = Problems()
        policy = parse_policy(raw, i, problems, [])
        assert policy is not None, [str(p) for p in problems]
        result.append(policy)
    return result


def make_nodes() -> list[NodeInfo]:
    return [
        NodeInfo(
            name=f"node-{i:02d}",
            labels={"rack": f"r{i % 3}", "kubernetes.io/hostname": f"node-{i:02d}"},
            interfaces=(InterfaceInfo("eth0", f"02:00:00:00:00:{i:02x}", True, ("198.18.0.0/15",)),),
        )
        for i in range(1, NODES + 1)
    ]


def make_services(count: int) -> tuple[list[ServiceInfo], dict[str, set[str]]]:
    services = []
    local: dict[str, set[str]] = {}
    requested = {team: 0 for team in REQUEST_BASE}
    for i in range(count):
        team = "abc"[(i // 20) % 3]  # in blocks of 20, so both Services of a sharing pair are in one team
        annotations: dict[str, str] = {}
        port = 80
        kind = i % 20
        if kind in (0, 1):  # 10%: pairs sharing one IP (the second of a pair uses another port)
            annotations[ANNOTATION_SHARING_KEY] = f"share-{i // 2}"
            port = 80 + kind
        elif kind == 2:  # 5%: a requested address, distinct per Service, inside the team's pool
            prefix, third = REQUEST_BASE[team]
            n = requested[team]
            requested[team] += 1
            annotations[ANNOTATION_IPS] = f"{prefix}.{third + n // 250}.{1 + n % 250}"
        service = ServiceInfo(
            namespace=f"ns-{i % 40:02d}",
            name=f"svc-{i:05d}",
            uid=f"uid-{i}",
            labels={"team": team, "app": f"app-{i}"},
            annotations=annotations,
            ports=(ServicePort(port),),
            external_traffic_policy="Local" if kind == 3 else "Cluster",
            created=f"2024-02-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}Z",
        )
        services.append(service)
        if kind == 3:
            local[service.key] = {f"node-{1 + (i + k) % NODES:02d}" for k in range(3)}
    return services, local


def with_ingress(services: list[ServiceInfo], ipam: IPAMResult) -> list[ServiceInfo]:
    """The Services as the API shows them after the controller wrote the allocation."""
    return [replace(s, ingress_ips=ipam.services[s.key].ips) if s.key in ipam.services else s for s in services]


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(count: int, repeats: int) -> dict[str, Any]:
    pools, policies, nodes = make_pools(), make_policies(), make_nodes()
    services, local = make_services(count)

    t_alloc, ipam = median_time(lambda: allocate(pools, services), repeats)
    t_sched, first = median_time(lambda: schedule(ipam, services, policies, nodes, local, {}), repeats)
    assigned = with_ingress(services, ipam)
    current = {ip: a.node for ip, a in first.assignments.items()}
    t_alloc2, ipam2 = median_time(lambda: allocate(pools, assigned), repeats)
    t_sched2, steady = median_time(lambda: schedule(ipam2, assigned, policies, nodes, local, current), repeats)
    # One node dies: the busiest one, so the most IPs move.
    load: dict[str, int] = {}
    for a in first.assignments.values():
        load[a.node] = load.get(a.node, 0) + 1
    victim = max(sorted(load), key=lambda n: load[n])
    dead = [replace(n, alive=False) if n.name == victim else n for n in nodes]
    t_dead, after = median_time(lambda: schedule(ipam2, assigned, policies, dead, local, current), repeats)
    moved = sum(1 for ip, a in after.assignments.items() if current.get(ip) != a.node)

    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    ipam_m = allocate(pools, services)
    schedule(ipam_m, services, policies, nodes, local, {})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del ipam_m

    allocated = sum(1 for a in ipam.services.values() if a.ips)
    refused = sum(1 for a in ipam.services.values() if a.refusal)
    _check(ipam, first, steady, current)
    return {
        "count": count,
        "alloc": t_alloc,
        "sched": t_sched,
        "alloc2": t_alloc2,
        "sched2": t_sched2,
        "dead": t_dead,
        "moved": moved,
        "victim_load": load[victim],
        "peak_mib": (peak - base) / 2**20,
        "allocated": allocated,
        "refused": refused,
        "ips": len(first.assignments),
        "unschedulable": len(first.unschedulable),
    }


def _check(ipam: IPAMResult, first: ScheduleResult, steady: ScheduleResult, current: dict[str, str]) -> None:
    """The benchmark's own sanity: a steady round changes nothing."""
    changed = sum(1 for ip, a in steady.assignments.items() if current.get(ip) != a.node)
    if changed:
        raise AssertionError(f"steady round moved {changed} IPs: the benchmark input is not steady")


def run(size_name: str, workdir: Path) -> Table:
    size = SIZES[size_name]
    table = Table(
        key="ipam",
        title=f"4. IPAM and scheduling: controller logic over {NODES} nodes (single thread)",
        columns=[
            "Services",
            "first allocate s",
            "first schedule s",
            "first total s",
            "peak memory MiB (tracemalloc)",
            "steady round s (allocate + schedule)",
            "one node dies: reschedule s",
            "IPs moved",
        ],
        goal=f"{GOAL_SERVICES:,} Services allocated and scheduled in <= {GOAL_SECONDS:g} s",
    )
    results = []
    for count in size.services:
        repeats = size.repeats if count <= 10_000 else 1
        log(f"ipam: {count} Services ({repeats} repetition(s))")
        r = measure(count, repeats)
        results.append(r)
        table.add(
            fmt(count),
            f"{r['alloc']:.3f}",
            f"{r['sched']:.3f}",
            f"{r['alloc'] + r['sched']:.3f}",
            f"{r['peak_mib']:.1f}",
            f"{r['alloc2'] + r['sched2']:.3f}",
            f"{r['dead']:.3f}",
            f"{r['moved']:,} (of {r['victim_load']:,} on it)",
        )
        table.notes.append(
            f"{count:,} Services: {r['allocated']:,} allocated, {r['refused']:,} refused, {r['ips']:,} IPs placed, "
            f"{r['unschedulable']:,} unschedulable; steady round = allocate {r['alloc2']:.3f} s + schedule "
            f"{r['sched2']:.3f} s."
        )
    goal = next((r for r in results if r["count"] == GOAL_SERVICES), None)
    if goal is None:
        table.verdict = f"{GOAL_SERVICES:,} not measured at this size"
    else:
        total = goal["alloc"] + goal["sched"]
        table.verdict = f"{GOAL_SERVICES:,} in {total:.2f} s: {'met' if total <= GOAL_SECONDS else 'missed'}"
    table.notes.insert(
        0,
        "Median of 3 repetitions up to 10k, one run at 50k; peak memory from a separate tracemalloc pass over the "
        "first allocate + schedule (Python objects allocated by them, above what existed before).",
    )
    return table
