"""How observers judge Leases alive: *seen changing* on the observer's own monotonic clock.

A lease is alive while it is seen changing — a new resourceVersion within its duration, timed on the
observer's own monotonic clock. ``renewTime`` is written by another machine's wall clock and is never
compared with ours, so clock skew cannot cause a failover. When the observer itself is blind (it has not
seen its *own* heartbeat change for half its duration: API outage or a stalled watch) it freezes every
judgement, and when it sees again it gives every lease that was alive a fresh grace period: its blindness
is not their death.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .kube import resource_version
from .leases import lease_duration, lease_holder

# An observer that has not seen its own heartbeat change for this fraction of its duration is blind.
# Half: when the API goes away, every lease stops changing at once, and we must freeze our judgement
# before a node that renewed just before us (by up to half a duration) would look expired.
BLIND_AFTER = 0.5


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
