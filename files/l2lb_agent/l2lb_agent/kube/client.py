"""The agent's Kubernetes API client: one client, typed calls, API health, request metrics.

Nothing else in the agent builds requests (informers, in ``informer.py``, call its list methods). Reads
return plain dicts (the JSON the API sent, camelCase), so the rest of the agent works on what
``kubectl get -o json`` shows. Every request is counted in
``l2lb_api_requests_total{verb,resource,code}``; failures in ``l2lb_api_errors_total``.

Client-side rate limits: the Python client has none (unlike client-go's QPS 5 / burst 10), and the
agent's request rate is O(nodes), not O(services): steady state is one Lease write per renew interval
per node plus the controller's, and watches for everything else. So there is nothing to tune; if the
API server throttles (429 from API Priority and Fairness) it shows in ``l2lb_api_throttled_total``
and callers back off for the server's Retry-After.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.kube_config import load_kube_config

from .. import __version__
from ..metrics import Metrics
from ..model.contract import ASSIGNMENT_KIND, ASSIGNMENT_PLURAL
from ..model.render import GROUP, POLICY_KIND, POLICY_PLURAL, POOL_KIND, POOL_PLURAL, VERSION

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
# Whether the typed client methods take _content_type (kubernetes 36+); see KubeClient.merge_patch.
_TYPED_CONTENT_TYPE = "_content_type" in inspect.signature(client.CoreV1Api.patch_namespaced_service).parameters
DEFAULT_TIMEOUT = (2.0, 5.0)  # (connect, read) seconds for ordinary requests
# Enough connections for every watch plus concurrent writes; urllib3 otherwise discards and re-dials.
POOL_MAXSIZE = 32


@dataclass(frozen=True)
class Resource:
    """An API resource the agent reads or writes."""

    plural: str
    kind: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True

    def key(self, obj: Mapping[str, Any]) -> str:
        """``namespace/name`` for namespaced objects, ``name`` otherwise."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        return f"{meta.get('namespace', '')}/{name}" if self.namespaced else name


SERVICES = Resource("services", "Service")
ENDPOINTSLICES = Resource("endpointslices", "EndpointSlice", "discovery.k8s.io")
NODES = Resource("nodes", "Node", namespaced=False)
LEASES = Resource("leases", "Lease", "coordination.k8s.io")
EVENTS = Resource("events", "Event")
POOLS = Resource(POOL_PLURAL, POOL_KIND, GROUP, VERSION, namespaced=False)
POLICIES = Resource(POLICY_PLURAL, POLICY_KIND, GROUP, VERSION, namespaced=False)
ASSIGNMENTS = Resource(ASSIGNMENT_PLURAL, ASSIGNMENT_KIND, GROUP, VERSION)


class ApiError(Exception):
    """A request that did not succeed. ``status`` 0 means no HTTP answer (connection error, timeout)."""

    def __init__(
        self, status: int, reason: str, message: str, *, verb: str, resource: str, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.verb = verb
        self.resource = resource
        self.retry_after = retry_after
        super().__init__(f"{verb} {resource}: {status or 'no answer'} {reason}: {message}".rstrip(": "))

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def unavailable(self) -> bool:
        """The API did not serve us (no answer, throttled, server error): not a verdict on the request."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class ApiHealth:
    """Whether the API answers, seen from this agent; listeners hear when it comes back after an outage."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.reachable = False
        self.last_success: float | None = None
        self.down_since: float | None = clock()
        self._listeners: list[Callable[[float], None]] = []

    def add_recovery_listener(self, listener: Callable[[float], None]) -> None:
        """``listener(outage_start)`` runs (on the requesting thread) when the API answers again."""
        with self._lock:
            self._listeners.append(listener)

    def succeeded(self) -> None:
        with self._lock:
            recovered = not self.reachable
            since = self.down_since if self.down_since is not None else self._clock()
            self.reachable = True
            self.last_success = self._clock()
            self.down_since = None
            listeners = list(self._listeners) if recovered else []
        for listener in listeners:
            try:
                listener(since)
            except Exception:
                log.exception("API recovery listener failed")

    def failed(self) -> None:
        with self._lock:
            if self.reachable:
                self.down_since = self._clock()
            self.reachable = False

    def down_for(self) -> float:
        with self._lock:
            return 0.0 if self.down_since is None else self._clock() - self.down_since


def _status_message(exc: ApiException) -> tuple[str, str]:
    reason = str(exc.reason or "")
    message = ""
    with contextlib.suppress(Exception):
        body = json.loads(exc.body or "")
        if isinstance(body, Mapping):
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or "")
    return reason, message


def _retry_after(exc: ApiException) -> float | None:
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class KubeClient:
    """The one API client of an agent (its own connection pool, health and metrics)."""

    def __init__(self, kubeconfig: str, metrics: Metrics | None = None, *, user_agent: str = "") -> None:
        configuration = type.__call__(client.Configuration)  # a fresh one, not the process-wide default
        load_kube_config(config_file=kubeconfig, client_configuration=configuration, persist_config=False)
        configuration.connection_pool_maxsize = POOL_MAXSIZE
        # No retries inside the client: every caller already retries on its own schedule (the heartbeat
        # next tick, informers with backoff), and the split-brain fence must fail within its timeout.
        # urllib3 still replaces pooled connections the server closed before reusing them.
        configuration.retries = urllib3.Retry(total=0, redirect=0)
        self.api = client.ApiClient(configuration)
        self.api.user_agent = user_agent or f"l2lb-agent/{__version__}"
        self.core = client.CoreV1Api(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.metrics = metrics or Metrics()
        self.health = ApiHealth()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api.close()

    # ---- request plumbing ----

    def record(self, verb: str, resource: Resource, code: int | str) -> None:
        self.metrics.api_requests.labels(verb, resource.plural, str(code)).inc()

    def error(self, verb: str, resource: Resource, exc: BaseException) -> ApiError:
        """Turn any failure into an ApiError, counting it and updating the API health."""
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, ApiException) and exc.status:
            status = int(exc.status)
            reason, message = _status_message(exc)
            self.record(verb, resource, status)
            err = ApiError(status, reason, message, verb=verb, resource=resource.plural, retry_after=_retry_after(exc))
        else:
            kind = "timeout" if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc) else "connection"
            self.record(verb, resource, "error")
            err = ApiError(0, kind, _short(exc), verb=verb, resource=resource.plural)
        if err.status == 429:
            self.metrics.api_throttled.inc()
        if err.unavailable:
            reason = {0: err.reason, 429: "throttled"}.get(err.status, "server")
            self.metrics.api_errors.labels(resource.plural, reason).inc()
            self.health.failed()
        else:
            if err.status >= 400 and not (err.conflict or err.not_found or err.gone):
                self.metrics.api_errors.labels(resource.plural, "client").inc()
            self.health.succeeded()  # the server answered: the API is reachable
        return err

    def call(
        self,
        verb: str,
        resource: Resource,
        method: Callable[..., Any],
        *args: Any,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run one typed client method, returning the response body as a dict."""
        try:
            response = method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
            try:
                data = response.data
                status = int(getattr(response, "status", 200))
            finally:
                with contextlib.suppress(Exception):
                    response.release_conn()
        except Exception as exc:
            raise self.error(verb, resource, exc) from None
        self.record(verb, resource, status)
        self.health.succeeded()
        if not data:
            return {}
        try:
            body = json.loads(data)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    # ---- list / watch (used by Informer) ----

    def list_method(self, resource: Resource, namespace: str | None) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The typed list method (which also watches, with watch=True) and its positional arguments."""
        if resource == SERVICES:
            if namespace:
                return self.core.list_namespaced_service, (namespace,)
            return self.core.list_service_for_all_namespaces, ()
        if resource == ENDPOINTSLICES:
            if namespace:
                return self.discovery.list_namespaced_endpoint_slice, (namespace,)
            return self.discovery.list_endpoint_slice_for_all_namespaces, ()
        if resource == NODES:
            return self.core.list_node, ()
        if resource == LEASES:
            if namespace:
                return self.coordination.list_namespaced_lease, (namespace,)
            return self.coordination.list_lease_for_all_namespaces, ()
        if resource in (POOLS, POLICIES):
            return self.custom.list_cluster_custom_object, (resource.group, resource.version, resource.plural)
        if resource == ASSIGNMENTS and namespace:
            return self.custom.list_namespaced_custom_object, (
                resource.group,
                resource.version,
                namespace,
                resource.plural,
            )
        raise ValueError(f"no list method for {resource.plural}")

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        method, args = self.list_method(resource, namespace)
        extra = {"label_selector": label_selector} if label_selector else {}
        if field_selector:
            extra["field_selector"] = field_selector
        return self.call("list", resource, method, *args, timeout=(2.0, 15.0), **extra)

    # ---- assignment objects (l2lb.io L2Assignment, in the agents' namespace) ----

    def _assignment_call(
        self, verb: str, method: Callable[..., Any], namespace: str, *args: Any, **kw: Any
    ) -> dict[str, Any]:
        r = ASSIGNMENTS
        return self.call(verb, r, method, r.group, r.version, namespace, r.plural, *args, **kw)

    def get_assignment(
        self, namespace: str, name: str, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        method = self.custom.get_namespaced_custom_object
        return self._assignment_call("get", method, namespace, name, timeout=timeout)

    def create_assignment(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        method = self.custom.create_namespaced_custom_object
        return self._assignment_call("create", method, namespace, dict(body))

    def replace_assignment(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Optimistic concurrency: ``body.metadata.resourceVersion`` must be current, else 409."""
        method = self.custom.replace_namespaced_custom_object
        return self._assignment_call("update", method, namespace, name, dict(body))

    def delete_assignment(self, namespace: str, name: str) -> None:
        self._assignment_call("delete", self.custom.delete_namespaced_custom_object, namespace, name)

    # ---- leases ----

    def get_lease(
        self, namespace: str, name: str, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        return self.call("get", LEASES, self.coordination.read_namespaced_lease, name, namespace, timeout=timeout)

    def create_lease(
        self, namespace: str, body: Mapping[str, Any], timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        return self.call(
            "create", LEASES, self.coordination.create_namespaced_lease, namespace, dict(body), timeout=timeout
        )

    def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any], timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Optimistic concurrency: ``body.metadata.resourceVersion`` must be current, else 409."""
        return self.call(
            "update", LEASES, self.coordination.replace_namespaced_lease, name, namespace, dict(body), timeout=timeout
        )

    def delete_lease(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        options: dict[str, Any] = {}
        if resource_version:
            options = {"preconditions": {"resourceVersion": resource_version}}
        self.call("delete", LEASES, self.coordination.delete_namespaced_lease, name, namespace, body=options or None)

    # ---- services, events, pools ----

    def get_service(
        self, namespace: str, name: str, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        return self.call("get", SERVICES, self.core.read_namespaced_service, name, namespace, timeout=timeout)

    def merge_patch(
        self, resource: Resource, typed: Callable[..., Any], args: tuple[Any, ...], path: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PATCH one object (``typed(*args, body)``, at ``path``) with a JSON merge patch.

        kubernetes 36+ (OpenAPI Generator 7) lets the typed method send it (``_content_type``). 35.0.0, the
        newest release that runs on Python 3.9 and the one the agent pins, takes no ``_content_type``: it picks
        json-patch, which its REST layer turns into a strategic merge patch for a dict body, and the API refuses
        that for custom resources. So there the request goes through ``call_api`` (that generation's signature)
        with our own Content-Type. Same request either way.
        """
        if _TYPED_CONTENT_TYPE:
            return self.call("patch", resource, typed, *args, dict(patch), _content_type=MERGE_PATCH)

        def send(**kwargs: Any) -> Any:
            return self.api.call_api(
                path,
                "PATCH",
                header_params={"Accept": "application/json", "Content-Type": MERGE_PATCH},
                body=dict(patch),
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                **kwargs,
            )

        return self.call("patch", resource, send)

    def patch_service(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the Service object (metadata: our annotations)."""
        path = _object_path(SERVICES, name, namespace)
        return self.merge_patch(SERVICES, self.core.patch_namespaced_service, (name, namespace), path, patch)

    def patch_service_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (loadBalancer.ingress and conditions)."""
        path = _object_path(SERVICES, name, namespace) + "/status"
        return self.merge_patch(SERVICES, self.core.patch_namespaced_service_status, (name, namespace), path, patch)

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("create", EVENTS, self.core.create_namespaced_event, namespace, dict(body))

    def patch_pool_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        args = (POOLS.group, POOLS.version, POOLS.plural, name)
        path = _object_path(POOLS, name) + "/status"
        return self.merge_patch(POOLS, self.custom.patch_cluster_custom_object_status, args, path, patch)


def _object_path(resource: Resource, name: str, namespace: str | None = None) -> str:
    """The API path of one object: /api/v1/namespaces/ns/services/name, /apis/group/version/plural/name."""
    prefix = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    scope = f"/namespaces/{quote(namespace, safe='')}" if resource.namespaced and namespace else ""
    return f"{prefix}{scope}/{resource.plural}/{quote(name, safe='')}"


_OBJECT_ADDRESS_RE = re.compile(r" at 0x[0-9a-f]+")


def _short(exc: BaseException) -> str:
    """A stable one-line reason (equal errors give equal text, so logs can say it once)."""
    text = str(exc) or type(exc).__name__
    # urllib3 wraps the cause in long reprs with object addresses; the last part says what happened.
    return _OBJECT_ADDRESS_RE.sub("", text.rsplit("Caused by ", 1)[-1])[:200]


def resource_version(obj: Mapping[str, Any] | None) -> str:
    if not obj:
        return ""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
