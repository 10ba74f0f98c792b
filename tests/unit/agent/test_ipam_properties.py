"""Hypothesis properties of IPAM and scheduling over small random clusters.

The universes are tiny (a /26, a few IPv6 addresses, five nodes) so collisions, exhaustion, overlaps
and sharing happen often. Eligibility is re-derived here by brute force, independently of the
scheduler's caches.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2lb_agent.controller.ipam import IPAMResult, allocate, is_ours, requested_ips, sharing_key
from l2lb_agent.controller.scheduler import schedule
from l2lb_agent.controller.types import (
    LB_CLASS,
    REQUESTED_IP_ANNOTATIONS,
    SHARING_KEY_ANNOTATIONS,
    InterfaceInfo,
    NodeInfo,
    PoolInfo,
    ServiceInfo,
    ServicePort,
)
from l2lb_agent.model.model import Policy, parse_policy, parse_pool
from l2lb_agent.model.problems import Problems

# 75 examples per property keep the file well under 20 s; raise L2LB_HYPOTHESIS_EXAMPLES to search harder.
SETTINGS = settings(
    max_examples=int(os.environ.get("L2LB_HYPOTHESIS_EXAMPLES", "75")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))


def _v4(offset: int) -> str:
    return str(ipaddress.IPv4Address(V4_BASE + offset))


def _v6(offset: int) -> str:
    return str(ipaddress.IPv6Address(V6_BASE + offset))


# -- strategies -----------------------------------------------------------------------------------

ADDRESSES = st.one_of(st.integers(0, 40).map(_v4), st.integers(0, 12).map(_v6))


@st.composite
def blocks(draw: st.DrawFn) -> dict[str, str]:
    if draw(st.booleans()):
        prefix = draw(st.sampled_from([28, 29, 30, 31, 32]))
        size = 2 ** (32 - prefix)
        start = draw(st.integers(0, 40 // size)) * size
        return {"cidr": f"{_v4(start)}/{prefix}"}
    if draw(st.integers(0, 3)) == 0:
        start = draw(st.integers(0, 3)) * 4
        return {"cidr": f"{_v6(start)}/126"}
    first = draw(st.integers(0, 40))
    last = draw(st.integers(first, min(first + 8, 45)))
    return {"start": _v4(first), "stop": _v4(last)}


@st.composite
def pools(draw: st.DrawFn) -> list[PoolInfo]:
    count = draw(st.integers(1, 3))
    out = []
    for i in range(count):
        raw: dict[str, Any] = {"name": f"pool{i}", "blocks": draw(st.lists(blocks(), min_size=1, max_size=3))}
        tier = draw(st.sampled_from([None, "a", "b"]))
        if tier is not None:
            raw["serviceSelector"] = {"matchLabels": {"tier": tier}}
        raw["disabled"] = draw(st.integers(0, 5)) == 0
        raw["allowFirstLastIPs"] = draw(st.booleans())
        problems = Problems()
        pool = parse_pool(raw, i, problems, [])
        assert pool is not None, [str(p) for p in problems]
        out.append(PoolInfo(pool, created=draw(CREATED)))
    return out


KEYS = st.sampled_from([None, None, "k1", "k2"])
SHARING_ANNOTATIONS = st.sampled_from(SHARING_KEY_ANNOTATIONS)
REQUEST_ANNOTATIONS = st.sampled_from(REQUESTED_IP_ANNOTATIONS)
REQUEST_LISTS = st.lists(ADDRESSES, min_size=1, max_size=2)
PORT_SETS = st.sets(st.sampled_from([(80, "TCP"), (443, "TCP"), (53, "UDP"), (53, "TCP")]), min_size=1, max_size=2)
TIERS = st.sampled_from([None, "a", "b"])
NAMESPACES = st.sampled_from(["default", "team"])
TYPES = st.sampled_from(["LoadBalancer"] * 8 + ["ClusterIP"])
CLASSES = st.sampled_from([None] * 6 + [LB_CLASS, "other.io/lb"])
TRAFFIC_POLICIES = st.sampled_from(["Cluster", "Cluster", "Local"])
FAMILIES = st.sampled_from([("IPv4",), ("IPv4",), ("IPv6",), ("IPv4", "IPv6")])
INGRESS = st.lists(ADDRESSES, max_size=2)
EXTERNAL = st.lists(ADDRESSES, max_size=1)
CREATED = st.sampled_from(["1", "2", "3"])


@st.composite
def services(draw: st.DrawFn, max_size: int = 20) -> list[ServiceInfo]:
    count = draw(st.integers(0, max_size))
    out = []
    for i in range(count):
        annotations: dict[str, str] = {}
        key = draw(KEYS)
        if key is not None:
            annotations[draw(SHARING_ANNOTATIONS)] = key
        legacy = None
        request = draw(st.integers(0, 5))
        if request == 0:
            annotations[draw(REQUEST_ANNOTATIONS)] = ",".join(draw(REQUEST_LISTS))
        elif request == 1:
            legacy = draw(ADDRESSES)
        tier = draw(TIERS)
        out.append(
            ServiceInfo(
                namespace=draw(NAMESPACES),
                name=f"s{i}",
                type=draw(TYPES),
                load_balancer_class=draw(CLASSES),
                labels={"tier": tier} if tier else {},
                annotations=annotations,
                ports=tuple(ServicePort(p, proto) for p, proto in sorted(draw(PORT_SETS))),
                external_traffic_policy=draw(TRAFFIC_POLICIES),
                ip_families=draw(FAMILIES),
                ingress_ips=tuple(draw(INGRESS)),
                external_ips=tuple(draw(EXTERNAL)),
                created=draw(CREATED),
                load_balancer_ip=legacy,
            )
        )
    return out


@st.composite
def policies(draw: st.DrawFn) -> list[Policy]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        raw: dict[str, Any] = {"name": f"policy{i}"}
        zone = draw(st.sampled_from([None, "1", "2"]))
        if zone:
            raw["nodeSelector"] = {"matchLabels": {"zone": zone}}
        tier = draw(st.sampled_from([None, None, "a", "b"]))
        if tier:
            raw["serviceSelector"] = {"matchLabels": {"tier": tier}}
        raw["interfaces"] = draw(st.sampled_from([[], ["^eth"], ["eth1$"]]))
        raw["externalIPs"] = draw(st.booleans())
        raw["loadBalancerIPs"] = draw(st.sampled_from([True, True, False]))
        parsed = parse_policy(raw, i, Problems(), [])
        assert parsed is not None
        out.append(parsed)
    return out


@st.composite
def nodes(draw: st.DrawFn) -> list[NodeInfo]:
    out = []
    for i in range(draw(st.integers(1, 5))):
        interfaces = tuple(
            InterfaceInfo(
                name,
                f"02:00:00:00:00:{i:02x}",
                draw(st.booleans()),
                (draw(st.sampled_from(["10.0.0.0/28", "10.0.0.16/28", "2001:db8::/64", "192.0.2.0/24"])),),
                ndp=draw(st.booleans()),
            )
            for name in draw(st.lists(st.sampled_from(["eth0", "eth1", "wlan0"]), unique=True, max_size=3))
        )
        out.append(
            NodeInfo(
                f"node{i}",
                labels={"zone": draw(st.sampled_from(["1", "2"]))},
                alive=draw(st.integers(0, 4)) > 0,
                draining=draw(st.integers(0, 6)) == 0,
                schedulable=draw(st.integers(0, 6)) > 0,
                interfaces=interfaces,
            )
        )
    return out


def feed_back(svcs: Sequence[ServiceInfo], result: IPAMResult) -> list[ServiceInfo]:
    """The Services as they look after the runtime wrote the result's IPs to their status."""
    out = []
    for s in svcs:
        alloc = result.services.get(s.key)
        out.append(s if alloc is None else replace(s, ingress_ips=alloc.ips))
    return out


# -- IPAM properties --------------------------------------------------------------------------------


def _usable(info: PoolInfo) -> list[tuple[int, int, int]]:
    return [(r.version, r.first, r.last) for r in info.pool.usable_ranges()]


@SETTINGS
@given(pools(), services())
def test_allocated_ips_lie_in_a_live_pool_that_selects_the_service(
    pool_list: list[PoolInfo], svcs: list[ServiceInfo]
) -> None:
    result = allocate(pool_list, svcs)
    by_name = {p.pool.name: p for p in pool_list}
    by_key = {s.key: s for s in svcs}
    for key, alloc in result.services.items():
        service = by_key[key]
        assert len(alloc.ips) == len(alloc.pools)
        if not is_ours(service):
            assert alloc.ips == ()
        versions = [ipaddress.ip_address(ip).version for ip in alloc.ips]
        if requested_ips(service)[0] is None:  # a request may name several per family; a dynamic one takes one
            assert len(set(versions)) == len(versions), "at most one IP per family"
        assert len(set(alloc.ips)) == len(alloc.ips), "no address twice"
        for ip, pool_name in zip(alloc.ips, alloc.pools):  # lengths asserted above
            address = ipaddress.ip_address(ip)
            assert f"IPv{address.version}" in service.ip_families
            info = by_name[pool_name]
            assert not result.pools[pool_name].conflicting
            assert info.pool.selects_service(service.selector_labels)
            assert any(v == address.version and lo <= int(address) <= hi for v, lo, hi in _usable(info)), (
                ip,
                pool_name,
            )
    for s in svcs:
        if not is_ours(s) and s.load_balancer_class not in (None, LB_CLASS):
            assert s.key not in result.services


@SETTINGS
@given(pools(), services())
def test_no_two_unshared_services_on_one_ip(pool_list: list[PoolInfo], svcs: list[ServiceInfo]) -> None:
    result = allocate(pool_list, svcs)
    by_key = {s.key: s for s in svcs}
    holders: dict[str, list[ServiceInfo]] = {}
    for key, alloc in result.services.items():
        for ip in alloc.ips:
            holders.setdefault(ip, []).append(by_key[key])
    assert {ip: sorted(s.key for s in group) for ip, group in holders.items()} == {
        ip: sorted(keys) for ip, keys in result.ip_services.items()
    }
    for group in holders.values():
        if len(group) == 1:
            continue
        keys = {sharing_key(s) for s in group}
        assert len(keys) == 1 and None not in keys, "only Services with one sharing key share"
        assert len({s.external_traffic_policy for s in group}) == 1
        seen: set[tuple[int, str]] = set()
        for s in group:
            ports = {(p.port, p.protocol) for p in s.ports}
            assert not ports & seen, "shared IP with colliding ports"
            seen |= ports


@SETTINGS
@given(pools(), services())
def test_pool_status_counts(pool_list: list[PoolInfo], svcs: list[ServiceInfo]) -> None:
    result = allocate(pool_list, svcs)
    assert all(len(alloc.ips) == len(alloc.pools) for alloc in result.services.values())
    for info in pool_list:
        status = result.pools[info.pool.name]
        distinct = {
            ip for alloc in result.services.values() for ip, p in zip(alloc.ips, alloc.pools) if p == info.pool.name
        }
        assert status.used == len(distinct)
        addresses = {(v, x) for v, lo, hi in _usable(info) for x in range(lo, hi + 1)}
        assert status.total == len(addresses)
        assert status.available == (0 if status.disabled or status.conflicting else status.total - status.used)
        assert status.available >= 0
        if status.conflicting:
            assert status.used == 0 and "overlaps pool" in status.conflict_message


@SETTINGS
@given(pools(), services(), st.randoms(use_true_random=False))
def test_allocation_is_deterministic_and_idempotent(
    pool_list: list[PoolInfo], svcs: list[ServiceInfo], rnd: random.Random
) -> None:
    first = allocate(pool_list, svcs)
    shuffled_pools, shuffled_svcs = list(pool_list), list(svcs)
    rnd.shuffle(shuffled_pools)
    rnd.shuffle(shuffled_svcs)
    assert allocate(shuffled_pools, shuffled_svcs) == first, "input order must not matter"
    again = allocate(pool_list, feed_back(svcs, first))
    # A released non-LoadBalancer Service drops out once its status is cleared; all else is unchanged.
    released = {s.key for s in svcs if not is_ours(s)}
    assert all(first.services[key].ips == () for key in released & set(first.services))
    assert {k: v for k, v in again.services.items() if k not in released} == {
        k: v for k, v in first.services.items() if k not in released
    }
    assert again.pools == first.pools
    assert again.ip_services == first.ip_services


@SETTINGS
@given(pools(), services(), st.data())
def test_removing_a_service_moves_no_other(
    pool_list: list[PoolInfo], svcs: list[ServiceInfo], data: st.DataObject
) -> None:
    settled = feed_back(svcs, allocate(pool_list, svcs))
    before = allocate(pool_list, settled)
    if not settled:
        return
    gone = data.draw(st.sampled_from(settled))
    after = allocate(pool_list, [s for s in settled if s.key != gone.key])
    for key, alloc in before.services.items():
        if key == gone.key:
            continue
        now = after.services[key]
        assert set(alloc.ips) <= set(now.ips), f"{key} lost {set(alloc.ips) - set(now.ips)}"
        if alloc.refusal is None:
            assert now.ips == alloc.ips


# -- scheduler properties ---------------------------------------------------------------------------


def _pool(raw: dict[str, Any]) -> PoolInfo:
    pool = parse_pool(raw, 0, Problems(), [])
    assert pool is not None
    return PoolInfo(pool)


SCHED_POOLS = [_pool({"name": "lan", "blocks": [{"cidr": "10.0.0.0/27"}, {"cidr": "2001:db8::/124"}]})]


@st.composite
def clusters(
    draw: st.DrawFn,
) -> tuple[list[ServiceInfo], IPAMResult, list[Policy], list[NodeInfo], dict[str, set[str]]]:
    svcs = draw(services(max_size=15))
    result = allocate(SCHED_POOLS, svcs)
    node_list = draw(nodes())
    names = [n.name for n in node_list]
    local = {s.key: set(draw(st.lists(st.sampled_from(names), unique=True))) for s in svcs}
    return feed_back(svcs, result), result, draw(policies()), node_list, local


def _members(
    ipam: IPAMResult, svcs: Sequence[ServiceInfo], pols: Sequence[Policy]
) -> dict[str, list[tuple[ServiceInfo, bool]]]:
    by_key = {s.key: s for s in svcs}
    out: dict[str, list[tuple[ServiceInfo, bool]]] = {}
    for key, alloc in ipam.services.items():
        for ip in alloc.ips:
            out.setdefault(ip, []).append((by_key[key], False))
    for s in svcs:
        if any(p.external_ips and p.selects_service(s.labels) for p in pols):
            for ip in s.external_ips:
                out.setdefault(str(ipaddress.ip_address(ip)), []).append((s, True))
    return out


def _eligible_interfaces(
    ip: str,
    ip_members: list[tuple[ServiceInfo, bool]],
    node: NodeInfo,
    pols: Sequence[Policy],
    local: Mapping[str, set[str]],
) -> set[str]:
    """Brute force: the matching up interfaces of ``node`` for this IP (IPv6: those answering NDP), empty when
    not eligible."""
    ipv6 = ipaddress.ip_address(ip).version == 6
    if not node.alive or node.draining or not node.schedulable:
        return set()
    for s, _ in ip_members:
        if s.external_traffic_policy == "Local" and node.name not in local.get(s.key, set()):
            return set()
    names: set[str] = set()
    for p in pols:
        if not p.selects_node(node.labels):
            continue
        if not all(
            (p.external_ips if ext else p.load_balancer_ips) and p.selects_service(s.labels) for s, ext in ip_members
        ):
            continue
        names |= {i.name for i in node.interfaces if i.up and p.matches_interface(i.name) and (i.ndp or not ipv6)}
    return names


@SETTINGS
@given(clusters(), st.dictionaries(ADDRESSES, st.sampled_from([f"node{i}" for i in range(6)])))
def test_every_assignment_is_eligible_and_every_ip_accounted(
    cluster: tuple[list[ServiceInfo], IPAMResult, list[Policy], list[NodeInfo], dict[str, set[str]]],
    current: dict[str, str],
) -> None:
    svcs, ipam, pols, node_list, local = cluster
    result = schedule(ipam, svcs, pols, node_list, local, current)
    members = _members(ipam, svcs, pols)
    assert set(result.assignments) | set(result.unschedulable) == set(members)
    assert not set(result.assignments) & set(result.unschedulable)
    by_name = {n.name: n for n in node_list}
    for ip, ip_members in members.items():
        eligible = {n.name for n in node_list if _eligible_interfaces(ip, ip_members, n, pols, local)}
        assert set(result.ip_services[ip]) == {s.key for s, _ in ip_members}
        if not eligible:
            assert ip in result.unschedulable and result.unschedulable[ip].reason == "NoEligibleNode"
            continue
        ann = result.assignments[ip]
        assert ann.ip == ip and ann.node in eligible
        matching = _eligible_interfaces(ip, ip_members, by_name[ann.node], pols, local)
        assert ann.interfaces and set(ann.interfaces) <= matching
        address = ipaddress.ip_address(ip)
        on_link = {
            i.name
            for i in by_name[ann.node].interfaces
            if i.name in matching and any(address in ipaddress.ip_network(net, strict=False) for net in i.subnets)
        }
        assert set(ann.interfaces) == (on_link or matching)
        if current.get(ip) in eligible:
            assert ann.node == current[ip], "sticky: an eligible current node keeps the IP"


@SETTINGS
@given(clusters())
def test_schedule_is_idempotent(
    cluster: tuple[list[ServiceInfo], IPAMResult, list[Policy], list[NodeInfo], dict[str, set[str]]],
) -> None:
    svcs, ipam, pols, node_list, local = cluster
    first = schedule(ipam, svcs, pols, node_list, local, {})
    current = {ip: a.node for ip, a in first.assignments.items()}
    assert schedule(ipam, svcs, pols, node_list, local, current) == first
    shuffled = list(reversed(node_list))
    assert schedule(ipam, list(reversed(svcs)), pols, shuffled, local, current) == first


@SETTINGS
@given(clusters(), st.data())
def test_removing_a_service_moves_no_other_ip(
    cluster: tuple[list[ServiceInfo], IPAMResult, list[Policy], list[NodeInfo], dict[str, set[str]]],
    data: st.DataObject,
) -> None:
    svcs, ipam, pols, node_list, local = cluster
    first = schedule(ipam, svcs, pols, node_list, local, {})
    if not svcs:
        return
    gone = data.draw(st.sampled_from(svcs))
    rest = [s for s in svcs if s.key != gone.key]
    current = {ip: a.node for ip, a in first.assignments.items()}
    second = schedule(allocate(SCHED_POOLS, rest), rest, pols, node_list, local, current)
    for ip, ann in first.assignments.items():
        if gone.key in first.ip_services[ip]:
            continue  # the removed Service's IPs (and those it shared) may change membership
        assert second.assignments[ip] == ann


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 6))
def test_fresh_assignments_are_balanced(ip_count: int, node_count: int) -> None:
    svcs = [ServiceInfo("default", f"s{i}", ingress_ips=(_v4(i),)) for i in range(ip_count)]
    ipam = allocate([_pool({"name": "p", "blocks": [{"start": _v4(0), "stop": _v4(63)}]})], svcs)
    node_list = [NodeInfo(f"n{i}", interfaces=(InterfaceInfo("eth0", "m", True),)) for i in range(node_count)]
    pol = parse_policy({"name": "all"}, 0, Problems(), [])
    assert pol is not None
    result = schedule(ipam, svcs, [pol], node_list)
    loads = [sum(1 for a in result.assignments.values() if a.node == n.name) for n in node_list]
    assert sum(loads) == ip_count
    assert max(loads) - min(loads) <= 1
