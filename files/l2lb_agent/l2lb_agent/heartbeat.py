"""The node heartbeat (Lease ``l2lb-node-<node>``) and how observers judge leases alive.

Writer side (:class:`Heartbeat`): renew the Lease every ``renew_interval`` with a replace carrying the
last resourceVersion (409 -> re-get, 404 -> create); publish the node's candidate interfaces as an
annotation, re-published at once when a link changes; mark ``l2lb.io/draining`` when shutting down.

Observer side (:class:`LeaseObserver`): a lease is alive while it is *seen changing* — a new
resourceVersion within its duration, timed on the observer's own monotonic clock. ``renewTime`` is
written by another machine's wall clock and is never compared with ours, so clock skew cannot cause a
failover. When the observer itself is blind (it has not seen its *own* heartbeat change for half its
duration: API outage or a stalled watch) it freezes every judgement, and when it sees again it gives
every lease that was alive a fresh grace period: its blindness is not their death.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import LeaseTiming
from .controller.types import InterfaceInfo
from .kube import ApiError, KubeClient, resource_version
from .logs import fields
from .metrics import Metrics
from .model.contract import (  # noqa: F401  (re-exported for the agent's other modules)
    ANNOTATION_CANDIDATE,
    ANNOTATION_DRAINING,
    ANNOTATION_INTERFACES,
    ANNOTATION_LEASE_DURATION,
    CONTROLLER_LEASE,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NODE_LEASE_PREFIX,
    ROLE_LABEL,
    node_lease_name,
)
from .worker import Worker

log = logging.getLogger(__name__)

# An observer that has not seen its own heartbeat change for this fraction of its duration is blind.
# Half: when the API goes away, every lease stops changing at once, and we must freeze our judgement
# before a node that renewed just before us (by up to half a duration) would look expired.
BLIND_AFTER = 0.5


def micro_time(when: datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_duration(lease: Mapping[str, Any], default: float = 2.0) -> float:
    """The precise duration: our annotation (the API field is whole seconds), else the field."""
    meta = lease.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(ANNOTATION_LEASE_DURATION)
    if text is not None:
        try:
            value = float(text)
            if value > 0:
                return value
        except ValueError:
            pass
    seconds = (lease.get("spec") or {}).get("leaseDurationSeconds")
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else default


def lease_holder(lease: Mapping[str, Any] | None) -> str:
    if not lease:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@dataclass(frozen=True)
class HeartbeatInfo:
    """What a node's heartbeat Lease says (apart from liveness, which is the observer's judgement)."""

    node: str
    duration: float
    draining: bool
    interfaces: tuple[InterfaceInfo, ...]
    interfaces_known: bool  # false when the annotation is missing or unreadable
    candidate: bool = False  # the agent may run the controller (it can be a warm standby)


def parse_heartbeat(lease: Mapping[str, Any]) -> HeartbeatInfo | None:
    """Read a heartbeat Lease; None for leases that are not node heartbeats."""
    meta = lease.get("metadata") or {}
    name = str(meta.get("name") or "")
    if not name.startswith(NODE_LEASE_PREFIX):
        return None
    node = name[len(NODE_LEASE_PREFIX) :]
    annotations = meta.get("annotations") or {}
    interfaces, known = parse_interfaces(annotations.get(ANNOTATION_INTERFACES))
    return HeartbeatInfo(
        node=node,
        duration=lease_duration(lease),
        draining=str(annotations.get(ANNOTATION_DRAINING, "")).lower() == "true",
        interfaces=interfaces,
        interfaces_known=known,
        candidate=str(annotations.get(ANNOTATION_CANDIDATE, "")).lower() == "true",
    )


def parse_interfaces(text: Any) -> tuple[tuple[InterfaceInfo, ...], bool]:
    if not isinstance(text, str):
        return (), False
    try:
        raw = json.loads(text)
    except ValueError:
        return (), False
    if not isinstance(raw, list):
        return (), False
    result = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        subnets = entry.get("subnets") or []
        result.append(
            InterfaceInfo(
                name=entry["name"],
                mac=str(entry.get("mac") or ""),
                up=bool(entry.get("up")),
                subnets=tuple(str(s) for s in subnets if isinstance(s, str)),
            )
        )
    return tuple(result), True


def interfaces_annotation(interfaces: Sequence[InterfaceInfo]) -> str:
    body = [{"name": i.name, "mac": i.mac, "up": i.up, "subnets": list(i.subnets)} for i in interfaces]
    return json.dumps(sorted(body, key=lambda e: str(e["name"])), separators=(",", ":"))


def heartbeat_body(
    namespace: str,
    node: str,
    timing: LeaseTiming,
    interfaces: Sequence[InterfaceInfo],
    *,
    draining: bool,
    candidate: bool = False,
    resource_version: str = "",
    acquire_time: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The heartbeat Lease as this node writes it."""
    renew = micro_time(now)
    annotations = {
        ANNOTATION_LEASE_DURATION: str(float(timing.lease_duration)),
        ANNOTATION_INTERFACES: interfaces_annotation(interfaces),
    }
    if draining:
        annotations[ANNOTATION_DRAINING] = "true"
    if candidate:
        annotations[ANNOTATION_CANDIDATE] = "true"
    metadata: dict[str, Any] = {
        "name": node_lease_name(node),
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROLE_LABEL: "heartbeat"},
        "annotations": annotations,
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": timing.lease_duration_seconds,
            "acquireTime": acquire_time or renew,
            "renewTime": renew,
        },
    }


@dataclass
class _Seen:
    rv: str
    holder: str
    duration: float
    changed_at: float
    confirmed: bool = False  # seen changing at least once (not just listed)


class LeaseObserver:
    """Judges leases alive on this observer's monotonic clock; see the module docstring.

    Feed it every Lease event (:meth:`observe`); ask :meth:`alive`. ``self_name`` is this agent's own
    heartbeat lease, whose changes prove that our view is current.
    """

    def __init__(self, self_name: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.self_name = self_name
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._started = clock()

    def observe(self, name: str, lease: Mapping[str, Any] | None) -> None:
        """A lease was added or modified (or deleted: ``lease`` None)."""
        now = self._clock()
        with self._lock:
            if lease is None:
                self._seen.pop(name, None)
                return
            rv = resource_version(lease)
            entry = self._seen.get(name)
            if entry is None:
                # First sight: a fresh observer gives everyone a full period before judging.
                self._seen[name] = _Seen(rv, lease_holder(lease), lease_duration(lease), now)
                return
            changed = entry.rv != rv
            entry.holder = lease_holder(lease)
            entry.duration = lease_duration(lease)
            if not changed:
                return
            entry.confirmed = True
            if name == self.self_name:
                blind_since = self._blind_since(now)
                entry.rv, entry.changed_at = rv, now
                if blind_since is not None:
                    self._grace(blind_since, now)
                return
            entry.rv, entry.changed_at = rv, now

    def grace(self) -> None:
        """Our API connection came back: every lease alive now gets a fresh full period."""
        now = self._clock()
        with self._lock:
            self._grace(self._judgement_time(now), now)

    def alive(self, name: str) -> bool:
        """Seen changing within its duration (with a holder); frozen while we are blind."""
        now = self._clock()
        with self._lock:
            entry = self._seen.get(name)
            if entry is None or not entry.holder:
                return False
            if name == self.self_name:
                return True  # our own node: blind or not, we know we are running
            return self._judgement_time(now) < entry.changed_at + entry.duration

    def known(self, name: str) -> bool:
        with self._lock:
            return name in self._seen

    def blind(self) -> bool:
        with self._lock:
            return self._blind_since(self._clock()) is not None

    def next_expiry(self) -> float | None:
        """The monotonic time at which some judgement may flip (a lease expiring, or us going blind)."""
        now = self._clock()
        with self._lock:
            judged = self._judgement_time(now)
            times = [
                e.changed_at + e.duration
                for e in self._seen.values()
                if e.holder and e.changed_at + e.duration > judged
            ]
            if self.self_name is not None:
                own = self._seen.get(self.self_name)
                if own is not None and own.changed_at + own.duration * BLIND_AFTER > now:
                    times.append(own.changed_at + own.duration * BLIND_AFTER)
            future = [t for t in times if t > now]
            return min(future) if future else None

    def settled_at(self, prefix: str = "") -> float | None:
        """When every lease (named ``prefix...``) seen so far will have been judged on evidence.

        A lease we have only listed, never seen change, is alive by benefit of the doubt; a controller
        that just took over waits until each such lease either changed (alive) or expired (dead) before
        placing anything, so a lease left behind by a long-dead node never attracts new IPs.
        """
        with self._lock:
            times = [
                e.changed_at + e.duration
                for name, e in self._seen.items()
                if name.startswith(prefix) and name != self.self_name and e.holder and not e.confirmed
            ]
        return max(times) if times else None

    def last_change(self, name: str) -> float | None:
        with self._lock:
            entry = self._seen.get(name)
            return entry.changed_at if entry else None

    # -- internals (lock held) --

    def _blind_since(self, now: float) -> float | None:
        if self.self_name is None:
            return None
        own = self._seen.get(self.self_name)
        if own is None:
            return self._started
        until = own.changed_at + own.duration * BLIND_AFTER
        return until if now >= until else None

    def _judgement_time(self, now: float) -> float:
        blind_since = self._blind_since(now)
        return now if blind_since is None else min(now, blind_since)

    def _grace(self, judged_at: float, now: float) -> None:
        for name, entry in self._seen.items():
            if name != self.self_name and judged_at < entry.changed_at + entry.duration:
                entry.changed_at = max(entry.changed_at, now)


InterfacesSource = Callable[[], Sequence[InterfaceInfo]]


class Heartbeat(Worker):
    """Renews this node's heartbeat Lease; see the module docstring."""

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        node: str,
        timing: LeaseTiming,
        interfaces: InterfacesSource | None = None,
        *,
        metrics: Metrics | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        clock_skew: float = 0.0,
        candidate: bool = False,
    ) -> None:
        super().__init__(f"l2lb-heartbeat-{node}")
        self.candidate = candidate
        self.kube = kube
        self.namespace = namespace
        self.node = node
        self.timing = timing
        # Testing only (config heartbeat.clock_skew_seconds): write renewTime as a skewed clock would.
        self.clock_skew = clock_skew
        self.lease_name = node_lease_name(node)
        self._interfaces = interfaces or (lambda: ())
        self._metrics = metrics or kube.metrics
        self._log = logger or log
        self._paused = threading.Event()
        self._rv = ""
        self._acquire_time: str | None = None
        self._draining = False
        self.last_success: float | None = None
        self.last_error = ""
        self.writes = 0
        # A request must not outlast the lease: keep it within half the duration.
        half = max(0.2, timing.lease_duration / 2)
        self._timeout = (min(1.0, half), half)

    def pause(self, paused: bool = True) -> None:
        """Stop renewing without deleting anything (tests: a node that hangs)."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()
            self._wake.set()

    def renew_now(self) -> None:
        """Renew at once (an interface changed) instead of at the next tick."""
        self._wake.set()

    def set_draining(self) -> None:
        self._draining = True
        self._wake.set()

    @property
    def draining(self) -> bool:
        return self._draining

    def fresh(self) -> bool:
        """Whether the last successful renewal is within the lease duration."""
        last = self.last_success
        return last is not None and time.monotonic() - last < self.timing.lease_duration

    def delete(self) -> bool:
        """Delete the Lease (end of a graceful shutdown): observers see the node gone at once."""
        try:
            self.kube.delete_lease(self.namespace, self.lease_name)
            return True
        except ApiError as exc:
            if exc.not_found:
                return True
            self._log.warning("could not delete heartbeat lease", extra=fields(lease=self.lease_name, error=str(exc)))
            return False

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stopping.is_set():
            delay = next_due - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                break
            started = time.monotonic()
            next_due = started + self.timing.renew_interval
            if self._paused.is_set():
                continue
            try:
                self.renew()
            except Exception as exc:  # never let the heartbeat thread die
                self._log.exception("heartbeat renew crashed", extra=fields(error=str(exc)))

    def renew(self) -> bool:
        """One renewal; True on success."""
        started = time.monotonic()
        try:
            self._write()
        except ApiError as exc:
            self._metrics.heartbeat_failures.inc()
            if exc.message != self.last_error:
                self._log.warning("heartbeat renewal failed", extra=fields(lease=self.lease_name, error=str(exc)))
            self.last_error = exc.message or str(exc)
            return False
        if self.last_error:
            self._log.info("heartbeat renewed again", extra=fields(lease=self.lease_name))
        self.last_error = ""
        self.last_success = time.monotonic()
        self.writes += 1
        self._metrics.heartbeat_renew.observe(self.last_success - started)
        return True

    def _body(self) -> dict[str, Any]:
        return heartbeat_body(
            self.namespace,
            self.node,
            self.timing,
            list(self._interfaces()),
            draining=self._draining,
            candidate=self.candidate and not self._draining,
            resource_version=self._rv,
            acquire_time=self._acquire_time,
            now=datetime.now(UTC) + timedelta(seconds=self.clock_skew) if self.clock_skew else None,
        )

    def _write(self) -> None:
        if not self._rv:
            try:
                self._stored(self.kube.create_lease(self.namespace, self._body(), timeout=self._timeout))
                self._log.info("heartbeat lease created", extra=fields(lease=self.lease_name))
                return
            except ApiError as exc:
                if not exc.conflict:
                    raise
                self._refetch()  # it exists (we restarted): take it over with its resourceVersion
        try:
            self._stored(self.kube.replace_lease(self.namespace, self.lease_name, self._body(), timeout=self._timeout))
        except ApiError as exc:
            if exc.not_found:  # somebody deleted it: create it again
                self._rv = ""
                self._acquire_time = None
                self._stored(self.kube.create_lease(self.namespace, self._body(), timeout=self._timeout))
                self._log.warning("heartbeat lease was deleted; created it again", extra=fields(lease=self.lease_name))
                return
            if not exc.conflict:
                raise
            self._refetch()
            self._stored(self.kube.replace_lease(self.namespace, self.lease_name, self._body(), timeout=self._timeout))

    def _refetch(self) -> None:
        current = self.kube.get_lease(self.namespace, self.lease_name, timeout=self._timeout)
        self._rv = resource_version(current)
        self._acquire_time = (current.get("spec") or {}).get("acquireTime") or self._acquire_time

    def _stored(self, lease: Mapping[str, Any]) -> None:
        self._rv = resource_version(lease)
        self._acquire_time = (lease.get("spec") or {}).get("acquireTime") or self._acquire_time
