"""Waiting for what a real kube-apiserver does asynchronously: a fresh namespace settling, a deleted one going,
a new CRD being served (any control plane, any client).

``tests/integration`` is on ``sys.path`` (its conftest.py lives there), so any integration test imports
this module as ``cluster_waits``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kubernetes import client

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DEFAULT_SERVICE_ACCOUNT = "default"


def unsettled_namespaces(core: client.CoreV1Api, names: Iterable[str] | None = None) -> list[str]:
    """Which of ``names`` (every namespace not being deleted, with None) still lacks what
    kube-controller-manager gives each namespace: the ``default`` ServiceAccount (serviceaccount controller)
    and the ``kube-root-ca.crt`` ConfigMap (root-ca-certificate-publisher)."""
    if names is None:
        names = [
            str(ns.metadata.name)
            for ns in core.list_namespace().items
            if ns.metadata and ns.metadata.deletion_timestamp is None
        ]
    chosen = list(names)
    return [
        ns
        for ns in chosen
        if not core.list_namespaced_config_map(ns, field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}").items
        or not core.list_namespaced_service_account(ns, field_selector=f"metadata.name={DEFAULT_SERVICE_ACCOUNT}").items
    ]


def settle_namespaces(core: client.CoreV1Api, names: Iterable[str] | None = None, timeout: float = 30.0) -> None:
    """Wait until kube-controller-manager has written its objects into ``names`` (every namespace not
    being deleted, with None), so that a test neither counts those writes nor sees them appear in the
    middle of a list or watch."""
    chosen = list(names) if names is not None else None
    deadline = time.monotonic() + timeout
    while missing := unsettled_namespaces(core, chosen):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"kube-controller-manager did not give {missing} a {DEFAULT_SERVICE_ACCOUNT!r} ServiceAccount "
                f"and a {ROOT_CA_CONFIGMAP!r} ConfigMap within {timeout:.0f} s"
            )
        time.sleep(0.2)


def delete_namespace(core: client.CoreV1Api, name: str) -> None:
    """Delete a namespace (the namespace controller then empties and removes it); gone already is fine."""
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def wait_crd_served(
    extensions: client.ApiextensionsV1Api, name: str, timeout: float = 30.0, versions: Iterable[str] | None = None
) -> dict[str, str]:
    """Wait until CRD ``name`` is Established and each of ``versions`` (every served one with None) answers a
    list; return its conditions (type -> status).

    kube-apiserver establishes a CRD asynchronously (the create response has no conditions), and its
    endpoints may answer 404 for a moment after Established=True.
    """
    objects = client.CustomObjectsApi(extensions.api_client)
    deadline = time.monotonic() + timeout
    while True:
        crd = extensions.read_custom_resource_definition(name)
        found = (crd.status.conditions if crd.status else None) or []
        conditions = {c.type: c.status for c in found}
        if conditions.get("Established") == "True":
            wanted = list(versions) if versions is not None else [v.name for v in crd.spec.versions if v.served]
            try:
                for version in wanted:
                    objects.list_cluster_custom_object(crd.spec.group, version, crd.spec.names.plural)
                return conditions
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        if time.monotonic() > deadline:
            raise AssertionError(f"CRD {name} not served after {timeout} s: {found}")
        time.sleep(0.05)
