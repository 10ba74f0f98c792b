"""The node heartbeat writer: renews Lease ``l2lb-node-<node>`` (format: :mod:`.leases`; judging: :mod:`.liveness`).

Renew the Lease every ``renew_interval`` with a replace carrying the last resourceVersion (409 -> re-get,
404 -> create); publish the node's candidate interfaces as an annotation, re-published at once when a link
changes; mark ``l2lb.io/draining`` when shutting down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from .config import LeaseTiming
from .controller.types import InterfaceInfo
from .kube import ApiError, KubeClient, resource_version
from .leases import heartbeat_body, node_lease_name
from .logs import fields
from .metrics import Metrics
from .worker import Worker

log = logging.getLogger(__name__)


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
            now=datetime.now(timezone.utc) + timedelta(seconds=self.clock_skew) if self.clock_skew else None,
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
