"""playbooks/migrate_metallb.yml against a real kube-apiserver holding a home lab's MetalLB setup (four pools,
three L2 advertisements, shared IPs, a pool asked for by name, node selectors), with real
ansible-playbook runs: --check shows the plan and writes nothing, a real run rewrites the Services and
writes the inventory model, a second run changes nothing; from manifest files it needs no cluster. The
playbook's requests are counted from kube-apiserver's audit log, for its own user (PLAYBOOK_USER)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from cilium_harness import PLAYBOOK_USER, REPO, WRITE_VERBS, OutsideRequests, api_client, run_playbook, writes
from kubernetes import client

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import build_model
from controlplane import ControlPlane

PLAYBOOK = "playbooks/migrate_metallb.yml"
HOMELAB = REPO / "tests" / "fixtures" / "metallb" / "homelab"


def _vars(workdir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "l2lb_kubeconfig": str(workdir / "playbook.kubeconfig"),
        "migrate_metallb_output": str(workdir / "l2lb-from-metallb.yml"),
        **extra,
    }


def _service(api: ControlPlane, ref: str) -> dict[str, Any]:
    namespace, name = ref.split("/")
    with api_client(api) as c:
        svc = client.CoreV1Api(c).read_namespaced_service(name, namespace)
        return {"annotations": svc.metadata.annotations or {}, "labels": svc.metadata.labels or {}}


def _flat(out: str) -> str:
    return " ".join(out.split())


def _versions(api: ControlPlane) -> dict[str, str]:
    with api_client(api) as c:
        items = client.CoreV1Api(c).list_service_for_all_namespaces().items
    return {f"{s.metadata.namespace}/{s.metadata.name}": s.metadata.resource_version for s in items}


def test_check_mode_shows_the_plan_and_changes_nothing(api: ControlPlane, workdir: Path) -> None:
    before = _versions(api)
    requests = api.counter(PLAYBOOK_USER)
    code, out, counts = run_playbook(workdir, PLAYBOOK, _vars(workdir), "--check", "--diff")
    assert code == 0, out
    flat = _flat(out)
    assert "dns/pihole-udp: + l2lb.io/ips=198.18.10.53, + l2lb.io/sharing-key=pihole" in flat
    assert "web/ingress: + l2lb.io/ips=198.18.20.10, + label l2lb.io/requested-pool=dmz" in flat
    assert 'IPAddressPool "iot" | spec.serviceAllocation.priority | pool priority 10 has no equivalent' in flat
    assert "l2lb_pools:" in out and "- name: reserved" in out
    assert counts["changed"] >= 1  # the Services that would be patched
    assert _versions(api) == before, "check mode must not change a Service (its writes are dry runs)"
    real_writes = [
        f"{e['verb']} {e['requestURI']}"
        for e in requests.events()
        if e["verb"] in WRITE_VERBS and "dryRun=All" not in e["requestURI"]
    ]
    assert requests.total() > 0 and real_writes == [], "check mode may only send dry-run writes"
    assert not (workdir / "l2lb-from-metallb.yml").exists()


def test_apply_rewrites_the_services_and_a_second_run_changes_nothing(api: ControlPlane, workdir: Path) -> None:
    code, out, _ = run_playbook(workdir, PLAYBOOK, _vars(workdir))
    assert code == 0, out
    pihole = _service(api, "dns/pihole-tcp")
    assert pihole["annotations"]["l2lb.io/ips"] == "198.18.10.53"
    assert pihole["annotations"]["l2lb.io/sharing-key"] == "pihole"
    assert pihole["annotations"]["metallb.universe.tf/allow-shared-ip"] == "pihole", "MetalLB's stay by default"
    assert _service(api, "web/ingress")["labels"]["l2lb.io/requested-pool"] == "dmz"
    assert _service(api, "home/nas")["labels"]["l2lb.io/requested-pool"] == "reserved"
    assert _service(api, "home/mqtt")["annotations"]["l2lb.io/ips"] == "198.18.10.20"  # pinned
    assert "l2lb.io/ips" not in _service(api, "monitoring/metrics")["annotations"]

    written = (workdir / "l2lb-from-metallb.yml").read_text()
    assert written.startswith("# Imported from MetalLB by baremetal.l2lb.metallb_import.")
    comments = " ".join(line[1:].strip() for line in written.splitlines() if line.startswith("#"))
    assert (
        "- Service \"tools/kuma\": spec.ports: shares key 'media' with media/jellyfin and both use 8096/TCP" in comments
    )
    model_vars = yaml.safe_load(written)
    model = build_model(model_vars["l2lb_pools"], model_vars["l2lb_policies"])
    assert {p.name for p in model.pools} == {"lan", "dmz", "reserved", "iot"}
    assert {p.name for p in model.policies} == {"home-workers", "reserved-0", "reserved-1", "rest"}

    before = _versions(api)
    requests = api.counter(PLAYBOOK_USER)
    code, out, counts = run_playbook(workdir, PLAYBOOK, _vars(workdir))
    assert code == 0 and counts["changed"] == 0, out
    assert requests.total() > 0 and writes(requests, ("services",)) == 0, requests.counts()
    assert _versions(api) == before
    assert "no Service needs a change" in out


def test_from_files_for_cilium_needs_no_cluster_and_feeds_the_cilium_role(api: ControlPlane, workdir: Path) -> None:
    outside = OutsideRequests(api)  # from any client but the control plane's own components
    output = workdir / "cilium-from-metallb.yml"
    host_vars = {
        "l2lb_backend": "cilium",
        "cilium_version": "1.18.1",
        "l2lb_kubeconfig": "/nonexistent",
        "migrate_metallb_source": "files",
        "migrate_metallb_paths": [str(HOMELAB)],
        "migrate_metallb_apply": False,
        "migrate_metallb_output": str(output),
    }
    code, out, _ = run_playbook(workdir, PLAYBOOK, host_vars)
    assert code == 0, out
    assert outside.describe() == [], "the import from files must not talk to the API"
    flat = _flat(out)
    assert "dns/pihole-udp: + lbipam.cilium.io/ips=198.18.10.53, + lbipam.cilium.io/sharing-key=pihole" in flat
    assert "+ lbipam.cilium.io/sharing-cross-namespace=tools" in flat
    imported = yaml.safe_load(output.read_text())
    assert imported["l2lb_backend"] == "cilium"

    # The imported model goes straight into the Cilium role (render mode: no cluster needed either).
    gitops = workdir / "gitops"
    role_vars = {**imported, "cilium_version": "1.18.1", "cilium_mode": "render", "cilium_render_dir": str(gitops)}
    code, out, _ = run_playbook(workdir, "playbooks/cilium.yml", role_vars)
    assert code == 0, out
    assert outside.describe() == [], "render mode must not talk to the API"
    pools = list(yaml.safe_load_all((gitops / "ippools.yaml").read_text()))
    assert [p["metadata"]["name"] for p in pools] == ["lan", "dmz", "reserved", "iot"]
    reserved = next(p for p in pools if p["metadata"]["name"] == "reserved")
    assert reserved["spec"]["serviceSelector"] == {"matchLabels": {"l2lb.io/requested-pool": "reserved"}}
    assert reserved["spec"]["allowFirstLastIPs"] == "Yes"
