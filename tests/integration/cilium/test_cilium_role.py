"""playbooks/cilium.yml and the cilium role against a real kube-apiserver with Cilium's CRDs, with real
ansible-playbook runs: CRs applied and pruned, idempotence, check/diff mode, render mode for GitOps, the
rate limit sized from the Services the cluster really has, and both helm paths (none installed: values
file and the exact command; a helm binary, fake_helm.py standing in for it: upgrade with --reuse-values,
only when our values change). The playbook's requests are counted from kube-apiserver's audit log, for its
own user (PLAYBOOK_USER), so the controller manager's background requests do not count."""

from __future__ import annotations

import json
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cilium_harness import (
    FIXTURES,
    PLAYBOOK_USER,
    OutsideRequests,
    PlaybookRun,
    api_client,
    cluster,
    run_playbook,
    write_kubeconfig,
    writes,
)
from kubernetes import client

from controlplane import ControlPlane

INVENTORY = yaml.safe_load((FIXTURES / "inventory.yml").read_text())
CILIUM = ("ciliumloadbalancerippools", "ciliuml2announcementpolicies")
Playbook = Callable[..., PlaybookRun]


def _vars(workdir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "l2lb_backend": "cilium",
        "l2lb_pools": INVENTORY["l2lb_pools"],
        "l2lb_policies": INVENTORY["l2lb_policies"],
        "cilium_version": "1.18.1",
        "cilium_values_dir": str(workdir / "values"),
        **extra,
    }


def _objects(api: ControlPlane, version: str, plural: str) -> dict[str, dict]:
    with api_client(api) as c:
        items = client.CustomObjectsApi(c).list_cluster_custom_object("cilium.io", version, plural)["items"]
    return {item["metadata"]["name"]: item for item in items}


@pytest.fixture(scope="module", autouse=True)
def services(api: ControlPlane) -> None:
    """30 LoadBalancer Services the 'workers' policy announces, and some it does not."""
    with api_client(api) as c:
        core = client.CoreV1Api(c)
        core.create_namespace({"metadata": {"name": "apps"}})
        for i in range(30):
            core.create_namespaced_service(
                "apps",
                {
                    "metadata": {"name": f"web{i}", "labels": {"homelab/public-service": "true"}},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                },
            )
        for i in range(3):
            core.create_namespaced_service(
                "apps", {"metadata": {"name": f"internal{i}"}, "spec": {"ports": [{"port": 80}]}}
            )
        core.create_namespaced_service(
            "apps", {"metadata": {"name": "unlabelled"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
        )


def test_apply_without_helm_applies_the_crs_and_prints_the_exact_command(
    api: ControlPlane, workdir: Path, playbook: Playbook
) -> None:
    if shutil.which("helm"):
        pytest.fail("a helm binary is on PATH; this test is about the path without one (run it without helm)")
    code, out, counts = playbook("playbooks/cilium.yml", _vars(workdir))
    assert code == 0, out
    pools = _objects(api, "v2", "ciliumloadbalancerippools")
    assert set(pools) == {"lan", "nginx-ingress"}
    assert pools["lan"]["spec"]["blocks"] == [
        {"cidr": "198.18.5.80/28"},
        {"start": "198.18.5.100", "stop": "198.18.5.120"},
    ]
    assert pools["lan"]["spec"]["allowFirstLastIPs"] == "No"
    assert pools["lan"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "baremetal.l2lb"
    assert set(_objects(api, "v2alpha1", "ciliumloadbalancerippools")) == {"lan", "nginx-ingress"}  # still served
    policies = _objects(api, "v2alpha1", "ciliuml2announcementpolicies")
    assert policies["workers"]["spec"]["interfaces"] == ["^eth[0-9]+", "enp0s25"]
    assert policies["external"]["spec"] == {"externalIPs": True, "loadBalancerIPs": False}

    # The rate limit follows the 30 Services the workers policy selects (more than the assumed 20).
    values = yaml.safe_load((workdir / "values" / "values.yaml").read_text())
    assert values["k8sClientRateLimit"] == {"qps": 10 + 45, "burst": 110}
    assert values["rollOutCiliumPods"] is True and values["l2announcements"]["enabled"] is True
    assert "announced Services: 30 (assumed 20, counted 30)" in " ".join(out.split())
    assert "helm was not found on localhost (helm)" in out
    expected = (
        "helm upgrade cilium cilium --repo https://helm.cilium.io/ --version 1.18.1 --namespace kube-system "
        f"--reuse-values -f {workdir / 'values' / 'values.yaml'}"
    )
    assert expected in " ".join(out.split())

    requests = api.counter(PLAYBOOK_USER)
    code, out, counts = playbook("playbooks/cilium.yml", _vars(workdir))
    assert code == 0, out
    assert counts["changed"] == 0, out
    assert requests.total() > 0, "the re-run must have read the cluster (or the count is blind)"
    assert writes(requests, CILIUM) == 0, f"an idempotent re-run must not write Cilium objects: {requests.counts()}"


def test_check_diff_then_prune_and_foreign_objects(api: ControlPlane, workdir: Path, playbook: Playbook) -> None:
    playbook("playbooks/cilium.yml", _vars(workdir))
    fewer = _vars(workdir, l2lb_pools=INVENTORY["l2lb_pools"][:1])
    code, out, counts = playbook("playbooks/cilium.yml", fewer, "--check", "--diff")
    assert code == 0, out
    assert counts["changed"] >= 1 and "CiliumLoadBalancerIPPool/nginx-ingress" in out
    assert "nginx-ingress" in _objects(api, "v2", "ciliumloadbalancerippools"), "check mode deleted something"

    code, out, _ = playbook("playbooks/cilium.yml", fewer)
    assert code == 0, out
    assert set(_objects(api, "v2", "ciliumloadbalancerippools")) == {"lan"}

    # Someone else's pool with a name the inventory uses is an error, not a takeover.
    with api_client(api) as c:
        client.CustomObjectsApi(c).create_cluster_custom_object(
            "cilium.io",
            "v2",
            "ciliumloadbalancerippools",
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumLoadBalancerIPPool",
                "metadata": {"name": "nginx-ingress"},
                "spec": {"blocks": [{"cidr": "198.18.7.0/30"}]},
            },
        )
    requests = api.counter(PLAYBOOK_USER)
    code, out, _ = playbook("playbooks/cilium.yml", _vars(workdir))
    assert code != 0
    assert 'CiliumLoadBalancerIPPool "nginx-ingress" exists but is not managed by baremetal.l2lb' in out
    assert requests.total() > 0 and writes(requests, CILIUM) == 0, requests.counts()
    with api_client(api) as c:
        client.CustomObjectsApi(c).delete_cluster_custom_object(
            "cilium.io", "v2", "ciliumloadbalancerippools", "nginx-ingress"
        )
    code, out, _ = playbook("playbooks/cilium.yml", _vars(workdir))
    assert code == 0, out


def test_render_mode_writes_gitops_files_and_touches_no_api(
    api: ControlPlane, workdir: Path, playbook: Playbook
) -> None:
    outside = OutsideRequests(api)  # from any client but the control plane's own components
    render = _vars(workdir, cilium_mode="render", cilium_render_dir=str(workdir / "gitops"), l2lb_kubeconfig="/none")
    code, out, counts = playbook("playbooks/cilium.yml", render)
    assert code == 0, out
    assert sorted(p.name for p in (workdir / "gitops").iterdir()) == [
        "ippools.yaml",
        "kustomization.yaml",
        "l2policies.yaml",
        "values.yaml",
    ]
    assert "counted not in render mode" in out
    assert outside.describe() == [], "render mode must not talk to the API"
    # Again with a kubeconfig that works: render mode still asks the cluster nothing, and changes nothing.
    requests = api.counter(PLAYBOOK_USER)
    code, out, counts = playbook(
        "playbooks/cilium.yml", {**render, "l2lb_kubeconfig": str(workdir / "playbook.kubeconfig")}
    )
    assert code == 0 and counts["changed"] == 0, out
    assert requests.counts() == {}, "render mode must not talk to the API"
    assert outside.describe() == [], "render mode must not talk to the API"


def test_an_inventory_for_the_agent_is_refused(api: ControlPlane, workdir: Path, playbook: Playbook) -> None:
    requests = api.counter(PLAYBOOK_USER)
    code, out, _ = playbook("playbooks/cilium.yml", {**_vars(workdir), "l2lb_backend": "l2lb"})
    assert code != 0 and "Set l2lb_backend: cilium in group_vars" in out
    bad = _vars(workdir, l2lb_pools=[{"name": "lan", "blocks": [{"cidr": "198.18.5.80/33"}]}])
    code, out, _ = playbook("playbooks/cilium.yml", bad)
    assert code != 0 and 'pool "lan": blocks[0].cidr' in out
    assert writes(requests) == 0, requests.counts()


def test_cilium_version_must_match_the_crds_the_cluster_serves(tmp_path: Path) -> None:
    # Cilium 1.17: pools only as v2alpha1 (a second control plane, the module's has v2)
    with cluster(FIXTURES / "crds.yaml", tmp_path / "controlplane", drop_versions=("v2",)) as old:
        write_kubeconfig(old, tmp_path / "playbook.kubeconfig")
        host_vars = {**_vars(tmp_path), "l2lb_kubeconfig": str(tmp_path / "playbook.kubeconfig")}
        requests = old.counter(PLAYBOOK_USER)
        code, out, _ = run_playbook(tmp_path, "playbooks/cilium.yml", host_vars)
        assert code != 0
        assert "ciliumloadbalancerippools.cilium.io does not serve v2 (it serves v2alpha1)" in out
        assert "set cilium_version to the Cilium release the cluster runs" in out
        assert requests.total() > 0 and writes(requests) == 0, requests.counts()
        code, out, _ = run_playbook(tmp_path, "playbooks/cilium.yml", {**host_vars, "cilium_version": "1.17.4"})
        assert code == 0, out
        assert set(_objects(old, "v2alpha1", "ciliumloadbalancerippools")) == {"lan", "nginx-ingress"}


def _fake_helm(tmp_path: Path, chart: str = "cilium-1.18.1") -> tuple[Path, Path]:
    """An executable ``helm`` (see fake_helm.py) and its state: release cilium with the user's own values."""
    binary, state = tmp_path / "bin" / "helm", tmp_path / "helm-state.json"
    binary.parent.mkdir(exist_ok=True)
    source = (Path(__file__).parent / "fake_helm.py").read_text()
    binary.write_text(f"#!{sys.executable}\n{source}")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    release = {
        "name": "cilium",
        "namespace": "kube-system",
        "revision": "1",
        "status": "deployed",
        "chart": chart,
        "app_version": chart.removeprefix("cilium-"),
        "values": {"ipam": {"mode": "kubernetes"}, "k8sServiceHost": "api.lab.example", "operator": {"replicas": 1}},
    }
    state.write_text(json.dumps({"release": release, "calls": []}))
    return binary, state


def _upgrades(state: Path) -> list[dict[str, Any]]:
    return [c for c in json.loads(state.read_text())["calls"] if "upgrade" in c["argv"]]


def test_with_helm_the_release_is_upgraded_keeping_the_users_values(workdir: Path, playbook: Playbook) -> None:
    binary, state = _fake_helm(workdir)
    env = {"FAKE_HELM_STATE": str(state)}
    host_vars = _vars(workdir, cilium_helm_binary=str(binary))
    code, out, _ = playbook("playbooks/cilium.yml", host_vars, env=env)
    assert code == 0, out
    [upgrade] = _upgrades(state)
    argv = upgrade["argv"]
    assert argv[:2] == ["--version=1.18.1", "--repo=https://helm.cilium.io/"]
    assert {"upgrade", "--reuse-values=True", "--wait", "cilium"} <= set(argv) and "--reset-values" not in argv
    assert upgrade["namespace"] == "kube-system"
    values = json.loads(state.read_text())["release"]["values"]
    assert values["ipam"] == {"mode": "kubernetes"} and values["k8sServiceHost"] == "api.lab.example"
    assert values["operator"] == {"replicas": 1, "rollOutPods": True}
    assert values["rollOutCiliumPods"] is True and values["k8sClientRateLimit"] == {"qps": 55, "burst": 110}

    # Nothing new: no upgrade, nothing changed.
    code, out, counts = playbook("playbooks/cilium.yml", host_vars, env=env)
    assert code == 0 and counts["changed"] == 0, out
    assert len(_upgrades(state)) == 1

    # Faster failover: the timings and the rate limit change, so the agents get restarted by the upgrade.
    faster = {**host_vars, "cilium_lease_duration": "3s", "cilium_lease_renew_deadline": "1s"}
    faster["cilium_lease_retry_period"] = "200ms"
    code, out, _ = playbook("playbooks/cilium.yml", faster, env=env)
    assert code == 0, out
    assert len(_upgrades(state)) == 2
    values = json.loads(state.read_text())["release"]["values"]
    assert values["l2announcements"]["leaseRetryPeriod"] == "200ms"
    assert values["k8sClientRateLimit"] == {"qps": 10 + 450, "burst": 920}


def test_with_helm_a_release_of_another_version_is_refused(workdir: Path, playbook: Playbook) -> None:
    binary, state = _fake_helm(workdir, chart="cilium-1.17.4")
    code, out, _ = playbook(
        "playbooks/cilium.yml", _vars(workdir, cilium_helm_binary=str(binary)), env={"FAKE_HELM_STATE": str(state)}
    )
    assert code != 0
    assert "runs cilium-1.17.4 but cilium_version is 1.18.1" in out
    assert _upgrades(state) == []
