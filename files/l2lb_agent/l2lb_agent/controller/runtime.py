"""The elected controller's loop: watched caches -> IPAM + scheduling -> only the writes that differ.

On any change in the caches (coalesced over a few ms) and when a heartbeat may have expired (a timer:
expiry is the *absence* of events), :meth:`ControllerRuntime.reconcile` rebuilds the whole picture
from the API objects — state lives only there, so any agent can take over — runs :func:`allocate`
and :func:`schedule`, and :func:`.planning.plan` (pure, in :mod:`.planning`) turns the result into writes:

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..kube import ApiError, Informer, KubeClient
from ..leases import NODE_LEASE_PREFIX
from ..liveness import LeaseObserver
from ..logs import fields
from ..metrics import Metrics
from ..model.contract import DEFAULT_NAMESPACE, REFUSED_SERVICE_ANNOTATION
from ..worker import Worker
from . import conditions as cond
from .assignments import AssignmentWrite
from .objects import (
    service_key,
)
from .planning import Plan, ServiceWrite, decide, event_body
from .scheduler import ScheduleResult

log = logging.getLogger(__name__)


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
