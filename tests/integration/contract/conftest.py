"""Fixtures for the API contract tests: the session's real control plane and clients for it.

The contract tests document what the project's code relies on kube-apiserver (and the controllers of
kube-controller-manager) doing. They all run against ``control_plane`` (tests/integration/conftest.py):
etcd + kube-apiserver + kube-controller-manager as ``make components`` builds them. Tests that restart
kube-apiserver start a control plane of their own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cluster_waits import delete_namespace, settle_namespaces
from contract_support import eventually
from kubernetes import client

from controlplane import ControlPlane

RBAC = "rbac.authorization.k8s.io"
# Registered as kubelets would register them: tests read, label and patch these.
NODES = ("node-a", "node-b")


@pytest.fixture(scope="module")
def server(control_plane: ControlPlane) -> ControlPlane:
    """The session's control plane, with the Nodes ``node-a`` and ``node-b`` registered."""
    for node in NODES:
        control_plane.add_node(node)
    return control_plane


@pytest.fixture(scope="module")
def api(server: ControlPlane) -> Iterator[client.ApiClient]:
    """An admin client (group ``system:masters``)."""
    with server.api_client() as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test.

    The test starts once kube-controller-manager has given it the ``default`` ServiceAccount and the
    ``kube-root-ca.crt`` ConfigMap (tests filter ConfigMaps by their own labels or names).
    """
    core = client.CoreV1Api(api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    settle_namespaces(core, [name])
    yield name
    delete_namespace(core, name)


@pytest.fixture
def connect() -> Iterator[Callable[..., client.ApiClient]]:
    """``connect(plane, token=None)``: a client for any control plane and token, closed after the test."""
    made: list[client.ApiClient] = []

    def build(plane: ControlPlane, token: str | None = None) -> client.ApiClient:
        made.append(plane.api_client(token))
        return made[-1]

    yield build
    for api_client in made:
        api_client.close()


@pytest.fixture
def client_for(server: ControlPlane, connect: Callable[..., client.ApiClient]) -> Callable[[str], client.ApiClient]:
    """A client for the session's control plane with another token."""
    return lambda token: connect(server, token)


@pytest.fixture
def user_client(
    server: ControlPlane, api: client.ApiClient, namespace: str, connect: Callable[..., client.ApiClient]
) -> Callable[[str], client.ApiClient]:
    """``user_client(user)``: a client of a static-token test user (``carol``, ``dave``) who may do anything
    with Services (and their status), ConfigMaps and Leases in ``namespace`` and nothing else: a Role and
    a RoleBinding there. Returns once the authorizer applies the binding."""
    rbac, authz = client.RbacAuthorizationV1Api(api), client.AuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "contract-user"},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "services/status", "configmaps"], "verbs": ["*"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
            ],
        },
    )

    def allowed(user: str) -> bool:
        attributes = {"namespace": namespace, "verb": "update", "group": "coordination.k8s.io", "resource": "leases"}
        review = authz.create_subject_access_review({"spec": {"user": user, "resourceAttributes": attributes}})
        return bool(review.status.allowed)

    def build(user: str) -> client.ApiClient:
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"contract-user-{user}"},
                "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "contract-user"},
                "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}],
            },
        )
        eventually(lambda: allowed(user), f"RBAC applying the RoleBinding of {user} in {namespace}")
        return connect(server, server.token(user))

    return build


RawResponse = tuple[int, dict[str, str], Any]


def raw_request(
    api_client: client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
    token: str | None = None,
) -> RawResponse:
    """Send a request the typed client would refuse to build; return (status, headers, parsed body)."""
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = api_client.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=[] if token else ["BearerToken"],
    )
    response = api_client.call_api(*request)
    response.read()
    text = response.data.decode()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return response.status, dict(response.getheaders()), parsed


@pytest.fixture
def raw(api: client.ApiClient) -> Callable[..., RawResponse]:
    """``raw(method, path, body=None, query=None, content_type=..., token=None)`` as the admin."""
    return lambda *args, **kwargs: raw_request(api, *args, **kwargs)
