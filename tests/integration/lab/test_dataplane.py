"""The dataplane behind the announcement, on the converged lab: the real kube-proxy in every node, backends
that are real processes listed in EndpointSlices by kube-controller-manager (through their Pods).

    Cluster   lab-echo's connections reach backends on other nodes than the announcing one, which see a
              node's address (kube-proxy masquerades forwarded traffic)
    Local     lab-local is announced only from the node with its ready backend, the backend sees the client's
              own address, and healthCheckNodePort says 200 there and 503 elsewhere, as kube-proxy serves it
    handover  lab-local's last local backend goes away while another node has one: the IP follows the
              endpoint (both ways); the client-visible gap (ARP and TCP) is measured and printed
"""

from __future__ import annotations

import collections

import pytest
from converged_lab import (
    ECHO,
    ECHO_IP,
    LOCAL,
    NODE_BY_NAME,
    WORKERS,
    ArpRecord,
    Converged,
    TcpRecord,
    arp_watch,
    tcp_watch,
)
from kubernetes import client
from lab_harness import lab

pytestmark = [pytest.mark.lab]

NODE_IPS = {node.ip for node in lab.NODES}


def test_cluster_policy_reaches_backends_on_other_nodes(lab_: Converged) -> None:
    holder = lab_.holder(ECHO)
    seen = collections.Counter(lab.backend_from_client(ECHO_IP, 80) for _ in range(30))
    print(f"{ECHO} announced by {holder}; answers: {dict(seen)}")
    backend_nodes = {label.split("@", 1)[1] for label, _ in seen}
    assert backend_nodes - {holder}, f"no connection reached a backend on another node than {holder}: {seen}"
    for label, source in seen:
        assert label.startswith(f"{ECHO}-"), seen
        # Forwarded to another node: masqueraded to the announcing node's address; served locally: the node's
        # own address too (externalTrafficPolicy: Cluster always masquerades external traffic).
        assert source in NODE_IPS and source != lab.CLIENT_IP, seen


def test_local_policy_keeps_the_client_address_and_is_announced_where_the_endpoint_is(lab_: Converged) -> None:
    endpoint_nodes = {b["node"] for b in lab_.backends() if b["app"] == LOCAL and b["ready"]}
    holder = lab_.holder(LOCAL)
    assert endpoint_nodes == {holder}, (endpoint_nodes, holder)
    for _ in range(10):
        label, source = lab.backend_from_client(lab_.ip(LOCAL), 80)
        assert label.endswith(f"@{holder}") and source == lab.CLIENT_IP, (label, source)
    port = lab_.core.read_namespaced_service(LOCAL, "default").spec.health_check_node_port
    assert port, "a Local LoadBalancer Service gets a healthCheckNodePort"
    answers = {node.name: lab.http_status_from_client(node.ip, port, "/") for node in lab.NODES}
    assert answers == {node.name: 200 if node.name == holder else 503 for node in lab.NODES}, answers


def _hand_over(lab_: Converged, ip: str, gone: str, to: str) -> tuple[TcpRecord, ArpRecord]:
    """Remove the last lab-local backend on ``gone`` while ``to`` has a ready one; watch TCP and ARP meanwhile."""
    (backend,) = [b["name"] for b in lab_.backends() if b["app"] == LOCAL and b["node"] == gone]
    arp: dict[str, ArpRecord] = {}
    tcp: dict[str, TcpRecord] = {}
    with arp_watch([ip], arp), tcp_watch(ip, 80, tcp):
        lab_.lab_cli("backend", "remove", backend)
        lab_.wait_for(f"{LOCAL} to move to {to}", lambda: lab_.holder(LOCAL) == to, timeout=30)
        lab_.wait_for(
            f"{LOCAL} to be served from {to}",
            lambda: lab.backend_from_client(ip, 80)[0].endswith(f"@{to}"),
            timeout=15,
        )
    record, seen = tcp[f"{ip}:80"], arp[ip]
    print(f"\nlast local endpoint on {gone} removed, {to} has one:\n  TCP {record.summary()}\n  ARP {seen.summary()}")
    assert seen.macs() == {NODE_BY_NAME[gone].mac, NODE_BY_NAME[to].mac}, seen.summary()
    answers = record.answers()
    assert answers[0].endswith(f"@{gone}") and answers[-1].endswith(f"@{to}"), record.summary()
    # The gap is a measurement (benchmarks/local_endpoint.py has the table); here only that it ends.
    assert record.longest_outage() < 15, record.summary()
    return record, seen


def test_local_ip_follows_the_last_local_endpoint(lab_: Converged) -> None:
    """lab-local's backend is on the announcing worker; the other worker gets one too (the IP stays: the
    assignment is sticky), then the first goes away: kube-proxy there drops the traffic at once, and the
    controller moves the IP to the node that has the endpoint. And back again, which restores the lab."""
    ip = lab_.ip(LOCAL)
    old = lab_.holder(LOCAL)
    new = next(worker for worker in WORKERS if worker != old)
    try:
        lab_.lab_cli("backend", "add", LOCAL, new)
        lab_.wait_for(f"a ready {LOCAL} endpoint on {new}", lambda: _local_endpoint_nodes(lab_) == {old, new})
        assert lab_.holder(LOCAL) == old, "the assignment is sticky while the holder keeps a local endpoint"
        _hand_over(lab_, ip, old, new)
        lab_.lab_cli("backend", "add", LOCAL, old)
        lab_.wait_for(f"a ready {LOCAL} endpoint on {old}", lambda: _local_endpoint_nodes(lab_) == {old, new})
        _hand_over(lab_, ip, new, old)
    finally:
        backends = [b for b in lab_.backends() if b["app"] == LOCAL]
        if not any(b["node"] == old for b in backends):
            lab_.lab_cli("backend", "add", LOCAL, old)
        for backend in backends:
            if backend["node"] != old:
                lab_.lab_cli("backend", "remove", backend["name"])
        lab_.wait_for(f"{LOCAL} back on {old}", lambda: lab_.holder(LOCAL) == old, timeout=30)


def _local_endpoint_nodes(lab_: Converged) -> set[str]:
    slices = client.DiscoveryV1Api(lab_.api).list_namespaced_endpoint_slice(
        "default", label_selector=f"kubernetes.io/service-name={LOCAL}"
    )
    return {e.node_name for s in slices.items for e in s.endpoints or [] if e.conditions.ready}
