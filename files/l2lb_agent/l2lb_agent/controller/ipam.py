"""IPAM: which addresses every LoadBalancer Service should hold. Pure and deterministic; no I/O.

:func:`allocate` takes the pools and Services as they are now and returns what each of our
Services' ``status.loadBalancer.ingress`` should say (or why it gets nothing), plus per-pool status.
Nothing is remembered between calls: the Services' current ingress IPs *are* the state.

Order of work, which is also the order of precedence:

1. pools sorted by (created, name); a pool overlapping an older, non-conflicting pool is
   *conflicting* and takes no part (so the live pools never share an address);
2. Services sorted by (created, key), oldest first;
3. every Service keeps the ingress IPs it already holds when they are still valid (in a live pool
   that selects it, of one of its families, matching its request, not clashing with an older holder);
4. requested IPs (annotations, then legacy ``spec.loadBalancerIP``) are reserved next, so a dynamic
   allocation can never take an address somebody asked for in the same round;
5. everything else gets the lowest free address of the first pool that selects it, or joins an IP
   of its sharing-key group when the ports and traffic policy allow.

Cost is O(S log S + addresses skipped): per pool and family a set of used integers and a cursor
that only moves forward, so a /64 is as cheap as a /28.
"""

from __future__ import annotations

import bisect
import gc
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..model.model import Pool, find_overlaps
from ..model.selectors import uses_pseudo_labels
from .types import (
    IP_FAMILY_VERSIONS,
    LB_CLASS,
    REASON_INVALID_REQUEST,
    REASON_NO_POOL_MATCHES,
    REASON_POOL_EXHAUSTED,
    REASON_REQUESTED_IP_UNAVAILABLE,
    REASON_SHARING_REFUSED,
    REQUESTED_IP_ANNOTATIONS,
    SHARING_KEY_ANNOTATIONS,
    PoolInfo,
    Refusal,
    ServiceInfo,
    ServicePort,
)

__all__ = [
    "IPAMResult",
    "PoolStatus",
    "ServiceAllocation",
    "allocate",
    "gc_paused",
    "is_ours",
    "requested_ips",
    "sharing_key",
]

_LEGACY_FIELD = "spec.loadBalancerIP"


@dataclass(frozen=True)
class ServiceAllocation:
    """What one Service's ``status.loadBalancer.ingress`` should be.

    ``ips`` are canonical strings in the order of the Service's ``ipFamilies``; ``pools`` names the
    pool of each IP (same order). A Service can hold some IPs *and* a refusal, e.g. dual-stack with
    the IPv6 pool exhausted, or a requested IPv4 address taken while the IPv6 one was free.
    """

    key: str
    ips: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    sharing_key: str | None = None
    refusal: Refusal | None = None


@dataclass(frozen=True)
class PoolStatus:
    """A pool's status counts and conditions.

    ``total`` and ``available`` can be astronomically large for IPv6 blocks: keep them ints and
    stringify at the edge. ``available`` is what the pool can still hand out, so it is 0 for a
    disabled or conflicting pool; ``used`` counts distinct addresses (a shared IP counts once).
    """

    name: str
    total: int
    used: int
    available: int
    conflicting: bool = False
    conflict_message: str = ""
    disabled: bool = False


@dataclass(frozen=True)
class IPAMResult:
    """The outcome of one :func:`allocate` round.

    ``services`` has an entry for every Service that is ours (``type: LoadBalancer`` with no
    ``loadBalancerClass`` or ours), and for every non-LoadBalancer Service with no or our class that
    still shows ingress IPs (with ``ips=()``: clear its status). Services of another
    loadBalancerClass are absent: not ours, leave them alone.
    ``ip_services`` maps each allocated IP to the Services holding it (several when shared),
    oldest first.
    """

    services: dict[str, ServiceAllocation]
    pools: dict[str, PoolStatus]
    ip_services: dict[str, tuple[str, ...]] = field(default_factory=dict)


def is_ours(service: ServiceInfo) -> bool:
    """A LoadBalancer Service with no loadBalancerClass or ours."""
    return service.type == "LoadBalancer" and service.load_balancer_class in (None, LB_CLASS)


def sharing_key(service: ServiceInfo) -> str | None:
    """The sharing key from the first sharing annotation present; empty values count as absent."""
    for annotation in SHARING_KEY_ANNOTATIONS:
        value = service.annotations.get(annotation)
        if value is not None and value.strip():
            return value.strip()
    return None


def requested_ips(service: ServiceInfo) -> tuple[str | None, tuple[str, ...]]:
    """(source, raw requested addresses): first requested-IP annotation present, else the legacy field.

    Returns ``(None, ())`` when nothing is requested. Values are split on commas and stripped but
    not validated; :func:`allocate` reports malformed ones as ``InvalidRequest``.
    """
    for annotation in REQUESTED_IP_ANNOTATIONS:
        value = service.annotations.get(annotation)
        if value is not None:
            return annotation, tuple(part.strip() for part in value.split(","))
    if service.load_balancer_ip:
        return _LEGACY_FIELD, (service.load_balancer_ip.strip(),)
    return None, ()


def _ip_text(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def _family_name(version: int) -> str:
    return f"IPv{version}"


class _PoolState:
    """One pool during a round: merged usable ranges, used addresses and the allocation cursor."""

    def __init__(self, info: PoolInfo, order: int) -> None:
        self.info = info
        self.pool: Pool = info.pool
        self.name = info.pool.name
        self.order = order
        self.disabled = info.pool.disabled
        self.conflict = ""
        self.ranges: dict[int, list[tuple[int, int]]] = {}
        for rng in self.pool.usable_ranges():
            self.ranges.setdefault(rng.version, []).append((rng.first, rng.last))
        for version, ranges in self.ranges.items():
            self.ranges[version] = _merge(ranges)
        self.used: dict[int, set[int]] = {version: set() for version in self.ranges}
        self._cursor: dict[int, tuple[int, int]] = {}

    @property
    def live(self) -> bool:
        return not self.conflict

    def total(self, version: int | None = None) -> int:
        versions = self.ranges if version is None else [version]
        return sum(last - first + 1 for v in versions for first, last in self.ranges.get(v, ()))

    def used_count(self, version: int | None = None) -> int:
        if version is not None:
            return len(self.used.get(version, ()))
        return sum(len(used) for used in self.used.values())

    def take_lowest(self, version: int) -> int | None:
        """Claim the lowest free address of this family; the cursor only moves forward.

        Valid because within one round addresses are only ever claimed, never freed, once dynamic
        allocation starts.
        """
        ranges = self.ranges.get(version)
        if not ranges:
            return None
        used = self.used[version]
        index, value = self._cursor.get(version, (0, ranges[0][0]))
        while index < len(ranges):
            first, last = ranges[index]
            value = max(value, first)
            while value <= last and value in used:
                value += 1
            if value <= last:
                used.add(value)
                self._cursor[version] = (index, value + 1)
                return value
            index += 1
        self._cursor[version] = (index, value)
        return None

    def exhausted_message(self, version: int) -> str:
        mixed = len(self.ranges) > 1
        family = f" {_family_name(version)}" if mixed else ""
        return (
            f'pool "{self.name}" has no free{family} address '
            f"({self.used_count(version)} used of {self.total(version)}{family})"
        )


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint ranges (a pool from the API may list overlapping blocks)."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


class _PoolIndex:
    """Find the live pool holding an address by bisecting the sorted ranges of all live pools."""

    def __init__(self, pools: Sequence[_PoolState]) -> None:
        self._starts: dict[int, list[int]] = {}
        self._entries: dict[int, list[tuple[int, int, _PoolState]]] = {}
        for version in (4, 6):
            entries = sorted(
                ((first, last, pool) for pool in pools if pool.live for first, last in pool.ranges.get(version, ())),
                key=lambda entry: entry[0],
            )
            self._entries[version] = entries
            self._starts[version] = [entry[0] for entry in entries]

    def find(self, version: int, value: int) -> _PoolState | None:
        starts = self._starts[version]
        position = bisect.bisect_right(starts, value) - 1
        if position < 0:
            return None
        _, last, pool = self._entries[version][position]
        return pool if value <= last else None


def _mark_conflicts(pools: Sequence[_PoolState]) -> None:
    """Oldest first: a pool overlapping an older live pool becomes conflicting (Cilium's rule)."""
    live: list[_PoolState] = []
    for candidate in pools:
        overlaps = [
            ov
            for ov in find_overlaps([p.pool for p in live] + [candidate.pool])
            if (ov.pool_a == candidate.name) != (ov.pool_b == candidate.name)
        ]
        if not overlaps:
            live.append(candidate)
            continue
        ov = overlaps[0]
        if ov.pool_a == candidate.name:
            own_index, own_block, other, other_index, other_block = (
                ov.index_a,
                ov.block_a,
                ov.pool_b,
                ov.index_b,
                ov.block_b,
            )
        else:
            own_index, own_block, other, other_index, other_block = (
                ov.index_b,
                ov.block_b,
                ov.pool_a,
                ov.index_a,
                ov.block_a,
            )
        candidate.conflict = (
            f'blocks[{own_index}] {own_block} overlaps pool "{other}" blocks[{other_index}] {other_block} '
            f'in {ov.shared}; pool "{other}" is older, so this pool allocates nothing until the ranges are disjoint'
        )


class _IPUse:
    """One allocated address and the Services on it."""

    __slots__ = ("etp", "holders", "pool", "ports", "sharing_key", "text", "value", "version")

    def __init__(self, version: int, value: int, pool: _PoolState, first: _Service) -> None:
        self.version = version
        self.value = value
        self.text = _ip_text(version, value)
        self.pool = pool
        self.sharing_key = first.sharing_key
        self.etp = first.etp
        self.holders: list[_Service] = []
        self.ports: dict[tuple[int, str], str] = {}
        self.add(first)

    def add(self, service: _Service) -> None:
        self.holders.append(service)
        for port in service.ports:  # holders never share a port, so each port has one user
            self.ports[port] = service.key

    def can_join(self, service: _Service) -> bool:
        """Same sharing key (not None), same traffic policy, no port in common."""
        return (
            service.sharing_key is not None
            and self.sharing_key == service.sharing_key
            and service.etp == self.etp
            and not any(port in self.ports for port in service.ports)
        )

    def problem(self, service: _Service) -> tuple[str, str] | None:
        """(reason, why) the Service cannot join this address, or None when it can share it."""
        if self.can_join(service):
            return None
        holders = sorted(self.holders, key=lambda s: s.priority)
        if service.sharing_key is None or self.sharing_key != service.sharing_key:
            names = ", ".join(s.key for s in holders[:3]) + (", ..." if len(holders) > 3 else "")
            hint = "" if service.sharing_key is None else f" (sharing key {self.sharing_key or 'none'})"
            return REASON_REQUESTED_IP_UNAVAILABLE, f"held by {names}{hint}"
        if service.etp != self.etp:
            return REASON_SHARING_REFUSED, (
                f"shared with {holders[0].key} (externalTrafficPolicy {self.etp}) but this Service has "
                f"externalTrafficPolicy {service.etp}; Services sharing an IP need the same policy"
            )
        for port in sorted(service.ports):
            other = self.ports.get(port)
            if other is not None:
                return REASON_SHARING_REFUSED, (
                    f"port {port[0]}/{port[1]} is also used by {other} on this IP; "
                    "Services sharing an IP need distinct ports"
                )
        return None


class _Service:
    """One of our Services during a round (slots: tens of thousands of these per round)."""

    __slots__ = (
        "etp",
        "held",
        "info",
        "invalid",
        "key",
        "ports",
        "priority",
        "refusals",
        "request_source",
        "requested",
        "selecting",
        "selecting_orders",
        "sharing_key",
        "versions",
    )

    def __init__(
        self,
        info: ServiceInfo,
        priority: int,
        selecting: tuple[_PoolState, ...],
        selecting_orders: frozenset[int],
        ports: frozenset[tuple[int, str]],
        versions: tuple[int, ...],
    ) -> None:
        self.info = info
        self.key = info.key
        self.priority = priority  # position in (created, key) order: lower is older and wins
        self.sharing_key = sharing_key(info)
        self.etp = info.external_traffic_policy or "Cluster"
        self.ports = ports
        self.versions = versions
        self.selecting = selecting
        self.selecting_orders = selecting_orders
        # Per IP version, the addresses held: one, or every requested one (a request may name several per family).
        self.held: dict[int, list[_IPUse]] = {}
        # The first refusal is the one reported. A taken requested IP is kept as (use, prefix) and
        # rendered at the end against the final holders, so the message does not depend on the order
        # of work (and a second round reports the very same text).
        self.refusals: list[Refusal | tuple[_IPUse, str]] = []
        self.invalid = False
        self.request_source: str | None = None
        self.requested: dict[int, list[int]] = {}
        self._parse_request()

    def _parse_request(self) -> None:
        source, raw = requested_ips(self.info)
        self.request_source = source
        if source is None:
            return
        where = f"annotation {source}" if source != _LEGACY_FIELD else source
        # Every valid entry is requested (several per family are fine, as in Cilium); an invalid one is refused on
        # its own and reported, and does not cost the Service the others.
        for text in raw:
            if not text:
                self.refuse_entry(
                    f"{where} has an empty entry in {','.join(raw)!r}; list addresses separated by commas"
                )
                continue
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                self.refuse_entry(
                    f"{where}: {text!r} is not an IP address; write addresses like 198.18.10.5 or 2001:db8::5"
                )
                continue
            version = address.version
            if version not in self.versions:
                self.refuse_entry(
                    f"{where} requests {_family_name(version)} address {address} but spec.ipFamilies is "
                    f"{','.join(self.info.ip_families) or 'IPv4'}; request an address of the Service's family"
                )
                continue
            wanted = self.requested.setdefault(version, [])
            if int(address) not in wanted:
                wanted.append(int(address))
        if not self.requested:
            self.invalid = True  # nothing valid was asked for: no address at all (never a dynamic one)

    def refuse_entry(self, message: str) -> None:
        """One requested entry is invalid: reported (InvalidRequest), the valid ones are still allocated."""
        self.refusals.append(Refusal(REASON_INVALID_REQUEST, message))

    def ordered(self, version: int) -> list[_IPUse]:
        """The addresses held of ``version``: requested ones in the request's order, whatever the order of claims."""
        uses = self.held.get(version, [])
        wanted = self.requested.get(version)
        if not wanted or len(uses) < 2:
            return uses
        return sorted(uses, key=lambda use: wanted.index(use.value) if use.value in wanted else len(wanted))

    def holds(self, version: int, value: int | None = None) -> bool:
        """Whether the Service holds an address of ``version`` (that address, with ``value``)."""
        uses = self.held.get(version, ())
        return bool(uses) if value is None else any(use.value == value for use in uses)

    def refuse(self, reason: str, message: str) -> None:
        if reason == REASON_INVALID_REQUEST:
            self.invalid = True
        self.refusals.append(Refusal(reason, message))

    def refusal(self) -> Refusal | None:
        """The first refusal: the one the user should fix first."""
        if not self.refusals:
            return None
        first = self.refusals[0]
        if isinstance(first, Refusal):
            return first
        use, prefix = first
        problem = use.problem(self)
        assert problem is not None, "a refused address stays unusable: ports and holders only grow"
        reason, why = problem
        verb = "cannot be shared" if reason == REASON_SHARING_REFUSED else "is unavailable"
        return Refusal(reason, f"{prefix} {verb}: {why}")


class _Allocator:
    def __init__(self, pools: Sequence[PoolInfo], services: Sequence[ServiceInfo]) -> None:
        ordered = sorted(pools, key=lambda p: (p.created, p.pool.name))
        self.pools = [_PoolState(info, order) for order, info in enumerate(ordered)]
        _mark_conflicts(self.pools)
        self.live = [pool for pool in self.pools if pool.live]
        self.index = _PoolIndex(self.live)
        self.uses: dict[tuple[int, int], _IPUse] = {}
        # (sharing key, version) -> addresses of the group, in the order they were claimed.
        self.groups: dict[tuple[str, int], list[_IPUse]] = {}
        # Where the scan of a group may resume for Services alike in key, family, policy, ports and pools:
        # an address once unusable for them stays unusable this round (ports only get added).
        self.group_cursors: dict[tuple[object, ...], int] = {}
        self.services: list[_Service] = []
        self.released: list[str] = []
        # Services mostly repeat a few label sets, port lists and family lists: share the derived values.
        selecting_cache: dict[tuple[tuple[str, str], ...], tuple[tuple[_PoolState, ...], frozenset[int]]] = {}
        ports_cache: dict[tuple[ServicePort, ...], frozenset[tuple[int, str]]] = {}
        versions_cache: dict[tuple[str, ...], tuple[int, ...]] = {}
        pseudo = uses_pseudo_labels(pool.pool.service_selector for pool in self.live)
        for info in sorted(services, key=lambda s: (s.created, s.key)):
            if not is_ours(info):
                if info.ingress_ips and info.load_balancer_class in (None, LB_CLASS):
                    self.released.append(info.key)
                continue
            match = info.selector_labels if pseudo else info.labels
            labels = tuple(sorted(match.items()))
            selecting = selecting_cache.get(labels)
            if selecting is None:
                pools_ = tuple(pool for pool in self.live if pool.pool.selects_service(match))
                selecting = selecting_cache[labels] = (pools_, frozenset(pool.order for pool in pools_))
            ports = ports_cache.get(info.ports)
            if ports is None:
                ports = ports_cache[info.ports] = frozenset((p.port, (p.protocol or "TCP").upper()) for p in info.ports)
            versions = versions_cache.get(info.ip_families)
            if versions is None:
                known = (IP_FAMILY_VERSIONS[f] for f in info.ip_families if f in IP_FAMILY_VERSIONS)
                versions = versions_cache[info.ip_families] = tuple(dict.fromkeys(known)) or (4,)
            self.services.append(_Service(info, len(self.services), *selecting, ports, versions))

    def run(self) -> IPAMResult:
        for service in self.services:
            self.keep_current(service)
        for service in self.services:
            if service.requested and not service.invalid:
                self.reserve_requested(service)
        for service in self.services:
            if service.request_source is None:
                self.allocate_dynamic(service)
        return self.result()

    # -- phases -------------------------------------------------------------------------------

    def keep_current(self, service: _Service) -> None:
        if service.invalid:
            return
        for text in service.info.ingress_ips:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            version, value = address.version, int(address)
            if version not in service.versions:
                continue
            if service.request_source is not None:
                if value not in service.requested.get(version, ()) or service.holds(version, value):
                    continue
            elif service.holds(version):
                continue
            pool = self.index.find(version, value)
            if pool is None or pool.order not in service.selecting_orders:
                continue
            use = self.uses.get((version, value))
            if use is None:
                self.claim(service, pool, version, value)
            elif use.can_join(service):
                self.join(service, use)

    def reserve_requested(self, service: _Service) -> None:
        source = service.request_source
        where = f"annotation {source}" if source != _LEGACY_FIELD else source
        for version, value in ((v, x) for v in service.versions for x in service.requested.get(v, ())):
            if service.holds(version, value):
                continue
            text = _ip_text(version, value)
            pool = self.index.find(version, value)
            if pool is None:
                why = self.not_in_pool(version, value)
                service.refuse(REASON_REQUESTED_IP_UNAVAILABLE, f"requested IP {text} ({where}) {why}")
                continue
            if pool.order not in service.selecting_orders:
                service.refuse(
                    REASON_REQUESTED_IP_UNAVAILABLE,
                    f'requested IP {text} ({where}) is in pool "{pool.name}", whose serviceSelector does not '
                    "select this Service; change the Service's labels or the pool's serviceSelector",
                )
                continue
            use = self.uses.get((version, value))
            if pool.disabled:
                service.refuse(
                    REASON_REQUESTED_IP_UNAVAILABLE,
                    f'requested IP {text} ({where}) is in pool "{pool.name}", which is disabled',
                )
                continue
            if use is None:
                self.claim(service, pool, version, value)
                continue
            if use.can_join(service):
                self.join(service, use)
            else:
                service.refusals.append((use, f"requested IP {text} ({where})"))

    def allocate_dynamic(self, service: _Service) -> None:
        wanted = [v for v in service.versions if not service.holds(v)]
        if not wanted:
            return
        without_pool: list[int] = []
        for version in wanted:
            candidates = [p for p in service.selecting if version in p.ranges]
            enabled = [p for p in candidates if not p.disabled]
            if not enabled:
                without_pool.append(version)
                continue
            if service.sharing_key is not None and self.join_group(service, version):
                continue
            for pool in enabled:
                value = pool.take_lowest(version)
                if value is not None:
                    self.claim(service, pool, version, value, already_marked=True)
                    break
            else:
                service.refuse(REASON_POOL_EXHAUSTED, "; ".join(p.exhausted_message(version) for p in enabled))
        # Dual-stack takes one of each family *if available*: a missing family is only an error when
        # the Service ends up with no family at all.
        if len(without_pool) == len(service.versions) and not any(service.held.values()):
            service.refuse(REASON_NO_POOL_MATCHES, self.no_pool_message(service, without_pool))

    def join_group(self, service: _Service, version: int) -> bool:
        assert service.sharing_key is not None
        group = self.groups.get((service.sharing_key, version))
        if not group:
            return False
        cursor_key = (service.sharing_key, version, service.etp, service.ports, service.selecting_orders)
        position = self.group_cursors.get(cursor_key, 0)
        while position < len(group):
            use = group[position]
            if use.pool.order in service.selecting_orders and not use.pool.disabled and use.can_join(service):
                self.group_cursors[cursor_key] = position
                self.join(service, use)
                return True
            position += 1
        self.group_cursors[cursor_key] = position
        return False

    # -- bookkeeping ----------------------------------------------------------------------------

    def claim(
        self, service: _Service, pool: _PoolState, version: int, value: int, already_marked: bool = False
    ) -> None:
        use = _IPUse(version, value, pool, service)
        self.uses[(version, value)] = use
        if not already_marked:
            pool.used[version].add(value)
        service.held.setdefault(version, []).append(use)
        if service.sharing_key is not None:
            self.groups.setdefault((service.sharing_key, version), []).append(use)

    def join(self, service: _Service, use: _IPUse) -> None:
        use.add(service)
        service.held.setdefault(use.version, []).append(use)

    # -- messages -------------------------------------------------------------------------------

    def not_in_pool(self, version: int, value: int) -> str:
        """Why an address is in no live pool: a conflicting pool, a skipped first/last, or nowhere."""
        address = ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value)
        for pool in self.pools:
            for block in pool.pool.blocks:
                if not block.range.contains(address):
                    continue
                if not pool.live:
                    return f'is in pool "{pool.name}", which is conflicting: {pool.conflict}'
                return (
                    f'is the first or last address of pool "{pool.name}" block {block}, which is not handed out; '
                    "set allowFirstLastIPs: true on the pool to use it"
                )
        return "is not in any pool; request an address from a pool's blocks or add a pool containing it"

    def no_pool_message(self, service: _Service, versions: Sequence[int]) -> str:
        families = "/".join(_family_name(v) for v in versions)
        disabled = [p.name for p in service.selecting if p.disabled and any(v in p.ranges for v in versions)]
        if disabled:
            names = ", ".join(f'"{name}"' for name in disabled)
            return f"no enabled pool with {families} addresses selects the Service (disabled: pool {names})"
        if not self.live:
            return "no pool exists; create a LoadBalancerIPPool"
        if service.selecting:
            return f"no pool with {families} addresses selects the Service; add a pool with {families} blocks"
        return (
            "no pool selects the Service (every pool's serviceSelector excludes its labels); "
            "label the Service or widen a pool's serviceSelector"
        )

    def result(self) -> IPAMResult:
        allocations: dict[str, ServiceAllocation] = {}
        for service in self.services:
            held = [use for v in service.versions for use in service.ordered(v)]
            allocations[service.key] = ServiceAllocation(
                key=service.key,
                ips=tuple(use.text for use in held),
                pools=tuple(use.pool.name for use in held),
                sharing_key=service.sharing_key,
                refusal=service.refusal(),
            )
        for key in self.released:
            allocations.setdefault(key, ServiceAllocation(key=key))
        statuses: dict[str, PoolStatus] = {}
        for pool in self.pools:
            total, used = pool.total(), pool.used_count()
            statuses[pool.name] = PoolStatus(
                name=pool.name,
                total=total,
                used=used,
                available=0 if pool.disabled or not pool.live else total - used,
                conflicting=not pool.live,
                conflict_message=pool.conflict,
                disabled=pool.disabled,
            )
        ip_services = {
            use.text: tuple(s.key for s in sorted(use.holders, key=lambda s: s.priority)) for use in self.uses.values()
        }
        return IPAMResult(allocations, statuses, ip_services)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one round.

    A round creates a few objects per Service that all live until it ends; with a large heap (the
    runtime's watch caches) the collector would rescan them many times and double the run time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def allocate(pools: Sequence[PoolInfo], services: Sequence[ServiceInfo]) -> IPAMResult:
    """Decide every Service's LoadBalancer IPs and every pool's status; see the module docstring.

    Deterministic and idempotent: feeding the returned IPs back as the Services' ``ingress_ips``
    with nothing else changed returns the same result.
    """
    with gc_paused():
        return _Allocator(pools, services).run()
