"""The speaker glue with fakes for the informer, the API and the wire: fence, node gone, hold on drain."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from l2lb_agent.kube import SERVICES, ApiError
from l2lb_agent.metrics import Metrics
from l2lb_agent.speaker.runtime import SpeakerRuntime, assignments_for


def svc(name: str, ip: str, node: str, rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "resourceVersion": rv,
            "annotations": {"l2lb.io/announcing-node": node, "l2lb.io/announcing-interfaces": "eth0"},
        },
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    }


class FakeInformer:
    """The Informer calls the speaker makes; it fires no handlers, so tests call ``notify()`` themselves."""

    resource = SERVICES

    def __init__(self, *services: dict[str, Any]) -> None:
        self.objects = {f"default/{s['metadata']['name']}": s for s in services}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return dict(self.objects)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.objects.get(key)

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def store_written(self, obj: Mapping[str, Any]) -> None:
        self.objects[f"default/{obj['metadata']['name']}"] = dict(obj)


class FakeKube:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.truth: dict[str, dict[str, Any]] = {}
        self.reachable = True
        self.gets = 0

    def get_service(self, namespace: str, name: str, timeout: Any = None) -> dict[str, Any]:
        self.gets += 1
        if not self.reachable:
            raise ApiError(0, "connection", "refused", verb="get", resource="services")
        return self.truth[f"{namespace}/{name}"]


class FakeWire:
    def __init__(self) -> None:
        self.current: dict[str, list[str]] = {}
        self.announced: list[str | None] = []

    def set_assignments(self, assignments: Mapping[str, list[str]]) -> None:
        self.current = dict(assignments)

    def announce(self, ip: str | None = None) -> None:
        self.announced.append(ip)


def until(check: Callable[[], Any], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out: {check}")


def speaker(*services: dict[str, Any]) -> tuple[SpeakerRuntime, FakeInformer, FakeKube, FakeWire]:
    informer, kube, wire = FakeInformer(*services), FakeKube(), FakeWire()
    runtime = SpeakerRuntime("node-a", informer, kube, wire, metrics=kube.metrics)  # type: ignore[arg-type]
    runtime.start()
    runtime.notify()
    return runtime, informer, kube, wire


def test_only_this_nodes_ipv4_assignments_reach_the_wire() -> None:
    services = {
        "default/a": svc("a", "198.18.10.1", "node-a"),
        "default/b": svc("b", "198.18.10.2", "node-b"),
        "default/c": svc("c", "2001:db8::1", "node-a"),
    }
    assert sorted(assignments_for("node-a", services)) == ["198.18.10.1", "2001:db8::1"]
    runtime, *_, wire = speaker(*services.values())
    try:
        until(lambda: wire.current == {"198.18.10.1": ["eth0"]})
    finally:
        runtime.stop()


def test_conflict_withdraws_when_the_api_says_another_node_owns_the_ip() -> None:
    runtime, _informer, kube, wire = speaker(svc("a", "198.18.10.1", "node-a"))
    try:
        until(lambda: "198.18.10.1" in wire.current)
        kube.truth["default/a"] = svc("a", "198.18.10.1", "node-b", rv="2")  # our watch has not seen this yet
        runtime.on_conflict("198.18.10.1", "eth0", "02:00:00:00:00:99")
        until(lambda: wire.current == {})
        assert kube.gets == 1 and wire.announced == []
    finally:
        runtime.stop()


def test_conflict_without_api_fences_the_ip_until_the_api_confirms_it() -> None:
    runtime, _informer, kube, wire = speaker(svc("a", "198.18.10.1", "node-a"), svc("b", "198.18.10.2", "node-a"))
    try:
        until(lambda: len(wire.current) == 2)
        kube.reachable = False
        runtime.on_conflict("198.18.10.1", "eth0", "02:00:00:00:00:99")
        until(lambda: list(wire.current) == ["198.18.10.2"], timeout=1.0)
        assert runtime.fenced() == ["198.18.10.1"]
        assert kube.metrics.value("l2lb_fence_withdrawals_total") == 1
        kube.truth["default/a"] = svc("a", "198.18.10.1", "node-a")
        kube.reachable = True
        until(lambda: len(wire.current) == 2)  # re-checked about once a second
        assert runtime.fenced() == []
    finally:
        runtime.stop()


def test_gone_node_answers_nothing_until_it_is_back() -> None:
    runtime, _informer, _kube, wire = speaker(svc("a", "198.18.10.1", "node-a"))
    try:
        until(lambda: wire.current)
        runtime.set_node_gone("node", "Node object deleted")
        until(lambda: wire.current == {})
        runtime.set_node_gone("node", None)
        until(lambda: wire.current == {"198.18.10.1": ["eth0"]})
    finally:
        runtime.stop()


def test_hold_keeps_a_moved_ip_until_the_new_node_is_heard() -> None:
    runtime, informer, kube, wire = speaker(svc("a", "198.18.10.1", "node-a"))
    try:
        until(lambda: wire.current)
        runtime.hold()
        moved = svc("a", "198.18.10.1", "node-b", rv="2")
        informer.store_written(moved)
        kube.truth["default/a"] = moved
        runtime.notify()
        until(lambda: runtime.assigned() == {})
        time.sleep(0.1)
        assert wire.current == {"198.18.10.1": ["eth0"]}, "still answering while draining"
        assert runtime.held() == ["198.18.10.1"]
        runtime.on_conflict("198.18.10.1", "eth0", "02:00:00:00:00:99")  # node-b's gratuitous ARP
        until(lambda: wire.current == {})
        assert runtime.held() == []
    finally:
        runtime.stop()
