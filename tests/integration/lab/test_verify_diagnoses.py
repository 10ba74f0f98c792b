"""verify.yml on the lab, one real failure at a time: each diagnosis the report promises is provoked on the
running lab and the report must name it.

On the package's converged lab (conftest.py: own state and inventory directories, site.yml and the demo
Services as `make lab` runs them), each scenario for each failure mode breaks something real, runs verify.yml with
``verify_fail_on_problems=false`` and a report file, asserts the report's line, repairs, and checks that
the lab serves again (TCP from the client reaches the node the Service is assigned to) before the next.

    no IP             Services the controller refused: an IPv6-only Service while the IPv6 pool is disabled
                      (no pool matches), a request for an IP another Service holds, more Services than the
                      IPv4 pool has addresses
    no eligible node  the worker label removed from the Nodes (selector), or the policy's interface regex
                      matching nothing (interface)
    stale heartbeat   every agent frozen with SIGSTOP: the Leases stay, nobody renews them
    split brain       a second ARP responder (the agent's own responder, run by hand) on the other worker
    no ARP answer     the holder's ARP for the IP dropped on its bridge port (ebtables, on the lab bridge only)
    MAC of another    both: the holder cannot be heard and the other worker answers for the IP
    TCP fails         the holder's kube-proxy stopped and its nftables table deleted: ARP fine, no DNAT
    no endpoints      every lab-echo backend gone (Cluster), lab-local's only backend unready (Local)
    wrong subnet      the prober's address narrowed to a /29 that does not hold the pool

Every change is undone in ``finally``; all of it stays inside the lab's nodes, client namespace and bridge.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from converged_lab import (
    ANNOUNCING_NODE,
    DEMO,
    DIAG_NS,
    DUAL,
    ECHO,
    ECHO_IP,
    LOCAL,
    NAMESPACE,
    NODE_BY_NAME,
    POLICY,
    POOL6,
    WORKER_LABEL,
    WORKERS,
    Converged,
    undo_all,
)
from lab_harness import lab

pytestmark = [pytest.mark.lab]


def test_healthy_lab_reports_every_service_ok(lab_: Converged) -> None:
    report = lab_.verify()
    for name in DEMO:
        row = report.row(f"{NAMESPACE}/{name}")
        assert row.rstrip().endswith("OK"), report.text
        assert lab_.holder(name) in row and f"{lab_.holder(name)}/host0" in row, report.text
    assert "->" not in report.text
    # SERVED BY: the backend that answered the TCP check through kube-proxy says its name and node.
    assert re.search(r"\b80:ok +lab-echo-\d+@l2lb-node[13] +OK$", report.row(f"{NAMESPACE}/{ECHO}"), re.M), report.text
    # lab-dual (PreferDualStack): both addresses on one node, the IPv6 one answered with NDP and served through
    # kube-proxy's IPv6 rules.
    v4, v6 = (report.row(f"{NAMESPACE}/{DUAL}", lab_.ips(DUAL)[i]) for i in (0, 1))
    assert ":" in v6.split()[1] and v4.split()[2] == v6.split()[2] == lab_.holder(DUAL), report.text
    assert re.search(r"\b80:ok +lab-echo-\d+@l2lb-node[13] +OK$", v6, re.M), report.text
    local = report.row(f"{NAMESPACE}/{LOCAL}")
    assert re.search(rf"\b80:ok +lab-local-\d+@{lab_.holder(LOCAL)} +OK$", local, re.M), report.text
    assert re.search(r"^controller: l2lb-node\d; nodes with a live heartbeat: l2lb-node1, l2lb-node2, l2lb-node3$",
                     report.text, re.M), report.text  # fmt: skip


def _service(name: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": ports, **spec},
    }


def test_no_ip_pool_exhausted_no_pool_matches_requested_ip_taken(lab_: Converged) -> None:
    udp = [{"name": "syslog", "port": 514, "protocol": "UDP"}]  # no TCP check: the fillers only take IPs
    free = 14 - 4  # the /28 gives .241-.254; lab-echo, the lab-dns pair, lab-local and lab-dual hold four
    fillers = [f"fill-{n:02d}" for n in range(1, free + 2)]
    lab_.core.create_namespace({"metadata": {"name": DIAG_NS}})
    # lab-dual keeps its IPv6 address: a disabled pool hands out nothing new but takes nothing back.
    lab_.custom.patch_cluster_custom_object(*POOL6, {"spec": {"disabled": True}})
    try:
        for name in fillers:
            lab_.core.create_namespaced_service(DIAG_NS, _service(name, udp))
        lab_.core.create_namespaced_service(DIAG_NS, _service("v6-only", udp, ipFamilies=["IPv6"],
                                                              ipFamilyPolicy="SingleStack"))  # fmt: skip
        taken = _service("wants-taken", udp, annotations={"l2lb.io/ips": ECHO_IP})
        lab_.core.create_namespaced_service(DIAG_NS, taken)

        def settled() -> bool:
            services = lab_.core.list_namespaced_service(DIAG_NS).items
            decided = 0
            for service in services:
                conditions = (service.status.conditions or []) if service.status else []
                refused = any(c.type.endswith("IPAllocated") and c.status == "False" for c in conditions)
                placed = bool((service.metadata.annotations or {}).get(ANNOUNCING_NODE))
                decided += refused or placed
            return decided == len(fillers) + 2

        lab_.wait_for("the controller to place or refuse every Service", settled)
        report = lab_.verify(DIAG_NS)
        assert (
            'no IP: no pool matches: no enabled pool with IPv6 addresses selects the Service (disabled: pool "lab-v6")'
            in report.diagnosis(f"{DIAG_NS}/v6-only")
        ), report.text
        taken_why = report.diagnosis(f"{DIAG_NS}/wants-taken")
        assert taken_why.startswith(f"no IP: requested IP unavailable: requested IP {ECHO_IP}"), report.text
        assert f"{NAMESPACE}/{ECHO}" in taken_why, report.text  # names who holds it
        rows = {name: report.row(f"{DIAG_NS}/{name}") for name in fillers}
        exhausted = [name for name, row in rows.items() if "no IP: pool exhausted" in row]
        assert len(exhausted) == 1, report.text
        assert 'pool "lab"' in rows[exhausted[0]], report.text
        # The others got an IP and an announcing node; they select no Pod, so the report says so.
        served = [name for name, row in rows.items() if "no ready endpoints" in row and "/host0" in row]
        assert len(served) == free, report.text
    finally:
        lab_.custom.patch_cluster_custom_object(*POOL6, {"spec": {"disabled": False}})
        for service in lab_.core.list_namespaced_service(DIAG_NS).items:
            lab_.core.delete_namespaced_service(service.metadata.name, DIAG_NS)
        lab_.core.delete_namespace(DIAG_NS)


def test_no_eligible_node_when_no_node_carries_the_selected_label(lab_: Converged) -> None:
    try:
        for worker in WORKERS:
            lab_.core.patch_node(worker, {"metadata": {"labels": {WORKER_LABEL: None}}})
        lab_.wait_for("the Services to lose their node", lambda: not any(lab_.holder(name) for name in DEMO))
        report = lab_.verify()
        why = report.diagnosis(f"{NAMESPACE}/{ECHO}")
        assert why.startswith("no eligible node:") and 'no policy selects any alive node (policy "workers")' in why, (
            report.text
        )
    finally:
        for worker in WORKERS:
            lab_.core.patch_node(worker, {"metadata": {"labels": {WORKER_LABEL: "true"}}})


def test_no_eligible_node_when_no_interface_matches_the_policy(lab_: Converged) -> None:
    group, version, plural, name = POLICY
    original = lab_.custom.get_cluster_custom_object(group, version, plural, name)["spec"]["interfaces"]
    try:
        lab_.custom.patch_cluster_custom_object(group, version, plural, name, {"spec": {"interfaces": ["^bond0$"]}})
        lab_.wait_for("the Services to lose their node", lambda: not any(lab_.holder(name) for name in DEMO))
        report = lab_.verify()
        why = report.diagnosis(f"{NAMESPACE}/{ECHO}")
        assert why.startswith("no eligible node:"), report.text
        assert "have no up interface matching ^bond0$" in why and '(policy "workers")' in why, report.text
        assert "l2lb-node2" in why and "l2lb-node3" in why, report.text
    finally:
        lab_.custom.patch_cluster_custom_object(group, version, plural, name, {"spec": {"interfaces": original}})


def test_stale_heartbeat_when_the_agents_are_frozen(lab_: Converged) -> None:
    holder = lab_.holder()
    with lab_.agents_frozen():
        report = lab_.verify()
    why = report.diagnosis(f"{NAMESPACE}/{ECHO}")
    assert why.startswith(f"stale heartbeat: node {holder}'s lease did not change while observed"), report.text
    assert "STALE" in report.row(f"{NAMESPACE}/{ECHO}"), report.text
    assert "nodes with a live heartbeat: none" in report.text, report.text


def test_split_brain_when_a_second_node_answers(lab_: Converged) -> None:
    holder = lab_.holder()
    rogue = lab_.other_worker(holder)
    with lab_.rogue_speaker(rogue, ECHO_IP):
        report = lab_.verify()
    why = report.diagnosis(f"{NAMESPACE}/{ECHO}", ECHO_IP)
    assert why.startswith("split brain:") and why.endswith("both answer ARP"), report.text
    assert f"{NODE_BY_NAME[holder].mac} ({holder}/host0)" in why, report.text
    assert f"{NODE_BY_NAME[rogue].mac} ({rogue}/host0)" in why, report.text


def test_no_answer_then_mac_of_another_node(lab_: Converged) -> None:
    holder = lab_.holder()
    rogue = lab_.other_worker(holder)
    with lab_.arp_dropped(holder, ECHO_IP):
        silent = lab_.verify()
        assert silent.diagnosis(f"{NAMESPACE}/{ECHO}").startswith(
            f"no ARP answer: node {holder} should announce on host0 but nothing answered"
        ), silent.text
        with lab_.rogue_speaker(rogue, ECHO_IP):
            report = lab_.verify()
    why = report.diagnosis(f"{NAMESPACE}/{ECHO}")
    assert why == (f"MAC {NODE_BY_NAME[rogue].mac} belongs to node {rogue}, but the assignment says {holder}"), (
        report.text
    )


def test_arp_fine_but_tcp_fails_without_the_dataplane(lab_: Converged) -> None:
    holder = lab_.holder()
    try:
        lab_.in_node(holder, "systemctl", "stop", "kube-proxy.service")
        # kube-proxy leaves its rules when it stops; remove them as its mode on that node laid them out.
        if lab.proxy_mode(NODE_BY_NAME[holder], "nftables") == "nftables":
            lab_.in_node(holder, "nft", "delete", "table", "ip", "kube-proxy")
        else:
            lab_.in_node(holder, "iptables", "-t", "nat", "-F", "KUBE-SERVICES")
        report = lab_.verify()
    finally:
        lab_.in_node(holder, "systemctl", "start", "kube-proxy.service")
    why = report.diagnosis(f"{NAMESPACE}/{ECHO}")
    assert why.startswith(f"ARP fine ({holder} answers) but TCP fails on port 80"), report.text
    assert "dataplane problem" in why, report.text
    assert f"{holder}/host0" in report.row(f"{NAMESPACE}/{ECHO}"), report.text
    # The UDP half of the shared IP has no TCP port to check: it stays OK.
    assert report.row(f"{NAMESPACE}/lab-dns-udp").rstrip().endswith("OK"), report.text


def test_prober_outside_the_subnet_is_told_so(lab_: Converged) -> None:
    address = f"{lab.CLIENT_IP}/24"
    narrow = f"{lab.CLIENT_IP}/29"  # .0-.7: the pool .240/28 is no longer on the prober's link
    ip_client = ["ip", "-n", lab.CLIENT_NS, "addr"]
    try:
        lab.run([*ip_client, "replace", narrow, "dev", lab.CLIENT_IF])
        lab.run([*ip_client, "del", address, "dev", lab.CLIENT_IF], check=False)
        report = lab_.verify()
    finally:
        lab.run([*ip_client, "replace", address, "dev", lab.CLIENT_IF])
        lab.run([*ip_client, "del", narrow, "dev", lab.CLIENT_IF], check=False)
    why = report.diagnosis(f"{NAMESPACE}/{ECHO}")
    assert f"this host has no interface in a subnet containing {ECHO_IP}" in why, report.text


def test_no_ready_endpoints_is_not_an_arp_problem(lab_: Converged) -> None:
    """Cluster: no lab-echo backend left, ARP still fine; Local: lab-local's only backend not ready, so no
    node may announce it. Both are reported as what they are, not as an ARP or announcement failure."""
    echo_backends = [b for b in lab_.backends() if b["app"] == ECHO]
    local_backends = [b for b in lab_.backends() if b["app"] == LOCAL]
    try:
        for backend in echo_backends:
            lab_.lab_cli("backend", "remove", backend["name"])
        for backend in local_backends:
            lab_.lab_cli("backend", "unready", backend["name"])
        lab_.wait_for("lab-local to lose its node", lambda: not lab_.holder(LOCAL))
        report = lab_.verify()
    finally:
        undo_all(
            *(lambda b=b: lab_.lab_cli("backend", "add", ECHO, b["node"]) for b in echo_backends),
            *(lambda b=b: lab_.lab_cli("backend", "ready", b["name"]) for b in local_backends),
        )
    why = report.diagnosis(f"{NAMESPACE}/{ECHO}")
    assert why.startswith(f"no ready endpoints: {NAMESPACE}/{ECHO} has no ready backend"), report.text
    assert "kube-proxy has nowhere to send its traffic" in why, report.text
    assert f"{lab_.holder(ECHO)}/host0" in report.row(f"{NAMESPACE}/{ECHO}"), report.text  # ARP was fine
    why = report.diagnosis(f"{NAMESPACE}/{LOCAL}")
    assert why.startswith(f"no ready endpoints: {NAMESPACE}/{LOCAL}") and "no node may announce it" in why, report.text
