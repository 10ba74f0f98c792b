"""Agents in-process against the Kubernetes API stand-in: no network namespaces, no ARP on the wire.

Each test gets a fresh stand-in (``api``), a client for arranging objects (``kube``) and
``start_agent(node, ...)``, which runs a whole agent (heartbeat, election, controller, speaker glue)
in this process with the ARP speaker replaced by a fake responder and the interface facts injected,
so the tests exercise everything but the wire. Agents left running are crashed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_harness import ETH0, FakeResponder, Kube, eventually

from k8s_standin import ApiServer
from l2lb_agent.agent import Agent
from l2lb_agent.config import parse_config
from l2lb_agent.controller.types import InterfaceInfo


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(state_dir=tmp_path / "standin").start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(api: ApiServer, tmp_path: Path) -> Path:
    return api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kube(api: ApiServer, kubeconfig: Path) -> Kube:
    k = Kube(api, kubeconfig)
    k.setup()
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
            eventually(lambda: agent.health()[0], 10.0, what=f"agent {node} healthy")
        return agent

    yield start
    for agent in agents:
        agent.crash()
