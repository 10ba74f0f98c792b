"""verify.yml on a Cilium cluster, end to end against a real kube-apiserver: Services with no l2lb annotation,
Cilium's per-Service Leases in kube-system (one renewed by a "cilium-agent" thread, one left to go
stale), and the real service_info, lease_info, arp_probe and report. The report must name the Lease
holder as the announcing node and judge the Lease by watching it change."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cilium_harness import PlaybookRun, api_client
from kubernetes import client

from controlplane import ControlPlane

LEASE_NS = "kube-system"
SERVICES = {
    # namespace/name: (IP, holder of cilium-l2announce-<namespace>-<name>, renewed?)
    "testsetup/testsetup-service": ("198.18.5.93", "worker1", True),
    "default/cilium-ingress-basic-ingress": ("198.18.5.94", "worker2", False),
    "apps/no-policy": ("198.18.5.95", None, False),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def cilium_cluster(api: ControlPlane) -> Iterator[None]:
    """The Services with their IPs, Cilium's Leases, and an agent renewing the live one every 0.5 s."""
    stop = threading.Event()
    with api_client(api) as c:
        core, coordination = client.CoreV1Api(c), client.CoordinationV1Api(c)
        for ref, (ip, holder, _) in SERVICES.items():
            namespace, name = ref.split("/")
            if namespace not in ("default", "kube-system"):
                core.create_namespace({"metadata": {"name": namespace}})
            core.create_namespaced_service(
                namespace,
                {
                    "metadata": {"name": name, "labels": {"homelab/public-service": "true"}},
                    "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
                },
            )
            core.patch_namespaced_service_status(
                name, namespace, {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}}
            )
            # No selector: the Service's endpoints are its own EndpointSlice, one ready backend (without it verify
            # would rightly say "no ready endpoints" first; this test is about the announcement).
            client.DiscoveryV1Api(c).create_namespaced_endpoint_slice(
                namespace,
                {
                    "metadata": {"name": f"{name}-backend", "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["198.18.6.10"], "conditions": {"ready": True}, "nodeName": "worker1"}],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            )
            if holder:
                coordination.create_namespaced_lease(
                    LEASE_NS,
                    {
                        "metadata": {"name": f"cilium-l2announce-{namespace}-{name}"},
                        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": _now()},
                    },
                )
        # A Lease that is not Cilium's must not be mistaken for an announcement.
        coordination.create_namespaced_lease(
            LEASE_NS, {"metadata": {"name": "cilium-operator-resource-lock"}, "spec": {"holderIdentity": "cp1"}}
        )

    def renew() -> None:
        with api_client(api) as c:
            coordination = client.CoordinationV1Api(c)
            while not stop.wait(0.5):
                coordination.patch_namespaced_lease(
                    "cilium-l2announce-testsetup-testsetup-service", LEASE_NS, {"spec": {"renewTime": _now()}}
                )

    agent = threading.Thread(target=renew, name="fake-cilium-agent", daemon=True)
    agent.start()
    yield
    stop.set()
    agent.join(5)


MAC = "00:16:3e:17:a4:31"


def test_report_names_the_cilium_lease_holder_and_judges_its_lease(
    cilium_cluster: None, workdir: Path, playbook: Callable[..., PlaybookRun]
) -> None:
    report_file = workdir / "verify-report.json"
    wire = {
        "wire_probes": {
            ip: {"responders": [{"mac": MAC, "replies": 3}], "diagnosis": ""}
            for ip in ("198.18.5.93", "198.18.5.94", "198.18.5.95")
        },
        "wire_tcp": [{"ip": "198.18.5.93", "port": 80, "ok": True}, {"ip": "198.18.5.94", "port": 80, "ok": True}],
        "report_file": str(report_file),
    }
    code, out, _ = playbook("tests/integration/cilium/verify_cilium.yml", wire)
    assert code == 0, out
    report = json.loads(report_file.read_text())
    rows = {row["service"]: row for row in report["rows"]}

    live = rows["testsetup/testsetup-service"]
    assert live["ok"] is True, live["diagnosis"]
    assert live["node"] == "worker1" and live["heartbeat"].startswith("cilium lease alive")
    assert live["mac"] == MAC and live["mac_owner"] == "not published (Cilium)" and live["tcp"] == "80:ok"

    stale = rows["default/cilium-ingress-basic-ingress"]
    assert stale["ok"] is False and stale["node"] == "worker2" and stale["heartbeat"].startswith("cilium lease STALE")
    assert stale["diagnosis"].startswith(
        "stale Cilium lease: worker2 did not renew cilium-l2announce-default-cilium-ingress-basic-ingress"
    )

    orphan = rows["apps/no-policy"]
    assert orphan["node"] == "" and "no Cilium lease cilium-l2announce-apps-no-policy exists" in orphan["diagnosis"]
    assert report["lines"][-1] == (
        "Cilium L2 announcement leases: 2, held by worker1 (1), worker2 (1); 1 not renewed while observed"
    )


def test_verify_playbook_reports_from_a_host_outside_the_subnet(
    cilium_cluster: None, workdir: Path, playbook: Callable[..., PlaybookRun]
) -> None:
    report_file = workdir / "verify-report.txt"
    host_vars = {
        "verify_cilium_namespace": LEASE_NS,
        "verify_observe_seconds": 1.5,
        "verify_tcp_timeout": 1,
        "verify_arp_count": 1,
        "verify_arp_timeout": 0.2,
        "verify_report_file": str(report_file),
        "verify_fail_on_problems": False,
    }
    code, out, _ = playbook("playbooks/verify.yml", host_vars, groups=("l2lb_probe",))
    assert code == 0, out
    text = report_file.read_text()
    assert "worker1" in text and "cilium lease alive" in text
    assert "no interface in a subnet containing 198.18.5.93" in text
