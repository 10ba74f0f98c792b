"""The speaker's glue: this node's assignment object -> the responder's assignments (ARP and NDP).

* Follows one object: the node's ``L2Assignment`` in the agents' namespace (watched by a field selector
  on its name), which only the agents' ServiceAccount may write (:mod:`..model.contract`). Nothing a
  namespace user can write — Service annotations included — decides what this node answers.
* Defence in depth: an entry is answered only when its address lies in a pool's ranges (enabled or
  disabled), or it is a ``spec.externalIPs`` entry (source ``ExternalIP``) while some policy has
  ``externalIPs: true``. Everything else is refused, counted in
  ``l2lb_refused_announcements_total{reason}`` and logged once.
* Upgrade from 0.1, whose controller wrote only Service annotations: while this node has *no* assignment
  object at all (a controller of this version writes one, possibly empty, for every node with a
  heartbeat), the speaker follows the old annotations — but only for addresses in the Service's
  ``status.loadBalancer.ingress`` (the status subresource: not writable with the built-in edit/admin
  roles) of a LoadBalancer Service of our class, inside a pool. The first assignment object ends this.
* Fail-static: during an API outage the informer keeps its last contents, so the speaker keeps
  announcing what it was assigned; nothing is withdrawn because the API server restarts.
* Told its node is gone (its heartbeat Lease deleted by someone else, or its Node object deleted),
  it stops answering everything until the node is back.
* Make-before-break on shutdown (:meth:`SpeakerRuntime.hold`): while draining, IPs the controller
  moves away keep being answered until their new node's gratuitous ARP or unsolicited NA is seen (``on_conflict`` from
  a MAC the API confirms) or the hand-over ends, so there is never a moment with nobody answering.
* Split-brain fence: when another MAC claims an IP we announce (``on_conflict``), re-read the
  Service from the API with a short timeout. Reachable: keep (and re-announce) or withdraw, as the
  annotation says. Unreachable: withdraw that IP — we cannot prove it is ours and someone else
  claims it — and ask the API again every second until it answers.
* An interface that stops being usable (:meth:`SpeakerRuntime.link_changed`, from netlink) is
  withdrawn from at once: nothing can be answered there anyway, and while it is down the IPs on it
  may move without us hearing the new holder's announcement. When it is usable again, its IPs are
  answered (and announced) only after the API confirms them, asking again until it answers; if it
  has not answered within ``link_verify_timeout`` (the agent uses the heartbeat lease duration), they
  are answered as they were (fail-static), and the fence above guards against a split brain.

Cost per Service event is proportional to the change, not to the number of Services: the informer's
handler only marks the changed Service's key dirty, and the speaker thread re-reads and re-parses just
those Services (:class:`AssignmentIndex`), then recomputes what it answers only for the IPs they
touched. Everything is recomputed from the whole cache only when the caller does not say what
changed (``notify()`` without an event, the informer's first sync) or when what decides answering as
a whole (node gone, fenced IPs, held IPs, unusable interfaces) changes.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..controller.objects import ingress_ips, parse_policies, parse_pools, service_key
from ..kube import ApiError, Informer, KubeClient
from ..logs import fields
from ..metrics import Metrics
from ..model.contract import (
    DEFAULT_NAMESPACE,
    LB_CLASS,
    REFUSED_EXTERNAL_IP_NOT_ALLOWED,
    REFUSED_NOT_IN_POOL,
    REFUSED_NOT_OURS,
    SOURCE_EXTERNAL_IP,
    Refused,
    assignment_name,
    parse_announcements,
    parse_assignment,
)
from ..worker import Worker

log = logging.getLogger(__name__)

FENCE_TIMEOUT = 0.5  # seconds to wait for the API before withdrawing a contested IP
FENCE_RETRY = 1.0
LINK_VERIFY_TIMEOUT = 2.0  # seconds an interface that is usable again waits for the API before fail-static
LINK_VERIFY_RETRY = 0.25


class Responder(Protocol):
    """What the speaker needs from the wire (``speaker.responder.Responder``)."""

    def set_assignments(self, assignments: Mapping[str, list[str]]) -> None: ...

    def announce(self, ip: str | None = None) -> None: ...


class Trust:
    """Which addresses a speaker may answer at all: the pools' ranges, and externalIPs when a policy allows.

    Built from the pool and policy objects (cluster-scoped, written by admins and ``site.yml``);
    rebuilt when they change.
    """

    def __init__(self, pools: Any = (), policies: Any = ()) -> None:
        infos, _ = parse_pools(pools)
        ranges = (block.usable(True) for info in infos for block in info.pool.blocks)
        self._ranges = [r for r in ranges if r is not None]
        parsed, _ = parse_policies(policies)
        self.external_ips_allowed = any(p.external_ips for p in parsed)

    def in_pool(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(r.contains(address) for r in self._ranges)

    def refusal(self, ip: str, source: str) -> str | None:
        """None when ``ip`` may be answered; else the refusal reason."""
        if self.in_pool(ip):
            return None
        if source == SOURCE_EXTERNAL_IP:
            return None if self.external_ips_allowed else REFUSED_EXTERNAL_IP_NOT_ALLOWED
        return REFUSED_NOT_IN_POOL


def legacy_share(
    node: str, service: Mapping[str, Any], trust: Trust | None
) -> tuple[dict[str, tuple[str, ...]], list[Refused]]:
    """ip -> interfaces the 0.1 annotations give ``node`` on this Service, within the upgrade's limits.

    ``trust`` None skips the pool check (tests of the index alone).
    """
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    announcements = parse_announcements(annotations, ingress_ips(service))
    mine = {ip: a for ip, a in announcements.items() if a.node == node}
    if not mine:
        return {}, []
    raw_spec = service.get("spec")
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
    ours = spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, LB_CLASS)
    status_ips = set(ingress_ips(service))
    share: dict[str, tuple[str, ...]] = {}
    refused: list[Refused] = []
    for ip, announcement in mine.items():
        if not ours or ip not in status_ips:
            refused.append(Refused(ip, REFUSED_NOT_OURS, f"service {service_key(service)}"))
        elif trust is not None and not trust.in_pool(ip):
            refused.append(Refused(ip, REFUSED_NOT_IN_POOL, f"service {service_key(service)}"))
        else:
            share[ip] = announcement.interfaces
    return share, refused


def assignments_for(
    node: str, services: Mapping[str, Mapping[str, Any]], trust: Trust | None = None
) -> dict[str, dict[str, list[str]]]:
    """ip -> {"interfaces": [...], "services": [...]}: what the 0.1 annotations give ``node`` (upgrade only)."""
    result: dict[str, dict[str, list[str]]] = {}
    for service in services.values():
        share, _ = legacy_share(node, service, trust)
        for ip, interfaces in share.items():
            entry = result.setdefault(ip, {"interfaces": [], "services": []})
            for name in interfaces:
                if name not in entry["interfaces"]:
                    entry["interfaces"].append(name)
            entry["services"].append(service_key(service))
    return result


Assignment = dict[str, list[str]]  # {"interfaces": [...], "services": [...]}, as assignments_for gives


class AssignmentIndex:
    """:func:`assignments_for` kept current one Service at a time.

    Each Service's share (the IPs it gives ``node``) is kept by its cache key, and each IP knows the
    Services that give it; folding in one Service re-parses only that Service and rebuilds only the
    entries of the IPs it gave or gives. ``assignments`` always equals ``assignments_for`` over the
    Services folded in, taken in key order (which only orders the lists of an IP several Services
    share). Entries are replaced, never changed in place, so copies handed out stay valid.

    Not thread-safe: one thread (the speaker's) folds Services in.
    """

    def __init__(self, node: str, trust: Trust | None = None) -> None:
        self.node = node
        self.trust = trust
        self.refused: dict[str, list[Refused]] = {}  # key -> what that Service's annotations asked and we refused
        self.assignments: dict[str, Assignment] = {}
        self._shares: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {}  # key -> ip -> (interfaces, service)
        self._keys_by_ip: dict[str, set[str]] = {}

    @classmethod
    def build(cls, node: str, services: Mapping[str, Mapping[str, Any]], trust: Trust | None = None) -> AssignmentIndex:
        index = cls(node, trust)
        for key, service in services.items():
            index.update(key, service)
        return index

    def update(self, key: str, service: Mapping[str, Any] | None) -> dict[str, Assignment | None]:
        """Fold in the current Service under ``key`` (None: it is gone); returns ip -> new entry (None: removed)."""
        share = self._share(key, service) if service is not None else {}
        if service is None:
            self.refused.pop(key, None)
        old = self._shares.get(key, {})
        if share == old:
            return {}
        if share:
            self._shares[key] = share
        else:
            self._shares.pop(key, None)
        for ip in old.keys() - share.keys():
            keys = self._keys_by_ip[ip]
            keys.discard(key)
            if not keys:
                del self._keys_by_ip[ip]
        for ip in share:
            self._keys_by_ip.setdefault(ip, set()).add(key)
        changes: dict[str, Assignment | None] = {}
        for ip in old.keys() | share.keys():
            entry = self._entry(ip)
            if entry == self.assignments.get(ip):
                continue
            if entry is None:
                del self.assignments[ip]
            else:
                self.assignments[ip] = entry
            changes[ip] = entry
        return changes

    def _share(self, key: str, service: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], str]]:
        share, refused = legacy_share(self.node, service, self.trust)
        if refused:
            self.refused[key] = refused
        else:
            self.refused.pop(key, None)
        name = service_key(service)
        return {ip: (interfaces, name) for ip, interfaces in share.items()}

    def _entry(self, ip: str) -> Assignment | None:
        keys = self._keys_by_ip.get(ip)
        if not keys:
            return None
        entry: Assignment = {"interfaces": [], "services": []}
        for key in sorted(keys):
            interfaces, name = self._shares[key][ip]
            for interface in interfaces:
                if interface not in entry["interfaces"]:
                    entry["interfaces"].append(interface)
            entry["services"].append(name)
        return entry


class SpeakerRuntime(Worker):
    """Drives a responder from this node's assignment object; see the module docstring.

    ``assignment`` is the informer on this node's object (field selector on its name); ``pools`` and
    ``policies`` feed the trust check; ``services`` is read only during an upgrade from 0.1 (no
    assignment object for this node yet) and may be None. Tests of the 0.1 path alone pass no
    ``assignment`` (and no pools: no trust check). Without a responder (speaker disabled) it still
    computes what this node is assigned, which the graceful shutdown waits on.
    """

    def __init__(
        self,
        node: str,
        services: Informer | None,
        kube: KubeClient,
        responder: Responder | None = None,
        *,
        assignment: Informer | None = None,
        pools: Informer | None = None,
        policies: Informer | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        metrics: Metrics | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        fence_timeout: float = FENCE_TIMEOUT,
        link_verify_timeout: float = LINK_VERIFY_TIMEOUT,
    ) -> None:
        super().__init__(f"l2lb-speaker-{node}")
        self.node = node
        self.services = services
        self.assignment = assignment
        self.pools = pools
        self.policies = policies
        self.namespace = namespace
        self._own_key = f"{namespace}/{assignment_name(node)}"
        self._trust: Trust | None = Trust() if pools is not None else None
        self._trust_dirty = pools is not None
        self._source_used = ""
        self._refused_last: set[tuple[str, str]] = set()
        self.kube = kube
        self.responder = responder
        self._metrics = metrics or kube.metrics
        self._log = logger or log
        self._fence_timeout = fence_timeout
        self._link_verify_timeout = link_verify_timeout
        self._conflicts: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._fenced: dict[str, float] = {}  # ip -> monotonic time of the next API check
        self._gone: dict[str, str] = {}  # why this node counts as gone (heartbeat, node) -> reason
        self._links_down: set[str] = set()  # interfaces not usable now: nothing is answered there
        # Usable again, IPs on them not yet confirmed by the API: ifname -> when to give up (fail-static).
        self._links_unverified: dict[str, float] = {}
        self._verify_retry_at: float | None = None
        self._applied: dict[str, list[str]] = {}
        self._held: dict[str, list[str]] | None = None  # draining: ip -> interfaces still answered
        self._assigned: dict[str, dict[str, list[str]]] = {}  # published copy of the index (under _lock)
        # Which Services changed since the speaker thread last looked (informer threads add, it takes).
        self._dirty_lock = threading.Lock()
        self._dirty: set[str] = set()
        self._rebuild = True  # the first round reads whatever the informer already holds
        # Owned by the speaker thread:
        self._index = AssignmentIndex(node, self._trust)
        self._touched: set[str] = set()  # IPs whose assignment changed since the last recompute
        self._inputs: tuple[Any, ...] | None = None  # (gone, fenced, held, suspended) of the last recompute
        self._changed = threading.Condition()
        self.listeners: list[Callable[[], None]] = []

    # ---- control ----

    def notify(
        self,
        kind: str | None = None,
        old: Mapping[str, Any] | None = None,
        new: Mapping[str, Any] | None = None,
        *_: Any,
    ) -> None:
        """Services changed (an informer handler): the Service in the event, or, not told which, any of them.

        Cheap and non-blocking (it runs on the informer thread): it only notes the key for the speaker thread.
        """
        keys = [self.services.resource.key(obj) for obj in (old, new) if obj] if self.services is not None else []
        with self._dirty_lock:
            if kind in ("ADDED", "MODIFIED", "DELETED") and keys:
                self._dirty.update(keys)
            else:
                self._rebuild = True
        self._wake.set()

    def set_services(self, services: Informer | None) -> None:
        """The Service informer for the 0.1 upgrade path came or went (the agent turned warm or cold)."""
        self.services = services
        with self._dirty_lock:
            self._rebuild = True
        self._wake.set()

    def notify_assignment(self, *_: Any) -> None:
        """This node's assignment object changed (an informer handler): re-read it."""
        with self._dirty_lock:
            self._rebuild = True
        self._wake.set()

    def notify_trust(self, *_: Any) -> None:
        """A pool or policy changed (an informer handler): rebuild what may be answered at all."""
        with self._dirty_lock:
            self._trust_dirty = True
            self._rebuild = True
        self._wake.set()

    def on_conflict(self, ip: str, ifname: str, other_mac: str) -> None:
        """Responder callback (its thread, must not block): another MAC claims one of our IPs."""
        self._metrics.arp_conflicts.inc()
        self._conflicts.put((ip, ifname, other_mac))
        self._wake.set()

    def on_count(self, counter: str, ip: str | None, ifname: str) -> None:
        """Responder callback: wire counters into Prometheus."""
        if counter == "replies_sent":
            (self._metrics.ndp_replies if ip is not None and ":" in ip else self._metrics.arp_replies).inc()
        elif counter == "garps_sent":
            self._metrics.garp_sent.inc()
        elif counter == "unsolicited_nas_sent":
            self._metrics.unsolicited_na_sent.inc()
        elif counter == "dad_probes":
            self._metrics.dad_probes.inc()

    def set_node_gone(self, source: str, reason: str | None) -> None:
        """Mark (reason) or clear (None) one cause of "this node is gone"; any cause silences the speaker."""
        with self._lock:
            if reason is None:
                changed = self._gone.pop(source, None) is not None
            else:
                changed = self._gone.get(source) != reason
                self._gone[source] = reason
        if changed:
            if reason is None:
                self._log.info("node is back; announcing again", extra=fields(cause=source))
            else:
                self._log.warning("node is gone; withdrawing every IP", extra=fields(cause=source, reason=reason))
            self._wake.set()

    def link_changed(self, ifname: str, usable: bool) -> None:
        """An interface stopped or started being usable (netlink); see the module docstring."""
        with self._lock:
            if not usable:
                if ifname in self._links_down:
                    return
                self._links_down.add(ifname)
                self._links_unverified.pop(ifname, None)
            elif ifname in self._links_down:
                self._links_down.discard(ifname)
                self._links_unverified[ifname] = time.monotonic() + self._link_verify_timeout
            else:
                return
        self._log.info(
            "interface usable again: confirming its IPs with the API before answering"
            if usable
            else "interface not usable: not answering on it",
            extra=fields(interface=ifname),
        )
        self._wake.set()

    @property
    def gone(self) -> bool:
        with self._lock:
            return bool(self._gone)

    def assigned(self) -> dict[str, dict[str, list[str]]]:
        """What this node's assignment object gives it, after the trust check (announced right now or not)."""
        with self._lock:
            return dict(self._assigned)

    def announced(self) -> dict[str, list[str]]:
        """What the responder was last told to answer: ip -> interfaces."""
        with self._lock:
            return dict(self._applied)

    def hold(self) -> None:
        """Draining: keep answering what we answer now, also after it moves, until :meth:`release_held`."""
        with self._lock:
            self._held = dict(self._applied)
        self._wake.set()

    def held(self) -> list[str]:
        """Held IPs that moved away and still wait for their new node to be heard on the wire."""
        with self._lock:
            if self._held is None:
                return []
            return sorted(ip for ip in self._held if ip not in self._assigned)

    def release_held(self) -> None:
        with self._lock:
            self._held = None
        self._wake.set()

    def fenced(self) -> list[str]:
        with self._lock:
            return sorted(self._fenced)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds after a recompute, or the timeout passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
        return True

    # ---- the speaker thread ----

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._next_wakeup())
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self._handle_conflicts()
                self._recheck_fenced()
                self._verify_links()
                self._recompute()
            except Exception as exc:  # the speaker thread must survive anything
                self._log.exception("speaker round crashed", extra=fields(error=str(exc)))
                self._stopping.wait(0.5)

    def _next_wakeup(self) -> float | None:
        with self._lock:
            times = list(self._fenced.values())
            if self._links_unverified and self._verify_retry_at is not None:
                times.append(self._verify_retry_at)
            if not times:
                return None
            return max(0.0, min(times) - time.monotonic())

    def _refresh_index(self) -> None:
        """Fold the Services that changed since the last call into the index and publish the result.

        Takes the dirty keys before reading the cache, and handlers mark keys after the cache changed,
        so a change is never lost: at worst a key is read twice. Anything going wrong rebuilds next time.
        """
        with self._dirty_lock:
            rebuild, self._rebuild = self._rebuild, False
            dirty, self._dirty = self._dirty, set()
            trust_dirty, self._trust_dirty = self._trust_dirty, False
        try:
            if trust_dirty and self.pools is not None:
                self._trust = Trust(self.pools.items(), self.policies.items() if self.policies is not None else ())
            services = self.services  # one informer for the whole round (the agent may swap it)
            source = self._source(services)
            if source != self._source_used:
                if self._source_used or source != "object":
                    self._log.info("assignments now come from: " + _SOURCES[source])
                self._source_used = source
                rebuild = True
            if source != "legacy":
                if rebuild:
                    self._publish_all(self._from_object() if source == "object" else {})
                return
            assert services is not None  # "legacy" needs it
            if rebuild:
                self._index = AssignmentIndex.build(self.node, services.snapshot(), self._trust)
                self._publish_all(dict(self._index.assignments))
                self._report_refused([r for refused in self._index.refused.values() for r in refused])
                return
            changes: dict[str, Assignment | None] = {}
            for key in dirty:
                changes.update(self._index.update(key, services.get(key)))
            if dirty:
                self._report_refused([r for refused in self._index.refused.values() for r in refused])
        except BaseException:
            with self._dirty_lock:
                self._rebuild = True
                self._trust_dirty = self._trust_dirty or trust_dirty
            raise
        if not changes:
            return
        with self._lock:
            for ip, entry in changes.items():
                if entry is None:
                    self._assigned.pop(ip, None)
                else:
                    self._assigned[ip] = entry
        self._touched.update(changes)

    def _source(self, services: Informer | None) -> str:
        """Where assignments come from now: "object", "legacy" (upgrade from 0.1) or "none" (not known yet)."""
        for informer in (self.pools, self.policies):
            if informer is not None and not informer.synced:
                return "none"
        if self.assignment is not None:
            if not self.assignment.synced:
                return "none"
            if self.own_object() is not None:
                return "object"
        return "legacy" if services is not None else "none"

    def own_object(self) -> dict[str, Any] | None:
        """This node's assignment object as the informer holds it (None: none, or no informer)."""
        return self.assignment.get(self._own_key) if self.assignment is not None else None

    def _trusted(self, obj: Mapping[str, Any] | None) -> tuple[dict[str, Assignment], list[Refused]]:
        """What ``obj`` assigns this node after the trust check, and every entry refused."""
        entries, refused = parse_assignment(obj, self.node)
        result: dict[str, Assignment] = {}
        for ip, entry in entries.items():
            reason = self._trust.refusal(ip, entry.source) if self._trust is not None else None
            if reason is not None:
                refused.append(Refused(ip, reason, f"source {entry.source}"))
                continue
            result[ip] = {"interfaces": list(entry.interfaces), "services": list(entry.services)}
        return result, refused

    def _from_object(self) -> dict[str, Assignment]:
        result, refused = self._trusted(self.own_object())
        self._report_refused(refused)
        return result

    def _publish_all(self, assigned: dict[str, Assignment]) -> None:
        with self._lock:
            self._assigned = assigned
        self._inputs = None  # every IP may have changed: recompute what we answer from scratch

    def _report_refused(self, refused: list[Refused]) -> None:
        """Count and log each refused entry once (until it goes away and comes back)."""
        current = {(r.ip, r.reason) for r in refused}
        for entry in refused:
            if (entry.ip, entry.reason) in self._refused_last:
                continue
            self._refused_last.add((entry.ip, entry.reason))
            self._metrics.refused_announcements.labels(entry.reason).inc()
            self._log.warning(
                "refusing to announce an address", extra=fields(ip=entry.ip, reason=entry.reason, detail=entry.detail)
            )
        self._refused_last = current

    def _recompute(self) -> None:
        self._refresh_index()
        with self._lock:
            gone = bool(self._gone)
            fenced = frozenset(self._fenced)
            held = dict(self._held) if self._held is not None else None
            suspended = frozenset(self._links_down | set(self._links_unverified))
            previous = self._applied
        assigned = self._assigned  # only this thread changes it
        inputs = (gone, fenced, held, suspended)
        # What we answer for an IP depends on its assignment and on these inputs; while they stay the
        # same, only the IPs whose assignment changed need a look.
        ips = (set(assigned) | set(held or {}) | set(previous)) if inputs != self._inputs else self._touched
        self._touched = set()
        self._inputs = None  # until this round is through: should it fail, the next one looks at everything
        changes: dict[str, list[str] | None] = {}
        for ip in ips:
            want = None if gone else _answer(ip, assigned.get(ip), ip in fenced, (held or {}).get(ip), suspended)
            if want != previous.get(ip):
                changes[ip] = want
        desired = previous
        if changes:
            desired = dict(previous)
            for ip, want in changes.items():
                if want is None:
                    desired.pop(ip, None)
                else:
                    desired[ip] = want
            if self.responder is not None:
                try:
                    self.responder.set_assignments(desired)
                except ValueError as exc:
                    self._log.warning("responder refused the assignments", extra=fields(error=str(exc)))
            added = sorted(ip for ip, want in changes.items() if want is not None and ip not in previous)
            removed = sorted(ip for ip, want in changes.items() if want is None)
            if added or removed:
                self._log.info(
                    "announcements changed",
                    extra=fields(added=",".join(added) or "-", removed=",".join(removed) or "-", total=len(desired)),
                )
            with self._lock:
                self._applied = desired
            self._metrics.announced_ips.set(len(desired))
        self._inputs = inputs
        with self._changed:
            self._changed.notify_all()
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                self._log.exception("speaker listener failed")

    def _handle_conflicts(self) -> None:
        seen: set[str] = set()
        while True:
            try:
                ip, ifname, mac = self._conflicts.get_nowait()
            except queue.Empty:
                return
            if ip in seen:
                continue
            seen.add(ip)
            with self._lock:
                ours = ip in self._applied
            if not ours:
                continue
            self._log.warning("another MAC claims an IP we announce", extra=fields(ip=ip, interface=ifname, mac=mac))
            verdict = self._confirm(ip)
            if verdict is None:
                with self._lock:
                    self._fenced[ip] = time.monotonic() + FENCE_RETRY
                self._metrics.fence_withdrawals.inc()
                self._log.warning(
                    "API unreachable: withdrawing the contested IP (split-brain fence)", extra=fields(ip=ip)
                )
            elif verdict:
                self._log.info("API confirms the IP is ours: keeping it and re-announcing", extra=fields(ip=ip))
                if self.responder is not None:
                    self.responder.announce(ip)
            else:
                with self._lock:
                    handed_over = self._held is not None and self._held.pop(ip, None) is not None
                if handed_over:
                    self._log.info("new node heard on the wire: hand-over of the IP complete", extra=fields(ip=ip))
                else:
                    self._log.info("API says another node announces the IP: withdrawing", extra=fields(ip=ip))

    def _verify_links(self) -> None:
        """Confirm the IPs on interfaces that are usable again (fresh copies land in the informer cache)."""
        with self._lock:
            pending = dict(self._links_unverified)
        if not pending:
            return
        now = time.monotonic()
        if self._verify_retry_at is not None and now < self._verify_retry_at:
            return
        self._refresh_index()
        ips = sorted(ip for ip, entry in self.assigned().items() if set(pending) & set(entry["interfaces"]))
        reachable = all(self._confirm(ip) is not None for ip in ips)  # stops at the first unanswered
        now = time.monotonic()
        done = set(pending) if reachable else {name for name, deadline in pending.items() if deadline <= now}
        with self._lock:
            for name in done:
                if self._links_unverified.get(name) == pending[name]:
                    del self._links_unverified[name]
            self._verify_retry_at = None if reachable else now + LINK_VERIFY_RETRY
        if done:
            self._log.info(
                "interface usable again: answering on it"
                if reachable
                else "interface usable again, API unreachable: answering the last assigned IPs (fail-static)",
                extra=fields(interfaces=",".join(sorted(done)), checked=len(ips)),
            )

    def _recheck_fenced(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [ip for ip, when in self._fenced.items() if when <= now]
        for ip in due:
            verdict = self._confirm(ip)
            with self._lock:
                if verdict is None:
                    self._fenced[ip] = time.monotonic() + FENCE_RETRY
                    continue
                self._fenced.pop(ip, None)
            self._log.info(
                "API reachable again: contested IP resolved", extra=fields(ip=ip, ours="yes" if verdict else "no")
            )

    def _confirm(self, ip: str) -> bool | None:
        """Ask the API whether ``ip`` is still ours: True/False, or None when the API does not answer.

        The fresh copies go into the informer cache, so the recompute that follows uses them.
        """
        services = self.services
        if self._source_used != "legacy" or services is None:
            return self._confirm_object(ip)
        keys = self.assigned().get(ip, {}).get("services", [])
        if not keys:
            keys = [service_key(s) for s in services.items() if ip in ingress_ips(s)]
        ours = False
        for key in keys:
            namespace, _, name = key.partition("/")
            try:
                service = self.kube.get_service(namespace, name, timeout=(self._fence_timeout, self._fence_timeout))
            except ApiError as exc:
                if exc.not_found:
                    continue
                return None
            services.store_written(service)
            with self._dirty_lock:  # the informer tells us too, but only when it is news to its cache
                self._dirty.add(services.resource.key(service))
            share, _ = legacy_share(self.node, service, self._trust)
            if ip in share:
                ours = True
        return ours

    def _confirm_object(self, ip: str) -> bool | None:
        timeout = (self._fence_timeout, self._fence_timeout)
        try:
            obj: dict[str, Any] | None = self.kube.get_assignment(self.namespace, assignment_name(self.node), timeout)
        except ApiError as exc:
            if not exc.not_found:
                return None
            obj = None
        if obj and self.assignment is not None:
            self.assignment.store_written(obj)
            self.notify_assignment()
        return ip in self._trusted(obj)[0]


_SOURCES = {
    "object": "this node's assignment object",
    "legacy": "the Service annotations of version 0.1 (upgrade: no assignment object for this node yet)",
    "none": "nowhere yet (waiting for the first list)",
}


def _answer(
    ip: str, entry: Assignment | None, fenced: bool, held: list[str] | None, suspended: frozenset[str]
) -> list[str] | None:
    """The interfaces to answer ``ip`` on (None: not answered), for a node that is not gone."""
    if entry is not None and not fenced:
        interfaces = sorted(i for i in entry["interfaces"] if i not in suspended)
        if interfaces:  # an assignment without interfaces is unusable
            return interfaces
    if held is not None:  # draining: what we answered before it moved, or before it was fenced
        usable = [i for i in held if i not in suspended]
        if usable:
            return usable
    return None
