"""The verify report on a Cilium cluster: the announcing node is the holder of Cilium's Lease."""

from __future__ import annotations

from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.facts import is_our_load_balancer, service_view
from ansible_collections.baremetal.l2lb.plugins.module_utils.verify_report import build_report

IP = "198.18.5.93"
MAC = "00:16:3e:17:a4:31"


def _leases(alive: bool | None = True, holder: str = "sehith") -> dict[str, Any]:
    lease = {"holder": holder, "alive": alive, "renew_age_seconds": 0.4, "interfaces": []}
    return {"heartbeats": {}, "controller": None, "cilium": {"testsetup-testsetup-service": lease}}


def _svc(node: str = "sehith", ips: tuple[str, ...] = (IP,), conditions: list | None = None) -> dict[str, Any]:
    return {
        "namespace": "testsetup",
        "name": "testsetup-service",
        "ips": list(ips),
        "announcing_node": node,
        "announcing_interfaces": [],
        "ports": [{"port": 80, "protocol": "TCP"}],
        "conditions": conditions or [],
    }


def _probe(*macs: str) -> dict[str, Any]:
    return {IP: {"responders": [{"mac": m, "replies": 3} for m in macs], "diagnosis": ""}}


TCP_OK = [{"ip": IP, "port": 80, "ok": True}]


def test_cilium_lease_holder_is_the_announcing_node_and_the_row_is_healthy() -> None:
    report = build_report([_svc()], _leases(), _probe(MAC), TCP_OK)
    row = report["rows"][0]
    assert row["ok"] is True, row["diagnosis"]
    assert row["node"] == "sehith" and row["heartbeat"] == "cilium lease alive (0.4s)"
    assert row["mac"] == MAC and row["mac_owner"] == "not published (Cilium)"
    assert report["healthy"] is True
    assert report["lines"][-1] == "Cilium L2 announcement leases: 1, held by sehith (1)"
    assert not any(line.startswith("controller:") for line in report["lines"])


def test_a_cilium_lease_that_did_not_change_is_diagnosed_as_stale() -> None:
    report = build_report([_svc()], _leases(alive=False), _probe(MAC), TCP_OK)
    row = report["rows"][0]
    assert row["ok"] is False and row["heartbeat"] == "cilium lease STALE (0.4s)"
    assert row["diagnosis"].startswith("stale Cilium lease: sehith did not renew cilium-l2announce-testsetup-")
    assert "k8sClientRateLimit" in row["diagnosis"]
    assert report["lines"][-1].endswith("; 1 not renewed while observed")


def test_split_brain_and_tcp_failures_are_still_caught_on_cilium() -> None:
    row = build_report([_svc()], _leases(), _probe(MAC, "00:16:3e:00:00:02"), TCP_OK)["rows"][0]
    assert row["diagnosis"].startswith("split brain:")
    row = build_report([_svc()], _leases(), _probe(MAC), [{"ip": IP, "port": 80, "ok": False}])["rows"][0]
    assert row["diagnosis"].startswith("ARP fine (sehith answers) but TCP fails")


def test_no_lease_and_no_ip_on_cilium_point_at_ciliums_objects() -> None:
    row = build_report([_svc(node="")], {"heartbeats": {}, "controller": None, "cilium": {}}, {}, [])["rows"][0]
    assert "no Cilium lease cilium-l2announce-testsetup-testsetup-service exists" in row["diagnosis"]
    refused = {"type": "cilium.io/IPAMRequestSatisfied", "status": "False", "reason": "no_pool", "message": "none"}
    row = build_report([_svc(node="", ips=(), conditions=[refused])], _leases(), {}, [])["rows"][0]
    assert row["diagnosis"] == "no IP: Cilium LB-IPAM: no_pool: none"


def test_a_holder_that_is_not_the_assigned_node_does_not_count() -> None:
    """An l2lb assignment wins; a Cilium lease held by another node must not make the row pass."""
    leases = _leases(holder="other")
    row = build_report([_svc(node="sehith")], leases, _probe(MAC), TCP_OK)["rows"][0]
    assert row["ok"] is False and "no heartbeat lease" in row["diagnosis"]


def test_facts_keep_ciliums_class_and_conditions_when_asked() -> None:
    svc = {
        "metadata": {"namespace": "a", "name": "b"},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "io.cilium/l2-announcer"},
        "status": {"conditions": [{"type": "cilium.io/IPAMRequestSatisfied", "status": "True", "reason": "satisfied"}]},
    }
    assert not is_our_load_balancer(svc)
    assert is_our_load_balancer(svc, cilium=True)
    assert [c["type"] for c in service_view(svc)["conditions"]] == ["cilium.io/IPAMRequestSatisfied"]
