"""Helpers for the Cilium and MetalLB tests: the API stand-in with CRDs from fixtures, real ansible-playbook runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import ansible_runs
import yaml
from kubernetes import client

from k8s_standin import ApiServer

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "cilium"
NODES = [
    {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
    {"name": "worker1", "labels": {"homelab/role": "worker"}},
    {"name": "worker2", "labels": {"homelab/role": "worker"}},
]

PlaybookRun = tuple[int, str, dict[str, int]]


def api_client(api: ApiServer) -> client.ApiClient:
    configuration = client.Configuration(host=api.url)
    configuration.ssl_ca_cert = api.ca_file
    configuration.api_key = {"authorization": "Bearer " + api.admin_token}
    return client.ApiClient(configuration)


def install_crds(api: ApiServer, path: Path, drop_versions: tuple[str, ...] = ()) -> None:
    """Register the CRDs of a fixture file (optionally without some versions, to mimic an older release)."""
    with api_client(api) as api_client_:
        extensions = client.ApiextensionsV1Api(api_client_)
        for crd in yaml.safe_load_all(path.read_text()):
            crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v["name"] not in drop_versions]
            if not any(v.get("storage") for v in crd["spec"]["versions"]):
                crd["spec"]["versions"][0]["storage"] = True
            extensions.create_custom_resource_definition(crd)


def writes(api: ApiServer, resources: tuple[str, ...] = ()) -> int:
    """Write requests so far, optionally only to these resources."""
    return sum(
        n
        for (verb, resource), n in api.request_counts().items()
        if verb in ("create", "update", "patch", "delete") and (not resources or resource in resources)
    )


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
    children = {group: {"hosts": {"localhost": {}}} for group in groups}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": host}, "children": children}}))
    # PWD too: the playbooks default their output files to it, and it must be the test's directory.
    run = ansible_runs.run_playbook(inventory, playbook, *extra, cwd=workdir, env={"PWD": str(workdir), **(env or {})})
    out = run.stdout + run.stderr
    return run.returncode, out, ansible_runs.localhost_recap(out)
