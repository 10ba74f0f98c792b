"""The real control plane (etcd, kube-apiserver and kube-controller-manager built by ``make components``)."""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controlplane import ETCD_VERSION, KUBE_BINARIES, KUBE_VERSION, ControlPlane, ControlPlaneError, binary

RBAC = "rbac.authorization.k8s.io"


def get(plane: ControlPlane, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(plane.url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=plane.ca_file)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.2)


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except client.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


@pytest.mark.parametrize("name", [*KUBE_BINARIES, "etcd"])
def test_components_are_built_at_their_versions(name: str) -> None:
    args = ["version", "--client"] if name == "kubectl" else ["--version"]
    out = subprocess.run([binary(name), *args], capture_output=True, text=True, check=True, timeout=30).stdout
    expected = {"etcd": f"etcd Version: {ETCD_VERSION[1:]}", "kubectl": f"Client Version: {KUBE_VERSION}"}.get(
        name, f"Kubernetes {KUBE_VERSION}"
    )
    assert expected in out.splitlines()


def test_version_is_the_built_release(control_plane: ControlPlane) -> None:
    code, body = get(control_plane, "/version")  # anonymous: system:public-info-viewer
    assert code == 200
    version = json.loads(body)
    assert (version["gitVersion"], version["major"], version["minor"]) == (KUBE_VERSION, "1", "37")


def test_readyz_and_livez(control_plane: ControlPlane) -> None:
    code, body = get(control_plane, "/readyz?verbose", control_plane.admin_token)
    assert code == 200
    assert "[+]etcd ok" in body
    assert "readyz check passed" in body
    assert get(control_plane, "/livez", control_plane.admin_token) == (200, "ok")


def test_a_test_user_without_bindings_gets_403_on_secrets(
    control_plane: ControlPlane, client_for: Callable[[str], client.ApiClient], namespace: str
) -> None:
    alice = client.CoreV1Api(client_for("alice"))
    for call in (alice.list_secret_for_all_namespaces, lambda: alice.list_namespaced_secret(namespace)):
        with pytest.raises(client.ApiException) as caught:
            call()
        assert caught.value.status == 403
        status = json.loads(caught.value.body)
        assert status["reason"] == "Forbidden"
        assert 'User "alice" cannot list resource "secrets"' in status["message"]
    # The admin token is in system:masters.
    assert client.CoreV1Api(control_plane.api_client()).list_namespaced_secret(namespace).items == []


def test_the_aggregated_edit_role_bound_in_a_namespace(
    api: client.ApiClient, client_for: Callable[[str], client.ApiClient], namespace: str, other_namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    # clusterrole-aggregation fills the bootstrap 'edit' role from its aggregationRule.
    edit = eventually(lambda: rbac.read_cluster_role("edit").rules, what="aggregated edit rules")
    assert any("services" in (rule.resources or []) and "create" in rule.verbs for rule in edit)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "alice-edit"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "alice"}],
        },
    )
    alice = client.CoreV1Api(client_for("alice"))
    service = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    created = alice.create_namespaced_service(namespace, service)
    assert ipaddress.ip_address(created.spec.cluster_ip) in ipaddress.ip_network("198.18.240.0/20")
    with pytest.raises(client.ApiException) as caught:
        alice.create_namespaced_service(other_namespace, service)
    assert caught.value.status == 403
    # 'bob' shares alice's group but not her binding.
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(client_for("bob")).list_namespaced_service(namespace)
    assert caught.value.status == 403


def test_namespace_deletion_finishes(core: client.CoreV1Api) -> None:
    name = "t-doomed"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "content"}, "data": {"a": "b"}})
    core.delete_namespace(name)
    assert core.read_namespace(name).status.phase == "Terminating"
    eventually(lambda: gone(lambda: core.read_namespace(name)), what="namespace removed")


def test_garbage_collector_removes_dependents(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}})
    core.delete_namespaced_config_map("owner", namespace)
    eventually(
        lambda: gone(lambda: core.read_namespaced_config_map("dependent", namespace)), what="dependent collected"
    )


def test_service_account_controllers(control_plane: ControlPlane, core: client.CoreV1Api, namespace: str) -> None:
    # serviceaccount: every namespace gets 'default'; root-ca-certificate-publisher: kube-root-ca.crt.
    eventually(lambda: not gone(lambda: core.read_namespaced_service_account("default", namespace)))
    root_ca = eventually(lambda: not gone(lambda: core.read_namespaced_config_map("kube-root-ca.crt", namespace)))
    assert root_ca
    assert (
        core.read_namespaced_config_map("kube-root-ca.crt", namespace).data["ca.crt"]
        == Path(control_plane.ca_file).read_text()
    )
    # serviceaccount-token: fills a legacy token Secret.
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "agent"}})
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "agent-token", "annotations": {"kubernetes.io/service-account.name": "agent"}},
            "type": "kubernetes.io/service-account-token",
        },
    )
    secret = eventually(
        lambda: (s := core.read_namespaced_secret("agent-token", namespace)).data and s.data.get("token") and s,
        what="token filled",
    )
    legacy = base64.b64decode(secret.data["token"]).decode()
    # Both the legacy token and a TokenRequest token authenticate as the ServiceAccount.
    issued = core.create_namespaced_service_account_token("agent", namespace, {"spec": {"expirationSeconds": 3600}})
    for token in (legacy, issued.status.token):
        with control_plane.api_client(token) as api_client:
            review = client.AuthenticationV1Api(api_client).create_self_subject_review({})
            assert review.status.user_info.username == f"system:serviceaccount:{namespace}:agent"


def test_nodes_registered_as_a_kubelet_would(control_plane: ControlPlane, core: client.CoreV1Api) -> None:
    control_plane.add_node("reg-a", {"l2lb.io/zone": "a"}, ["198.18.130.10"])
    again = control_plane.add_node("reg-a", {"l2lb.io/zone": "a"}, ["198.18.130.10"])
    assert again["status"]["addresses"][0] == {"type": "InternalIP", "address": "198.18.130.10"}
    node = core.read_node("reg-a")
    assert node.metadata.labels["kubernetes.io/hostname"] == "reg-a"
    assert {c.type: c.status for c in node.status.conditions} == {"Ready": "True"}
    core.delete_node("reg-a")


def test_kubeconfig_for_a_test_user(control_plane: ControlPlane, tmp_path: Path) -> None:
    from kubernetes import config

    path = control_plane.write_kubeconfig(tmp_path / "alice", control_plane.token("alice"), user="alice")
    assert path.stat().st_mode & 0o777 == 0o600
    with config.new_client_from_config(str(path)) as api_client:
        review = client.AuthenticationV1Api(api_client).create_self_subject_review({})
    assert review.status.user_info.username == "alice"
    assert "l2lb-testers" in review.status.user_info.groups


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match=r"etcd not found at .*: run `make components`"):
        ControlPlane(cache=tmp_path)


def test_a_component_that_fails_to_start_is_named_with_its_log() -> None:
    plane = ControlPlane(extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError) as caught:
        plane.start()
    message = str(caught.value)
    assert message.startswith("kube-apiserver exited before it was ready")
    assert "logs/kube-apiserver.log" in message
    assert "unknown flag: --no-such-flag" in message
    assert all(pid is None for pid in plane.pids().values())
