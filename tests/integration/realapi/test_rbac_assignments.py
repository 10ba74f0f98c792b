"""The trust boundary under the real RBAC: users' built-in edit and admin roles cannot write assignments.

Real kube-apiserver, real built-in (aggregated) ``edit`` and ``admin`` ClusterRoles, real non-admin bearer
tokens for the users, and a real ServiceAccount token (TokenRequest) for the agents, with the RBAC objects
the ``cluster`` role applies (``roles/cluster/templates/rbac.yml.j2``) and the CRDs it installs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from kubernetes import client, utils

from controlplane import ControlPlane
from l2lb_agent.model.render import crd_manifests

REPO = Path(__file__).resolve().parents[3]
AGENTS_NS = "l2lb-system"
SA = "l2lb-agent"
GROUP, VERSION, PLURAL = "l2lb.io", "v1alpha1", "l2assignments"


def _assignment(node: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "L2Assignment",
        "metadata": {"name": node},
        "spec": {"node": node, "announcements": [{"ip": "198.18.0.99", "interfaces": ["eth0"]}]},
    }


@pytest.fixture(scope="module")
def cluster(api: client.ApiClient) -> Iterator[None]:
    """Our CRDs (Established) and the agents' namespace, ServiceAccount and RBAC, as the cluster role applies them."""
    core = client.CoreV1Api(api)
    extensions = client.ApiextensionsV1Api(api)
    for crd in crd_manifests():
        try:
            extensions.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    for crd in crd_manifests():
        while True:
            conditions = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            assert time.monotonic() < deadline, f"{crd['metadata']['name']} not Established"
            time.sleep(0.1)
    try:
        core.create_namespace({"metadata": {"name": AGENTS_NS}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    template = (REPO / "roles" / "cluster" / "templates" / "rbac.yml.j2").read_text()
    rendered = jinja2.Template(template).render(cluster_agent_service_account=SA, cluster_namespace=AGENTS_NS)
    for doc in yaml.safe_load_all(rendered):
        if doc and doc.get("kind") != "Secret":
            try:
                utils.create_from_dict(api, doc)
            except utils.FailToCreateError as exc:
                if not all(getattr(e, "status", 0) == 409 for e in exc.api_exceptions):
                    raise
    yield


@pytest.fixture
def users_in(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """alice gets the built-in edit role in ``namespace``, bob the built-in admin role."""
    rbac = client.RbacAuthorizationV1Api(api)
    for user, role in (("alice", "edit"), ("bob", "admin")):
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"{user}-{role}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
            },
        )
    return {"alice": "edit", "bob": "admin"}


def _code(call: Callable[..., Any], *args: Any) -> int:
    """The HTTP status of ``call(*args)``: 201 when it succeeded (every call here creates or patches)."""
    try:
        call(*args)
    except client.ApiException as exc:
        return int(exc.status)
    return 201


def test_builtin_edit_and_admin_cannot_write_assignments_anywhere(
    cluster: None,
    users_in: dict[str, str],
    namespace: str,
    control_plane: ControlPlane,
    client_for: Callable[[str], client.ApiClient],
) -> None:
    for user, role in users_in.items():
        api = client_for(user)
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        service = {
            "metadata": {"name": f"svc-{user}", "annotations": {"l2lb.io/announcing-node": "198.18.0.99=node-a"}},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}]},
        }
        # The token is real and the role works: the user may write Services and their annotations...
        assert _code(core.create_namespaced_service, namespace, service) == 201, f"{user} ({role})"
        # ...but not their status (the only Service field the 0.1 upgrade path trusts),
        status = {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.99"}]}}}
        assert _code(core.patch_namespaced_service_status, f"svc-{user}", namespace, status) == 403
        # and no assignment object, neither in their namespace nor in the agents' one.
        for target in (namespace, AGENTS_NS):
            body = _assignment(f"node-{uuid.uuid4().hex[:6]}")
            code = _code(custom.create_namespaced_custom_object, GROUP, VERSION, target, PLURAL, body)
            assert code == 403, f"{user} ({role}) creating an L2Assignment in {target}: {code}"
        assert _code(custom.list_namespaced_custom_object, GROUP, VERSION, AGENTS_NS, PLURAL) == 403


def test_the_agents_service_account_writes_assignments_only_in_its_namespace(
    cluster: None, api: client.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(SA, AGENTS_NS, {"spec": {"expirationSeconds": 600}})
        .status.token
    )
    with control_plane.api_client(token) as agent_api:
        custom = client.CustomObjectsApi(agent_api)
        node = f"node-{uuid.uuid4().hex[:6]}"
        create = custom.create_namespaced_custom_object
        assert _code(create, GROUP, VERSION, AGENTS_NS, PLURAL, _assignment(node)) == 201
        code = _code(create, GROUP, VERSION, namespace, PLURAL, _assignment(node))
        assert code == 403, f"the agents' token creating an L2Assignment in {namespace}: {code}"
        custom.delete_namespaced_custom_object(GROUP, VERSION, AGENTS_NS, PLURAL, node)
