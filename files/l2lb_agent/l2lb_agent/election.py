"""Controller election on the Lease ``l2lb-controller``, judged on the observer's monotonic clock.

Like client-go's leader election, with two differences that matter here:

* a candidate does not poll the Lease: the agent's Lease informer feeds :class:`LeaseObserver`, and
  the Lease counts as expired when it has not been *seen changing* for its duration on our own
  clock (never by comparing its renewTime with our wall clock);
* the leader stops acting the moment it cannot prove it still holds the Lease
  (:attr:`LeaderElection.is_leader` turns false at the renew deadline, before any other agent may
  take over), and on graceful shutdown it releases the Lease (empty holder) so another agent takes
  over at once instead of waiting for the expiry.

All writes are replaces with the last resourceVersion, so two candidates racing for an expired Lease
cannot both win: the slower one gets 409 Conflict.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .config import LeaseTiming
from .kube import ApiError, KubeClient, resource_version
from .leases import (
    ANNOTATION_LEASE_DURATION,
    CONTROLLER_LEASE,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROLE_LABEL,
    lease_holder,
    micro_time,
)
from .liveness import LeaseObserver
from .logs import fields
from .metrics import Metrics
from .worker import Worker

log = logging.getLogger(__name__)


def controller_lease_body(
    namespace: str,
    identity: str,
    timing: LeaseTiming,
    *,
    resource_version: str = "",
    acquire_time: str | None = None,
    transitions: int = 0,
) -> dict[str, Any]:
    """The controller Lease held by ``identity`` (empty identity: released)."""
    now = micro_time()
    metadata: dict[str, Any] = {
        "name": CONTROLLER_LEASE,
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROLE_LABEL: "controller"},
        "annotations": {ANNOTATION_LEASE_DURATION: str(float(timing.lease_duration))},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": timing.lease_duration_seconds,
        "acquireTime": acquire_time or now,
        "renewTime": now,
        "leaseTransitions": transitions,
    }
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


class LeaderElection(Worker):
    """Campaign for, hold and release the controller Lease; see the module docstring.

    ``lease`` returns the Lease as the informer last saw it (None when absent); ``ready`` says whether
    that view can be trusted yet (the informer has listed). Callbacks run on the election thread and
    must not block.
    """

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        identity: str,
        timing: LeaseTiming,
        observer: LeaseObserver,
        lease: Callable[[], Mapping[str, Any] | None],
        *,
        ready: Callable[[], bool] = lambda: True,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        super().__init__(f"l2lb-election-{identity}")
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.timing = timing
        self.observer = observer
        self._lease = lease
        self._ready = ready
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._metrics = metrics or kube.metrics
        self._log = logger or log
        self._lock = threading.Lock()
        self._leader = False
        self._candidate = True
        self._rv = ""
        self._acquire_time: str | None = None
        self._transitions = 0
        self._renewed_at = 0.0  # monotonic start of the last successful write
        self._retry_at = 0.0
        self._last_error = ""
        # Stop acting before anyone else may take over: others wait a full duration after *seeing* our
        # last renewal, which happened after this request started.
        self.renew_deadline = max(timing.lease_duration - timing.renew_interval, timing.lease_duration * 0.75)
        half = max(0.2, timing.lease_duration / 2)
        self._timeout = (min(1.0, half), half)
        self.transitions_seen = 0

    # ---- public API ----

    def stop(self, release: bool = True) -> None:
        """Stop campaigning; release the Lease if we hold it and ``release`` (graceful shutdown)."""
        self._request_stop()
        self._join(5.0)
        if self._leader:
            if release:
                self.release()
            self._lose("agent stopping")

    @property
    def is_leader(self) -> bool:
        """True only while the last renewal is recent enough that nobody else can have taken over."""
        return self._leader and time.monotonic() - self._renewed_at < self.renew_deadline

    def notify(self) -> None:
        """The controller Lease changed (informer callback): look at it now."""
        self._wake.set()

    def withdraw_candidacy(self) -> None:
        """Never acquire from now on (a draining agent); a current leader keeps leading until stopped."""
        self._candidate = False
        self._wake.set()

    def release(self) -> bool:
        """Give the Lease up (empty holder) so another agent can take over at once."""
        if not self._rv:
            return False
        body = controller_lease_body(
            self.namespace,
            "",
            self.timing,
            resource_version=self._rv,
            acquire_time=self._acquire_time,
            transitions=self._transitions,
        )
        try:
            self.kube.replace_lease(self.namespace, CONTROLLER_LEASE, body, timeout=self._timeout)
        except ApiError as exc:
            self._log.warning("could not release the controller lease", extra=fields(error=str(exc)))
            return False
        self._log.info("released the controller lease")
        return True

    # ---- the election thread ----

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self._step()
            except Exception as exc:  # the election thread must survive anything
                self._log.exception("election step crashed", extra=fields(error=str(exc)))
                wait = self.timing.renew_interval
            if self._stopping.is_set():
                break
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def _step(self) -> float:
        """One round; returns how long to wait (unless woken) before the next."""
        if self._leader:
            if time.monotonic() - self._renewed_at >= self.renew_deadline:
                self._lose("could not renew before the deadline")
                return 0.0
            due = max(self._renewed_at + self.timing.renew_interval, self._retry_at) - time.monotonic()
            if due > 0:
                return due
            if not self._renew():
                # Retry soon, but never spin: a refused connection fails in microseconds.
                self._retry_at = time.monotonic() + self.timing.renew_interval / 2
            return (
                0.0 if not self._leader else max(0.0, self._renewed_at + self.timing.renew_interval - time.monotonic())
            )
        if not self._candidate or not self._ready():
            return self.timing.renew_interval
        lease = self._lease()
        if lease is None:
            self._acquire(None)
        else:
            holder = lease_holder(lease)
            if not holder or holder == self.identity or not self.observer.alive(CONTROLLER_LEASE):
                self._acquire(lease)
        if self._leader:
            return 0.0
        # Sleep until the current holder's lease could expire, or until the informer wakes us.
        expiry = self.observer.next_expiry()
        until = (expiry - time.monotonic()) if expiry is not None else self.timing.renew_interval
        return min(max(until, 0.01), self.timing.renew_interval)

    def _acquire(self, lease: Mapping[str, Any] | None) -> None:
        started = time.monotonic()
        try:
            if lease is None:
                body = controller_lease_body(self.namespace, self.identity, self.timing)
                stored = self.kube.create_lease(self.namespace, body, timeout=self._timeout)
            else:
                spec = lease.get("spec") or {}
                previous = lease_holder(lease)
                transitions = int(spec.get("leaseTransitions") or 0)
                if previous != self.identity:
                    transitions += 1
                body = controller_lease_body(
                    self.namespace,
                    self.identity,
                    self.timing,
                    resource_version=resource_version(lease),
                    transitions=transitions,
                    acquire_time=spec.get("acquireTime") if previous == self.identity else None,
                )
                stored = self.kube.replace_lease(self.namespace, CONTROLLER_LEASE, body, timeout=self._timeout)
        except ApiError as exc:
            if not exc.conflict:
                self._log.debug("could not acquire the controller lease", extra=fields(error=str(exc)))
            return  # 409: somebody else was faster (or it was renewed); the watch will tell us
        self._store(stored, started)
        with self._lock:
            self._leader = True
        self._metrics.is_controller.set(1)
        self._log.info("became the controller", extra=fields(lease=CONTROLLER_LEASE, transitions=self._transitions))
        try:
            self._on_started()
        except Exception:
            self._log.exception("controller start callback failed")

    def _renew(self) -> bool:
        """One renewal; True when the Lease is still ours and renewed."""
        started = time.monotonic()
        body = controller_lease_body(
            self.namespace,
            self.identity,
            self.timing,
            resource_version=self._rv,
            acquire_time=self._acquire_time,
            transitions=self._transitions,
        )
        try:
            stored = self.kube.replace_lease(self.namespace, CONTROLLER_LEASE, body, timeout=self._timeout)
        except ApiError as exc:
            if exc.conflict:
                return self._recheck(started)
            if exc.not_found:
                self._lose("the controller lease was deleted")
            elif exc.message != self._last_error:
                self._log.warning("controller lease renewal failed", extra=fields(error=str(exc)))
            self._last_error = exc.message
            return False
        if self._last_error:
            self._log.info("controller lease renewed again")
            self._last_error = ""
        self._store(stored, started)
        return True

    def _recheck(self, started: float) -> bool:
        """409 on renew: somebody wrote the Lease. Still ours? Then renew on top of it; else we lost."""
        try:
            current = self.kube.get_lease(self.namespace, CONTROLLER_LEASE, timeout=self._timeout)
        except ApiError as exc:
            if exc.not_found:
                self._lose("the controller lease was deleted")
            return False
        if lease_holder(current) != self.identity:
            self._lose(f"the controller lease is now held by {lease_holder(current) or 'nobody'}")
            return False
        self._rv = resource_version(current)
        return self._renew()

    def _store(self, lease: Mapping[str, Any], started: float) -> None:
        spec = lease.get("spec") or {}
        self._rv = resource_version(lease)
        self._acquire_time = spec.get("acquireTime") or self._acquire_time
        self._transitions = int(spec.get("leaseTransitions") or 0)
        self._renewed_at = started

    def _lose(self, why: str) -> None:
        with self._lock:
            if not self._leader:
                return
            self._leader = False
        self._metrics.is_controller.set(0)
        self._log.warning("stopped being the controller", extra=fields(reason=why))
        try:
            self._on_stopped()
        except Exception:
            self._log.exception("controller stop callback failed")
