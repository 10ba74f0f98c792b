"""Controller election among agents: exactly one leader, failover on a crash, instant handover on release."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent_harness import Kube, eventually, leaders

from l2lb_agent.agent import Agent


def test_exactly_one_controller_among_three_agents(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    agents = [start_agent(name) for name in ("node-a", "node-b", "node-c")]
    leader = eventually(lambda: leaders(agents), what="a leader")
    assert len(leader) == 1
    assert kube.holder() == leader[0]
    lease = kube.lease("l2lb-controller") or {}
    assert lease["metadata"]["annotations"]["l2lb.io/lease-duration"] == "2.0"
    # Stable: for 3 s (1.5 lease durations) never two leaders, never a change of holder.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert leaders(agents) == leader
        time.sleep(0.05)
    assert kube.holder() == leader[0]
    assert int((kube.lease("l2lb-controller") or {})["spec"].get("leaseTransitions") or 0) == 0
    assert sum(a.metrics.value("l2lb_is_controller") or 0 for a in agents) == 1


def test_failover_when_the_controller_dies(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    agents = [start_agent(name) for name in ("node-a", "node-b", "node-c")]
    old = eventually(lambda: leaders(agents), what="a leader")[0]
    victim = next(a for a in agents if a.node == old)
    died = time.monotonic()
    victim.crash()  # no release, no goodbye: what SIGKILL leaves behind
    survivors = [a for a in agents if a is not victim]
    new = eventually(lambda: leaders(survivors), timeout=5.0, what="a new leader")
    took = time.monotonic() - died
    assert len(new) == 1 and new[0] != old
    assert 1.0 <= took <= 3.5, f"takeover after {took:.2f}s; the lease lasts 2 s and must expire first"
    assert eventually(lambda: kube.holder() == new[0])
    assert int((kube.lease("l2lb-controller") or {})["spec"]["leaseTransitions"]) == 1


def test_graceful_shutdown_releases_the_lease_for_an_instant_handover(
    kube: Kube, start_agent: Callable[..., Agent]
) -> None:
    agents = [start_agent(name) for name in ("node-a", "node-b")]
    old = eventually(lambda: leaders(agents), what="a leader")[0]
    leader = next(a for a in agents if a.node == old)
    other = next(a for a in agents if a is not leader)
    leader.shutdown()
    released = time.monotonic()
    eventually(lambda: leaders([other]), timeout=2.0, what="the other agent leading")
    assert time.monotonic() - released < 1.0, "release means no waiting for the lease to expire"
    assert kube.lease(f"l2lb-node-{old}") is None, "heartbeat lease deleted on graceful shutdown"


def test_agent_with_controller_disabled_never_leads(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    follower = start_agent("node-a", controller=False)
    time.sleep(1.0)
    assert kube.lease("l2lb-controller") is None
    leader = start_agent("node-b")
    eventually(lambda: kube.holder() == "node-b", what="node-b leading")
    assert follower.election is None and leader.election is not None
