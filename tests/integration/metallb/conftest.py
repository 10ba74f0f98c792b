"""Fixtures for the MetalLB migration tests: a real control plane of this module's own holding a home lab's
MetalLB setup (MetalLB's CRDs, pools and advertisements, the lab's Services with their IPs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from controlplane import ControlPlane

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cilium"))
from cilium_harness import REPO, api_client, cluster, write_kubeconfig  # lives with the Cilium tests

HOMELAB = REPO / "tests" / "fixtures" / "metallb" / "homelab"


def homelab_objects() -> tuple[list[dict], list[dict]]:
    """(MetalLB objects, Services) of the fixture."""
    config = list(yaml.safe_load_all((HOMELAB / "metallb-config.yaml").read_text()))
    services = yaml.safe_load((HOMELAB / "services.yaml").read_text())["items"]
    return config, services


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """MetalLB's CRDs, pools and advertisements in metallb-system, and the lab's Services with their IPs."""
    crds = REPO / "tests" / "fixtures" / "metallb" / "crds.yaml"
    with cluster(crds, tmp_path_factory.mktemp("controlplane")) as plane:
        config, services = homelab_objects()
        with api_client(plane) as c:
            core, custom = client.CoreV1Api(c), client.CustomObjectsApi(c)
            namespaces = {"metallb-system"} | {s["metadata"]["namespace"] for s in services}
            for namespace in sorted(namespaces - {"default", "kube-system"}):
                core.create_namespace({"metadata": {"name": namespace}})
            plurals = {"IPAddressPool": "ipaddresspools", "L2Advertisement": "l2advertisements"}
            for obj in config:
                if obj["kind"] in plurals:  # no BGP CRDs here, as on a cluster that only ever used layer 2
                    custom.create_namespaced_custom_object(
                        "metallb.io", "v1beta1", "metallb-system", plurals[obj["kind"]], obj
                    )
            for service in services:
                meta = service["metadata"]
                status = service.pop("status", None)
                core.create_namespaced_service(meta["namespace"], service)
                if status:
                    ingress = [{**i, "ipMode": "VIP"} for i in status["loadBalancer"]["ingress"]]
                    core.patch_namespaced_service_status(
                        meta["name"], meta["namespace"], {"status": {"loadBalancer": {"ingress": ingress}}}
                    )
        yield plane


@pytest.fixture(scope="module")
def workdir(api: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("metallb")
    write_kubeconfig(api, path / "playbook.kubeconfig")
    return path
