"""Agents in-process against a real kube-apiserver: no network namespaces, no ARP on the wire.

One control plane (etcd, kube-apiserver, kube-controller-manager) serves the whole folder, with our CRDs
and the l2lb-system namespace; before each test ``kube.clean()`` removes what the test before it made. The
agents reach the API through a :class:`StallProxy` (a TLS relay that can make their watches go silent) and
authenticate as their own user (``AGENT_USER``), so ``kube.counter`` counts only their requests.

Each test gets a client for arranging objects (``kube``) and ``start_agent(node, ...)``, which runs a
whole agent (heartbeat, election, controller, speaker glue) in this process with the ARP speaker replaced
by a fake responder and the interface facts injected, so the tests exercise everything but the wire.
Agents left running are crashed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AGENT_USER, ETH0, FakeResponder, Kube, eventually

from controlplane import ControlPlane
from l2lb_agent.agent import Agent
from l2lb_agent.config import parse_config
from l2lb_agent.controller.types import InterfaceInfo
from stallproxy import StallProxy


@pytest.fixture(scope="package")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The folder's control plane, with our namespace and CRDs in place."""
    with ControlPlane(users=[(AGENT_USER, ["system:masters"])]) as control_plane:
        admin = control_plane.write_kubeconfig(tmp_path_factory.mktemp("plane") / "admin.kubeconfig")
        Kube(control_plane, admin).setup()
        yield control_plane


@pytest.fixture(scope="package")
def proxy(plane: ControlPlane) -> Iterator[StallProxy]:
    with StallProxy((plane.host, plane.port), plane.state_dir / "pki") as relay:
        yield relay


@pytest.fixture
def kubeconfig(plane: ControlPlane, proxy: StallProxy, tmp_path: Path) -> Path:
    """The agents' kubeconfig: their own user, through the stall proxy."""
    return plane.write_kubeconfig(tmp_path / "kubeconfig", plane.token(AGENT_USER), server_url=proxy.url)


@pytest.fixture
def kube(plane: ControlPlane, proxy: StallProxy, tmp_path: Path) -> Kube:
    k = Kube(plane, plane.write_kubeconfig(tmp_path / "admin.kubeconfig"), proxy=proxy)
    k.clean()
    return k


@pytest.fixture
def start_agent(kube: Kube, kubeconfig: Path) -> Iterator[Callable[..., Agent]]:
    """``start_agent(node, interfaces=[...], controller=True, **config)``: a running, ready agent."""
    agents: list[Agent] = []

    def start(
        node: str,
        *,
        interfaces: Sequence[InterfaceInfo] | Callable[[], Sequence[InterfaceInfo]] = (ETH0,),
        controller: bool = True,
        wait: bool = True,
        **settings: Any,
    ) -> Agent:
        raw: dict[str, Any] = {
            "node_name": node,
            "kubeconfig": str(kubeconfig),
            "speaker": {"enabled": False},
            "controller": {"enabled": controller},
            "metrics_address": "127.0.0.1:0",
            "drain_timeout": 5,
        }
        raw.update(settings)
        source = interfaces if callable(interfaces) else (lambda: tuple(interfaces))
        agent = Agent(parse_config(raw), interfaces=source, responder_factory=FakeResponder)
        agents.append(agent)
        agent.start()
        if wait:
            try:
                eventually(lambda: agent.health()[0], 10.0, what=f"agent {node} healthy")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {agent.health()}") from None
        return agent

    yield start
    for agent in agents:
        agent.crash()
