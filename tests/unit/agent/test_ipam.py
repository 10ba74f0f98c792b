"""IPAM rules, one test per rule: pools, requested IPs, sharing, stability, families, status."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from l2lb_agent.controller.ipam import IPAMResult, ServiceAllocation, allocate, requested_ips, sharing_key
from l2lb_agent.controller.types import (
    LB_CLASS,
    REQUESTED_IP_ANNOTATIONS,
    SHARING_KEY_ANNOTATIONS,
    PoolInfo,
    ServiceInfo,
    ServicePort,
)
from l2lb_agent.model.model import parse_pool
from l2lb_agent.model.problems import Problems


def make_pool(name: str, *blocks: str, created: str = "2024-01-01T00:00:00Z", **spec: Any) -> PoolInfo:
    """A pool from CIDRs or "start-stop" ranges, parsed by the model (so overlaps are allowed here)."""
    parsed_blocks: list[dict[str, str]] = []
    for block in blocks:
        if "/" in block:
            parsed_blocks.append({"cidr": block})
        else:
            start, _, stop = block.partition("-")
            parsed_blocks.append({"start": start, "stop": stop or start})
    problems = Problems()
    pool = parse_pool({"name": name, "blocks": parsed_blocks, **spec}, 0, problems, [])
    assert pool is not None, [str(p) for p in problems]
    return PoolInfo(pool, created=created)


def svc(
    name: str,
    *,
    namespace: str = "default",
    created: str = "2024-02-01T00:00:00Z",
    ports: tuple[int | tuple[int, str], ...] = (80,),
    **kw: Any,
) -> ServiceInfo:
    service_ports = tuple(ServicePort(p) if isinstance(p, int) else ServicePort(p[0], p[1]) for p in ports)
    return ServiceInfo(namespace=namespace, name=name, created=created, ports=service_ports, **kw)


def one(result: IPAMResult, name: str, namespace: str = "default") -> ServiceAllocation:
    return result.services[f"{namespace}/{name}"]


LAN = make_pool("lan", "198.18.10.0/28")  # usable .1 - .14


# -- which Services are ours -------------------------------------------------------------------


def test_first_service_gets_lowest_usable_address() -> None:
    result = allocate([LAN], [svc("web")])
    alloc = one(result, "web")
    assert alloc.ips == ("198.18.10.1",)
    assert alloc.pools == ("lan",)
    assert alloc.refusal is None
    assert result.ip_services == {"198.18.10.1": ("default/web",)}


def test_load_balancer_class_filtering() -> None:
    services = [
        svc("none"),
        svc("ours", load_balancer_class=LB_CLASS),
        svc("theirs", load_balancer_class="metallb.io/metallb", ingress_ips=("198.18.10.1",)),
    ]
    result = allocate([LAN], services)
    assert set(result.services) == {"default/none", "default/ours"}
    assert one(result, "none").ips == ("198.18.10.1",)  # the foreign Service's IP is not ours to respect
    assert one(result, "ours").ips == ("198.18.10.2",)


def test_non_load_balancer_services_ignored_and_released() -> None:
    services = [
        svc("cluster-ip", type="ClusterIP"),
        svc("was-lb", type="NodePort", ingress_ips=("198.18.10.1",)),
        svc("lb"),
    ]
    result = allocate([LAN], services)
    assert "default/cluster-ip" not in result.services
    assert one(result, "was-lb").ips == ()  # entry present so the runtime clears its status
    assert one(result, "was-lb").refusal is None
    assert one(result, "lb").ips == ("198.18.10.1",)  # the released address is free again
    assert result.pools["lan"].used == 1


# -- pools -------------------------------------------------------------------------------------


def test_service_selector_limits_pool() -> None:
    prod = make_pool("prod", "198.18.20.0/28", serviceSelector={"matchLabels": {"env": "prod"}}, created="2023")
    result = allocate([prod, LAN], [svc("a", labels={"env": "prod"}), svc("b", labels={"env": "dev"})])
    assert one(result, "a").ips == ("198.18.20.1",)
    assert one(result, "b").ips == ("198.18.10.1",)


def test_ciliums_pseudo_labels_select_by_namespace_and_name() -> None:
    # Cilium's documented example: a pool for one namespace; and one for a single Service by name.
    team = make_pool(
        "team",
        "198.18.20.0/28",
        serviceSelector={
            "matchExpressions": [{"key": "io.kubernetes.service.namespace", "operator": "In", "values": ["team-a"]}]
        },
        created="2023-01",
    )
    dns = make_pool(
        "dns",
        "198.18.30.0/28",
        serviceSelector={"matchLabels": {"io.kubernetes.service.name": "dns"}},
        created="2023-02",
    )
    result = allocate(
        [team, dns, LAN],
        [
            svc("web", namespace="team-a"),
            svc("dns", namespace="infra"),
            svc("web", namespace="team-b"),
            # A real label with a pseudo-label's key does not beat the Service's own namespace, as in Cilium.
            svc("fake", namespace="team-b", labels={"io.kubernetes.service.namespace": "team-a"}),
        ],
    )
    assert one(result, "web", "team-a").ips == ("198.18.20.1",)
    assert one(result, "dns", "infra").ips == ("198.18.30.1",)
    assert one(result, "fake", "team-b").ips == ("198.18.10.1",)  # oldest first, then by key: fake before web
    assert one(result, "web", "team-b").ips == ("198.18.10.2",)


def test_pool_order_is_created_then_name() -> None:
    older = make_pool("zzz", "198.18.30.0/28", created="2023-01-01T00:00:00Z")
    same_a = make_pool("aaa", "198.18.40.0/28", created="2024-01-01T00:00:00Z")
    same_b = make_pool("bbb", "198.18.50.0/28", created="2024-01-01T00:00:00Z")
    result = allocate([same_b, same_a, older], [svc("a")])
    assert one(result, "a").pools == ("zzz",)
    result = allocate([same_b, same_a], [svc("a")])
    assert one(result, "a").pools == ("aaa",)


def test_no_pool_matches() -> None:
    prod = make_pool("prod", "198.18.20.0/28", serviceSelector={"matchLabels": {"env": "prod"}})
    alloc = one(allocate([prod], [svc("a", labels={"env": "dev"})]), "a")
    assert alloc.ips == ()
    assert alloc.refusal is not None
    assert alloc.refusal.reason == "NoPoolMatches"
    assert "no pool selects the Service" in alloc.refusal.message


def test_no_pools_at_all() -> None:
    alloc = one(allocate([], [svc("a")]), "a")
    assert alloc.refusal is not None and alloc.refusal.reason == "NoPoolMatches"


def test_pool_exhausted() -> None:
    services = [svc(f"s{i:02d}") for i in range(15)]
    result = allocate([LAN], services)
    assert [one(result, f"s{i:02d}").ips for i in range(14)] == [(f"198.18.10.{i + 1}",) for i in range(14)]
    last = one(result, "s14")
    assert last.ips == ()
    assert last.refusal is not None
    assert last.refusal.reason == "PoolExhausted"
    assert last.refusal.message == 'pool "lan" has no free address (14 used of 14)'
    status = result.pools["lan"]
    assert (status.total, status.used, status.available) == (14, 14, 0)


def test_exhaustion_falls_through_to_next_pool() -> None:
    tiny = make_pool("tiny", "198.18.11.5-198.18.11.5", created="2023-01-01T00:00:00Z")
    result = allocate([LAN, tiny], [svc("a", created="1"), svc("b", created="2")])
    assert one(result, "a").ips == ("198.18.11.5",)
    assert one(result, "b").ips == ("198.18.10.1",)


def test_allow_first_last_ips() -> None:
    closed = make_pool("closed", "198.18.10.0/30")
    opened = make_pool("opened", "198.18.10.0/30", allowFirstLastIPs=True)
    three = [svc("a"), svc("b"), svc("c")]
    result = allocate([closed], three)
    assert [one(result, n).ips for n in "abc"] == [("198.18.10.1",), ("198.18.10.2",), ()]
    assert result.pools["closed"].total == 2
    result = allocate([opened], three)
    assert [one(result, n).ips for n in "abc"] == [("198.18.10.0",), ("198.18.10.1",), ("198.18.10.2",)]
    assert result.pools["opened"].total == 4


def test_start_stop_range_used_as_written() -> None:
    pool = make_pool("range", "198.18.10.0-198.18.10.1")
    result = allocate([pool], [svc("a"), svc("b")])
    assert one(result, "a").ips == ("198.18.10.0",)
    assert one(result, "b").ips == ("198.18.10.1",)


def test_disabled_pool_keeps_old_allocations_but_allocates_nothing_new() -> None:
    disabled = make_pool("lan", "198.18.10.0/28", disabled=True)
    services = [svc("old", ingress_ips=("198.18.10.7",)), svc("new")]
    result = allocate([disabled], services)
    assert one(result, "old").ips == ("198.18.10.7",)
    new = one(result, "new")
    assert new.ips == ()
    assert new.refusal is not None and new.refusal.reason == "NoPoolMatches"
    assert 'disabled: pool "lan"' in new.refusal.message
    status = result.pools["lan"]
    assert status.disabled and status.used == 1 and status.available == 0


def test_disabled_pool_refuses_requested_ip() -> None:
    disabled = make_pool("lan", "198.18.10.0/28", disabled=True)
    alloc = one(allocate([disabled], [svc("a", annotations={"l2lb.io/ips": "198.18.10.3"})]), "a")
    assert alloc.ips == ()
    assert alloc.refusal is not None and alloc.refusal.reason == "RequestedIPUnavailable"
    assert "disabled" in alloc.refusal.message


def test_conflicting_newer_pool_allocates_nothing() -> None:
    old = make_pool("old", "198.18.10.0/28", created="2024-01-01T00:00:00Z")
    new = make_pool("new", "198.18.10.8/29", "198.18.99.0/28", created="2024-06-01T00:00:00Z")
    result = allocate([new, old], [svc("a")])
    status = result.pools["new"]
    assert status.conflicting
    assert 'pool "old"' in status.conflict_message
    assert "198.18.10.8/29" in status.conflict_message
    assert "198.18.10.8-198.18.10.15" in status.conflict_message
    assert status.available == 0 and status.used == 0
    assert not result.pools["old"].conflicting
    assert one(result, "a").pools == ("old",)


def test_conflicting_pool_releases_allocations_only_inside_it() -> None:
    old = make_pool("old", "198.18.10.0/28", created="2024-01-01T00:00:00Z")
    new = make_pool("new", "198.18.10.8/29", "198.18.99.0/28", created="2024-06-01T00:00:00Z")
    services = [
        svc("in-both", ingress_ips=("198.18.10.9",)),  # also inside the older pool: kept, counted there
        svc("only-new", ingress_ips=("198.18.99.3",)),  # only in the conflicting pool: released
    ]
    result = allocate([old, new], services)
    assert one(result, "in-both").ips == ("198.18.10.9",)
    assert one(result, "in-both").pools == ("old",)
    assert one(result, "only-new").ips == ("198.18.10.1",)
    assert result.pools["new"].used == 0


def test_conflict_only_against_live_pools() -> None:
    a = make_pool("a", "198.18.10.0/28", created="1")
    b = make_pool("b", "198.18.10.0/27", created="2")  # overlaps a: conflicting
    c = make_pool("c", "198.18.10.16/28", created="3")  # overlaps only b, which takes no part
    result = allocate([a, b, c], [])
    assert [result.pools[n].conflicting for n in "abc"] == [False, True, False]


def test_requested_ip_in_conflicting_pool_is_explained() -> None:
    old = make_pool("old", "198.18.10.0/28", created="1")
    new = make_pool("new", "198.18.10.8/29", "198.18.99.0/28", created="2")
    alloc = one(allocate([old, new], [svc("a", annotations={"l2lb.io/ips": "198.18.99.4"})]), "a")
    assert alloc.refusal is not None and alloc.refusal.reason == "RequestedIPUnavailable"
    assert 'pool "new", which is conflicting' in alloc.refusal.message


def test_pool_status_counts_shared_ip_once_and_ipv6_totals_are_ints() -> None:
    v6 = make_pool("v6", "2001:db8::/64")
    services = [
        svc("a", ports=(80,), annotations={"l2lb.io/sharing-key": "k"}),
        svc("b", ports=(443,), annotations={"l2lb.io/sharing-key": "k"}),
    ]
    result = allocate([LAN, v6], services)
    assert result.pools["lan"].used == 1
    assert result.pools["v6"].total == 2**64 - 2
    assert result.pools["v6"].available == 2**64 - 2


def test_pool_with_overlapping_blocks_counts_each_address_once() -> None:
    pool = make_pool("dup", "198.18.10.0-198.18.10.9", "198.18.10.5-198.18.10.14")
    result = allocate([pool], [])
    assert result.pools["dup"].total == 15


# -- requested IPs -----------------------------------------------------------------------------


@pytest.mark.parametrize("annotation", REQUESTED_IP_ANNOTATIONS)
def test_requested_ip_via_each_annotation(annotation: str) -> None:
    result = allocate([LAN], [svc("first"), svc("req", created="2025", annotations={annotation: "198.18.10.1"})])
    assert one(result, "req").ips == ("198.18.10.1",)
    # Requested IPs are reserved before dynamic allocation, even for an older Service.
    assert one(result, "first").ips == ("198.18.10.2",)


def test_first_requested_annotation_wins() -> None:
    annotations = {"metallb.universe.tf/loadBalancerIPs": "198.18.10.9", "lbipam.cilium.io/ips": "198.18.10.4"}
    assert one(allocate([LAN], [svc("a", annotations=annotations)]), "a").ips == ("198.18.10.4",)
    annotations["l2lb.io/ips"] = "198.18.10.2"
    assert one(allocate([LAN], [svc("a", annotations=annotations)]), "a").ips == ("198.18.10.2",)


def test_legacy_load_balancer_ip() -> None:
    assert one(allocate([LAN], [svc("a", load_balancer_ip="198.18.10.6")]), "a").ips == ("198.18.10.6",)
    both = svc("a", load_balancer_ip="198.18.10.6", annotations={"l2lb.io/ips": "198.18.10.8"})
    assert one(allocate([LAN], [both]), "a").ips == ("198.18.10.8",)


def test_requested_dual_stack_list() -> None:
    v6 = make_pool("v6", "2001:db8::/120")
    service = svc("a", ip_families=("IPv6", "IPv4"), annotations={"l2lb.io/ips": "198.18.10.3, 2001:DB8::10"})
    alloc = one(allocate([LAN, v6], [service]), "a")
    assert alloc.ips == ("2001:db8::10", "198.18.10.3")  # ipFamilies order, canonical text
    assert alloc.pools == ("v6", "lan")


def test_requested_ip_not_in_any_pool() -> None:
    alloc = one(allocate([LAN], [svc("a", annotations={"l2lb.io/ips": "192.0.2.1"})]), "a")
    assert alloc.ips == ()
    assert alloc.refusal is not None
    assert alloc.refusal.reason == "RequestedIPUnavailable"
    assert "192.0.2.1" in alloc.refusal.message and "not in any pool" in alloc.refusal.message


def test_requested_network_address_explains_allow_first_last() -> None:
    alloc = one(allocate([LAN], [svc("a", annotations={"l2lb.io/ips": "198.18.10.0"})]), "a")
    assert alloc.refusal is not None and alloc.refusal.reason == "RequestedIPUnavailable"
    assert "allowFirstLastIPs" in alloc.refusal.message


def test_requested_ip_pool_does_not_select_service() -> None:
    prod = make_pool("prod", "198.18.20.0/28", serviceSelector={"matchLabels": {"env": "prod"}})
    alloc = one(allocate([prod, LAN], [svc("a", annotations={"l2lb.io/ips": "198.18.20.5"})]), "a")
    assert alloc.ips == ()
    assert alloc.refusal is not None and alloc.refusal.reason == "RequestedIPUnavailable"
    assert 'pool "prod"' in alloc.refusal.message and "does not select" in alloc.refusal.message


def test_requested_ip_held_by_another_service() -> None:
    holder = svc("holder", namespace="team", ingress_ips=("198.18.10.5",), created="2025")
    wants = svc("wants", annotations={"l2lb.io/ips": "198.18.10.5"}, created="2020")
    result = allocate([LAN], [holder, wants])
    assert one(result, "holder", "team").ips == ("198.18.10.5",)
    alloc = one(result, "wants")
    assert alloc.ips == ()
    assert alloc.refusal is not None
    assert alloc.refusal.reason == "RequestedIPUnavailable"
    assert "198.18.10.5" in alloc.refusal.message and "held by team/holder" in alloc.refusal.message


def test_two_services_requesting_same_ip_older_wins() -> None:
    a = svc("a", annotations={"l2lb.io/ips": "198.18.10.5"}, created="2024")
    b = svc("b", annotations={"l2lb.io/ips": "198.18.10.5"}, created="2023")
    result = allocate([LAN], [a, b])
    assert one(result, "b").ips == ("198.18.10.5",)
    refusal = one(result, "a").refusal
    assert refusal is not None and "held by default/b" in refusal.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not-an-ip", "not an IP address"),
        ("2001:db8::1", "spec.ipFamilies is IPv4"),
        ("", "empty entry"),
    ],
)
def test_a_request_with_nothing_valid_gets_no_address(value: str, expected: str) -> None:
    alloc = one(allocate([LAN], [svc("a", annotations={"metallb.io/loadBalancerIPs": value})]), "a")
    assert alloc.ips == ()
    assert alloc.refusal is not None
    assert alloc.refusal.reason == "InvalidRequest"
    assert expected in alloc.refusal.message
    assert "metallb.io/loadBalancerIPs" in alloc.refusal.message


def test_several_requested_addresses_of_one_family_are_all_allocated() -> None:
    # Cilium's own documented example asks for two IPv4 addresses for one Service, and gets both.
    alloc = one(allocate([LAN], [svc("a", annotations={"lbipam.cilium.io/ips": "198.18.10.7,198.18.10.3"})]), "a")
    assert alloc.ips == ("198.18.10.7", "198.18.10.3")
    assert alloc.refusal is None
    # Kept on the next round, in the same order.
    again = svc("a", annotations={"lbipam.cilium.io/ips": "198.18.10.7,198.18.10.3"}, ingress_ips=alloc.ips)
    assert one(allocate([LAN], [again]), "a").ips == ("198.18.10.7", "198.18.10.3")


def test_several_requested_addresses_one_taken_then_freed_keep_the_requests_order() -> None:
    older = svc("old", created="2024-01-01T00:00:00Z", annotations={"l2lb.io/ips": "198.18.10.3"})
    newer = svc("new", annotations={"l2lb.io/ips": "198.18.10.3,198.18.10.4"})
    first = one(allocate([LAN], [older, newer]), "new")
    assert first.ips == ("198.18.10.4",), "the free one is allocated"
    assert first.refusal is not None and first.refusal.reason == "RequestedIPUnavailable"
    assert "198.18.10.3" in first.refusal.message and "held by default/old" in first.refusal.message
    # The older Service goes away: the freed address joins, in the order the annotation lists them.
    later = replace(newer, ingress_ips=first.ips)
    second = one(allocate([LAN], [later]), "new")
    assert second.ips == ("198.18.10.3", "198.18.10.4") and second.refusal is None
    status = allocate([LAN], [later]).pools["lan"]
    assert status.used == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("198.18.10.1,,198.18.10.2", "empty entry"),
        ("198.18.10.1,2001:db8::1,198.18.10.2", "requests IPv6 address 2001:db8::1 but spec.ipFamilies is IPv4"),
        ("198.18.10.1,bogus,198.18.10.2", "'bogus' is not an IP address"),
    ],
)
def test_only_the_invalid_entries_of_a_request_are_refused(value: str, expected: str) -> None:
    alloc = one(allocate([LAN], [svc("a", annotations={"l2lb.io/ips": value})]), "a")
    assert alloc.ips == ("198.18.10.1", "198.18.10.2"), "the valid ones are allocated"
    assert alloc.refusal is not None and alloc.refusal.reason == "InvalidRequest"
    assert expected in alloc.refusal.message and "l2lb.io/ips" in alloc.refusal.message


def test_invalid_request_drops_current_ip() -> None:
    service = svc("a", ingress_ips=("198.18.10.1",), annotations={"l2lb.io/ips": "bogus"})
    assert one(allocate([LAN], [service]), "a").ips == ()


def test_changed_request_moves_service() -> None:
    service = svc("a", ingress_ips=("198.18.10.1",), annotations={"l2lb.io/ips": "198.18.10.9"})
    result = allocate([LAN], [service])
    assert one(result, "a").ips == ("198.18.10.9",)
    assert result.pools["lan"].used == 1


def test_requested_ip_helpers() -> None:
    assert requested_ips(svc("a")) == (None, ())
    assert requested_ips(svc("a", load_balancer_ip="")) == (None, ())
    assert requested_ips(svc("a", annotations={"io.cilium/lb-ipam-ips": " 1.2.3.4 , ::1"})) == (
        "io.cilium/lb-ipam-ips",
        ("1.2.3.4", "::1"),
    )


# -- sharing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("annotation", SHARING_KEY_ANNOTATIONS)
def test_sharing_via_each_annotation(annotation: str) -> None:
    services = [
        svc("http", ports=(80,), annotations={annotation: "web"}),
        svc("https", ports=(443,), annotations={annotation: "web"}, created="2024-03-01"),
    ]
    result = allocate([LAN], services)
    assert one(result, "http").ips == one(result, "https").ips == ("198.18.10.1",)
    assert one(result, "https").sharing_key == "web"
    assert result.ip_services["198.18.10.1"] == ("default/http", "default/https")


def test_first_sharing_annotation_wins() -> None:
    service = svc("a", annotations={"metallb.io/allow-shared-ip": "m", "lbipam.cilium.io/sharing-key": "c"})
    assert sharing_key(service) == "c"
    assert sharing_key(svc("a", annotations={"l2lb.io/sharing-key": "  "})) is None


def test_sharing_same_port_different_protocol_is_allowed() -> None:
    services = [
        svc("dns-udp", ports=((53, "UDP"),), annotations={"l2lb.io/sharing-key": "dns"}),
        svc("dns-tcp", ports=((53, "TCP"),), annotations={"l2lb.io/sharing-key": "dns"}),
    ]
    result = allocate([LAN], services)
    assert one(result, "dns-udp").ips == one(result, "dns-tcp").ips


def test_sharing_without_request_and_port_collision_gets_new_ip() -> None:
    services = [
        svc("a", ports=(80,), annotations={"l2lb.io/sharing-key": "k"}),
        svc("b", ports=(80,), annotations={"l2lb.io/sharing-key": "k"}, created="2024-03-01"),
    ]
    result = allocate([LAN], services)
    assert one(result, "a").ips == ("198.18.10.1",)
    assert one(result, "b").ips == ("198.18.10.2",)
    assert one(result, "b").refusal is None


def test_sharing_refused_on_port_collision_for_requested_ip() -> None:
    services = [
        svc("a", ports=(80, 443), annotations={"l2lb.io/sharing-key": "k", "l2lb.io/ips": "198.18.10.4"}),
        svc(
            "b",
            ports=(8080, 443),
            annotations={"l2lb.io/sharing-key": "k", "l2lb.io/ips": "198.18.10.4"},
            created="2024-03-01",
        ),
    ]
    result = allocate([LAN], services)
    assert one(result, "a").ips == ("198.18.10.4",)
    alloc = one(result, "b")
    assert alloc.ips == ()
    assert alloc.refusal is not None
    assert alloc.refusal.reason == "SharingRefused"
    assert "port 443/TCP" in alloc.refusal.message and "default/a" in alloc.refusal.message


def test_sharing_refused_on_traffic_policy_mismatch() -> None:
    services = [
        svc(
            "a",
            ports=(80,),
            annotations={"l2lb.io/sharing-key": "k"},
            external_traffic_policy="Local",
            ingress_ips=("198.18.10.1",),
        ),
        svc(
            "b",
            ports=(443,),
            annotations={"l2lb.io/sharing-key": "k", "l2lb.io/ips": "198.18.10.1"},
            created="2024-03-01",
        ),
    ]
    result = allocate([LAN], services)
    alloc = one(result, "b")
    assert alloc.refusal is not None
    assert alloc.refusal.reason == "SharingRefused"
    assert "externalTrafficPolicy" in alloc.refusal.message and "default/a" in alloc.refusal.message
    # Without a request the mismatched Service simply gets its own address.
    unrequested = replace(services[1], annotations={"l2lb.io/sharing-key": "k"})
    result = allocate([LAN], [services[0], unrequested])
    assert one(result, "b").ips == ("198.18.10.2",)


def test_service_without_key_never_shares() -> None:
    services = [
        svc("a", ports=(80,), annotations={"l2lb.io/sharing-key": "k"}, ingress_ips=("198.18.10.1",)),
        svc("b", ports=(443,), annotations={"l2lb.io/ips": "198.18.10.1"}, created="2024-03-01"),
    ]
    alloc = one(allocate([LAN], services), "b")
    assert alloc.refusal is not None and alloc.refusal.reason == "RequestedIPUnavailable"


def test_different_keys_do_not_share() -> None:
    services = [
        svc("a", ports=(80,), annotations={"l2lb.io/sharing-key": "k1"}),
        svc("b", ports=(443,), annotations={"l2lb.io/sharing-key": "k2"}, created="2024-03-01"),
    ]
    result = allocate([LAN], services)
    assert one(result, "a").ips != one(result, "b").ips


def test_keyed_service_joins_requested_group_ip() -> None:
    services = [
        svc("a", ports=(80,), annotations={"l2lb.io/sharing-key": "k", "l2lb.io/ips": "198.18.10.9"}),
        svc("b", ports=(443,), annotations={"l2lb.io/sharing-key": "k"}, created="2024-03-01"),
    ]
    result = allocate([LAN], services)
    assert one(result, "b").ips == ("198.18.10.9",)


def test_keyed_join_respects_pool_selector() -> None:
    prod = make_pool("prod", "198.18.20.0/28", serviceSelector={"matchLabels": {"env": "prod"}}, created="1")
    services = [
        svc("a", ports=(80,), labels={"env": "prod"}, annotations={"l2lb.io/sharing-key": "k"}),
        svc("b", ports=(443,), annotations={"l2lb.io/sharing-key": "k"}, created="2024-03-01"),
    ]
    result = allocate([prod, LAN], services)
    assert one(result, "a").ips == ("198.18.20.1",)
    assert one(result, "b").ips == ("198.18.10.1",)


def test_keyed_service_does_not_join_ip_in_disabled_pool() -> None:
    disabled = make_pool("old", "198.18.20.0/28", disabled=True, created="1")
    services = [
        svc("a", ports=(80,), annotations={"l2lb.io/sharing-key": "k"}, ingress_ips=("198.18.20.4",)),
        svc("b", ports=(443,), annotations={"l2lb.io/sharing-key": "k"}, created="2024-03-01"),
    ]
    result = allocate([disabled, LAN], services)
    assert one(result, "a").ips == ("198.18.20.4",)
    assert one(result, "b").ips == ("198.18.10.1",)


# -- stability and clashes ------------------------------------------------------------------------


def test_existing_ip_is_kept() -> None:
    result = allocate([LAN], [svc("new"), svc("old", ingress_ips=("198.18.10.12",))])
    assert one(result, "old").ips == ("198.18.10.12",)
    assert one(result, "new").ips == ("198.18.10.1",)


def test_existing_ip_outside_pools_is_reallocated() -> None:
    result = allocate([LAN], [svc("a", ingress_ips=("192.0.2.7",))])
    assert one(result, "a").ips == ("198.18.10.1",)


def test_existing_ip_in_pool_that_no_longer_selects_is_reallocated() -> None:
    prod = make_pool("prod", "198.18.20.0/28", serviceSelector={"matchLabels": {"env": "prod"}})
    result = allocate([prod, LAN], [svc("a", labels={"env": "dev"}, ingress_ips=("198.18.20.3",))])
    assert one(result, "a").ips == ("198.18.10.1",)


def test_clash_older_service_keeps_ip() -> None:
    services = [
        svc("young", created="2024-05-01", ingress_ips=("198.18.10.3",)),
        svc("old", created="2024-01-01", ingress_ips=("198.18.10.3",)),
    ]
    result = allocate([LAN], services)
    assert one(result, "old").ips == ("198.18.10.3",)
    assert one(result, "young").ips == ("198.18.10.1",)


def test_clash_same_created_broken_by_key() -> None:
    services = [svc(n, created="2024", ingress_ips=("198.18.10.3",)) for n in ("b", "a")]
    result = allocate([LAN], services)
    assert one(result, "a").ips == ("198.18.10.3",)
    assert one(result, "b").ips == ("198.18.10.1",)


def test_clash_with_compatible_sharing_key_is_kept() -> None:
    services = [
        svc("a", ports=(80,), annotations={"l2lb.io/sharing-key": "k"}, ingress_ips=("198.18.10.3",)),
        svc("b", ports=(81,), annotations={"l2lb.io/sharing-key": "k"}, ingress_ips=("198.18.10.3",)),
    ]
    result = allocate([LAN], services)
    assert one(result, "a").ips == one(result, "b").ips == ("198.18.10.3",)


def test_allocation_is_idempotent() -> None:
    services = [svc(f"s{i}") for i in range(5)]
    first = allocate([LAN], services)
    fed_back = [replace(s, ingress_ips=first.services[s.key].ips) for s in services]
    assert allocate([LAN], fed_back) == first


# -- IP families ---------------------------------------------------------------------------------


def test_ipv6_single_stack() -> None:
    v6 = make_pool("v6", "2001:db8:1::/64")
    alloc = one(allocate([LAN, v6], [svc("a", ip_families=("IPv6",))]), "a")
    assert alloc.ips == ("2001:db8:1::1",)
    assert alloc.pools == ("v6",)


def test_dual_stack_gets_one_of_each_in_family_order() -> None:
    v6 = make_pool("v6", "2001:db8:1::/64")
    result = allocate([LAN, v6], [svc("a", ip_families=("IPv6", "IPv4")), svc("b", ip_families=("IPv4", "IPv6"))])
    assert one(result, "a").ips == ("2001:db8:1::1", "198.18.10.1")
    assert one(result, "b").ips == ("198.18.10.2", "2001:db8:1::2")


def test_dual_stack_pool_with_both_families() -> None:
    both = make_pool("both", "198.18.10.0/28", "2001:db8:1::/120")
    alloc = one(allocate([both], [svc("a", ip_families=("IPv4", "IPv6"))]), "a")
    assert alloc.ips == ("198.18.10.1", "2001:db8:1::1")
    assert alloc.pools == ("both", "both")


def test_dual_stack_without_ipv6_pool_takes_ipv4_only() -> None:
    alloc = one(allocate([LAN], [svc("a", ip_families=("IPv4", "IPv6"))]), "a")
    assert alloc.ips == ("198.18.10.1",)
    assert alloc.refusal is None


def test_single_stack_ipv6_without_ipv6_pool() -> None:
    alloc = one(allocate([LAN], [svc("a", ip_families=("IPv6",))]), "a")
    assert alloc.ips == ()
    assert alloc.refusal is not None and alloc.refusal.reason == "NoPoolMatches"
    assert "IPv6" in alloc.refusal.message


def test_single_stack_drops_ip_of_other_family() -> None:
    v6 = make_pool("v6", "2001:db8:1::/64")
    alloc = one(allocate([LAN, v6], [svc("a", ingress_ips=("2001:db8:1::9", "198.18.10.4"))]), "a")
    assert alloc.ips == ("198.18.10.4",)


def test_dual_stack_partial_exhaustion_keeps_other_family() -> None:
    v6 = make_pool("v6", "2001:db8:1::5-2001:db8:1::5")
    services = [svc("a", ip_families=("IPv6",)), svc("b", ip_families=("IPv4", "IPv6"), created="2025")]
    alloc = one(allocate([LAN, v6], services), "b")
    assert alloc.ips == ("198.18.10.1",)
    assert alloc.refusal is not None and alloc.refusal.reason == "PoolExhausted"
    assert alloc.refusal.message == 'pool "v6" has no free address (1 used of 1)'


def test_exhausted_mixed_family_pool_names_the_family() -> None:
    both = make_pool("both", "198.18.10.1-198.18.10.1", "2001:db8:1::/120")
    alloc = one(allocate([both], [svc("a"), svc("b", created="2025")]), "b")
    assert alloc.refusal is not None
    assert alloc.refusal.message == 'pool "both" has no free IPv4 address (1 used of 1 IPv4)'


# -- scale ------------------------------------------------------------------------------------------


def test_large_ipv6_pool_is_not_enumerated() -> None:
    huge = make_pool("huge", "2001:db8::/32")
    services = [svc(f"s{i}", ip_families=("IPv6",)) for i in range(200)]
    result = allocate([huge], services)
    assert result.pools["huge"].used == 200
    assert result.pools["huge"].available == 2**96 - 2 - 200


def test_cursor_skips_requested_and_kept_addresses() -> None:
    services = [
        svc("kept", ingress_ips=("198.18.10.2",)),
        svc("req", annotations={"l2lb.io/ips": "198.18.10.1"}),
        *[svc(f"n{i}", created=f"2025-{i:02d}") for i in range(3)],
    ]
    result = allocate([LAN], services)
    assert [one(result, f"n{i}").ips for i in range(3)] == [("198.18.10.3",), ("198.18.10.4",), ("198.18.10.5",)]
