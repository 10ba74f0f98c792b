"""Each agent reads only its own work: the controller and one warm standby watch everything, the others only
their own objects and the controller Lease; when the controller and its standby die, a cold agent takes over."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent_harness import Kube, eventually

from l2lb_agent.agent import Agent

NODES = ("node-a", "node-b", "node-c", "node-d")
COLD_INFORMERS = {"pools", "policies", "own-assignment", "own-node", "controller-lease"}


def _roles(agents: list[Agent]) -> dict[str, str]:
    return {a.node: a.role for a in agents}


def _settled(agents: list[Agent]) -> dict[str, str] | None:
    roles = _roles(agents)
    counts = sorted(roles.values())
    return roles if counts == ["cold", "cold", "controller", "standby"] else None


def test_one_controller_one_warm_standby_the_rest_cold(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    agents = [start_agent(n) for n in NODES]
    kube.create_pool("lan", "198.18.10.0/28")
    kube.create_policy("all")
    kube.create_service("web")
    roles = eventually(lambda: _settled(agents), timeout=15.0, what="1 controller, 1 standby, 2 cold")
    standby = next(n for n, r in roles.items() if r == "standby")
    leader = next(n for n, r in roles.items() if r == "controller")
    assert kube.assignment(standby)["spec"]["standby"] is True
    assert kube.assignment(leader)["spec"]["standby"] is True
    for agent in agents:
        names = {i.name for i in agent.informers()}
        if agent.role == "cold":
            assert names == COLD_INFORMERS, f"{agent.node} watches {names}"
            assert kube.assignment(agent.node)["spec"]["standby"] is False
            assert agent.services is None and agent.controller is None
        else:
            assert {"services", "leases", "assignments"} <= names
    # Steady state: only the warm agents hear the heartbeat renewals.
    heard = {a.node: 0 for a in agents}

    def counter(node: str) -> Callable[..., None]:
        def count(*_: object) -> None:
            heard[node] += 1

        return count

    for agent in agents:
        for informer in agent.informers():
            informer.add_handler(counter(agent.node))
    time.sleep(2.0)
    warm = [n for n, r in _roles(agents).items() if r != "cold"]
    cold = [n for n in heard if n not in warm]
    assert all(heard[n] >= 10 for n in warm), heard  # 5 Leases renewed every 0.5 s
    assert all(heard[n] <= 6 for n in cold), heard  # the controller Lease alone: about 4 in 2 s
    assert eventually(lambda: kube.annotation("web", "l2lb.io/announcing-node"), what="web announced")


def test_cold_agents_take_over_when_the_controller_and_its_standby_die(
    kube: Kube, start_agent: Callable[..., Agent]
) -> None:
    agents = [start_agent(n) for n in NODES]
    kube.create_pool("lan", "198.18.10.0/28")
    kube.create_policy("all")
    roles = eventually(lambda: _settled(agents), timeout=15.0, what="1 controller, 1 standby, 2 cold")
    warm = [a for a in agents if roles[a.node] != "cold"]
    for agent in warm:
        agent.crash()
    crashed = time.monotonic()
    survivors = [a for a in agents if a not in warm]
    eventually(
        lambda: any(a.role == "controller" for a in survivors), timeout=15.0, what="a cold agent became the controller"
    )
    took = time.monotonic() - crashed
    kube.create_service("late")
    eventually(lambda: kube.annotation("late", "l2lb.io/announcing-node") in {a.node for a in survivors}, 10.0)
    assert took < 10.0, f"takeover took {took:.1f} s"
    eventually(lambda: sorted(_roles(survivors).values()) == ["controller", "standby"], 10.0, what="new standby")
