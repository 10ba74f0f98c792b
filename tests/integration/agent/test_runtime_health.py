"""Failing loudly, in-process: a stalled Lease watch is replaced within one watchdog period; a thread
that dies turns /healthz unhealthy and names it; run() then hands over and returns 1 (systemd restarts
the unit); a normal stop is not a death; the debug hook is off unless L2LB_AGENT_DEBUG_HOOKS=1."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agent_harness import ETH0, FakeNode, FakeResponder, Kube, eventually

from l2lb_agent import agent as agent_module
from l2lb_agent.agent import DEBUG_HOOKS_ENV, Agent
from l2lb_agent.config import parse_config


def _http(agent: Agent, path: str, method: str = "GET") -> tuple[int, str]:
    address = agent.metrics_address
    assert address is not None
    request = urllib.request.Request(f"http://127.0.0.1:{address[1]}{path}", method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=2.0) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _restarts(agent: Agent, resource: str) -> float:
    return agent.metrics.value("l2lb_watch_restarts_total", {"resource": resource, "reason": "restart"}) or 0


def test_stalled_lease_watch_is_replaced_within_one_watchdog_period(
    kube: Kube, start_agent: Callable[..., Agent]
) -> None:
    agent = start_agent("node-a")
    timing = agent.config.heartbeat
    eventually(lambda: agent.leases.watch_started_at is not None, what="the lease watch open")
    before = _restarts(agent, "leases")
    assert kube.stall_watches("leases") >= 1
    stalled_at = time.monotonic()
    ghost = FakeNode(kube, "ghost")
    ghost.beat()
    # The judge: our own renewals stop coming back, so after half a lease duration we are blind; the
    # watchdog looks once per period (renew_interval) and the informer re-lists at once.
    bound = timing.lease_duration / 2 + timing.renew_interval + 0.5
    eventually(
        lambda: agent.leases.get("l2lb-system/l2lb-node-ghost"), timeout=bound, what="the new watch sees the ghost"
    )
    assert time.monotonic() - stalled_at <= bound
    assert _restarts(agent, "leases") == before + 1
    assert agent.watchdog.restarts == 1
    assert agent.health()[0], agent.health()


def test_a_dead_informer_turns_healthz_unhealthy_and_names_it(
    kube: Kube, start_agent: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEBUG_HOOKS_ENV, "1")
    agent = start_agent("node-a")
    assert _http(agent, "/healthz")[0] == 200
    code, text = _http(agent, "/debug/kill?thread=nothing", method="POST")
    assert code == 404 and "informer-services" in text, text  # lists the names it knows
    killed_at = time.monotonic()
    code, text = _http(agent, "/debug/kill?thread=informer-services", method="POST")
    assert code == 200, text
    eventually(lambda: not agent.health()[0], timeout=1.0, what="unhealthy")
    assert time.monotonic() - killed_at < 1.0
    code, text = _http(agent, "/healthz")
    assert code == 503
    assert text.startswith("thread died: informer-services (ThreadKilled"), text
    assert set(agent.dead_threads()) == {"informer-services"}, "no other thread counts as dead"


def test_debug_hook_is_off_by_default(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    agent = start_agent("node-a")
    code, _ = _http(agent, "/debug/kill?thread=heartbeat", method="POST")
    assert code == 404
    assert agent.dead_threads() == {} and agent.health()[0]


def test_a_normal_stop_is_not_a_dead_thread(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    agent = start_agent("node-a")
    agent.shutdown(graceful=True)
    assert agent.dead_threads() == {}
    assert agent.health() == (False, "stopped")


def test_run_hands_over_and_returns_1_after_a_thread_dies(
    kube: Kube, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "DEAD_THREAD_GRACE", 1.0)
    raw: dict[str, Any] = {
        "node_name": "node-a",
        "kubeconfig": str(kubeconfig),
        "speaker": {"enabled": False},
        "metrics_address": "127.0.0.1:0",
        "drain_timeout": 5,
    }
    agent = Agent(parse_config(raw), interfaces=lambda: (ETH0,), responder_factory=FakeResponder)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    runner.start()
    try:
        eventually(lambda: agent.health()[0] and kube.holder() == "node-a", 10.0, what="healthy controller")
        assert kube.lease("l2lb-node-node-a") is not None
        assert agent.threads()["heartbeat"].kill()
        killed_at = time.monotonic()
        eventually(lambda: "thread died: heartbeat" in _http(agent, "/healthz")[1], timeout=1.0, what="named")
        runner.join(5.0)
        assert result == [1], result
        took = time.monotonic() - killed_at
        assert 1.0 <= took < 4.0, took  # the grace, then out
        assert "heartbeat (ThreadKilled" in agent.exit_reason
        assert kube.lease("l2lb-node-node-a") is None, "the heartbeat Lease is deleted: IPs move at once"
        assert kube.holder() == "", "the controller Lease is released"
    finally:
        agent.crash()
