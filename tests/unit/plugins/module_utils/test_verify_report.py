"""The verify report names every failure mode; one test per diagnosis."""

from __future__ import annotations

from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.verify_report import build_report, tcp_targets

MAC1, MAC2 = "0a:58:c6:12:00:0b", "0a:58:c6:12:00:0c"


def _leases(alive2: bool | None = True) -> dict[str, Any]:
    def hb(mac: str, alive: bool | None) -> dict[str, Any]:
        return {"alive": alive, "renew_age_seconds": 0.3, "interfaces": [{"name": "host0", "mac": mac}]}

    return {"heartbeats": {"n1": hb(MAC1, True), "n2": hb(MAC2, alive2)}, "controller": {"holder": "n1"}}


def _svc(ips: tuple[str, ...] = ("198.18.0.241",), node: str = "n2", conditions: list | None = None) -> dict:
    return {
        "namespace": "default",
        "name": "web",
        "ips": list(ips),
        "announcing_node": node,
        "announcing_interfaces": ["host0"],
        "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        "conditions": conditions or [],
    }


def _probe(*macs: str, error: str | None = None, diagnosis: str = "") -> dict[str, Any]:
    """An arp_probe result as the module returns it: unanswered probes carry the module's own diagnosis too."""
    if not macs and not error and not diagnosis:
        diagnosis = "no host answered 3 who-has for 198.18.0.241 on eth0 (0.5 s each): nothing announces it"
    responders = [{"mac": m, "replies": 3} for m in macs]
    return {"198.18.0.241": {"responders": responders, "error": error, "diagnosis": diagnosis or None}}


TCP_OK = [{"ip": "198.18.0.241", "port": 80, "ok": True}]


def _only_row(report: dict[str, Any]) -> dict[str, Any]:
    assert len(report["rows"]) == 1
    return report["rows"][0]


def test_healthy_service_row_and_table() -> None:
    report = build_report([_svc()], _leases(), _probe(MAC2), TCP_OK)
    assert report["healthy"] and report["problems"] == []
    row = _only_row(report)
    assert (row["node"], row["mac"], row["mac_owner"], row["tcp"]) == ("n2", MAC2, "n2/host0", "80:ok")
    assert report["lines"][0].split()[:3] == ["SERVICE", "IP", "NODE"]
    assert "default/web" in report["lines"][1] and report["lines"][1].endswith("OK")
    assert report["lines"][-1].startswith("controller: n1;")


def test_wrong_subnet_prober() -> None:
    text = "this host has no interface in a subnet containing 198.18.0.241 — ARP only works on the same L2 segment"
    probe = _probe(error="no directly attached subnet contains 198.18.0.241", diagnosis=text)
    row = _only_row(build_report([_svc()], _leases(), probe, []))
    assert not row["ok"] and row["diagnosis"] == text


def test_no_ip_pool_exhausted_and_no_pool_matches() -> None:
    for reason, words in (
        ("PoolExhausted", "pool exhausted"),
        ("NoPoolMatches", "no pool matches"),
        ("RequestedIPUnavailable", "requested IP unavailable"),
        ("SharingRefused", "sharing refused"),
    ):
        cond = [{"type": "l2lb.io/IPAllocated", "status": "False", "reason": reason, "message": "details"}]
        report = build_report([_svc(ips=(), conditions=cond)], _leases(), {}, [])
        assert report["problems"] == [f"default/web -: no IP: {words}: details"]


def test_no_ip_without_condition_points_at_the_controller() -> None:
    row = _only_row(build_report([_svc(ips=())], _leases(), {}, []))
    assert "no IP at all" in row["diagnosis"] and "controller" in row["diagnosis"]


def test_no_eligible_node_names_the_mismatch() -> None:
    cond = [
        {
            "type": "l2lb.io/Announced",
            "status": "False",
            "reason": "NoEligibleNode",
            "message": "nodes n1, n2 have no up interface matching ^eth",
        }
    ]
    row = _only_row(build_report([_svc(node="", conditions=cond)], _leases(), _probe(), []))
    assert row["diagnosis"] == "no eligible node: nodes n1, n2 have no up interface matching ^eth"


def test_stale_heartbeat() -> None:
    row = _only_row(build_report([_svc()], _leases(alive2=False), _probe(MAC2), TCP_OK))
    assert row["diagnosis"].startswith("stale heartbeat: node n2") and row["heartbeat"].startswith("STALE")


def test_no_arp_answer() -> None:
    row = _only_row(build_report([_svc()], _leases(), _probe(), TCP_OK))
    assert row["diagnosis"].startswith("no ARP answer: node n2 should announce on host0 but nothing answered;")


def test_split_brain_names_both_nodes() -> None:
    row = _only_row(build_report([_svc()], _leases(), _probe(MAC1, MAC2), TCP_OK))
    assert (
        row["diagnosis"].startswith("split brain:")
        and "n1/host0" in row["diagnosis"]
        and "n2/host0" in row["diagnosis"]
    )


def test_mac_of_another_node() -> None:
    row = _only_row(build_report([_svc()], _leases(), _probe(MAC1), TCP_OK))
    assert row["diagnosis"] == f"MAC {MAC1} belongs to node n1, but the assignment says n2"


def test_unknown_mac() -> None:
    row = _only_row(build_report([_svc()], _leases(), _probe("02:00:00:00:00:99"), TCP_OK))
    assert "belongs to no l2lb node" in row["diagnosis"]


def test_arp_fine_tcp_fails_is_a_dataplane_problem() -> None:
    registered = [{"item": {"ip": "198.18.0.241", "port": 80}, "msg": "Timeout when waiting for 198.18.0.241:80"}]
    row = _only_row(build_report([_svc()], _leases(), _probe(MAC2), registered))
    assert row["tcp"] == "80:FAIL"
    assert row["diagnosis"].startswith("ARP fine (n2 answers) but TCP fails on port 80 (Timeout")
    assert "dataplane" in row["diagnosis"]


def test_tcp_targets_skip_udp() -> None:
    assert tcp_targets([_svc()]) == [{"service": "default/web", "ip": "198.18.0.241", "port": 80}]


def test_no_services_is_not_healthy() -> None:
    report = build_report([], _leases(), {}, [])
    assert not report["healthy"] and "no LoadBalancer Services found" in report["lines"]


def test_services_sharing_an_ip_show_only_their_own_tcp_ports() -> None:
    dns_tcp = {**_svc(), "name": "dns-tcp", "ports": [{"port": 53, "protocol": "TCP"}]}
    dns_udp = {**_svc(), "name": "dns-udp", "ports": [{"port": 53, "protocol": "UDP"}]}
    registered = [{"item": t, "state": "started"} for t in tcp_targets([dns_tcp, dns_udp])]
    rows = build_report([dns_tcp, dns_udp], _leases(), _probe(MAC2), registered)["rows"]
    assert [(r["service"], r["tcp"], r["ok"]) for r in rows] == [
        ("default/dns-tcp", "53:ok", True),
        ("default/dns-udp", "", True),
    ]


# ---- the dataplane: which backend served, and Services with no ready endpoint ----


def test_served_by_shows_what_the_backend_said() -> None:
    tcp = [{**TCP_OK[0], "service": "default/web", "answer": "web-2@n3"}]
    report = build_report([{**_svc(), "ready_endpoints": 2, "endpoint_nodes": {"n1": 1, "n3": 1}}], _leases(),
                          _probe(MAC2), tcp)  # fmt: skip
    assert report["healthy"] and _only_row(report)["backend"] == "web-2@n3"
    assert "SERVED BY" in report["lines"][0] and "web-2@n3" in report["lines"][1]


def test_no_ready_endpoints_is_named_before_any_arp_verdict() -> None:
    failed = [{"ip": "198.18.0.241", "port": 80, "ok": False, "error": "Connection refused"}]
    for policy, words in (("Cluster", "kube-proxy has nowhere to send"), ("Local", "no node may announce it")):
        service = {**_svc(node="" if policy == "Local" else "n2"), "external_traffic_policy": policy,
                   "ready_endpoints": 0, "endpoint_nodes": {}}  # fmt: skip
        row = _only_row(build_report([service], _leases(), _probe(MAC2), failed))
        assert not row["ok"] and row["diagnosis"].startswith("no ready endpoints: default/web has no ready backend")
        assert words in row["diagnosis"], row["diagnosis"]
    # Draining: no ready endpoint, but terminating ones still serve and the TCP check got through: healthy.
    draining = {**_svc(), "ready_endpoints": 0, "endpoint_nodes": {}}
    assert _only_row(build_report([draining], _leases(), _probe(MAC2), TCP_OK))["ok"]
    # Unknown (EndpointSlices not readable): no endpoint verdict, the usual ones apply.
    row = _only_row(build_report([{**_svc(), "ready_endpoints": None}], _leases(), _probe(MAC2), failed))
    assert row["diagnosis"].startswith("ARP fine (n2 answers) but TCP fails")


def test_local_service_announced_where_it_has_no_endpoint() -> None:
    failed = [{"ip": "198.18.0.241", "port": 80, "ok": False, "error": "timed out"}]
    service = {**_svc(), "external_traffic_policy": "Local", "ready_endpoints": 1, "endpoint_nodes": {"n3": 1}}
    row = _only_row(build_report([service], _leases(), _probe(MAC2), failed))
    assert row["diagnosis"].startswith("ARP fine (n2 answers) but n2 has no ready endpoint"), row["diagnosis"]
    assert "they run on n3" in row["diagnosis"]


V6 = "2001:2:0:1::241"


def test_dual_stack_rows_follow_each_ips_own_node_and_speak_ndp() -> None:
    service = {
        **_svc(ips=("198.18.0.241", V6), node="n1,n2"),
        "announcements": {
            "198.18.0.241": {"node": "n1", "interfaces": ["host0"]},
            V6: {"node": "n2", "interfaces": []},
        },
    }
    probes = {**_probe(MAC1), V6: {"responders": [{"mac": MAC1, "replies": 3}, {"mac": MAC2, "replies": 3}]}}
    tcp = [{"ip": "198.18.0.241", "port": 80, "ok": True}, {"ip": V6, "port": 80, "ok": True}]
    v4, v6 = build_report([service], _leases(), probes, tcp)["rows"]
    assert (v4["node"], v4["ok"]) == ("n1", True)
    assert v6["node"] == "n2" and not v6["ok"]
    assert v6["diagnosis"].startswith("split brain:") and v6["diagnosis"].endswith("both answer NDP")


def test_an_unannounced_ipv6_address_of_an_announced_service_says_why() -> None:
    cond = [
        {
            "type": "l2lb.io/Announced",
            "status": "False",
            "reason": "NoEligibleNode",
            "message": f"{V6}: no node answers IPv6 here: n1,n2 have an up interface but answer no NDP on it",
        }
    ]
    service = {
        **_svc(ips=("198.18.0.241", V6), node="n2", conditions=cond),
        "announcements": {"198.18.0.241": {"node": "n2", "interfaces": ["host0"]}},
    }
    v4, v6 = build_report([service], _leases(), {**_probe(MAC2), V6: {"responders": []}}, TCP_OK)["rows"]
    assert v4["ok"] and v4["node"] == "n2"
    assert v6["node"] == "" and v6["diagnosis"].startswith(f"no eligible node: {V6}: no node answers IPv6 here")


def test_no_ndp_answer_is_named_as_such() -> None:
    service = {**_svc(ips=(V6,)), "announcements": {V6: {"node": "n2", "interfaces": ["host0"]}}}
    row = _only_row(build_report([service], _leases(), {V6: {"responders": [], "error": None}}, []))
    assert row["diagnosis"].startswith("no NDP answer: node n2 should announce on host0 but nothing answered")
