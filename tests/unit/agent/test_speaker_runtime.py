"""The speaker glue with fakes for the informer, the API and the wire: trust, fence, node gone, hold on drain."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from l2lb_agent.kube import ASSIGNMENTS, SERVICES, ApiError
from l2lb_agent.metrics import Metrics
from l2lb_agent.model.contract import AssignedIP, assignment_body
from l2lb_agent.speaker.runtime import SpeakerRuntime

NS = "l2lb-system"
POOL = {"metadata": {"name": "lan"}, "spec": {"blocks": [{"cidr": "198.18.10.0/24"}, {"cidr": "2001:2::/64"}]}}


def svc(name: str, ip: str, node: str, rv: str = "1") -> dict[str, Any]:
    """One Service's address as the controller placed it: (name, ip, node, rv)."""
    return {"name": name, "ip": ip, "node": node, "rv": rv}


def assignment(node: str, placed: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The assignment object the controller writes for ``node`` from the placements (None: none of them)."""
    mine = [p for p in placed.values() if p["node"] == node]
    body = assignment_body(NS, node, [AssignedIP(p["ip"], ("eth0",), (f"default/{p['name']}",)) for p in mine])
    body["metadata"]["resourceVersion"] = str(sum(int(p["rv"]) for p in placed.values()) + len(placed))
    return body


class FakeInformer:
    """The Informer calls the speaker makes; it fires no handlers, so tests call ``notify_*()`` themselves."""

    resource = ASSIGNMENTS
    synced = True

    def __init__(self, *objects: dict[str, Any] | None) -> None:
        self.objects = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in objects if o}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return dict(self.objects)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.objects.get(key)

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def store_written(self, obj: Mapping[str, Any]) -> None:
        self.objects[f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"] = dict(obj)


class World:
    """Placements (what the controller decided) and the node-a assignment object made from them."""

    def __init__(self, *placements: dict[str, Any]) -> None:
        self.placed = {p["name"]: p for p in placements}

    def object(self) -> dict[str, Any] | None:
        return assignment("node-a", self.placed)


class FakeKube:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.truth = World()
        self.reachable = True
        self.gets = 0

    def get_assignment(self, namespace: str, name: str, timeout: Any = None) -> dict[str, Any]:
        self.gets += 1
        if not self.reachable:
            raise ApiError(0, "connection", "refused", verb="get", resource="l2assignments")
        obj = assignment(name, self.truth.placed)
        assert obj is not None
        return obj


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


class Speaker:
    def __init__(self, *placements: dict[str, Any], obj: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.world = World(*placements)
        self.informer = FakeInformer(obj if obj is not None else self.world.object())
        self.kube, self.wire = FakeKube(), FakeWire()
        self.kube.truth = World(*placements)
        self.runtime = SpeakerRuntime(
            "node-a",
            kwargs.pop("services", None),
            self.kube,  # type: ignore[arg-type]
            self.wire,
            assignment=self.informer,  # type: ignore[arg-type]
            pools=FakeInformer(POOL),  # type: ignore[arg-type]
            policies=FakeInformer(*kwargs.pop("policies", ())),  # type: ignore[arg-type]
            namespace=NS,
            metrics=self.kube.metrics,
        )
        self.runtime.start()
        self.runtime.notify_assignment()

    def place(self, *placements: dict[str, Any]) -> None:
        """The controller moved things: our watch sees the new object."""
        for p in placements:
            self.world.placed[p["name"]] = p
        obj = self.world.object()
        assert obj is not None
        self.informer.store_written(obj)
        self.runtime.notify_assignment()

    def refused(self, reason: str) -> float:
        return self.kube.metrics.value("l2lb_refused_announcements_total", {"reason": reason}) or 0.0


def speaker(*placements: dict[str, Any]) -> tuple[SpeakerRuntime, Speaker, FakeKube, FakeWire]:
    harness = Speaker(*placements)
    return harness.runtime, harness, harness.kube, harness.wire


def test_only_this_nodes_assignments_reach_the_wire_in_both_families() -> None:
    runtime, *_, wire = speaker(
        svc("a", "198.18.10.1", "node-a"), svc("b", "198.18.10.2", "node-b"), svc("c", "2001:2::1", "node-a")
    )
    try:
        until(lambda: sorted(runtime.assigned()) == ["198.18.10.1", "2001:2::1"])
        until(lambda: wire.current == {"198.18.10.1": ["eth0"], "2001:2::1": ["eth0"]})
    finally:
        runtime.stop()


def test_conflict_withdraws_when_the_api_says_another_node_owns_the_ip() -> None:
    runtime, _informer, kube, wire = speaker(svc("a", "198.18.10.1", "node-a"))
    try:
        until(lambda: "198.18.10.1" in wire.current)
        kube.truth.placed["a"] = svc("a", "198.18.10.1", "node-b", rv="2")  # our watch has not seen this yet
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
        kube.truth.placed["a"] = svc("a", "198.18.10.1", "node-a")
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
    runtime, harness, kube, wire = speaker(svc("a", "198.18.10.1", "node-a"))
    try:
        until(lambda: wire.current)
        runtime.hold()
        moved = svc("a", "198.18.10.1", "node-b", rv="2")
        kube.truth.placed["a"] = moved
        harness.place(moved)
        until(lambda: runtime.assigned() == {})
        time.sleep(0.1)
        assert wire.current == {"198.18.10.1": ["eth0"]}, "still answering while draining"
        assert runtime.held() == ["198.18.10.1"]
        runtime.on_conflict("198.18.10.1", "eth0", "02:00:00:00:00:99")  # node-b's gratuitous ARP
        until(lambda: wire.current == {})
        assert runtime.held() == []
    finally:
        runtime.stop()


def test_entries_outside_every_pool_are_refused_and_counted_once() -> None:
    obj = assignment("node-a", {"a": svc("a", "198.18.10.1", "node-a"), "x": svc("x", "198.18.0.99", "node-a")})
    harness = Speaker(obj=obj)
    try:
        until(lambda: harness.wire.current == {"198.18.10.1": ["eth0"]})
        assert harness.refused("not_in_pool") == 1
        harness.runtime.notify_assignment()  # the same object again: no new count
        harness.runtime.notify_trust()
        time.sleep(0.1)
        assert harness.refused("not_in_pool") == 1
        assert "198.18.0.99" not in harness.runtime.assigned()
    finally:
        harness.runtime.stop()


def test_an_object_for_another_node_is_refused_whole() -> None:
    obj = assignment("node-a", {"a": svc("a", "198.18.10.1", "node-a")})
    assert obj is not None
    obj["spec"]["node"] = "node-b"  # the object's name says node-a, its spec another node
    harness = Speaker(obj=obj)
    try:
        until(lambda: harness.refused("wrong_node") == 1)
        time.sleep(0.05)
        assert harness.wire.current == {} and harness.runtime.assigned() == {}
    finally:
        harness.runtime.stop()


def test_external_ips_outside_pools_need_a_policy_that_allows_them() -> None:
    def external(policies: tuple[dict[str, Any], ...]) -> Speaker:
        obj = assignment("node-a", {})
        assert obj is not None
        obj["spec"]["announcements"] = [{"ip": "198.18.0.50", "interfaces": ["eth0"], "source": "ExternalIP"}]
        return Speaker(obj=obj, policies=policies)

    refused = external(())
    allowed = external(({"metadata": {"name": "ext"}, "spec": {"externalIPs": True}},))
    try:
        until(lambda: refused.refused("external_ip_not_allowed") == 1)
        until(lambda: allowed.wire.current == {"198.18.0.50": ["eth0"]})
        assert refused.wire.current == {}
    finally:
        refused.runtime.stop()
        allowed.runtime.stop()


def test_malformed_entries_are_refused_and_the_rest_answered() -> None:
    obj = assignment("node-a", {"a": svc("a", "198.18.10.1", "node-a")})
    assert obj is not None
    obj["spec"]["announcements"] += [
        {"ip": "not-an-ip", "interfaces": ["eth0"]},
        {"ip": "198.18.10.2", "interfaces": ["../../etc"]},
        {"ip": "198.18.10.3", "interfaces": ["eth0"], "source": "Gateway"},
        "a string",
    ]
    harness = Speaker(obj=obj)
    try:
        until(lambda: harness.refused("malformed") == 4)
        assert harness.wire.current == {"198.18.10.1": ["eth0"]}
    finally:
        harness.runtime.stop()


def legacy_service(name: str, ip: str, *, status: bool = True, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "resourceVersion": "1",
            "annotations": {"l2lb.io/announcing-node": f"{ip}=node-a", "l2lb.io/announcing-interfaces": f"{ip}=eth0"},
        },
        "spec": {"type": "LoadBalancer", **spec},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}] if status else []}},
    }


def test_upgrade_from_0_1_follows_old_annotations_only_for_status_addresses_until_an_object_exists() -> None:
    services = FakeInformer()
    services.resource = SERVICES  # type: ignore[misc]
    for service in (
        legacy_service("ok", "198.18.10.1"),
        legacy_service("forged", "198.18.10.2", status=False),  # the annotation alone: a namespace user can write it
        legacy_service("cluster-ip", "198.18.10.3", type="ClusterIP"),
        legacy_service("other-class", "198.18.10.4", loadBalancerClass="example.com/other"),
        legacy_service("outside", "198.18.0.5"),
    ):
        services.objects[f"default/{service['metadata']['name']}"] = service
    harness = Speaker(services=services)
    harness.informer.objects.clear()  # no assignment object for this node yet: a 0.1 controller runs
    harness.runtime.notify_assignment()
    try:
        until(lambda: harness.wire.current == {"198.18.10.1": ["eth0"]})
        assert harness.refused("not_ours") == 3
        assert harness.refused("not_in_pool") == 1
        harness.place(svc("new", "198.18.10.9", "node-a"))  # a controller of this version wrote our object
        until(lambda: harness.wire.current == {"198.18.10.9": ["eth0"]})
    finally:
        harness.runtime.stop()
