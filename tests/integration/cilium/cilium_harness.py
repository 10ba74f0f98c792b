"""Helpers for the Cilium and MetalLB tests: a real control plane (etcd, kube-apiserver,
kube-controller-manager from ``tests/controlplane.py``) with CRDs from fixtures, real ansible-playbook runs,
and the playbook's requests counted from kube-apiserver's audit log."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runs
import yaml
from cluster_waits import wait_crd_served
from kubernetes import client

from controlplane import ControlPlane, RequestCounter

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "cilium"
NODES = [
    {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
    {"name": "worker1", "labels": {"homelab/role": "worker"}},
    {"name": "worker2", "labels": {"homelab/role": "worker"}},
]
# The identity of the playbooks' kubeconfig (a static token of its own), so that a test counts the
# playbook's requests and not the controller manager's or its own.
PLAYBOOK_USER = "l2lb-playbook"
USERS = [(PLAYBOOK_USER, ["system:masters"])]
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

PlaybookRun = tuple[int, str, dict[str, int]]


def api_client(api: ControlPlane) -> client.ApiClient:
    """A client with the admin token (the test's own requests are not the playbook's)."""
    return api.api_client()


@contextlib.contextmanager
def cluster(crds: Path, state_dir: Path, drop_versions: tuple[str, ...] = ()) -> Iterator[ControlPlane]:
    """A control plane with the test users, NODES registered and the CRDs of ``crds`` Established."""
    with ControlPlane(users=USERS, state_dir=state_dir) as plane:
        for node in NODES:
            plane.add_node(node["name"], node["labels"])
        install_crds(plane, crds, drop_versions)
        yield plane


def write_kubeconfig(api: ControlPlane, path: Path) -> Path:
    """The playbooks' kubeconfig: the playbook user's token (group system:masters)."""
    return api.write_kubeconfig(path, api.token(PLAYBOOK_USER), user=PLAYBOOK_USER)


def install_crds(api: ControlPlane, path: Path, drop_versions: tuple[str, ...] = (), timeout: float = 30.0) -> None:
    """Register the CRDs of a fixture file (optionally without some versions, to mimic an older release)
    and wait until each is Established and every version it serves answers a list."""
    with api_client(api) as api_client_:
        extensions = client.ApiextensionsV1Api(api_client_)
        created = []
        for crd in yaml.safe_load_all(path.read_text()):
            crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v["name"] not in drop_versions]
            if not any(v.get("storage") for v in crd["spec"]["versions"]):
                crd["spec"]["versions"][0]["storage"] = True
            extensions.create_custom_resource_definition(crd)
            created.append(crd)
        for crd in created:
            served = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
            wait_crd_served(extensions, crd["metadata"]["name"], timeout, served)


def writes(counter: RequestCounter, resources: tuple[str, ...] = ()) -> int:
    """Write requests the counter's user made since it was made (or reset), optionally only to these resources."""
    return sum(
        n
        for (verb, resource), n in counter.counts().items()
        if verb in WRITE_VERBS and (not resources or resource in resources)
    )


def _control_plane_user(name: str) -> bool:
    """kube-controller-manager (which runs with the admin kubeconfig and, with
    --use-service-account-credentials, as its controllers' service accounts) and kube-apiserver itself."""
    return name in ("admin", "system:apiserver", "system:kube-controller-manager") or name.startswith(
        "system:serviceaccount:kube-system:"
    )


class OutsideRequests:
    """Requests from anyone but the control plane itself (any credentials, anonymous ones included), from
    now on: what "this run needs no cluster" means. The test must not use the admin token meanwhile."""

    def __init__(self, api: ControlPlane) -> None:
        self._counter = api.counter()

    def events(self) -> list[dict[str, Any]]:
        return [
            e for e in self._counter.events() if not _control_plane_user(str((e.get("user") or {}).get("username", "")))
        ]

    def describe(self) -> list[str]:
        return [f"{(e.get('user') or {}).get('username')} {e.get('verb')} {e.get('requestURI')}" for e in self.events()]


def run_playbook(
    workdir: Path,
    playbook: str,
    host_vars: dict[str, Any],
    *extra: str,
    env: dict[str, str] | None = None,
    groups: tuple[str, ...] = (),
) -> PlaybookRun:
    """ansible-playbook against an inventory of localhost (also in ``groups``); (rc, output, recap counts)."""
    inventory = workdir / "hosts.yml"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}
    children: dict[str, Any] = {group: {"hosts": {"localhost": {}}} for group in groups}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": host}, "children": children}}))
    # PWD too: the playbooks default their output files to it, and it must be the test's directory.
    run = ansible_runs.run_playbook(inventory, playbook, *extra, cwd=workdir, env={"PWD": str(workdir), **(env or {})})
    out = run.stdout + run.stderr
    return run.returncode, out, ansible_runs.localhost_recap(out)
