"""Helpers for the agent runtime tests: polling, a fake ARP responder, an API client, hand-written heartbeats.

The API is a real kube-apiserver (``tests/controlplane.py``); requests are counted per user (audit log)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cluster_waits import wait_crd_served
from kubernetes import client
from kubernetes import config as kube_config

from controlplane import ControlPlane, RequestCounter
from l2lb_agent.agent import Agent
from l2lb_agent.config import LeaseTiming
from l2lb_agent.controller.types import InterfaceInfo
from l2lb_agent.leases import heartbeat_body
from l2lb_agent.model.render import (
    API_VERSION,
    GROUP,
    POLICY_KIND,
    POLICY_PLURAL,
    POOL_KIND,
    POOL_PLURAL,
    VERSION,
    crd_manifests,
)
from stallproxy import StallProxy

NAMESPACE = "l2lb-system"
# The agents under test authenticate as this static-token user, so their requests can be counted apart
# from the test's own (admin) and kube-controller-manager's.
AGENT_USER = "l2lb-test-agent"
ETH0 = InterfaceInfo("eth0", "02:00:00:00:00:01", True, ("198.18.0.0/24",))
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll until ``check()`` returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last value: {last!r}")


def writes(counts: Mapping[tuple[str, str], int]) -> int:
    return sum(n for (verb, _), n in counts.items() if verb in WRITE_VERBS)


class FakeResponder:
    """Stands in for the ARP responder: records what it is told, lets tests raise conflicts."""

    def __init__(self, on_conflict: Callable[[str, str, str], None], on_count: Any = None) -> None:
        self.on_conflict = on_conflict
        self.current: dict[str, list[str]] = {}
        self.history: list[tuple[float, dict[str, list[str]]]] = []
        self.announced: list[str | None] = []
        self.running = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False
        self.set_assignments({})

    def set_assignments(self, assignments: Mapping[str, Sequence[str]]) -> None:
        with self._lock:
            self.current = {ip: list(ifaces) for ip, ifaces in assignments.items()}
            self.history.append((time.monotonic(), dict(self.current)))

    def announce(self, ip: str | None = None) -> None:
        self.announced.append(ip)

    def ips(self) -> set[str]:
        with self._lock:
            return set(self.current)


class Kube:
    """The test's own view of the API (admin credentials): arrange objects, read them back as dicts.

    ``api`` is the control plane (stop/start kube-apiserver, add Nodes); ``counter`` counts the requests of
    ``agent_user`` (``reset()``, ``counts()``); ``proxy`` (if the agents reach the API through one) stalls
    their watches.
    """

    def __init__(
        self,
        api: ControlPlane,
        kubeconfig: Path,
        *,
        agent_user: str = AGENT_USER,
        proxy: StallProxy | None = None,
    ) -> None:
        self.api = api
        self.proxy = proxy
        self.counter: RequestCounter = api.counter(agent_user)
        self.client = kube_config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.client)
        self.coordination = client.CoordinationV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)
        self.extensions = client.ApiextensionsV1Api(self.client)

    def stall_watches(self, resource: str) -> int:
        """The agents' open watches of ``resource`` go silent (see :class:`StallProxy`); how many."""
        assert self.proxy is not None, "the agents do not reach the API through the stall proxy"
        return self.proxy.stall_watches(resource)

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return json.loads(response.data)

    def setup(self) -> None:
        """The agents' namespace and our CRDs, established (served) before anything uses them."""
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})
        names = []
        for crd in crd_manifests():
            self.extensions.create_custom_resource_definition(crd)
            names.append(crd["metadata"]["name"])
        for name in names:
            wait_crd_served(self.extensions, name)

    def clean(self) -> None:
        """Remove what a test may have made: Services and EndpointSlices in default (not the API's own
        ``kubernetes`` Service), Events, Leases and assignments in l2lb-system, pools, policies and Nodes."""
        if not self.api.apiserver_running:
            self.api.start_apiserver()
        for service in self.core.list_namespaced_service("default").items:
            if service.metadata.name != "kubernetes":
                self.core.delete_namespaced_service(service.metadata.name, "default")
        client.DiscoveryV1Api(self.client).delete_collection_namespaced_endpoint_slice(
            "default", label_selector="kubernetes.io/service-name!=kubernetes"
        )
        self.core.delete_collection_namespaced_event("default")
        self.coordination.delete_collection_namespaced_lease(NAMESPACE)
        self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "l2assignments")
        self.custom.delete_collection_cluster_custom_object(GROUP, VERSION, POOL_PLURAL)
        self.custom.delete_collection_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL)
        self.core.delete_collection_node()
        self.counter.reset()

    # -- pools and policies --

    def create_pool(self, name: str, *cidrs: str, **spec: Any) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": POOL_KIND,
            "metadata": {"name": name},
            "spec": {"blocks": [{"cidr": c} for c in cidrs], **spec},
        }
        self.custom.create_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, body)

    def pool(self, name: str) -> dict[str, Any]:
        return self.custom.get_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, name)  # type: ignore[no-any-return]

    def create_policy(self, name: str, **spec: Any) -> None:
        body = {"apiVersion": API_VERSION, "kind": POLICY_KIND, "metadata": {"name": name}, "spec": spec}
        self.custom.create_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, body)

    def patch_policy(self, name: str, spec: Mapping[str, Any]) -> None:
        self.custom.patch_cluster_custom_object(
            GROUP, VERSION, POLICY_PLURAL, name, {"spec": dict(spec)}, _content_type="application/merge-patch+json"
        )

    # -- services --

    def create_service(
        self,
        name: str,
        namespace: str = "default",
        *,
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        port: int = 80,
    ) -> None:
        body = {
            "metadata": {"name": name, "annotations": dict(annotations or {}), "labels": dict(labels or {})},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}], "selector": {"app": name}},
        }
        self.core.create_namespaced_service(namespace, body)

    def service(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self._json(self.core.read_namespaced_service(name, namespace, _preload_content=False))

    def annotation(self, name: str, key: str, namespace: str = "default") -> str | None:
        return (self.service(name, namespace)["metadata"].get("annotations") or {}).get(key)

    def ingress(self, name: str, namespace: str = "default") -> list[str]:
        lb = self.service(name, namespace).get("status", {}).get("loadBalancer", {})
        return [entry["ip"] for entry in lb.get("ingress") or []]

    def condition(self, name: str, type_: str, namespace: str = "default") -> dict[str, Any] | None:
        for cond in self.service(name, namespace).get("status", {}).get("conditions") or []:
            if cond["type"] == type_:
                return cond  # type: ignore[no-any-return]
        return None

    def events(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self._json(self.core.list_namespaced_event(namespace, _preload_content=False))["items"]  # type: ignore[no-any-return]

    # -- assignment objects --

    def assignment(self, node: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, NAMESPACE, "l2assignments", node
        )

    # -- leases --

    def lease(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.coordination.read_namespaced_lease(name, NAMESPACE, _preload_content=False))
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def holder(self, name: str = "l2lb-controller") -> str:
        lease = self.lease(name)
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def delete_lease(self, name: str) -> None:
        self.coordination.delete_namespaced_lease(name, NAMESPACE)


class FakeNode:
    """A node whose heartbeat the test writes by hand: renewTime, interfaces and draining as it likes."""

    def __init__(self, kube: Kube, name: str, interfaces: Sequence[InterfaceInfo] = (ETH0,)) -> None:
        self.kube = kube
        self.name = name
        self.interfaces = list(interfaces)
        self.draining = False
        self._rv = ""
        self._beat_lock = threading.Lock()

    def beat(self, renew_time: str | None = None) -> None:
        with self._beat_lock:  # the test thread and keep_beating() both beat: one write at a time
            self._beat(renew_time)

    def _beat(self, renew_time: str | None) -> None:
        body = heartbeat_body(
            NAMESPACE, self.name, LeaseTiming(), self.interfaces, draining=self.draining, resource_version=self._rv
        )
        if renew_time is not None:
            body["spec"]["renewTime"] = renew_time
        if self._rv:
            stored = self.kube.coordination.replace_namespaced_lease(
                body["metadata"]["name"], NAMESPACE, body, _preload_content=False
            )
        else:
            stored = self.kube.coordination.create_namespaced_lease(NAMESPACE, body, _preload_content=False)
        self._rv = json.loads(stored.data)["metadata"]["resourceVersion"]

    def keep_beating(
        self, stop: threading.Event, interval: float = 0.3, renew_time: str | None = None
    ) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.beat(renew_time)
                except Exception:  # the API is down (a test stopped it); keep trying like a node would
                    continue

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


def responder(agent: Agent) -> FakeResponder:
    assert isinstance(agent.responder, FakeResponder)
    return agent.responder


def leaders(agents: Sequence[Agent]) -> list[str]:
    return [a.node for a in agents if a.election is not None and a.election.is_leader]
