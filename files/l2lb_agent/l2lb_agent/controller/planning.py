"""The controller's pure half: from watched API objects to the writes that make the API say what was decided.

:func:`decide` runs IPAM and scheduling on plain copies of the objects and :func:`plan` diffs the result
against what the objects say now: Service status and conditions, the informational annotations, Events
for refusals, pool status and the assignment objects (:mod:`.assignments`). No I/O; the loop that reads
the caches and executes the plan is :mod:`.runtime`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..leases import NODE_LEASE_PREFIX, parse_heartbeat
from ..model.contract import DEFAULT_NAMESPACE, format_announcements, parse_announcements
from . import conditions as cond
from .assignments import AssignmentWrite, assigned_nodes, choose_standbys, desired_assignments, plan_assignments
from .conditions import Condition
from .ipam import IPAMResult, allocate, is_ours
from .objects import (
    current_assignments,
    local_endpoints,
    node_infos,
    parse_policies,
    parse_pools,
    service_info,
)
from .scheduler import ScheduleResult, schedule
from .types import (
    ANNOTATION_ANNOUNCING_INTERFACES,
    ANNOTATION_ANNOUNCING_NODE,
    ANNOTATION_POOL,
    NodeInfo,
    ServiceInfo,
)

OUR_ANNOTATIONS = (ANNOTATION_ANNOUNCING_NODE, ANNOTATION_ANNOUNCING_INTERFACES, ANNOTATION_POOL)
REASON_ALLOCATED = "Allocated"
REASON_ANNOUNCED = "Announced"
REASON_NO_IP = "NoIP"
EVENT_COMPONENT = "l2lb-controller"


@dataclass
class ServiceWrite:
    """What to change on one Service."""

    namespace: str
    name: str
    status_patch: dict[str, Any] | None = None
    metadata_patch: dict[str, Any] | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    moves: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (ip, from, to), for logs
    forged: list[str] = field(default_factory=list)  # announcement annotations we did not write, being removed

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def empty(self) -> bool:
        return self.status_patch is None and self.metadata_patch is None and not self.events


@dataclass
class PoolWrite:
    name: str
    status_patch: dict[str, Any]


@dataclass
class Plan:
    services: list[ServiceWrite]
    pools: list[PoolWrite]
    assignments: list[AssignmentWrite] = field(default_factory=list)

    @property
    def write_count(self) -> int:
        count = len(self.pools) + len(self.assignments)
        for write in self.services:
            count += (write.status_patch is not None) + (write.metadata_patch is not None) + len(write.events)
        return count


def _service_conditions(
    info: ServiceInfo,
    allocated: tuple[str, ...],
    pools: tuple[str, ...],
    refusal_reason: str | None,
    refusal_message: str,
    announced: Sequence[str],
    unschedulable: Mapping[str, tuple[str, str]],
    ours: bool,
) -> list[Condition]:
    desired: list[Condition] = []
    if ours:
        if refusal_reason is not None:
            holding = f"holding {', '.join(allocated)}; " if allocated else ""
            desired.append(Condition(cond.IP_ALLOCATED, "False", refusal_reason, holding + refusal_message))
        elif allocated:
            pool_text = ", ".join(dict.fromkeys(pools))
            desired.append(
                Condition(cond.IP_ALLOCATED, "True", REASON_ALLOCATED, f"{', '.join(allocated)} from pool {pool_text}")
            )
        else:
            desired.append(Condition(cond.IP_ALLOCATED, "False", "Pending", "waiting for an address"))
    if not announced:
        if ours:
            desired.append(
                Condition(
                    cond.ANNOUNCED, "False", REASON_NO_IP, "no IP to announce (see condition l2lb.io/IPAllocated)"
                )
            )
        return desired
    if unschedulable:
        reasons = sorted({reason for reason, _ in unschedulable.values()})
        message = "; ".join(f"{ip}: {msg}" for ip, (_, msg) in sorted(unschedulable.items()))
        desired.append(Condition(cond.ANNOUNCED, "False", reasons[0], message))
    else:
        count = len(announced)
        plural = "IP" if count == 1 else "IPs"
        desired.append(
            Condition(
                cond.ANNOUNCED,
                "True",
                REASON_ANNOUNCED,
                # The node is in the annotation, not here: a failover then rewrites only the annotation.
                f"{count} {plural} answered on layer 2; the node is in annotation {ANNOTATION_ANNOUNCING_NODE}",
            )
        )
    return desired


def plan_service(
    raw: Mapping[str, Any],
    info: ServiceInfo,
    ipam: IPAMResult,
    sched: ScheduleResult,
    now: str,
    written: Mapping[str, str] | None = None,
) -> ServiceWrite | None:
    """The writes one Service needs, or None when it is fine as it is (or not ours at all).

    ``written``: ip -> node as the assignment objects say (None: there are none yet, an upgrade from 0.1).
    An announcing-node annotation that disagrees with them was not written by a controller.
    """
    key = info.key
    meta = raw.get("metadata") or {}
    annotations: Mapping[str, Any] = meta.get("annotations") or {}
    status = raw.get("status") or {}
    current_conditions = status.get("conditions") if isinstance(status, Mapping) else None
    alloc = ipam.services.get(key)
    ours = alloc is not None and is_ours(info)
    announced = sched.service_ips.get(key, ())
    has_our_marks = any(a in annotations for a in OUR_ANNOTATIONS) or any(
        cond.find(current_conditions, t) is not None for t in cond.SERVICE_CONDITIONS
    )
    if alloc is None and not announced and not has_our_marks:
        return None
    write = ServiceWrite(info.namespace, info.name)

    # status.loadBalancer.ingress: only for Services IPAM speaks for (ours, or ours no longer: clear).
    status_patch: dict[str, Any] = {}
    allocated = alloc.ips if alloc is not None else ()
    if alloc is not None and tuple(info.ingress_ips) != tuple(allocated):
        existing = {}
        lb = status.get("loadBalancer") if isinstance(status, Mapping) else None
        for entry in (lb or {}).get("ingress") or []:
            if isinstance(entry, Mapping) and entry.get("ip"):
                existing[str(entry["ip"])] = dict(entry)
        status_patch["loadBalancer"] = {"ingress": [existing.get(ip, {"ip": ip}) for ip in allocated]}

    # Conditions, and a Warning Event for each refusal that is new or says something new.
    unschedulable = {
        ip: (sched.unschedulable[ip].reason, sched.unschedulable[ip].message)
        for ip in announced
        if ip in sched.unschedulable
    }
    refusal = alloc.refusal if alloc is not None else None
    desired = _service_conditions(
        info,
        allocated,
        alloc.pools if alloc is not None else (),
        refusal.reason if refusal else None,
        refusal.message if refusal else "",
        announced,
        unschedulable,
        ours,
    )
    merged, changed = cond.merge(current_conditions, desired, cond.SERVICE_CONDITIONS, now)
    if changed:
        status_patch["conditions"] = merged
        for condition in desired:
            if condition.reason != REASON_NO_IP and cond.changed_to_failure(current_conditions, condition):
                write.events.append(("Warning", condition.reason, condition.message))
    if status_patch:
        write.status_patch = {"status": status_patch}

    # Annotations: who announces, on which interfaces, from which pool.
    assigned = [sched.assignments[ip] for ip in announced if ip in sched.assignments]
    node_value, iface_value = format_announcements(assigned, allocated)
    pools = alloc.pools if alloc is not None else ()
    wanted = {
        ANNOTATION_ANNOUNCING_NODE: node_value,
        ANNOTATION_ANNOUNCING_INTERFACES: iface_value if node_value else None,
        ANNOTATION_POOL: ",".join(dict.fromkeys(pools)) or None,
    }
    changes = {k: v for k, v in wanted.items() if annotations.get(k) != v and (v is not None or k in annotations)}
    if changes:
        write.metadata_patch = {"metadata": {"annotations": changes}}
        before = parse_announcements(annotations, info.ingress_ips)
        after = {a.ip: a.node for a in assigned}
        legitimate = set(allocated) | set(announced)
        for ip in sorted(set(before) | set(after)):
            old = before[ip].node if ip in before else None
            if old != after.get(ip):
                write.moves.append((ip, old, after.get(ip)))
        # An annotation naming an address this Service was never given, or on a Service that is not ours:
        # nobody acts on it (speakers read only their assignment objects), but say so and remove it.
        write.forged = sorted(
            ip
            for ip in before
            if ip not in legitimate or not ours or (written is not None and written.get(ip) != before[ip].node)
        )
        if ANNOTATION_ANNOUNCING_NODE in annotations and not before:
            write.forged.append(str(annotations.get(ANNOTATION_ANNOUNCING_NODE))[:64])
    return None if write.empty else write


def plan_pool(
    raw: Mapping[str, Any], ipam: IPAMResult, invalid: Mapping[str, Sequence[str]], now: str
) -> PoolWrite | None:
    meta = raw.get("metadata") or {}
    name = str(meta.get("name") or "")
    status = raw.get("status") or {}
    if not isinstance(status, Mapping):
        status = {}
    if name in invalid:
        counts: dict[str, Any] = {"total": "0", "used": 0, "available": "0"}
        desired = [
            Condition(
                cond.INVALID,
                "True",
                "InvalidSpec",
                "; ".join(invalid[name]) + " — the pool allocates nothing until fixed",
            )
        ]
    else:
        pool = ipam.pools.get(name)
        if pool is None:
            return None
        counts = {"total": str(pool.total), "used": pool.used, "available": str(pool.available)}
        if pool.conflicting:
            conflicting = Condition(cond.CONFLICTING, "True", "Overlap", pool.conflict_message)
        else:
            conflicting = Condition(cond.CONFLICTING, "False", "NoOverlap", "")
        if pool.disabled:
            exhausted = Condition(cond.EXHAUSTED, "False", "Disabled", "the pool is disabled: it allocates nothing")
        elif not pool.conflicting and pool.available == 0:
            exhausted = Condition(cond.EXHAUSTED, "True", "NoFreeAddresses", f"all {pool.total} addresses are in use")
        else:
            exhausted = Condition(cond.EXHAUSTED, "False", "AddressesAvailable", "")
        desired = [conflicting, exhausted, Condition(cond.INVALID, "False", "Valid", "")]
    merged, changed = cond.merge(status.get("conditions"), desired, cond.POOL_CONDITIONS, now)
    counts_changed = any(status.get(k) != v for k, v in counts.items())
    if not changed and not counts_changed:
        return None
    return PoolWrite(name, {"status": {**counts, "conditions": merged}})


def plan(
    services: Mapping[str, Mapping[str, Any]],
    infos: Mapping[str, ServiceInfo],
    pools: Mapping[str, Mapping[str, Any]],
    invalid_pools: Mapping[str, Sequence[str]],
    ipam: IPAMResult,
    sched: ScheduleResult,
    now: str,
    written: Mapping[str, str] | None = None,
) -> Plan:
    """Every write needed to make the API say what IPAM and the scheduler decided. Pure."""
    service_writes = []
    for key in sorted(services):
        write = plan_service(services[key], infos[key], ipam, sched, now, written)
        if write is not None:
            service_writes.append(write)
    pool_writes = [w for w in (plan_pool(pools[n], ipam, invalid_pools, now) for n in sorted(pools)) if w is not None]
    return Plan(service_writes, pool_writes)


def event_body(
    service: Mapping[str, Any], node: str, type_: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    """A core/v1 Event about a Service, as kubectl describe shows it."""
    meta = service.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Service",
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[: cond.MAX_MESSAGE],
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": EVENT_COMPONENT, "host": node},
        "reportingComponent": "l2lb.io/controller",
        "reportingInstance": node,
    }


@dataclass
class Decision:
    """Everything one round decided, and the writes that make the API say so."""

    plan: Plan
    ipam: IPAMResult
    schedule: ScheduleResult
    nodes: list[NodeInfo]
    invalid_pools: dict[str, list[str]]
    invalid_policies: dict[str, list[str]]


def decide(
    services: Mapping[str, Mapping[str, Any]],
    pools: Iterable[Mapping[str, Any]],
    policies: Iterable[Mapping[str, Any]],
    leases: Iterable[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
    endpointslices: Iterable[Mapping[str, Any]],
    alive: Callable[[str], bool],
    now: str,
    assignments: Iterable[Mapping[str, Any]] = (),
    namespace: str = DEFAULT_NAMESPACE,
    leader: str = "",
    standbys: int = 0,
) -> Decision:
    """From API objects (as watched) to the plan of writes: IPAM, scheduling, diff. Pure.

    ``services`` is keyed ``namespace/name``; ``alive(lease_name)`` is the observer's judgement;
    ``assignments`` are the current assignment objects. Stickiness comes from them; only a cluster that
    has none yet (an upgrade from 0.1, whose controller wrote only Service annotations) takes it from
    the Services' announcing-node annotations, once.
    """
    current_objects = {str((o.get("metadata") or {}).get("name") or ""): o for o in assignments}
    written = assigned_nodes(current_objects.values()) if current_objects else None
    infos = {key: service_info(s) for key, s in services.items()}
    pool_objs = {str((p.get("metadata") or {}).get("name")): p for p in pools}
    pool_infos, invalid_pools = parse_pools(pool_objs.values())
    policy_list, invalid_policies = parse_policies(policies)
    heartbeats = [
        lease for lease in leases if str((lease.get("metadata") or {}).get("name", "")).startswith(NODE_LEASE_PREFIX)
    ]
    node_list = node_infos(heartbeats, nodes, alive)
    service_list = list(infos.values())
    ipam = allocate(pool_infos, service_list)
    sched = schedule(
        ipam,
        service_list,
        policy_list,
        node_list,
        local_endpoints(endpointslices),
        written if written is not None else current_assignments(services.values()),
    )
    result = plan(services, infos, pool_objs, invalid_pools, ipam, sched, now, written)
    desired = desired_assignments(ipam, sched, (n.name for n in node_list))
    candidates = {
        beat.node
        for lease in heartbeats
        if (beat := parse_heartbeat(lease)) is not None and beat.candidate and not beat.draining
    }
    eligible = [n.name for n in node_list if n.alive and n.name in candidates and n.name != leader]
    # The controller's own object says warm too: it must not turn cold under itself.
    warm = choose_standbys(eligible, current_objects, standbys) | ({leader} if leader else set())
    result.assignments = plan_assignments(desired, current_objects, namespace, warm)
    return Decision(result, ipam, sched, node_list, invalid_pools, invalid_policies)
