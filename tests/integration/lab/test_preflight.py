"""site.yml's preflight (playbooks/preflight.yml) against the converged lab set up the way users' clusters break:

    IPVS without strictARP   kube-proxy switched to IPVS mode (the lab's IPVS stand-in: no IPVS in this kernel):
                             every node's kernel answers ARP for the Service IPs; preflight stops, and with
                             l2lb_fix_kube_proxy_strict_arp=true patches the ConfigMap, restarts kube-proxy, passes
    k3s ServiceLB            an svclb-* DaemonSet as k3s creates it
    another implementation   MetalLB's controller Deployment, then the same limited to its own loadBalancerClass
    Cilium                   cilium-config with kube-proxy replacement: reported as a supported dataplane
    several NICs             a second interface on l2lb-node2 in the lab subnet, strict rp_filter: a warning, and
                             with l2lb_fix_node_sysctls=true the sysctls written and applied, then a quiet re-run

Each scenario undoes itself; all of it stays inside the lab's API, nodes and bridge.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from converged_lab import Converged, undo_all
from kubernetes import client
from lab_harness import lab

pytestmark = [pytest.mark.lab]

PREFLIGHT = "playbooks/preflight.yml"


def _preflight(lab_: Converged, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = lab_.lab.playbook(PREFLIGHT, *extra, timeout=300)
    print(proc.stdout[-3000:])
    return proc


def _says(proc: subprocess.CompletedProcess[str], text: str) -> bool:
    """Whether the run printed ``text``. Ansible's YAML output wraps long lines and doubles single quotes inside
    single-quoted strings, so both are undone first."""
    return " ".join(text.split()) in " ".join(proc.stdout.replace("''", "'").split())


def _changed(proc: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"^localhost\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M)
    assert match, proc.stdout[-2000:]
    return int(match.group(1))


def _modes(requested: str) -> str:
    """What preflight reads from the nodes' /proxyMode: the lab's Debian 11 node runs iptables mode."""
    return ", ".join(sorted({lab.proxy_mode(node, requested) for node in lab.NODES}))


def test_the_lab_passes_and_its_dataplane_is_named(lab_: Converged) -> None:
    proc = _preflight(lab_)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _says(proc, f"INFO     dataplane: kube-proxy in {_modes('nftables')} mode")
    assert "ERROR" not in proc.stdout and _changed(proc) == 0


def _reset_arp_sysctls(lab_: Converged) -> None:
    for node in lab.NODES:
        lab_.in_node(
            node.name, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.all.arp_announce=0"
        )


def test_ipvs_without_strict_arp_stops_site_and_the_fix_mends_it(lab_: Converged) -> None:
    try:
        lab_.lab_cli("kube-proxy", "ipvs")
        proc = _preflight(lab_)
        assert proc.returncode != 0
        assert _says(proc, "kube-proxy-ipvs-strict-arp: kube-proxy runs in IPVS mode without strictARP on l2lb-node1, ")
        assert _says(proc, "l2lb_fix_kube_proxy_strict_arp=true") and _says(proc, "(nothing was changed)")

        # Check mode: says what it would change, changes nothing, and does not stop on what it would fix.
        dry = _preflight(lab_, "--check", "--diff", "-e", "l2lb_fix_kube_proxy_strict_arp=true")
        assert dry.returncode == 0, dry.stdout[-3000:]
        assert _says(dry, "+  strictARP: true") and _says(dry, "-  strictARP: false"), dry.stdout[-3000:]
        config = lab_.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"]
        assert re.search(r"(?m)^  strictARP: false$", config), config
        # The half-done fix MetalLB's docs lead to: the ConfigMap edited, kube-proxy never restarted. The nodes
        # still answer ARP for kube-ipvs0's addresses, so preflight still stops, and its fix restarts kube-proxy.
        lab_.core.patch_namespaced_config_map(
            "kube-proxy",
            "kube-system",
            {"data": {"config.conf": config.replace("strictARP: false", "strictARP: true")}},
        )
        assert _preflight(lab_).returncode != 0

        fixed = _preflight(lab_, "-e", "l2lb_fix_kube_proxy_strict_arp=true")
        assert fixed.returncode == 0, fixed.stdout[-3000:]
        config = lab_.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"]
        assert re.search(r"(?m)^  strictARP: true$", config), config
        for node in lab.NODES:  # kube-proxy restarted by the fix and applied strictARP on the node
            assert lab_.in_node(node.name, "sysctl", "-n", "net.ipv4.conf.all.arp_ignore").strip() == "1"
            assert lab_.in_node(node.name, "sysctl", "-n", "net.ipv4.conf.all.arp_announce").strip() == "2"
        again = _preflight(lab_, "-e", "l2lb_fix_kube_proxy_strict_arp=true")
        assert again.returncode == 0 and _changed(again) == 0, again.stdout[-3000:]
        assert _says(again, f"INFO     dataplane: kube-proxy in {_modes('ipvs')} mode (IPVS: strictARP checked above)")
    finally:
        undo_all(
            lambda: lab_.lab_cli("kube-proxy", "nftables"),
            lambda: _reset_arp_sysctls(lab_),
            *(lambda n=name: lab_.forget_neighbour(lab_.ip(n)) for name in ("lab-echo", "lab-local", "lab-dns-tcp")),
        )


@contextmanager
def _created(create: Any, delete: Any, namespace: str, body: dict[str, Any]) -> Iterator[None]:
    create(namespace, body)
    try:
        yield
    finally:
        delete(body["metadata"]["name"], namespace)


def _workload(name: str, labels: dict[str, str], image: str, args: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, **({"args": args} if args else {})}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def test_k3s_servicelb_stops_site(lab_: Converged) -> None:
    apps = client.AppsV1Api(lab_.api)
    labels = {"svccontroller.k3s.cattle.io/svcname": "lab-echo", "app": "svclb-lab-echo-5f4e3d2c"}
    svclb = _workload("svclb-lab-echo-5f4e3d2c", labels, "rancher/klipper-lb:v0.4.13")
    with _created(apps.create_namespaced_daemon_set, apps.delete_namespaced_daemon_set, "kube-system", svclb):
        proc = _preflight(lab_)
    assert proc.returncode != 0
    assert _says(proc, "k3s-servicelb: k3s's built-in ServiceLB (klipper-lb) is enabled (kube-system/svclb-lab-echo-")
    assert _says(proc, "--disable=servicelb")


def test_another_load_balancer_stops_site_unless_separated_by_class(lab_: Converged) -> None:
    apps = client.AppsV1Api(lab_.api)
    labels = {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/component": "controller"}
    lab_.core.create_namespace({"metadata": {"name": "metallb-system"}})
    try:
        controller = _workload("controller", labels, "quay.io/metallb/controller:v0.15.2")
        with _created(
            apps.create_namespaced_deployment, apps.delete_namespaced_deployment, "metallb-system", controller
        ):
            proc = _preflight(lab_)
        assert proc.returncode != 0
        assert _says(proc, "other-load-balancer: MetalLB (Deployment metallb-system/controller) also handles")
        assert _says(proc, "migrate_metallb.yml")

        separated = _workload("controller", labels, "quay.io/metallb/controller:v0.15.2", ["--lb-class=metallb"])
        with _created(
            apps.create_namespaced_deployment, apps.delete_namespaced_deployment, "metallb-system", separated
        ):
            proc = _preflight(lab_)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert _says(proc, "INFO other-load-balancer: MetalLB (Deployment metallb-system/controller) only handles")
    finally:
        lab_.core.delete_namespace("metallb-system")


def test_cilium_kube_proxy_replacement_is_a_supported_dataplane(lab_: Converged) -> None:
    config = {"metadata": {"name": "cilium-config"}, "data": {"kube-proxy-replacement": "true"}}
    with _created(
        lab_.core.create_namespaced_config_map, lab_.core.delete_namespaced_config_map, "kube-system", config
    ):
        proc = _preflight(lab_)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _says(proc, "INFO     dataplane: Cilium's kube-proxy replacement (supported")


SECOND_NIC = "l2lb-lab-n2b"  # host end, on the lab bridge; host1 inside l2lb-node2


def test_several_nics_in_one_subnet_warn_and_the_fix_sets_the_sysctls(lab_: Converged) -> None:
    node = "l2lb-node2"
    pid = lab_.lab.init_pid(node)
    rp_filter = lab_.in_node(node, "sysctl", "-n", "net.ipv4.conf.all.rp_filter").strip()
    lab.run(["ip", "link", "add", SECOND_NIC, "type", "veth", "peer", "name", "host1", "netns", str(pid)])
    try:
        lab.run(["ip", "link", "set", SECOND_NIC, "master", lab.BRIDGE, "up"])
        lab_.in_node(node, "ip", "addr", "add", "198.18.0.22/24", "dev", "host1")
        lab_.in_node(node, "ip", "link", "set", "host1", "up")
        lab_.in_node(node, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1")
        proc = _preflight(lab_)
        assert proc.returncode == 0, proc.stdout[-3000:]  # a warning does not stop the run
        assert _says(proc, "WARNING  multi-nic-sysctls: l2lb-node2 has several NICs in one subnet (198.18.0.0/24: ")
        assert _says(proc, "rp_filter=1") and _says(proc, "l2lb_fix_node_sysctls=true")

        fixed = _preflight(lab_, "-e", "l2lb_fix_node_sysctls=true")
        assert fixed.returncode == 0 and _changed(fixed) >= 2, fixed.stdout[-3000:]
        assert "90-l2lb.conf" in lab_.in_node(node, "ls", "/etc/sysctl.d")
        values = {key: lab_.in_node(node, "sysctl", "-n", f"net.ipv4.conf.all.{key}").strip()
                  for key in ("rp_filter", "arp_ignore", "arp_announce")}  # fmt: skip
        assert values == {"rp_filter": "2", "arp_ignore": "1", "arp_announce": "2"}, values
        again = _preflight(lab_, "-e", "l2lb_fix_node_sysctls=true")
        assert again.returncode == 0 and _changed(again) == 0 and "multi-nic-sysctls" not in again.stdout
    finally:
        undo_all(
            lambda: lab.run(["ip", "link", "del", SECOND_NIC], check=False),
            lambda: lab_.in_node(node, "rm", "-f", "/etc/sysctl.d/90-l2lb.conf"),
            lambda: lab_.in_node(node, "sysctl", "-q", "-w", f"net.ipv4.conf.all.rp_filter={rp_filter}"),
            lambda: _reset_arp_sysctls(lab_),
        )
