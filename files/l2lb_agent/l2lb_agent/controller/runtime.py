"""The elected controller's loop: watched caches -> IPAM + scheduling -> only the writes that differ.

On any change in the caches (coalesced over a few ms) and when a heartbeat may have expired (a timer:
expiry is the *absence* of events), :meth:`ControllerRuntime.reconcile` rebuilds the whole picture
from the API objects — state lives only there, so any agent can take over — runs :func:`allocate`
and :func:`schedule`, and :func:`plan` turns the result into writes:

* Service ``status.loadBalancer.ingress`` and conditions ``l2lb.io/IPAllocated`` / ``l2lb.io/Announced``
  (status subresource, merge patch);
* one ``L2Assignment`` object per node in the agents' namespace (:mod:`.assignments`): the only thing
  speakers act on, written first and make-before-break;
* Service annotations ``l2lb.io/announcing-node``, ``l2lb.io/announcing-interfaces``, ``l2lb.io/pool``
  (informational: what users and ``verify.yml`` read, and what 0.1 speakers follow during an upgrade);
  announcement annotations the controller did not write are removed and counted
  (``l2lb_refused_announcements_total{reason="service_annotation"}``);
* one Warning Event per refusal, when the condition's reason or message changes (not per reconcile);
* pool status: total/used/available and conditions ``Conflicting``, ``Exhausted``, ``Invalid``.

Nothing is written when nothing differs, so the steady-state write count does not depend on the
number of Services. Writes are folded back into the informer caches at once, so the next round never
acts on our own stale copy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..heartbeat import NODE_LEASE_PREFIX, LeaseObserver, parse_heartbeat
from ..kube import ApiError, Informer, KubeClient
from ..logs import fields
from ..metrics import Metrics
from ..model.contract import DEFAULT_NAMESPACE, REFUSED_SERVICE_ANNOTATION, format_announcements, parse_announcements
from ..worker import Worker
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
    service_key,
)
from .scheduler import ScheduleResult, schedule
from .types import (
    ANNOTATION_ANNOUNCING_INTERFACES,
    ANNOTATION_ANNOUNCING_NODE,
    ANNOTATION_POOL,
    NodeInfo,
    ServiceInfo,
)

log = logging.getLogger(__name__)

OUR_ANNOTATIONS = (ANNOTATION_ANNOUNCING_NODE, ANNOTATION_ANNOUNCING_INTERFACES, ANNOTATION_POOL)
REASON_ALLOCATED = "Allocated"
REASON_ANNOUNCED = "Announced"
REASON_NO_IP = "NoIP"
EVENT_COMPONENT = "l2lb-controller"


# ---- planning (pure) ----


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


# ---- the runtime ----


@dataclass
class Caches:
    """The informers the controller reads (shared with the rest of the agent)."""

    services: Informer
    endpointslices: Informer
    nodes: Informer
    leases: Informer
    pools: Informer
    policies: Informer
    assignments: Informer

    def all(self) -> list[Informer]:
        return [
            self.services,
            self.endpointslices,
            self.nodes,
            self.leases,
            self.pools,
            self.policies,
            self.assignments,
        ]

    def synced(self) -> bool:
        return all(i.synced for i in self.all())


class LostLeadership(Exception):
    """Raised mid-reconcile when this agent stops being the controller: write nothing more."""


class ControllerRuntime(Worker):
    """Runs reconcile rounds while this agent is the leader; see the module docstring."""

    def __init__(
        self,
        kube: KubeClient,
        caches: Caches,
        observer: LeaseObserver,
        node: str,
        is_leader: Callable[[], bool],
        *,
        metrics: Metrics | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        debounce: float = 0.01,
        namespace: str = DEFAULT_NAMESPACE,
        standbys: int = 1,
    ) -> None:
        super().__init__(f"l2lb-controller-{node}")
        self.namespace = namespace
        self.standbys = standbys
        self.kube = kube
        self.caches = caches
        self.observer = observer
        self.node = node
        self._is_leader = is_leader
        self._metrics = metrics or kube.metrics
        self._log = logger or log
        self._debounce = debounce
        self._round = threading.Lock()  # held for a whole round: deactivate + wait_idle never cut one short
        self._active = False
        self._settling = False
        self._retry_at: float | None = None
        self._failures = 0
        self._invalid_seen: dict[str, str] = {}
        self.rounds = 0
        self.writes = 0
        self.last_plan: Plan | None = None
        self.last_schedule: ScheduleResult | None = None
        self.last_round_at: float | None = None

    # ---- control ----

    def activate(self) -> None:
        """We became the controller: rebuild everything from the API objects (once liveness is known)."""
        self._settling = True
        self._active = True
        self._wake.set()

    def deactivate(self) -> None:
        self._active = False
        self._wake.set()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Deactivate and wait for a round in progress to finish (graceful shutdown)."""
        self._active = False
        if self._round.acquire(timeout=timeout):
            self._round.release()
            return True
        return False

    @property
    def active(self) -> bool:
        return self._active

    @property
    def settling(self) -> bool:
        """Just took over and waiting until every heartbeat was seen changing or expired."""
        return self._active and self._settling

    def notify(self, *_: Any) -> None:
        """Something the controller reads changed (informer handler signature compatible)."""
        self._wake.set()

    # ---- the loop ----

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._next_wakeup())
            if self._stopping.is_set():
                break
            if not self._active or not self._is_leader():
                self._wake.clear()
                continue
            if not self.caches.synced():
                self._stopping.wait(0.05)
                continue
            if self._settling:
                settled = self.observer.settled_at(NODE_LEASE_PREFIX)
                if settled is not None and settled > time.monotonic():
                    self._retry_at = settled + 0.005  # wake then, or earlier when a lease changes
                    self._wake.clear()
                    continue
                self._settling = False
            # Coalesce a burst of events (a re-list, a pool edit touching many Services) into one round.
            self._stopping.wait(self._debounce)
            self._wake.clear()
            self._retry_at = None
            try:
                with self._round:
                    if not self._active:
                        continue
                    self.reconcile()
                self._failures = 0
            except LostLeadership:
                self._log.info("stopped reconciling: no longer the controller")
            except Exception as exc:
                self._failures += 1
                delay = min(5.0, 0.2 * 2 ** min(self._failures, 5))
                self._retry_at = time.monotonic() + delay
                self._log.exception("reconcile failed; retrying", extra=fields(error=str(exc), delay=delay))

    def _next_wakeup(self) -> float | None:
        if not self._active:
            return None
        now = time.monotonic()
        times = [t for t in (self.observer.next_expiry(), self._retry_at) if t is not None]
        if not times:
            return 1.0
        # A hair after the expiry, so the observer already judges the lease dead when we look.
        return max(0.0, min(times) - now + 0.005)

    def _check_leader(self) -> None:
        if not self._is_leader() or self._stopping.is_set():
            raise LostLeadership()

    def reconcile(self) -> Plan:
        """One full round: read caches, decide, write what differs."""
        started = time.monotonic()
        self._check_leader()
        services = {service_key(s): s for s in self.caches.services.items()}
        decision = decide(
            services,
            self.caches.pools.items(),
            self.caches.policies.items(),
            self.caches.leases.items(),
            self.caches.nodes.snapshot(),
            self.caches.endpointslices.items(),
            self.observer.alive,
            cond.now_time(),
            self.caches.assignments.items(),
            self.namespace,
            self.node,
            self.standbys,
        )
        self._report_invalid(decision.invalid_pools, decision.invalid_policies)
        self._execute(decision.plan, services)
        self.rounds += 1
        self.last_plan = decision.plan
        self.last_schedule = decision.schedule
        self.last_round_at = time.monotonic()
        self._metrics.reconcile_seconds.observe(self.last_round_at - started)
        self._metrics.nodes_alive.set(sum(1 for n in decision.nodes if n.alive))
        ipam = decision.ipam
        self._metrics.services_allocated.set(sum(1 for a in ipam.services.values() if a.ips))
        self._metrics.services_refused.set(
            sum(1 for a in ipam.services.values() if a.refusal) + len(decision.schedule.unschedulable)
        )
        for name, status in ipam.pools.items():
            self._metrics.pool_available.labels(name).set(float(status.available))
            self._metrics.pool_used.labels(name).set(status.used)
        return decision.plan

    def _report_invalid(self, pools: Mapping[str, Sequence[str]], policies: Mapping[str, Sequence[str]]) -> None:
        current = {f"pool {n}": "; ".join(p) for n, p in pools.items()}
        current.update({f"policy {n}": "; ".join(p) for n, p in policies.items()})
        for name, text in current.items():
            if self._invalid_seen.get(name) != text:
                self._log.warning("ignoring an invalid object", extra=fields(object=name, problems=text))
        self._invalid_seen = current

    def _execute(self, result: Plan, services: Mapping[str, Mapping[str, Any]]) -> None:
        failed = 0
        # Speakers act on the assignment objects: they go first, so users never read an annotation
        # that is ahead of the wire.
        for assignment in result.assignments:
            failed += self._write_assignment(assignment)
        for write in result.services:
            raw = services.get(write.key) or {}
            for ip, old, new in write.moves:
                self._log.info(
                    "announcing node changes",
                    extra=fields(service=write.key, ip=ip, to=new or "none", previous=old or "none"),
                )
            if write.forged:
                self._metrics.refused_announcements.labels(REFUSED_SERVICE_ANNOTATION).inc(len(write.forged))
                self._log.warning(
                    "removing announcement annotations the controller did not write (nothing answers them)",
                    extra=fields(service=write.key, ips=",".join(write.forged)),
                )
            failed += self._write_service(write, raw)
        for pool_write in result.pools:
            self._check_leader()
            try:
                stored = self.kube.patch_pool_status(pool_write.name, pool_write.status_patch)
                self.caches.pools.store_written(stored)
                self._counted("pool_status")
            except ApiError as exc:
                if not exc.not_found:
                    failed += 1
                    self._log.warning("pool status write failed", extra=fields(pool=pool_write.name, error=str(exc)))
        if failed:
            self._failures += 1
            self._retry_at = time.monotonic() + min(5.0, 0.2 * 2 ** min(self._failures, 5))

    def _write_assignment(self, write: AssignmentWrite) -> int:
        self._check_leader()
        try:
            if write.op == "delete":
                self.kube.delete_assignment(self.namespace, write.name)
            elif write.op == "create" and write.body is not None:
                self.caches.assignments.store_written(self.kube.create_assignment(self.namespace, write.body))
            elif write.body is not None:
                stored = self.kube.replace_assignment(self.namespace, write.name, write.body)
                self.caches.assignments.store_written(stored)
            self._counted("assignment")
        except ApiError as exc:
            if write.op == "delete" and exc.not_found:
                return 0
            # 409 (someone else wrote it) or 404 (deleted meanwhile): the watch brings the truth, retry then.
            self._log.warning("assignment write failed", extra=fields(node=write.node, op=write.op, error=str(exc)))
            return 1
        if write.added or write.removed:
            self._log.debug(
                "assignment written",
                extra=fields(
                    node=write.node, added=",".join(write.added) or "-", removed=",".join(write.removed) or "-"
                ),
            )
        return 0

    def _write_service(self, write: ServiceWrite, raw: Mapping[str, Any]) -> int:
        try:
            if write.status_patch is not None:
                self._check_leader()
                stored = self.kube.patch_service_status(write.namespace, write.name, write.status_patch)
                self.caches.services.store_written(stored)
                self._counted("service_status")
            if write.metadata_patch is not None:
                self._check_leader()
                stored = self.kube.patch_service(write.namespace, write.name, write.metadata_patch)
                self.caches.services.store_written(stored)
                self._counted("service_annotations")
            for type_, reason, message in write.events:
                self._check_leader()
                self.kube.create_event(
                    write.namespace, event_body(raw, self.node, type_, reason, message, cond.now_time())
                )
                self._counted("event")
                self._log.info("refusal", extra=fields(service=write.key, reason=reason, message=message))
        except ApiError as exc:
            if exc.not_found:
                return 0  # deleted meanwhile; the watch will tell us
            self._log.warning("service write failed", extra=fields(service=write.key, error=str(exc)))
            return 1
        return 0

    def _counted(self, kind: str) -> None:
        self.writes += 1
        self._metrics.reconcile_writes.labels(kind).inc()
