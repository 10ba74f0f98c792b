"""The controller's decision from API objects to writes, without any API: converge, then write nothing."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from l2lb_agent.config import LeaseTiming
from l2lb_agent.controller.planning import Decision, decide, event_body
from l2lb_agent.controller.types import InterfaceInfo
from l2lb_agent.leases import heartbeat_body

ETH0 = (InterfaceInfo("eth0", "02:00:00:00:00:01", True, ("198.18.0.0/24",)),)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, what the API server applies for application/merge-patch+json."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def service(name: str, *, created: str = "2024-01-01T00:00:00Z", lb: bool = True, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "creationTimestamp": created,
            "annotations": dict(annotations),
        },
        "spec": {"type": "LoadBalancer" if lb else "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": {},
    }


def pool(name: str, cidr: str, created: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": {"blocks": [{"cidr": cidr}]}}


POLICY = {"metadata": {"name": "all"}, "spec": {"interfaces": ["^eth"]}}


def lease(node: str, draining: bool = False) -> dict[str, Any]:
    body = heartbeat_body("l2lb-system", node, LeaseTiming(), ETH0, draining=draining, resource_version="5")
    return body


class World:
    """API objects, the controller's decisions applied to them as the API server would."""

    def __init__(self, services: list[dict[str, Any]], pools: list[dict[str, Any]], nodes: list[str]) -> None:
        self.services = {f"default/{s['metadata']['name']}": s for s in services}
        self.pools = {p["metadata"]["name"]: p for p in pools}
        self.leases = {n: lease(n) for n in nodes}
        self.dead: set[str] = set()
        self.events: list[tuple[str, str, str]] = []
        self.assignments: dict[str, dict[str, Any]] = {}  # the L2Assignment objects, by name

    def decide(self) -> Decision:
        return decide(
            self.services,
            list(self.pools.values()),
            [POLICY],
            list(self.leases.values()),
            {},
            [],
            lambda name: name.removeprefix("l2lb-node-") not in self.dead,
            "2024-01-01T00:00:00Z",
            list(self.assignments.values()),
        )

    def apply(self, decision: Decision) -> int:
        for write in decision.plan.services:
            svc = self.services[write.key]
            for patch in (write.status_patch, write.metadata_patch):
                if patch is not None:
                    self.services[write.key] = svc = merge_patch(svc, patch)
            self.events += [(write.key, reason, message) for _, reason, message in write.events]
        for pool_write in decision.plan.pools:
            self.pools[pool_write.name] = merge_patch(self.pools[pool_write.name], pool_write.status_patch)
        for assignment in decision.plan.assignments:
            if assignment.op == "delete":
                del self.assignments[assignment.name]
            else:
                assert assignment.body is not None
                assert (assignment.op == "create") == (assignment.name not in self.assignments)
                self.assignments[assignment.name] = copy.deepcopy(assignment.body)
        return decision.plan.write_count

    def assigned(self, node: str) -> Iterator[str]:
        """The addresses node's assignment object lists (what its speaker answers)."""
        spec = self.assignments.get(node, {}).get("spec", {})
        assert spec.get("node", node) == node
        return iter([entry["ip"] for entry in spec.get("announcements", [])])

    def converge(self) -> int:
        total = 0
        for _ in range(5):
            writes = self.apply(self.decide())
            total += writes
            if writes == 0:
                return total
        raise AssertionError("did not converge")

    def annotation(self, name: str, key: str) -> str | None:
        return self.services[f"default/{name}"]["metadata"].get("annotations", {}).get(key)

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        conditions = self.services[f"default/{name}"]["status"].get("conditions", [])
        return next(c for c in conditions if c["type"] == type_)


def test_service_gets_ip_annotations_and_conditions_then_no_more_writes() -> None:
    world = World([service("web")], [pool("lan", "198.18.10.0/29")], ["node-a", "node-b"])
    assert world.converge() > 0
    svc = world.services["default/web"]
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "198.18.10.1"}]
    assert world.annotation("web", "l2lb.io/announcing-node") == "node-a"
    assert world.annotation("web", "l2lb.io/announcing-interfaces") == "eth0"
    assert world.annotation("web", "l2lb.io/pool") == "lan"
    assert world.condition("web", "l2lb.io/IPAllocated")["status"] == "True"
    assert world.condition("web", "l2lb.io/Announced")["status"] == "True"
    status = world.pools["lan"]["status"]
    assert (status["total"], status["used"], status["available"]) == ("6", 1, "5")
    # Steady state: nothing differs, nothing is written, however many times we look.
    for _ in range(3):
        assert world.decide().plan.write_count == 0


def test_refusal_gives_condition_and_exactly_one_event() -> None:
    world = World(
        [service("a"), service("b", created="2024-01-02T00:00:00Z")], [pool("tiny", "198.18.10.1/32")], ["n1"]
    )
    world.converge()
    cond = world.condition("b", "l2lb.io/IPAllocated")
    assert (cond["status"], cond["reason"]) == ("False", "PoolExhausted")
    assert [e[:2] for e in world.events] == [("default/b", "PoolExhausted")]
    assert world.pools["tiny"]["status"]["conditions"][1]["type"] == "Exhausted"
    assert world.pools["tiny"]["status"]["conditions"][1]["status"] == "True"
    world.converge()
    assert len(world.events) == 1, "no event spam on later rounds"


def test_dead_or_draining_node_loses_its_ips_and_assignments_are_sticky() -> None:
    world = World(
        [service("a"), service("b", created="2024-01-02T00:00:00Z")], [pool("lan", "198.18.10.0/28")], ["n1", "n2"]
    )
    world.converge()
    first = {n: world.annotation(n, "l2lb.io/announcing-node") for n in ("a", "b")}
    assert sorted(first.values()) == ["n1", "n2"], "spread across nodes"
    moved_ip = next(world.assigned("n1"))
    world.dead.add("n1")
    decision = world.decide()
    assert [(w.op, w.node, w.added, w.removed) for w in decision.plan.assignments] == [
        ("update", "n2", (moved_ip,), ()),
        ("update", "n1", (), (moved_ip,)),
    ], "make before break: the new node's object is written before the old one's"
    moved = world.apply(decision) + world.converge()
    assert {n: world.annotation(n, "l2lb.io/announcing-node") for n in ("a", "b")} == {"a": "n2", "b": "n2"}
    assert sorted(world.assigned("n2")) == sorted(
        world.services[f"default/{s}"]["status"]["loadBalancer"]["ingress"][0]["ip"] for s in "ab"
    )
    assert list(world.assigned("n1")) == []
    assert moved == 3, "two assignment objects and one annotation patch for the one moved Service, nothing else"
    world.dead.clear()
    assert world.converge() == 0, "no fail-back when n1 returns"
    world.leases["n2"] = lease("n2", draining=True)
    world.converge()
    assert {n: world.annotation(n, "l2lb.io/announcing-node") for n in ("a", "b")} == {"a": "n1", "b": "n1"}


def test_no_eligible_node_removes_the_annotation_and_says_why() -> None:
    world = World([service("a")], [pool("lan", "198.18.10.0/28")], ["n1"])
    world.converge()
    world.dead.add("n1")
    world.converge()
    assert world.annotation("a", "l2lb.io/announcing-node") is None
    cond = world.condition("a", "l2lb.io/Announced")
    assert (cond["status"], cond["reason"]) == ("False", "NoEligibleNode")
    assert "heartbeat expired" in cond["message"]
    assert ("default/a", "NoEligibleNode") in [e[:2] for e in world.events]


def test_invalid_pool_is_skipped_and_reported_on_its_status() -> None:
    bad = {"metadata": {"name": "bad"}, "spec": {"blocks": [{"cidr": "198.18.300.0/24"}]}}
    world = World([service("a")], [bad, pool("lan", "198.18.10.0/28")], ["n1"])
    world.converge()
    assert world.services["default/a"]["status"]["loadBalancer"]["ingress"] == [{"ip": "198.18.10.1"}]
    invalid = world.pools["bad"]["status"]["conditions"][0]
    assert (invalid["type"], invalid["status"]) == ("Invalid", "True")
    assert "blocks[0]" in invalid["message"]


def test_service_that_stops_being_a_load_balancer_is_cleaned_up() -> None:
    world = World([service("a")], [pool("lan", "198.18.10.0/28")], ["n1"])
    world.converge()
    world.services["default/a"]["spec"]["type"] = "ClusterIP"
    world.converge()
    svc = world.services["default/a"]
    assert svc["status"]["loadBalancer"]["ingress"] == []
    assert not any(k.startswith("l2lb.io/") for k in svc["metadata"]["annotations"])
    assert not svc["status"].get("conditions")


def test_event_body_points_at_the_service() -> None:
    body = event_body(service("a"), "n1", "Warning", "PoolExhausted", "m", "2024-01-01T00:00:00Z")
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Service",
        "name": "a",
        "namespace": "default",
        "uid": "uid-a",
        "resourceVersion": "1",
    }
    assert body["metadata"]["generateName"] == "a." and body["type"] == "Warning"
    json.dumps(body)


def test_newer_overlapping_pool_is_marked_conflicting() -> None:
    world = World(
        [service("a")],
        [pool("old", "198.18.10.0/28"), pool("new", "198.18.10.8/29", created="2024-02-01T00:00:00Z")],
        ["n1"],
    )
    world.converge()
    status = world.pools["new"]["status"]
    conflicting = next(c for c in status["conditions"] if c["type"] == "Conflicting")
    assert conflicting["status"] == "True" and 'pool "old"' in conflicting["message"]
    assert status["available"] == "0" and status["used"] == 0
    old = next(c for c in world.pools["old"]["status"]["conditions"] if c["type"] == "Conflicting")
    assert old["status"] == "False"


def test_standbys_are_sticky_and_filled_in_name_order() -> None:
    from l2lb_agent.controller.assignments import choose_standbys

    objects = {"n3": {"spec": {"node": "n3", "standby": True, "announcements": []}}}
    assert choose_standbys(["n1", "n2", "n3"], objects, 1) == {"n3"}, "the current standby stays"
    assert choose_standbys(["n1", "n2"], objects, 1) == {"n1"}, "a standby that is gone is replaced"
    assert choose_standbys(["n1", "n2", "n3"], objects, 2) == {"n1", "n3"}
    assert choose_standbys(["n1"], {}, 0) == set()
