"""The agent's watchdog: finds watches that went silent and replaces them, once a period.

A watch can die without an error: a half-open TCP connection after a partition, a load balancer that
dropped the flow, a wedged server. The informer then reads nothing until its read timeout (minutes),
and the agent acts on a cache that no longer changes. Two signals tell such a stream from a quiet one:

* the server's bookmarks (:meth:`Informer.stalled`): kube-apiserver sends each watcher one about every
  minute, so on a connection that has carried bookmarks, silence for ``stall_after`` (150 s) is a stall;
* a judge of our own for the watches whose liveness we can test: the heartbeat Lease watch must show our
  own renewals, so "our writes succeed but we never see them come back" is a stall within a second.

A stalled watch is restarted with :meth:`Informer.restart_watch`, which shuts the stream's socket down:
the informer re-lists at once, so the watch is replaced within one watchdog period of being judged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from .kube import Informer
from .logs import fields
from .worker import Worker

log = logging.getLogger(__name__)

Judge = Callable[[], "str | None"]
"""judge() -> why the watch looks stalled, or None."""


class Watchdog(Worker):
    """Every ``period`` seconds, restart each informer whose watch looks stalled (at most once per ``settle``)."""

    def __init__(
        self,
        name: str,
        period: float,
        informers: Callable[[], Iterable[Informer]],
        *,
        judges: Mapping[Informer, Judge] | Callable[[], Mapping[Informer, Judge]] | None = None,
        settle: float = 2.0,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        super().__init__(name)
        self.period = period
        self._informers = informers
        self._judges = judges if callable(judges) else dict(judges or {})
        self._settle = settle
        self._log = logger or log
        self._last_restart: dict[int, float] = {}
        self.restarts = 0

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.period)
            self._wake.clear()
            if self._stopping.is_set():
                return
            self.check()

    def check(self, now: float | None = None) -> list[str]:
        """One round: restart what looks stalled; returns the informers restarted (tests call it too)."""
        now = time.monotonic() if now is None else now
        restarted = []
        for informer in self._informers():
            if not informer.running or informer.listing:
                continue
            if now - self._last_restart.get(id(informer), float("-inf")) < self._settle:
                continue  # the replacement has not had time to show anything yet
            reason = informer.stalled(now)
            judges = self._judges() if callable(self._judges) else self._judges
            judge = judges.get(informer)
            if reason is None and judge is not None:
                reason = judge()
            if reason is None:
                continue
            self._log.warning("watch looks stalled: restarting it", extra=fields(resource=informer.name, why=reason))
            informer.restart_watch()
            self._last_restart[id(informer)] = now
            self.restarts += 1
            restarted.append(informer.name)
        return restarted
