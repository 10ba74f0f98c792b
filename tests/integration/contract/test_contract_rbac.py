"""Contract: service-account tokens authenticate and RBAC decides, with kube-apiserver's 403 messages."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest
from contract_support import eventually
from kubernetes import client

RBAC = "rbac.authorization.k8s.io"


def sa_token_from_secret(core: client.CoreV1Api, namespace: str, account: str) -> str:
    """Create a token Secret for ``account`` and wait for the token controller to fill it."""
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": f"{account}-token", "annotations": {"kubernetes.io/service-account.name": account}},
            "type": "kubernetes.io/service-account-token",
        },
    )
    for _ in range(50):
        secret = core.read_namespaced_secret(f"{account}-token", namespace)
        if secret.data and secret.data.get("token"):
            return base64.b64decode(secret.data["token"]).decode()
        time.sleep(0.1)
    raise AssertionError("the token was never filled in")


@pytest.fixture
def agent_token(api: client.ApiClient, namespace: str) -> str:
    """An 'agent' ServiceAccount allowed to read and update leases cluster-wide, and nothing else."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "agent"}})
    role_name = f"agent-{namespace}"
    rbac.create_cluster_role(
        {
            "metadata": {"name": role_name},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "update"]},
                {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch"]},
                {"apiGroups": [""], "resources": ["services"], "verbs": ["get"], "resourceNames": ["allowed"]},
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role_name},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": namespace}],
        }
    )
    yield sa_token_from_secret(core, namespace, "agent")
    rbac.delete_cluster_role_binding(role_name)
    rbac.delete_cluster_role(role_name)


def test_token_controller_fills_service_account_secrets(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "filled"}})
    token = sa_token_from_secret(core, namespace, "filled")
    secret = core.read_namespaced_secret("filled-token", namespace)
    assert token.count(".") == 2  # JWT-shaped
    assert base64.b64decode(secret.data["namespace"]).decode() == namespace
    assert b"BEGIN CERTIFICATE" in base64.b64decode(secret.data["ca.crt"])
    account = core.read_namespaced_service_account("filled", namespace)
    assert secret.metadata.annotations["kubernetes.io/service-account.uid"] == account.metadata.uid


def test_cluster_role_allows_exactly_its_rules(
    api: client.ApiClient, namespace: str, agent_token: str, client_for: Callable[[str], client.ApiClient]
) -> None:
    admin_core = client.CoreV1Api(api)
    client.CoordinationV1Api(api).create_namespaced_lease(
        namespace, {"metadata": {"name": "l2lb-node-a"}, "spec": {"holderIdentity": "node-a"}}
    )
    admin_core.create_namespaced_service(
        namespace, {"metadata": {"name": "allowed"}, "spec": {"ports": [{"port": 80}]}}
    )
    admin_core.create_namespaced_service(namespace, {"metadata": {"name": "other"}, "spec": {"ports": [{"port": 80}]}})

    agent = client_for(agent_token)
    leases, core = client.CoordinationV1Api(agent), client.CoreV1Api(agent)
    lease = leases.read_namespaced_lease("l2lb-node-a", namespace)
    assert lease.spec.holder_identity == "node-a"
    assert [item.metadata.name for item in leases.list_lease_for_all_namespaces().items] != []
    lease.spec.holder_identity = "node-b"
    assert leases.replace_namespaced_lease("l2lb-node-a", namespace, lease).spec.holder_identity == "node-b"

    with pytest.raises(client.ApiException) as caught:
        core.delete_namespaced_service("other", namespace)
    body = json.loads(caught.value.body)
    assert caught.value.status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        f'services "other" is forbidden: User "system:serviceaccount:{namespace}:agent" cannot delete resource '
        f'"services" in API group "" in the namespace "{namespace}"'
    )
    with pytest.raises(client.ApiException) as caught:
        leases.delete_namespaced_lease("l2lb-node-a", namespace)
    assert caught.value.status == 403

    # Subresources are separate resources: services/status is granted, services itself only by name.
    patched = core.patch_namespaced_service_status("other", namespace, {"status": {"conditions": [_condition()]}})
    assert patched.status.conditions[0].type == "Announced"
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_service("other", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert caught.value.status == 403
    assert 'cannot patch resource "services"' in json.loads(caught.value.body)["message"]
    assert core.read_namespaced_service("allowed", namespace).metadata.name == "allowed"
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_service("other", namespace)
    assert caught.value.status == 403
    with pytest.raises(client.ApiException) as caught:
        core.list_node()
    assert caught.value.status == 403
    assert json.loads(caught.value.body)["message"] == (
        f'nodes is forbidden: User "system:serviceaccount:{namespace}:agent" cannot list resource "nodes" '
        'in API group "" at the cluster scope'
    )


def _condition() -> dict[str, str]:
    return {"type": "Announced", "status": "True", "reason": "Ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}


def test_role_binding_grants_only_inside_its_namespace(
    api: client.ApiClient, namespace: str, client_for: Callable[[str], client.ApiClient]
) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "read-config"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "read-config"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "read-config"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader"}],
        },
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg", "labels": {"set": "rbac"}}})
    reader = client.CoreV1Api(client_for(sa_token_from_secret(core, namespace, "reader")))
    listed = reader.list_namespaced_config_map(namespace, label_selector="set=rbac")
    assert [c.metadata.name for c in listed.items] == ["cfg"]
    with pytest.raises(client.ApiException) as caught:
        reader.list_namespaced_config_map("default")
    assert caught.value.status == 403
    with pytest.raises(client.ApiException) as caught:
        reader.create_namespaced_config_map(namespace, {"metadata": {"name": "new"}})
    assert caught.value.status == 403


def test_token_request_and_access_reviews(
    api: client.ApiClient, namespace: str, agent_token: str, client_for: Callable[[str], client.ApiClient]
) -> None:
    core = client.CoreV1Api(api)
    issued = core.create_namespaced_service_account_token("agent", namespace, {"spec": {"expirationSeconds": 3600}})
    assert issued.status.token
    assert issued.status.expiration_timestamp is not None
    bound = client_for(issued.status.token)
    review = client.AuthenticationV1Api(bound).create_self_subject_review({})
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:agent"
    assert f"system:serviceaccounts:{namespace}" in review.status.user_info.groups

    authz = client.AuthorizationV1Api(bound)

    def can(verb: str, resource: str, group: str = "", subresource: str = "") -> bool:
        body = {
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                    "subresource": subresource,
                    "namespace": namespace,
                }
            }
        }
        return bool(authz.create_self_subject_access_review(body).status.allowed)

    assert can("update", "leases", "coordination.k8s.io")
    assert not can("delete", "leases", "coordination.k8s.io")
    assert can("patch", "services", subresource="status")
    assert not can("patch", "services")

    # Deleting the account invalidates both kinds of token. kube-apiserver caches token authentication
    # (about 10 s): until the entry expires the token still authenticates, and the request is refused
    # by RBAC (403, agent may not list ConfigMaps) instead.
    core.delete_namespaced_service_account("agent", namespace)
    for token in (issued.status.token, agent_token):
        configmaps = client.CoreV1Api(client_for(token))
        eventually(
            lambda api=configmaps: _status_listing_config_maps(api, namespace) == 401,
            "401 for a token of the deleted account",
            timeout=60,
            interval=0.5,
        )


def _status_listing_config_maps(api: client.CoreV1Api, namespace: str) -> int:
    with pytest.raises(client.ApiException) as caught:
        api.list_namespaced_config_map(namespace)
    assert caught.value.status in (401, 403)
    return int(caught.value.status)
