"""The heartbeat Lease: created, renewed every renew_interval, interfaces published, draining, deleted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from agent_harness import ETH0, NAMESPACE, Kube, eventually

from l2lb_agent.agent import Agent
from l2lb_agent.controller.types import InterfaceInfo


def test_heartbeat_lease_is_created_and_renewed_every_half_second(
    kube: Kube, start_agent: Callable[..., Agent]
) -> None:
    agent = start_agent("node-a", controller=False)
    lease = eventually(lambda: kube.lease("l2lb-node-node-a"), what="heartbeat lease")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert lease["spec"]["holderIdentity"] == "node-a"
    assert lease["spec"]["leaseDurationSeconds"] == 2
    annotations = lease["metadata"]["annotations"]
    assert annotations["l2lb.io/lease-duration"] == "2.0"
    assert json.loads(annotations["l2lb.io/interfaces"]) == [
        {"name": "eth0", "mac": "02:00:00:00:00:01", "up": True, "subnets": ["198.18.0.0/24"]}
    ]
    assert "l2lb.io/draining" not in annotations

    # Count the renewals over a 3 s window: the only lease writer here is this heartbeat.
    kube.counter.reset()
    before = agent.heartbeat.writes
    time.sleep(3.0)
    updates = kube.counter.counts().get(("update", "leases"), 0)
    assert 5 <= updates <= 7, f"{updates} lease updates in 3 s, expected about 6"
    assert agent.heartbeat.writes - before == updates
    assert kube.counter.counts().get(("get", "leases"), 0) == 0, "no read before each write"


def test_interface_change_is_published_at_once(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    state = {"up": True}

    def interfaces() -> tuple[InterfaceInfo, ...]:
        return (InterfaceInfo("eth0", ETH0.mac, state["up"], ETH0.subnets),)

    # A slow heartbeat, so only the immediate re-publish can explain a quick update.
    agent = start_agent(
        "node-a", controller=False, interfaces=interfaces, heartbeat={"renew_interval": 5, "lease_duration": 20}
    )
    eventually(lambda: kube.lease("l2lb-node-node-a"), what="heartbeat lease")
    time.sleep(0.2)
    state["up"] = False
    changed_at = time.monotonic()
    agent._interface_changed(None)  # what the netlink watcher calls

    def published_down() -> bool:
        lease = kube.lease("l2lb-node-node-a") or {}
        return json.loads(lease["metadata"]["annotations"]["l2lb.io/interfaces"])[0]["up"] is False

    eventually(published_down, timeout=2.0, what="interface down in the heartbeat")
    assert time.monotonic() - changed_at < 1.0


def test_heartbeat_recreates_a_deleted_lease_and_survives_conflicts(
    kube: Kube, start_agent: Callable[..., Agent]
) -> None:
    agent = start_agent("node-a", controller=False)
    first = eventually(lambda: kube.lease("l2lb-node-node-a"))
    kube.delete_lease("l2lb-node-node-a")
    again = eventually(lambda: kube.lease("l2lb-node-node-a"), what="lease recreated")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    # Somebody else writes the lease: the heartbeat gets 409, re-reads and carries on.
    lease = kube.lease("l2lb-node-node-a") or {}
    lease["metadata"]["labels"]["touched"] = "yes"
    kube.coordination.replace_namespaced_lease("l2lb-node-node-a", NAMESPACE, lease)
    writes = agent.heartbeat.writes
    eventually(lambda: agent.heartbeat.writes >= writes + 3, what="renewals after a conflict")
    assert agent.heartbeat.last_error == ""
