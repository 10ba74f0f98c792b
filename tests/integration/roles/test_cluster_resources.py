"""The cluster and resources roles and the apply_model module against a real kube-apiserver (its own
control plane for this module), with real ansible-playbook runs: idempotence, check/diff mode, pruning,
nothing applied on a bad model, the CRD schemas as the real server enforces them, and the agent's RBAC
allowing exactly what it uses. Writes are counted by kube-apiserver itself (``apiserver_request_total``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_runs import localhost_recap, run_playbook
from kubernetes import client

from controlplane import ControlPlane, RequestCounter

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).parent / "cluster_resources.yml"
GROUP, VERSION = "l2lb.io", "v1alpha1"
POOLS = [
    {"name": "lan", "blocks": [{"cidr": "198.18.10.0/28"}]},
    {"name": "dmz", "blocks": [{"start": "198.18.11.10", "stop": "198.18.11.20"}]},
]
POLICIES = [{"name": "workers", "nodeSelector": {"matchLabels": {"role": "worker"}}, "interfaces": ["^eth"]}]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(state_dir=tmp_path_factory.mktemp("controlplane")) as plane:
        for name in ("node1", "node2"):
            plane.add_node(name)
        yield plane


@pytest.fixture(scope="module")
def workdir(api: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roles")
    api.write_kubeconfig(path / "admin.kubeconfig")
    return path


def _client(api: ControlPlane, token: str | None = None) -> client.ApiClient:
    configuration = client.Configuration(host=api.url)
    configuration.ssl_ca_cert = api.ca_file
    configuration.api_key = {"authorization": "Bearer " + (token or api.admin_token)}
    return client.ApiClient(configuration)


def _run(workdir: Path, pools: Any, policies: Any, *extra: str) -> tuple[int, str, dict[str, int]]:
    inventory = workdir / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            "l2lb_kubeconfig": str(workdir / "admin.kubeconfig"),
                            "l2lb_test_token_file": str(workdir / "agent-token"),
                            "l2lb_pools": pools,
                            "l2lb_policies": policies,
                        }
                    }
                }
            }
        )
    )
    run = run_playbook(inventory, PLAYBOOK, *extra)
    out = run.stdout + run.stderr
    return run.returncode, out, localhost_recap(out)


def _objects(api: ControlPlane, plural: str) -> dict[str, dict]:
    with _client(api) as api_client:
        items = client.CustomObjectsApi(api_client).list_cluster_custom_object(GROUP, VERSION, plural)["items"]
    return {item["metadata"]["name"]: item for item in items}


OURS = ("loadbalancerippools", "l2announcementpolicies")
# Everything the cluster and resources roles write. Not leases or events: kube-controller-manager writes
# those on its own, all the time.
ROLE_RESOURCES = (
    *OURS,
    "customresourcedefinitions",
    "namespaces",
    "serviceaccounts",
    "secrets",
    "clusterroles",
    "clusterrolebindings",
    "roles",
    "rolebindings",
)


def _writes(requests: RequestCounter, resources: tuple[str, ...] = ROLE_RESOURCES) -> int:
    """Write requests to these resources since ``requests`` started counting. Only the playbook's user
    (admin, from the audit log): kube-controller-manager writes ClusterRoles (aggregation) on its own time."""
    return sum(
        n
        for (verb, resource), n in requests.counts().items()
        if verb in ("create", "update", "patch", "delete", "deletecollection") and resource in resources
    )


def test_first_run_installs_everything_and_second_run_changes_nothing(api: ControlPlane, workdir: Path) -> None:
    requests = api.counter("admin")
    code, out, counts = _run(workdir, POOLS, POLICIES)
    assert code == 0, out
    assert counts["changed"] > 0
    pools = _objects(api, "loadbalancerippools")
    assert set(pools) == {"lan", "dmz"}
    assert pools["lan"]["spec"]["blocks"] == [{"cidr": "198.18.10.0/28"}]
    assert pools["lan"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "baremetal.l2lb"
    assert set(_objects(api, "l2announcementpolicies")) == {"workers"}

    # kubernetes.core.k8s always sends a (no-op) PATCH for existing objects; our apply_model sends nothing.
    writes = _writes(requests, OURS)
    assert writes >= 3, "the counter must see the first run's creates (2 pools, 1 policy)"
    versions = {name: p["metadata"]["resourceVersion"] for name, p in _objects(api, "loadbalancerippools").items()}
    code, out, counts = _run(workdir, POOLS, POLICIES)
    assert code == 0, out
    assert counts["changed"] == 0, out
    assert _writes(requests, OURS) == writes, "an idempotent re-run must not write pools or policies"
    assert {n: p["metadata"]["resourceVersion"] for n, p in _objects(api, "loadbalancerippools").items()} == versions


def test_check_and_diff_mode_show_the_change_and_apply_nothing(api: ControlPlane, workdir: Path) -> None:
    _run(workdir, POOLS, POLICIES)
    changed_pools = [{"name": "lan", "blocks": [{"cidr": "198.18.10.0/27"}]}, POOLS[1]]
    before = _objects(api, "loadbalancerippools")["lan"]["metadata"]["resourceVersion"]
    code, out, counts = _run(workdir, changed_pools, POLICIES, "--check", "--diff")
    assert code == 0, out
    assert counts["changed"] >= 1
    assert "198.18.10.0/27" in out and "198.18.10.0/28" in out  # the diff shows before and after
    lan = _objects(api, "loadbalancerippools")["lan"]
    assert lan["metadata"]["resourceVersion"] == before and lan["spec"]["blocks"] == [{"cidr": "198.18.10.0/28"}]


def test_prune_deletes_what_the_inventory_no_longer_lists(api: ControlPlane, workdir: Path) -> None:
    _run(workdir, POOLS, POLICIES)
    code, out, _ = _run(workdir, POOLS[:1], POLICIES)
    assert code == 0, out
    assert set(_objects(api, "loadbalancerippools")) == {"lan"}
    _run(workdir, POOLS, POLICIES)
    assert set(_objects(api, "loadbalancerippools")) == {"lan", "dmz"}


def test_bad_model_changes_nothing(api: ControlPlane, workdir: Path) -> None:
    _run(workdir, POOLS, POLICIES)
    requests = api.counter("admin")
    bad = [POOLS[0], {"name": "dmz", "blocks": [{"cidr": "198.18.10.0/33"}]}, {"name": "new", "blocks": []}]
    code, out, _ = _run(workdir, bad, POLICIES)
    assert code != 0
    assert "blocks[0].cidr" in out and 'pool "new"' in out
    assert _writes(requests) == 0, "nothing may be written when the model is invalid"
    assert set(_objects(api, "loadbalancerippools")) == {"lan", "dmz"}


def test_crd_schema_rejects_invalid_pools(api: ControlPlane, workdir: Path) -> None:
    _run(workdir, POOLS, POLICIES)
    custom = client.CustomObjectsApi(_client(api))
    cases = {
        "bad-cidr": {"blocks": [{"cidr": "198.18.10.0/33"}]},
        "no-blocks": {"blocks": []},
        "cidr-and-start": {"blocks": [{"cidr": "198.18.12.0/28", "start": "198.18.12.1"}]},
        "bad-operator": {
            "blocks": [{"cidr": "198.18.13.0/28"}],
            "serviceSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]},
        },
        "wrong-type": {"blocks": [{"cidr": "198.18.14.0/28"}], "disabled": "yes"},
    }
    for name, spec in cases.items():
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LoadBalancerIPPool",
            "metadata": {"name": name},
            "spec": spec,
        }
        with pytest.raises(client.ApiException) as info:
            custom.create_cluster_custom_object(GROUP, VERSION, "loadbalancerippools", body)
        assert info.value.status == 422, (name, info.value.body)
        assert "spec." in json.loads(info.value.body)["message"], name


def test_agent_rbac_allows_what_the_agent_uses_and_nothing_more(api: ControlPlane, workdir: Path) -> None:
    _run(workdir, POOLS, POLICIES)
    token = (workdir / "agent-token").read_text()
    assert oct((workdir / "agent-token").stat().st_mode & 0o777) == "0o600"
    with _client(api) as admin:
        client.CoreV1Api(admin).create_namespaced_service(
            "default", {"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
        )
    with _client(api, token) as agent:
        core, coordination = client.CoreV1Api(agent), client.CoordinationV1Api(agent)
        assert core.list_service_for_all_namespaces().items
        core.list_node()
        client.DiscoveryV1Api(agent).list_endpoint_slice_for_all_namespaces()
        client.CustomObjectsApi(agent).list_cluster_custom_object(GROUP, VERSION, "loadbalancerippools")
        core.patch_namespaced_service_status(
            "web", "default", {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.10.1", "ipMode": "VIP"}]}}}
        )
        core.patch_namespaced_service(
            "web", "default", {"metadata": {"annotations": {"l2lb.io/announcing-node": "node1"}}}
        )
        coordination.create_namespaced_lease(
            "l2lb-system", {"metadata": {"name": "l2lb-node-node1"}, "spec": {"holderIdentity": "node1"}}
        )
        core.create_namespaced_event(
            "default",
            {
                "metadata": {"generateName": "web."},
                "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
                "reason": "Test",
                "message": "m",
                "type": "Warning",
            },
        )
        forbidden = [
            lambda: core.delete_namespaced_service("web", "default"),
            lambda: core.create_namespaced_service(
                "default", {"metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}]}}
            ),
            lambda: core.list_secret_for_all_namespaces(),
            lambda: coordination.create_namespaced_lease("default", {"metadata": {"name": "x"}, "spec": {}}),
            lambda: client.CustomObjectsApi(agent).delete_cluster_custom_object(
                GROUP, VERSION, "loadbalancerippools", "lan"
            ),
        ]
        for call in forbidden:
            with pytest.raises(client.ApiException) as info:
                call()
            assert info.value.status == 403
