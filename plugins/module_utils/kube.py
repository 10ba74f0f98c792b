# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where our Ansible modules talk to the Kubernetes API.

Modules never build requests themselves: they get a :class:`KubeClient` from their parameters and call
typed helpers. Errors come back as :class:`KubeError` with a message naming the object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR: Exception | None = None
except ImportError as _exc:  # pragma: no cover - reported by the module
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = _exc
    ApiException = Exception  # type: ignore[misc,assignment]

AUTH_ARG_SPEC: dict[str, dict[str, Any]] = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "host": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "ca_cert": {"type": "path"},
    "validate_certs": {"type": "bool", "default": True},
}


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    return str(getattr(exc, "reason", exc))


class KubeClient:
    """A thin, typed wrapper over the official client for the calls our modules make."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        if not HAS_KUBERNETES:
            raise KubeError(f"the kubernetes Python library is required: {KUBERNETES_IMPORT_ERROR}")
        configuration = k8s_client.Configuration()
        if params.get("host"):
            configuration.host = params["host"]
            if params.get("api_key"):
                configuration.api_key = {"authorization": params["api_key"]}
                configuration.api_key_prefix = {"authorization": "Bearer"}
            if params.get("ca_cert"):
                configuration.ssl_ca_cert = params["ca_cert"]
        else:
            path = (
                params.get("kubeconfig")
                or os.environ.get("K8S_AUTH_KUBECONFIG")
                or os.path.expanduser("~/.kube/config")
            )
            if not os.path.exists(path):
                raise KubeError(f"kubeconfig {path} does not exist: set kubeconfig, or host + api_key + ca_cert")
            k8s_config.load_kube_config(
                config_file=path, context=params.get("context"), client_configuration=configuration
            )
        configuration.verify_ssl = bool(params.get("validate_certs", True))
        self.api = k8s_client.ApiClient(configuration)
        self.custom = k8s_client.CustomObjectsApi(self.api)
        self.core = k8s_client.CoreV1Api(self.api)
        self.coordination = k8s_client.CoordinationV1Api(self.api)
        self.extensions = k8s_client.ApiextensionsV1Api(self.api)
        self.discovery = k8s_client.DiscoveryV1Api(self.api)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise KubeError(f"{what}: {_api_message(exc)}", int(getattr(exc, "status", 0) or 0)) from None
        except Exception as exc:  # urllib3 connection errors and the like
            raise KubeError(f"{what}: cannot reach the API server: {exc}") from None

    def crd_established(self, name: str) -> bool:
        """Whether the CRD exists and is served (condition Established=True)."""
        try:
            crd = self._call(
                f'customresourcedefinition "{name}"', self.extensions.read_custom_resource_definition, name
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        conditions = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    def crd_versions(self, name: str) -> list[str] | None:
        """The served versions of a CRD, or None when it is not installed."""
        try:
            crd = self._call(
                f'customresourcedefinition "{name}"', self.extensions.read_custom_resource_definition, name
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return [v.name for v in crd.spec.versions or [] if v.served]

    # Cluster-scoped custom objects (our CRs are cluster-scoped).
    def list_cluster_objects(self, group: str, version: str, plural: str, label_selector: str = "") -> list[dict]:
        result = self._call(
            f"list {plural}.{group}",
            self.custom.list_cluster_custom_object,
            group,
            version,
            plural,
            label_selector=label_selector,
        )
        return list(result.get("items", []))

    def get_cluster_object(self, group: str, version: str, plural: str, name: str) -> dict | None:
        try:
            return dict(
                self._call(
                    f'{plural}.{group} "{name}"', self.custom.get_cluster_custom_object, group, version, plural, name
                )
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create_cluster_object(self, group: str, version: str, plural: str, body: dict, dry_run: bool) -> dict:
        name = body["metadata"]["name"]
        kwargs = {"dry_run": "All"} if dry_run else {}
        return dict(
            self._call(
                f'create {plural}.{group} "{name}"',
                self.custom.create_cluster_custom_object,
                group,
                version,
                plural,
                body,
                **kwargs,
            )
        )

    def replace_cluster_object(self, group: str, version: str, plural: str, body: dict, dry_run: bool) -> dict:
        name = body["metadata"]["name"]
        kwargs = {"dry_run": "All"} if dry_run else {}
        return dict(
            self._call(
                f'replace {plural}.{group} "{name}"',
                self.custom.replace_cluster_custom_object,
                group,
                version,
                plural,
                name,
                body,
                **kwargs,
            )
        )

    def delete_cluster_object(self, group: str, version: str, plural: str, name: str, dry_run: bool) -> None:
        kwargs = {"dry_run": "All"} if dry_run else {}
        try:
            self._call(
                f'delete {plural}.{group} "{name}"',
                self.custom.delete_cluster_custom_object,
                group,
                version,
                plural,
                name,
                **kwargs,
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    # Read-only views for the facts modules; plain dicts as the API returns them.
    def list_leases(self, namespace: str) -> list[dict]:
        result = self._call(f"list leases in {namespace}", self.coordination.list_namespaced_lease, namespace)
        return [self.api.sanitize_for_serialization(item) for item in result.items]

    def list_services(self, namespace: str | None = None) -> list[dict]:
        if namespace:
            result = self._call(f"list services in {namespace}", self.core.list_namespaced_service, namespace)
        else:
            result = self._call("list services", self.core.list_service_for_all_namespaces)
        return [self.api.sanitize_for_serialization(item) for item in result.items]

    def list_endpoint_slices(self, namespace: str | None = None) -> list[dict]:
        if namespace:
            result = self._call(
                f"list endpointslices in {namespace}", self.discovery.list_namespaced_endpoint_slice, namespace
            )
        else:
            result = self._call("list endpointslices", self.discovery.list_endpoint_slice_for_all_namespaces)
        return [self.api.sanitize_for_serialization(item) for item in result.items]

    def list_workloads(self, kind: str, namespace: str | None = None) -> list[dict]:
        """DaemonSets, Deployments or Pods (``kind`` plural), in one namespace or all, as plain dicts."""
        api = k8s_client.CoreV1Api(self.api) if kind == "pods" else k8s_client.AppsV1Api(self.api)
        singular = {"daemonsets": "daemon_set", "deployments": "deployment", "pods": "pod"}[kind]
        if namespace:
            method = getattr(api, f"list_namespaced_{singular}")
            result = self._call(f"list {kind} in {namespace}", method, namespace)
        else:
            result = self._call(f"list {kind}", getattr(api, f"list_{singular}_for_all_namespaces"))
        return [self.api.sanitize_for_serialization(item) for item in result.items]

    def list_nodes(self) -> list[dict]:
        result = self._call("list nodes", self.core.list_node)
        return [self.api.sanitize_for_serialization(item) for item in result.items]

    def list_events(self, namespace: str, field_selector: str = "") -> list[dict]:
        result = self._call(
            f"list events in {namespace}", self.core.list_namespaced_event, namespace, field_selector=field_selector
        )
        return [self.api.sanitize_for_serialization(item) for item in result.items]

    # Namespaced custom objects (MetalLB's IPAddressPool and L2Advertisement live in metallb-system).
    def list_namespaced_objects(self, group: str, version: str, plural: str, namespace: str) -> list[dict]:
        result = self._call(
            f"list {plural}.{group} in {namespace}",
            self.custom.list_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
        )
        return list(result.get("items", []))

    def read_config_map(self, namespace: str, name: str) -> dict | None:
        try:
            result = self._call(
                f'configmap "{name}" in {namespace}', self.core.read_namespaced_config_map, name, namespace
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(self.api.sanitize_for_serialization(result))

    def patch_config_map(self, namespace: str, name: str, body: dict) -> dict:
        result = self._call(
            f'patch configmap "{name}" in {namespace}', self.core.patch_namespaced_config_map, name, namespace, body
        )
        return dict(self.api.sanitize_for_serialization(result))

    def get_daemonset(self, namespace: str, name: str) -> dict | None:
        apps = k8s_client.AppsV1Api(self.api)
        try:
            result = self._call(f'daemonset "{name}" in {namespace}', apps.read_namespaced_daemon_set, name, namespace)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(self.api.sanitize_for_serialization(result))

    def patch_daemonset(self, namespace: str, name: str, body: dict) -> dict:
        apps = k8s_client.AppsV1Api(self.api)
        result = self._call(
            f'patch daemonset "{name}" in {namespace}', apps.patch_namespaced_daemon_set, name, namespace, body
        )
        return dict(self.api.sanitize_for_serialization(result))

    def get_service(self, namespace: str, name: str) -> dict | None:
        try:
            result = self._call(f'service "{namespace}/{name}"', self.core.read_namespaced_service, name, namespace)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(self.api.sanitize_for_serialization(result))

    def patch_service_metadata(
        self, namespace: str, name: str, metadata: dict, resource_version: str, dry_run: bool
    ) -> dict:
        """Merge-patch a Service's labels/annotations (None removes a key), guarded by its resourceVersion."""
        kwargs = {"dry_run": "All"} if dry_run else {}
        body = {"metadata": {**metadata, "resourceVersion": resource_version}}
        result = self._call(
            f'patch service "{namespace}/{name}"', self.core.patch_namespaced_service, name, namespace, body, **kwargs
        )
        return dict(self.api.sanitize_for_serialization(result))
