"""End to end: agent processes in node namespaces, ARP on a real bridge, a real control plane on the lab network.

The control plane is etcd + kube-apiserver v1.37.2 + kube-controller-manager (``tests/controlplane.py``),
started in the lab's bridge namespace (see ``e2e_harness``): the real server's validation, RBAC,
asynchronous namespace deletion and graceful shutdown are what the agents face here.

Each scenario holds the agents to a line of "Agent behaviour" in ARCHITECTURE.md and asserts what can
fail, polling until a deadline (never a sleep as an assertion). Measured numbers (failover time,
handover gap, outage behaviour, request rates) are printed and recorded as JUnit properties.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from agent_harness import WRITE_VERBS, eventually
from e2e_harness import (
    BULK_POOL,
    E2E,
    LAN_POOL,
    LAN_POOL6,
    LEASE_DURATION,
    NAMESPACE_USER,
    NO_POLICY_LABEL,
    POOL_LABEL,
    RENEW_INTERVAL,
    REPO,
    ArpWatch,
    lease_renew_time,
    report,
)
from kubernetes import client
from kubernetes import config as kube_config

pytestmark = pytest.mark.netns


def _in_lan_pool(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    first, last = LAN_POOL if address.version == 4 else LAN_POOL6
    return ipaddress.ip_address(first) <= address <= ipaddress.ip_address(last)


def test_01_service_gets_pool_ip_and_one_arp_reply_from_announcing_node(e2e: E2E, ns: str) -> None:
    e2e.service(ns, "web")
    ip, node = e2e.wait_announced(ns, "web")
    assert _in_lan_pool(ip), f"{ip} is not from pool e2e-lan {LAN_POOL}"
    allocated = e2e.kube.condition("web", "l2lb.io/IPAllocated", ns)
    announced = e2e.kube.condition("web", "l2lb.io/Announced", ns)
    assert allocated is not None and allocated["status"] == "True", allocated
    assert announced is not None and announced["status"] == "True", announced
    result = e2e.probe(ip, count=5)
    assert result.unanswered == 0, e2e.describe(result)
    assert all(len(r.replies) == 1 for r in result.records), f"more than one reply: {e2e.describe(result)}"
    assert result.macs == {e2e.mac(node)}, f"announcing-node is {node}, but {e2e.describe(result)}"


def test_02_sigkill_failover_within_lease_duration_plus_1s_and_gratuitous_arp_updates_client(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None]
) -> None:
    client = e2e.client_host
    e2e.lab.flush_neighbours(client)
    e2e.service(ns, "web")
    ip, old = e2e.wait_announced(ns, "web")
    old_mac = e2e.mac(old)
    # The takeover burst's gratuitous ARP creates the client's neighbour entry (arp_accept=1).
    eventually(
        lambda: (n := e2e.lab.neighbours(client).get(ip)) is not None and n.mac == old_mac,
        5.0,
        0.05,
        what=f"client neighbour entry {ip} -> {old} ({old_mac}) from the first gratuitous ARP",
    )
    was_controller = e2e.controller() == old
    # The station probes; the client's own kernel stays silent from the kill on, so only a gratuitous
    # ARP can move its neighbour entry (a reply to a probe sent from the client would update it too).
    prober = e2e.lab.start_prober(ip, interval_ms=20, source=e2e.station)
    watch: ArpWatch | None = None
    try:
        prober.wait_until(lambda r: r.macs == {old_mac}, timeout=5.0)
        watch = ArpWatch(e2e.lab, client)
        t_kill = e2e.agents[old].kill()
        first = prober.wait_until(
            lambda r: bool(r.macs) and old_mac not in r.macs, timeout=LEASE_DURATION + 10.0, after=t_kill
        )
        (new_mac,) = first.macs
        new = e2e.node_by_mac(new_mac)
        eventually(
            lambda: (n := e2e.lab.neighbours(client).get(ip)) is not None and n.mac == new_mac,
            5.0,
            0.02,
            what=f"client neighbour entry {ip} -> {new} ({new_mac})",
        )
        t_updated = time.monotonic()
    finally:
        prober.stop()
        frames = watch.stop() if watch is not None else []
    failover_ms = (first.sent - t_kill) * 1e3 + min(r.rtt_ms for r in first.replies)
    report(record_property, "sigkill_failover_ms", round(failover_ms, 1))
    report(record_property, "sigkill_holder_was_controller", was_controller)
    garps = [
        f
        for f in frames
        if not f["out"] and f["spa"] == ip and f["tpa"] == ip and f["sha"] == new_mac and f["t"] >= t_kill
    ]
    asked = [f for f in frames if f["out"] and f["op"] == 1 and f["tpa"] == ip and f["t"] >= t_kill]
    if garps:
        report(record_property, "sigkill_first_garp_at_client_ms", round((garps[0]["t"] - t_kill) * 1e3, 1))
    report(record_property, "sigkill_client_neighbour_updated_ms", round((t_updated - t_kill) * 1e3, 1))
    assert new != old and new in e2e.agents, f"answered by {new_mac}"
    assert e2e.announcement(ns, "web") == (ip, new), "announcing-node names the node that answers"
    assert failover_ms <= (LEASE_DURATION + 1.0) * 1e3, (
        f"failover took {failover_ms:.0f} ms, more than lease duration + 1 s\n{e2e.diagnostics()}"
    )
    assert not asked, f"the client itself asked who-has {ip} after the kill: {asked}"
    assert garps, f"no gratuitous ARP from {new} ({new_mac}) reached the client: {frames}"


def test_02_ipv6_sigkill_failover_within_lease_duration_plus_1s_and_unsolicited_na_updates_client(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None]
) -> None:
    client = e2e.client_host
    e2e.lab.flush_neighbours(client, "-6")
    e2e.service(ns, "web6", families=("IPv6",))
    ip, old = e2e.wait_announced(ns, "web6")
    assert ipaddress.ip_address(ip).version == 6 and _in_lan_pool(ip), ip
    old_mac = e2e.mac(old)
    # The client's kernel resolves the address (its NS, the speaker's solicited NA) when it has something to send.
    send = f"import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b'x', ({ip!r}, 9))"
    e2e.lab.run_python(client, ["-c", send])
    eventually(
        lambda: (n := e2e.lab.neighbours(client, "-6").get(ip)) is not None and n.mac == old_mac,
        5.0,
        0.05,
        what=f"client neighbour entry {ip} -> {old} ({old_mac}) from the solicited advertisement",
    )
    # The station probes; the client sends nothing from the kill on, so only an unsolicited NA (Override set) can
    # move its neighbour entry.
    prober = e2e.lab.start_prober(ip, interval_ms=20, source=e2e.station)
    try:
        prober.wait_until(lambda r: r.macs == {old_mac}, timeout=5.0)
        t_kill = e2e.agents[old].kill()
        first = prober.wait_until(
            lambda r: bool(r.macs) and old_mac not in r.macs, timeout=LEASE_DURATION + 10.0, after=t_kill
        )
        (new_mac,) = first.macs
        new = e2e.node_by_mac(new_mac)
        eventually(
            lambda: (n := e2e.lab.neighbours(client, "-6").get(ip)) is not None and n.mac == new_mac,
            5.0,
            0.02,
            what=f"client neighbour entry {ip} -> {new} ({new_mac}) from the unsolicited advertisement",
        )
        t_updated = time.monotonic()
    finally:
        seen = prober.stop()
    failover_ms = (first.sent - t_kill) * 1e3 + min(r.rtt_ms for r in first.replies)
    announced = [g for g in seen.garps if g.mac == new_mac and g.t >= t_kill]
    report(record_property, "ipv6_sigkill_failover_ms", round(failover_ms, 1))
    report(record_property, "ipv6_client_neighbour_updated_ms", round((t_updated - t_kill) * 1e3, 1))
    assert new != old and new in e2e.agents, f"answered by {new_mac}"
    assert e2e.announcement(ns, "web6") == (ip, new), "announcing-node names the node that answers"
    assert failover_ms <= (LEASE_DURATION + 1.0) * 1e3, (
        f"IPv6 failover took {failover_ms:.0f} ms, more than lease duration + 1 s\n{e2e.diagnostics()}"
    )
    assert announced and all(g.op == "unsolicited-na" for g in announced), f"no unsolicited NA from {new}: {seen.garps}"


def test_30_dual_stack_service_is_answered_in_both_families_from_one_node(e2e: E2E, ns: str) -> None:
    e2e.service(ns, "dual", families=("IPv4", "IPv6"))
    ips = eventually(lambda: (found := e2e.kube.ingress("dual", ns)) and len(found) == 2 and found, 10.0,
                     what="both addresses allocated")  # fmt: skip
    v4, v6 = sorted(ips, key=lambda ip: ipaddress.ip_address(ip).version)
    _, node = e2e.wait_announced(ns, "dual")
    announced = eventually(
        lambda: (c := e2e.kube.condition("dual", "l2lb.io/Announced", ns)) and c["status"] == "True" and c,
        10.0,
        what="Announced=True",
    )
    assert "2 IPs answered" in announced["message"], announced
    for ip in (v4, v6):
        result = e2e.wait_single_answerer(ip, node)
        assert result.macs == {e2e.mac(node)}, f"{ip}: {e2e.describe(result)}"
    assert _in_lan_pool(v4) and _in_lan_pool(v6)


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_03_sigterm_handover_without_probe_gap(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None], family: str
) -> None:
    e2e.service(ns, "web", families=(family,))
    ip, old = e2e.wait_announced(ns, "web")
    old_mac = e2e.mac(old)
    was_controller = e2e.controller() == old
    prober = e2e.lab.start_prober(ip, interval_ms=20)
    try:
        prober.wait_until(lambda r: r.macs == {old_mac}, timeout=5.0)
        t_term = time.monotonic()
        e2e.agents[old].signal(signal.SIGTERM)
        _, new = e2e.wait_announced(ns, "web", where=lambda n: n != old, what="the IP moved off the draining node")
        code = e2e.agents[old].reap(20.0)
        t_exit = time.monotonic()
        # Keep probing until a probe sent well after the old agent exited is answered.
        prober.wait_until(lambda r: bool(r.replies), timeout=5.0, after=t_exit + 0.5)
    finally:
        result = prober.stop()
    window = [r for r in result.records if r.sent >= t_term]
    gap = result.max_gap_ms(since=t_term - 0.1)
    both = [r for r in window if len(r.macs) > 1]
    first_new = next((r for r in window if e2e.mac(new) in r.macs), None)
    report(record_property, "sigterm_handover_max_gap_ms", round(gap, 1))
    report(record_property, "sigterm_probes_during_handover", len(window))
    report(record_property, "sigterm_probes_unanswered", sum(1 for r in window if not r.replies))
    report(record_property, "sigterm_probes_answered_by_both", len(both))
    report(record_property, "sigterm_holder_was_controller", was_controller)
    if first_new is not None:
        report(record_property, "sigterm_new_node_first_answer_ms", round((first_new.sent - t_term) * 1e3, 1))
    report(record_property, "sigterm_old_agent_exit_s", round(t_exit - t_term, 2))
    assert code == 0, f"{old} exited with {code}\n{e2e.agents[old].log_tail()}"
    assert gap <= 200.0, f"probe gap of {gap:.0f} ms during the handover {old} -> {new}"
    late = [r for r in result.records if r.sent > t_exit + 0.1 and r.replies]
    assert late and all(r.macs == {e2e.mac(new)} for r in late), (
        f"after {old} exited only {new} answers: {e2e.describe(result)}"
    )


def test_04_sharing_key_one_ip_one_node_and_port_collision_refused(e2e: E2E, ns: str) -> None:
    key = {"l2lb.io/sharing-key": "e2e-shared"}
    e2e.service(ns, "http", ports=[80], annotations=key)
    ip, node = e2e.wait_announced(ns, "http")
    e2e.service(ns, "https", ports=[443], annotations=key)
    ip_b, node_b = e2e.wait_announced(ns, "https")
    assert (ip_b, node_b) == (ip, node), "Services sharing a key share the IP and its announcing node"
    assert e2e.kube.ingress("http", ns) == [ip] and e2e.kube.ingress("https", ns) == [ip]
    result = e2e.probe(ip, count=5)
    assert result.unanswered == 0 and result.macs == {e2e.mac(node)}, e2e.describe(result)
    assert not result.split_brain, e2e.describe(result)

    # Same key, same IP requested, port 80 again: refused, visibly.
    e2e.service(ns, "clash", ports=[80], annotations={**key, "l2lb.io/ips": ip})
    condition = eventually(
        lambda: (c := e2e.kube.condition("clash", "l2lb.io/IPAllocated", ns)) and c["status"] == "False" and c,
        10.0,
        what="IPAllocated=False on the clashing Service",
    )
    assert condition["reason"] == "SharingRefused", condition
    assert "80" in condition["message"], condition
    events = eventually(lambda: e2e.events_for(ns, "clash", "SharingRefused"), 10.0, what="a SharingRefused Event")
    assert events[0]["type"] == "Warning", events
    assert e2e.kube.ingress("clash", ns) == []
    assert e2e.announcement(ns, "http") == (ip, node) and e2e.announcement(ns, "https") == (ip, node)


def test_05_external_traffic_policy_local_follows_the_ready_endpoint(e2e: E2E, ns: str) -> None:
    e2e.service(ns, "local", local=True)
    # No endpoint anywhere: an IP, but no node may announce it.
    condition = eventually(
        lambda: (c := e2e.kube.condition("local", "l2lb.io/Announced", ns)) and c["status"] == "False" and c,
        10.0,
        what="Announced=False without a ready local endpoint",
    )
    assert condition["reason"] == "NoEligibleNode", condition
    (ip,) = e2e.kube.ingress("local", ns)
    silent = e2e.probe(ip, count=3)
    assert silent.unanswered == 3, f"nobody may answer without a local endpoint: {e2e.describe(silent)}"

    slice_name = e2e.endpoint_slice(ns, "local", "node3")
    assert e2e.wait_announced(ns, "local", where=lambda n: n == "node3", what="announced by node3") == (ip, "node3")
    e2e.wait_single_answerer(ip, "node3")

    e2e.move_endpoint(ns, slice_name, "node1")
    assert e2e.wait_announced(ns, "local", where=lambda n: n == "node1", what="moved to node1") == (ip, "node1")
    e2e.wait_single_answerer(ip, "node1")


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_06_interface_down_reassigns_the_ip(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None], family: str
) -> None:
    e2e.service(ns, "web", families=(family,))
    ip, old = e2e.wait_announced(ns, "web")
    t_down = time.monotonic()
    e2e.link_down(old)
    ip_after, new = e2e.wait_announced(
        ns, "web", LEASE_DURATION + 8.0, where=lambda n: n != old, what=f"the IP moved off {old}"
    )
    report(record_property, "link_down_reassigned_s", round(time.monotonic() - t_down, 2))
    assert ip_after == ip
    e2e.wait_single_answerer(ip, new)

    # The link comes back: the IP stays where it is (no fail-back) and still only one node answers.
    prober = e2e.lab.start_prober(ip, interval_ms=20, source=e2e.station)
    try:
        prober.wait_until(lambda r: r.macs == {e2e.mac(new)}, timeout=5.0)
        t_up = time.monotonic()
        e2e.lab.set_link(e2e.agents[old].host, True)
        e2e.wait_ready(20.0)
        prober.wait_until(lambda r: bool(r.replies), timeout=5.0, after=time.monotonic() + 1.0)
    finally:
        result = prober.stop()
    after = [r for r in result.records if r.sent >= t_up]
    stale = [r for r in after if e2e.mac(old) in r.macs]
    report(record_property, "link_up_probes_answered_by_old_node", len(stale))
    assert e2e.announcement(ns, "web") == (ip, new), "sticky: no fail-back when the old node returns"
    assert not stale, f"{old} answered {len(stale)} probes after its link came back: {e2e.describe(result)}"
    e2e.wait_single_answerer(ip, new)


def test_07_exhausted_pool_taken_ip_and_no_policy_are_visible(e2e: E2E, ns: str) -> None:
    tiny = {POOL_LABEL: "tiny"}
    e2e.create_pool(
        "e2e-tiny",
        {"blocks": [{"start": "198.18.120.150", "stop": "198.18.120.150"}], "serviceSelector": {"matchLabels": tiny}},
    )
    e2e.service(ns, "first", labels=tiny)
    assert e2e.wait_announced(ns, "first")[0] == "198.18.120.150"
    e2e.service(ns, "second", labels=tiny)
    e2e.service(ns, "web")
    web_ip, _ = e2e.wait_announced(ns, "web")
    e2e.service(ns, "wants-taken", annotations={"l2lb.io/ips": web_ip})
    e2e.service(ns, "unannounced", labels={NO_POLICY_LABEL: "true"})

    expected = [
        ("second", "l2lb.io/IPAllocated", "PoolExhausted"),
        ("wants-taken", "l2lb.io/IPAllocated", "RequestedIPUnavailable"),
        ("unannounced", "l2lb.io/Announced", "NoEligibleNode"),
    ]
    for name, type_, reason in expected:
        condition = eventually(
            lambda name=name, type_=type_: (c := e2e.kube.condition(name, type_, ns)) and c["status"] == "False" and c,
            10.0,
            what=f"{type_}=False on {name}",
        )
        assert condition["reason"] == reason, (name, condition)
        events = eventually(lambda name=name, reason=reason: e2e.events_for(ns, name, reason), 10.0, what=reason)
        assert events[0]["type"] == "Warning", events
    assert e2e.kube.ingress("second", ns) == [] and e2e.kube.ingress("wants-taken", ns) == []
    assert web_ip in e2e.kube.condition("wants-taken", "l2lb.io/IPAllocated", ns)["message"]
    pool = eventually(
        lambda: (p := e2e.kube.pool("e2e-tiny")).get("status", {}).get("used") == 1 and p, 10.0, what="pool status"
    )
    exhausted = {c["type"]: c for c in pool["status"]["conditions"]}.get("Exhausted")
    assert exhausted is not None and exhausted["status"] == "True", pool["status"]

    # No policy selects it: it holds an IP, nobody is named, nobody answers.
    (unannounced_ip,) = e2e.kube.ingress("unannounced", ns)
    assert e2e.announcement(ns, "unannounced") == (unannounced_ip, None)
    silent = e2e.probe(unannounced_ip, count=3)
    assert silent.unanswered == 3, e2e.describe(silent)


def test_08_newer_overlapping_pool_is_conflicting_and_allocates_nothing(e2e: E2E, ns: str) -> None:
    lan_created = e2e.kube.pool("e2e-lan")["metadata"]["creationTimestamp"]
    # creationTimestamp has whole seconds: make sure the new pool is strictly newer.
    eventually(lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") > lan_created, 2.0, 0.05, what="a later second")
    overlap = {POOL_LABEL: "overlap"}
    # Its name sorts before e2e-lan: only its age can make it the conflicting one.
    e2e.create_pool(
        "e2e-a-overlap",
        {
            "blocks": [{"start": "198.18.120.130", "stop": "198.18.120.145"}],
            "serviceSelector": {"matchLabels": overlap},
        },
    )
    e2e.service(ns, "orphan", labels=overlap)
    e2e.service(ns, "web")

    def conditions(name: str) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in e2e.kube.pool(name).get("status", {}).get("conditions") or []}

    conflicting = eventually(
        lambda: (c := conditions("e2e-a-overlap").get("Conflicting")) and c["status"] == "True" and c,
        10.0,
        what="Conflicting=True on the newer pool",
    )
    assert "e2e-lan" in conflicting["message"], conflicting
    assert conditions("e2e-lan")["Conflicting"]["status"] == "False"
    status = e2e.kube.pool("e2e-a-overlap")["status"]
    assert status["used"] == 0, status
    web_ip, _ = e2e.wait_announced(ns, "web")
    assert _in_lan_pool(web_ip)
    refused = eventually(
        lambda: (c := e2e.kube.condition("orphan", "l2lb.io/IPAllocated", ns)) and c["status"] == "False" and c,
        10.0,
        what="IPAllocated=False on the Service only the conflicting pool selects",
    )
    assert e2e.kube.ingress("orphan", ns) == [], refused
    assert e2e.kube.pool("e2e-a-overlap")["status"]["used"] == 0


def _services(e2e: E2E, ns: str) -> list[dict[str, Any]]:
    response = e2e.kube.core.list_namespaced_service(ns, _preload_content=False)
    return json.loads(response.data)["items"]  # type: ignore[no-any-return]


def _ingress(service: dict[str, Any]) -> list[str]:
    return [e["ip"] for e in (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []]


def test_09_controller_killed_mid_allocation_of_200_services(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None]
) -> None:
    count = 200
    bulk = {POOL_LABEL: "bulk"}
    leader = e2e.controller()
    created: list[str] = []
    errors: list[BaseException] = []

    def create(part: int) -> None:  # four creators, so the Services arrive faster than they are allocated
        try:
            for i in range(part, count, 4):
                e2e.service(ns, f"s{i:03d}", labels=bulk)
                created.append(f"s{i:03d}")
        except BaseException as exc:
            errors.append(exc)

    creators = [threading.Thread(target=create, args=(part,), daemon=True) for part in range(4)]
    for thread in creators:
        thread.start()
    # Kill the controller once it is well into the batch: it has allocated some, not all.
    allocated_at_kill = eventually(
        lambda: (n := sum(1 for s in _services(e2e, ns) if _ingress(s))) >= count // 4 and n,
        60.0,
        0.05,
        what="the controller allocating",
    )
    t_kill = e2e.agents[leader].kill()
    created_at_kill = len(created)
    report(record_property, "bulk_allocated_when_controller_killed", allocated_at_kill)
    report(record_property, "bulk_created_when_controller_killed", created_at_kill)
    assert allocated_at_kill < count, "the controller finished before it was killed: not mid-allocation"
    for thread in creators:
        thread.join(60.0)
    assert not errors and len(created) == count, errors
    alive = set(e2e.agents) - {leader}

    def settled() -> list[dict[str, Any]] | None:
        services = _services(e2e, ns)
        done = [
            s
            for s in services
            if len(_ingress(s)) == 1
            and (s["metadata"].get("annotations") or {}).get("l2lb.io/announcing-node") in alive
        ]
        return services if len(services) == count and len(done) == count else None

    services = eventually(settled, 60.0, 0.2, what=f"all {count} Services allocated and announced by {alive}")
    report(record_property, "bulk_settled_after_kill_s", round(time.monotonic() - t_kill, 2))
    new_leader = e2e.controller()
    assert new_leader in alive, f"controller after the kill: {new_leader!r}"
    ips = [_ingress(s)[0] for s in services]
    doubled = {ip: n for ip, n in collections.Counter(ips).items() if n > 1}
    assert not doubled, f"IPs given to more than one Service: {doubled}"
    network = ipaddress.ip_network(BULK_POOL)
    assert all(ipaddress.ip_address(ip) in network for ip in ips)
    for service in services:
        conds = {c["type"]: c for c in (service.get("status") or {}).get("conditions") or []}
        assert conds.get("l2lb.io/IPAllocated", {}).get("status") == "True", service["metadata"]["name"]
    eventually(lambda: e2e.kube.pool("e2e-bulk").get("status", {}).get("used") == count, 10.0, what="pool used=200")
    spread = collections.Counter(s["metadata"]["annotations"]["l2lb.io/announcing-node"] for s in services)
    report(record_property, "bulk_spread_after_failover", dict(sorted(spread.items())))


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_10_api_outage_arp_and_ndp_continue_and_agents_recover(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None], family: str
) -> None:
    # 30 s for IPv4 (longer than any lease or watch timeout); IPv6 shares every code path above the wire, so 10 s
    # (still five lease durations) shows its answers are fail-static too without doubling the suite's longest test.
    outage = 30.0 if family == "IPv4" else 10.0
    e2e.service(ns, "web", families=(family,))
    ip, node = e2e.wait_announced(ns, "web")
    mac = e2e.mac(node)
    prober = e2e.lab.start_prober(ip, interval_ms=20)
    try:
        prober.wait_until(lambda r: r.macs == {mac}, timeout=5.0)
        t_stop = time.monotonic()
        e2e.api_stop()
        # Every agent notices and says so on /healthz: fail-static, still healthy.
        eventually(
            lambda: all(
                (h := a.healthz()) and h[0] == 200 and h[1].startswith("fail-static") for a in e2e.agents.values()
            ),
            10.0,
            0.1,
            what="every agent reporting fail-static",
        )
        report(record_property, "outage_fail_static_reported_s", round(time.monotonic() - t_stop, 2))
        while time.monotonic() < t_stop + outage:  # the outage lasts its time; the agents must stay up
            assert all(a.running for a in e2e.agents.values()), e2e.diagnostics()
            time.sleep(0.5)
        t_start = time.monotonic()
        e2e.api_start()
        e2e.wait_ready(30.0)
        t_ready = time.monotonic()
        e2e.service(ns, "after", families=(family,))
        ip_after, node_after = e2e.wait_announced(ns, "after", 15.0, what="a Service created after the outage")
        e2e.wait_single_answerer(ip_after, node_after)
        t_announced = time.monotonic()
        prober.wait_until(lambda r: bool(r.replies), timeout=5.0, after=t_announced)
    finally:
        result = prober.stop()
    during = [r for r in result.records if t_stop <= r.sent <= t_start]
    gap = result.max_gap_ms(since=t_stop)
    answered = [r.sent for r in result.answered if r.sent >= t_stop]
    widest = max(itertools.pairwise(answered), key=lambda p: p[1] - p[0], default=(t_stop, t_stop))
    report(record_property, "outage_seconds", round(t_start - t_stop, 1))
    report(record_property, "outage_probes", len(during))
    report(record_property, "outage_probes_unanswered", sum(1 for r in during if not r.replies))
    report(record_property, "outage_max_gap_ms", round(gap, 1))
    report(record_property, "outage_max_gap_at_s_after_api_stop", round(widest[0] - t_stop, 2))
    report(record_property, "outage_answering_nodes", e2e.names(result.macs))
    report(record_property, "outage_recovery_all_healthy_s", round(t_ready - t_start, 2))
    report(record_property, "outage_new_service_announced_s", round(t_announced - t_start, 2))
    assert gap <= 200.0, f"{family}: gap of {gap:.0f} ms in the answers while the API was away"
    assert result.macs == {mac}, f"answered by {e2e.names(result.macs)}, expected only {node}"
    assert e2e.announcement(ns, "web") == (ip, node), "nothing moved because the API server restarted"


def test_11_idle_api_requests_independent_of_services(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None]
) -> None:
    services, window, slack_per_s = 50, 10.0, 1.0
    bulk = {POOL_LABEL: "bulk"}
    for i in range(services):
        e2e.service(ns, f"idle{i:02d}", labels=bulk)

    def all_announced() -> bool:
        items = _services(e2e, ns)
        return len(items) == services and all(
            _ingress(s) and (s["metadata"].get("annotations") or {}).get("l2lb.io/announcing-node") for s in items
        )

    eventually(all_announced, 30.0, 0.2, what=f"{services} Services announced")

    def other_writes(counts: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        """Writes other than Lease renewals (re-established watches are allowed: servers end them)."""
        return {k: n for k, n in counts.items() if k[0] in WRITE_VERBS and k[1] != "leases"}

    # Only the agents' requests count (kube-apiserver's audit log, by user): not kube-controller-manager's.
    counter = e2e.counter()

    def quiet_second() -> bool:  # a full second with no controller writes
        counter.reset()
        time.sleep(1.0)
        return not other_writes(counter.counts())

    eventually(quiet_second, 20.0, 0.0, what="the controller done writing")
    counter.reset()
    started = time.monotonic()
    time.sleep(window)  # the measurement window (counted, not asserted on timing)
    counts = counter.counts()
    elapsed = time.monotonic() - started
    nodes = len(e2e.agents)
    total = sum(counts.values())
    rate = total / elapsed
    bound = (nodes + 1) / RENEW_INTERVAL + slack_per_s
    report(record_property, "idle_requests_total", total)
    report(record_property, "idle_window_s", round(elapsed, 2))
    report(record_property, "idle_requests_per_s", round(rate, 2))
    report(record_property, "idle_bound_per_s", bound)
    report(record_property, "idle_requests_by_kind", {f"{v} {r}": n for (v, r), n in sorted(counts.items())})
    assert rate <= bound, f"{rate:.1f} requests/s with {services} Services idle; bound {bound}/s: {counts}"
    assert not other_writes(counts), f"no writes but Lease renewals while idle: {counts}"


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_12_node_cut_off_from_api_is_fenced_on_layer_2(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None], family: str
) -> None:
    # IPv6: the fence reacts to the new node's unsolicited Neighbor Advertisement as IPv4's to its gratuitous ARP.
    e2e.service(ns, "web", families=(family,))
    ip, cut = e2e.wait_announced(ns, "web")
    was_controller = e2e.controller() == cut
    t_cut = time.monotonic()
    e2e.cut_api(cut)
    _, new = e2e.wait_announced(ns, "web", LEASE_DURATION * 2 + 8.0, where=lambda n: n != cut, what="moved away")
    report(record_property, "cutoff_moved_s", round(time.monotonic() - t_cut, 2))
    report(record_property, "cutoff_holder_was_controller", was_controller)
    result = e2e.wait_single_answerer(ip, new, timeout=10.0, count=3)
    report(record_property, "cutoff_single_answer_s", round(time.monotonic() - t_cut, 2))
    assert e2e.agents[cut].running
    fence = eventually(
        lambda: [line for line in e2e.agents[cut].log().splitlines() if "split-brain fence" in line and ip in line],
        5.0,
        what=f"{cut} logging the split-brain fence for {ip}",
    )
    print(f"[e2e] {cut}: {fence[0]}")
    again = e2e.probe(ip, count=5)
    assert again.unanswered == 0 and again.macs == {e2e.mac(new)} and not again.split_brain, e2e.describe(again)
    assert result.macs == {e2e.mac(new)}


def test_13_skewed_clock_causes_no_failover(e2e: E2E, ns: str, record_property: Callable[[str, object], None]) -> None:
    skew = -30.0
    leader = e2e.controller()
    skewed = next(name for name in e2e.agents if name != leader)
    agent = e2e.agents[skewed]
    agent.stop()
    agent.start(heartbeat={"clock_skew_seconds": skew})
    e2e.wait_ready(20.0)
    lease_name = f"l2lb-node-{skewed}"
    behind = (datetime.now(UTC) - lease_renew_time(e2e.kube.lease(lease_name) or {})).total_seconds()
    report(record_property, "skew_renew_time_behind_s", round(behind, 2))
    assert 25.0 <= behind <= 35.0, f"renewTime should be ~30 s in the past, is {behind:.1f} s"

    e2e.service(ns, "pinned", local=True)  # the ready endpoint pins it to the skewed node
    e2e.endpoint_slice(ns, "pinned", skewed)
    ip, _ = e2e.wait_announced(ns, "pinned", where=lambda n: n == skewed, what=f"announced by {skewed}")
    prober = e2e.lab.start_prober(ip, interval_ms=20)
    versions: set[str] = set()
    try:
        prober.wait_until(lambda r: r.macs == {agent.mac}, timeout=5.0)
        start = time.monotonic()
        while time.monotonic() < start + 3 * LEASE_DURATION:  # the window in which no failover may happen
            assert e2e.announcement(ns, "pinned") == (ip, skewed), "failover of a node that is alive"
            lease = e2e.kube.lease(lease_name) or {}
            versions.add(lease["metadata"]["resourceVersion"])
            behind = (datetime.now(UTC) - lease_renew_time(lease)).total_seconds()
            assert behind >= 25.0, f"renewTime {behind:.1f} s behind: the skew stopped"
            time.sleep(0.1)
        end = time.monotonic()
    finally:
        result = prober.stop()
    observed = [r for r in result.records if start <= r.sent <= end]
    report(record_property, "skew_lease_versions_seen", len(versions))
    assert len(versions) >= 3 * LEASE_DURATION / RENEW_INTERVAL / 2, f"the skewed lease kept changing: {versions}"
    assert observed and all(r.macs == {agent.mac} for r in observed), e2e.describe(result)
    announced = e2e.kube.condition("pinned", "l2lb.io/Announced", ns)
    assert announced is not None and announced["status"] == "True", announced
    assert e2e.controller() == leader


FORGED_OUTSIDE_POOL = "198.18.120.99"  # in the lab subnet, in no pool
FORGED_IN_POOL = "198.18.120.131"  # in the e2e-lan pool, allocated to no Service


def _namespaced_user(e2e: E2E, ns: str, tmp_path: Any) -> client.ApiClient:
    """A real non-admin bearer token, bound in ``ns`` to what the built-in edit role grants on Services."""
    assert e2e.plane is not None
    token = e2e.plane.token(NAMESPACE_USER)
    rbac = client.RbacAuthorizationV1Api(e2e.kube.client)
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "service-editor"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "alice-edits-services"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "service-editor"},
            "subjects": [{"kind": "User", "name": NAMESPACE_USER, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    path = e2e.plane.write_kubeconfig(
        tmp_path / "alice.kubeconfig", token=token, server_url=e2e.kube.client.configuration.host, user=NAMESPACE_USER
    )
    return kube_config.new_client_from_config(config_file=str(path))


def _forge(core: client.CoreV1Api, ns: str, node: str, *, create: bool) -> None:
    """A ClusterIP Service and a LoadBalancer Service of another class, each claiming an address for ``node``."""
    for name, ip, spec in (
        ("forged-clusterip", FORGED_OUTSIDE_POOL, {"type": "ClusterIP"}),
        ("forged-otherclass", FORGED_IN_POOL, {"type": "LoadBalancer", "loadBalancerClass": "example.com/other"}),
    ):
        annotations = {"l2lb.io/announcing-node": f"{ip}={node}", "l2lb.io/announcing-interfaces": f"{ip}=l2lb0"}
        if create:
            body = {
                "metadata": {"name": name, "annotations": annotations},
                "spec": {**spec, "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}},
            }
            core.create_namespaced_service(ns, body)
        else:
            core.patch_namespaced_service(name, ns, {"metadata": {"annotations": annotations}})


def _no_answers_for_10s(e2e: E2E) -> int:
    """Probe both forged addresses every 10 ms for 10 s; fail on any reply. Returns the probes sent."""
    probers = [e2e.lab.start_prober(ip, interval_ms=10) for ip in (FORGED_OUTSIDE_POOL, FORGED_IN_POOL)]
    try:
        time.sleep(10.0)
    finally:
        results = [p.stop() for p in probers]
    sent = 0
    for ip, result in zip((FORGED_OUTSIDE_POOL, FORGED_IN_POOL), results, strict=True):
        assert result.sent >= 500, f"{ip}: only {result.sent} probes went out"
        answered = result.answered
        assert not answered, f"{ip} was answered by {e2e.names(answered[0].macs)} ({len(answered)} probes)"
        sent += result.sent
    return sent


def test_20_forged_announcement_annotations_from_a_namespace_user_are_never_answered(
    e2e: E2E, ns: str, tmp_path: Any, record_property: Callable[[str, object], None]
) -> None:
    e2e.service(ns, "web")
    ip, holder = e2e.wait_announced(ns, "web")
    target = next(n for n in e2e.agents if n != holder)
    alice = _namespaced_user(e2e, ns, tmp_path)
    core = client.CoreV1Api(alice)
    custom = client.CustomObjectsApi(alice)
    for namespace in ("l2lb-system", ns):  # the assignment objects are out of her reach
        body = {"apiVersion": "l2lb.io/v1alpha1", "kind": "L2Assignment", "metadata": {"name": target}}
        body["spec"] = {"node": target, "announcements": [{"ip": FORGED_OUTSIDE_POOL, "interfaces": ["l2lb0"]}]}
        with pytest.raises(client.ApiException) as denied:
            custom.create_namespaced_custom_object("l2lb.io", "v1alpha1", namespace, "l2assignments", body)
        assert denied.value.status == 403, denied.value

    def refused() -> float:
        return sum(
            a.metric("l2lb_refused_announcements_total", {"reason": "service_annotation"}) or 0
            for a in e2e.agents.values()
        )

    refused_before = refused()  # what earlier tests may have left in the running agents' counters
    # Controller up: the forged Services are created and stay forged until the controller removes the annotations.
    _forge(core, ns, target, create=True)
    sent_up = _no_answers_for_10s(e2e)
    eventually(
        lambda: refused() >= refused_before + 2, timeout=5.0, what="the controller counted both forged annotations"
    )
    # Controller down: every agent killed (no drain: nothing moves) and restarted without a controller;
    # each speaker answers what its own object still says, and nothing else.
    for agent in e2e.agents.values():
        agent.kill()
        agent.reap(5.0)
    for agent in e2e.agents.values():
        agent.start(controller={"enabled": False})
    eventually(lambda: all((h := a.healthz()) is not None and h[0] == 200 for a in e2e.agents.values()), 20.0)
    _forge(core, ns, target, create=False)
    sent_down = _no_answers_for_10s(e2e)
    result = e2e.probe(ip, count=3)
    assert result.macs == {e2e.mac(holder)}, f"the real Service stays answered by {holder}: {e2e.describe(result)}"
    report(record_property, "forged_probes_controller_up", sent_up)
    report(record_property, "forged_probes_controller_down", sent_down)


def test_14_killed_responder_thread_turns_healthz_unhealthy_and_the_agent_exits_1(
    e2e: E2E, ns: str, record_property: Callable[[str, object], None]
) -> None:
    # The debug hook (L2LB_AGENT_DEBUG_HOOKS=1, off by default) kills a thread as an unexpected bug would.
    for agent in e2e.agents.values():
        agent.stop()
        agent.start(debug_hooks=True)
    e2e.wait_ready(30.0)
    e2e.service(ns, "web")
    ip, node = e2e.wait_announced(ns, "web")
    e2e.wait_single_answerer(ip, node)
    agent = e2e.agents[node]
    answer = agent.kill_thread("responder")
    t_kill = time.monotonic()
    assert answer is not None and answer[0] == 200, answer

    def loud() -> str | None:
        if not agent.running:
            return f"exited {agent.proc.returncode if agent.proc else None}"
        health = agent.healthz()
        if health is not None and health[0] == 503 and "responder" in health[1]:
            return health[1].strip()
        return None

    seen = eventually(loud, 2.0, 0.02, what=f"{node}: /healthz naming the dead responder, or the agent exiting")
    report(record_property, "dead_responder_unhealthy_ms", round((time.monotonic() - t_kill) * 1e3, 1))
    assert seen.startswith("thread died: responder (ThreadKilled") or seen == "exited 1", seen
    code = agent.reap(10.0)
    report(record_property, "dead_responder_exit_s", round(time.monotonic() - t_kill, 2))
    assert code == 1, f"exit code {code} (systemd restarts the unit on a non-zero exit)\n{agent.log_tail()}"
    log = agent.log()
    assert "thread l2lb-responder died: ThreadKilled" in log and "Traceback" in log, agent.log_tail()
    assert "l2lb-agent: thread died: responder (ThreadKilled" in log, agent.log_tail()
    # It handed over before exiting: another node answers for the IP.
    _, new = e2e.wait_announced(ns, "web", where=lambda n: n != node, what="the IP moved off the dead responder")
    e2e.wait_single_answerer(ip, new, timeout=5.0)


PREVIOUS_VERSION = "6290166"  # 0.1.0 as it landed: Service annotations were the announcement path


def _previous_agent(tmp_path: Any) -> Any:
    """The 0.1.0 agent from this repository's history, unpacked (its model is a symlink into plugins/)."""
    repo = REPO
    target = tmp_path / "agent-0.1"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", PREVIOUS_VERSION, "files/l2lb_agent", "plugins/module_utils/l2lb"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, f"git archive {PREVIOUS_VERSION} failed: {archive.stderr.decode()[-500:]}"
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "files" / "l2lb_agent"


def test_21_rolling_upgrade_from_0_1_keeps_answering(
    e2e: E2E, ns: str, tmp_path: Any, record_property: Callable[[str, object], None]
) -> None:
    old_agent = _previous_agent(tmp_path)
    # A cluster of 0.1 agents: no assignment objects, announcements in Service annotations only.
    for agent in e2e.agents.values():
        agent.kill()
    for obj in e2e.kube.custom.list_namespaced_custom_object("l2lb.io", "v1alpha1", "l2lb-system", "l2assignments")[
        "items"
    ]:
        e2e.kube.custom.delete_namespaced_custom_object(
            "l2lb.io", "v1alpha1", "l2lb-system", "l2assignments", obj["metadata"]["name"]
        )
    for agent in e2e.agents.values():
        agent.start(agent_path=old_agent)
    e2e.wait_ready(30.0)
    e2e.service(ns, "web")
    ip, holder = e2e.wait_announced(ns, "web")
    prober = e2e.lab.start_prober(ip, interval_ms=10)
    try:
        prober.wait_until(lambda r: r.macs == {e2e.mac(holder)}, timeout=5.0)
        started = time.monotonic()
        for name, agent in e2e.agents.items():  # one node at a time, as serial: 1 would
            agent.signal(signal.SIGTERM)
            code = agent.reap(20.0)
            assert code == 0, f"0.1 agent on {name} exited {code}\n{agent.log_tail()}"
            agent.start()
            eventually(lambda a=agent: (h := a.healthz()) is not None and h[0] == 200, 20.0, what=f"{name} healthy")
        e2e.wait_ready(30.0)
        ended = time.monotonic()
        prober.wait_until(lambda r: bool(r.replies), timeout=5.0, after=ended + 0.5)
    finally:
        result = prober.stop()
    gap = result.max_gap_ms(since=started - 0.1)
    report(record_property, "upgrade_max_gap_ms", round(gap, 1))
    report(record_property, "upgrade_probes", sum(1 for r in result.records if r.sent >= started))
    assert gap <= 500.0, f"probe gap of {gap:.0f} ms during the rolling upgrade"
    _, now_holder = e2e.wait_announced(ns, "web")
    spec = e2e.kube.assignment(now_holder)["spec"]
    assert [e["ip"] for e in spec["announcements"]] == [ip], spec
    names = {
        o["metadata"]["name"]
        for o in e2e.kube.custom.list_namespaced_custom_object("l2lb.io", "v1alpha1", "l2lb-system", "l2assignments")[
            "items"
        ]
    }
    assert names == set(e2e.agents), f"an assignment object for every node: {names}"
    assert e2e.wait_single_answerer(ip, now_holder).macs == {e2e.mac(now_holder)}
