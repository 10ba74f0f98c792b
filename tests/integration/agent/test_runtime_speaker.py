"""The speaker glue against the API: follow the node's assignment object (never Service annotations), fail
static, fence, stop when the node is gone, and hand over make-before-break on shutdown. The ARP wire is a fake
responder here (tests/netns covers it)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable

from agent_harness import Kube, eventually, responder

from l2lb_agent.agent import Agent

NODE = "l2lb.io/announcing-node"
OTHER_MAC = "02:00:00:00:00:99"


def _one_service(kube: Kube, start_agent: Callable[..., Agent], nodes: tuple[str, ...] = ("node-a",)) -> list[Agent]:
    agents = [start_agent(n) for n in nodes]
    kube.create_pool("lan", "198.18.10.0/28")
    kube.create_policy("all")
    kube.create_service("web")
    eventually(lambda: kube.annotation("web", NODE), what="web announced")
    return agents


def _healthz(agent: Agent) -> tuple[int, str]:
    address = agent.metrics_address
    assert address is not None
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/healthz", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_speaker_answers_what_its_assignment_object_lists_and_ignores_annotations(
    kube: Kube, start_agent: Callable[..., Agent]
) -> None:
    agents = _one_service(kube, start_agent, ("node-a", "node-b"))
    owner = next(a for a in agents if a.node == kube.annotation("web", NODE))
    other = next(a for a in agents if a is not owner)
    eventually(lambda: responder(owner).current == {"198.18.10.1": ["eth0"]}, what="owner answering")
    assert responder(other).current == {}
    assert [e["ip"] for e in kube.assignment(owner.node)["spec"]["announcements"]] == ["198.18.10.1"]
    assert kube.assignment(other.node)["spec"]["announcements"] == []
    # Anyone who may patch the Service can write the annotation: nothing on the wire follows it.
    kube.core.patch_namespaced_service("web", "default", {"metadata": {"annotations": {NODE: other.node}}})
    eventually(lambda: kube.annotation("web", NODE) == owner.node, what="the controller puts the annotation back")
    time.sleep(0.3)
    assert responder(other).ips() == set() and responder(owner).ips() == {"198.18.10.1"}
    counted = sum(
        a.metrics.value("l2lb_refused_announcements_total", {"reason": "service_annotation"}) or 0 for a in agents
    )
    assert counted >= 1


def test_fail_static_keeps_announcing_through_an_api_outage(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    (agent,) = _one_service(kube, start_agent)
    fake = responder(agent)
    eventually(lambda: fake.ips() == {"198.18.10.1"})
    status, body = _healthz(agent)
    assert status == 200 and body.startswith("ok:")
    history = len(fake.history)
    kube.api.stop_apiserver()
    try:
        time.sleep(3.0)  # longer than every lease duration
        assert fake.ips() == {"198.18.10.1"}
        status, body = eventually(lambda: (s := _healthz(agent)) and "fail-static" in s[1] and s, what="fail-static")
        assert status == 200, body
    finally:
        kube.api.start_apiserver()
    eventually(lambda: _healthz(agent)[1].startswith("ok:"), timeout=5.0, what="healthy again")
    time.sleep(1.0)
    assert all(assignments == {"198.18.10.1": ["eth0"]} for _, assignments in fake.history[history:]), (
        "nothing withdrawn because the API server restarted"
    )
    assert fake.ips() == {"198.18.10.1"}


def test_conflict_with_the_api_reachable_keeps_our_ip_and_reannounces(
    kube: Kube, start_agent: Callable[..., Agent]
) -> None:
    (agent,) = _one_service(kube, start_agent)
    fake = responder(agent)
    eventually(lambda: fake.ips() == {"198.18.10.1"})
    fake.on_conflict("198.18.10.1", "eth0", OTHER_MAC)
    eventually(lambda: fake.announced == ["198.18.10.1"], what="re-announce after the API confirmed")
    assert fake.ips() == {"198.18.10.1"}


def test_conflict_with_the_api_unreachable_withdraws_the_ip(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    (agent,) = _one_service(kube, start_agent)
    fake = responder(agent)
    eventually(lambda: fake.ips() == {"198.18.10.1"})
    kube.api.stop_apiserver()
    try:
        raised = time.monotonic()
        fake.on_conflict("198.18.10.1", "eth0", OTHER_MAC)
        eventually(lambda: fake.ips() == set(), timeout=3.0, what="contested IP withdrawn")
        assert time.monotonic() - raised < 1.5
        assert agent.metrics.value("l2lb_fence_withdrawals_total") == 1
    finally:
        kube.api.start_apiserver()
    # Once the API answers again and says the IP is ours, we answer again.
    eventually(lambda: fake.ips() == {"198.18.10.1"}, timeout=5.0, what="IP back after the API confirmed it")


def test_speaker_stops_when_its_node_is_gone(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    kube.api.add_node("node-a")
    kube.api.add_node("node-b")
    agents = _one_service(kube, start_agent, ("node-a", "node-b"))
    owner = next(a for a in agents if a.node == kube.annotation("web", NODE))
    other = next(a for a in agents if a is not owner)
    eventually(lambda: responder(owner).ips() == {"198.18.10.1"})
    kube.core.delete_node(owner.node)
    eventually(lambda: responder(owner).ips() == set(), timeout=2.0, what="gone node silent")
    eventually(lambda: kube.annotation("web", NODE) == other.node, timeout=3.0, what="IP moved to the other node")
    eventually(lambda: responder(other).ips() == {"198.18.10.1"})
    time.sleep(1.0)
    assert responder(owner).ips() == set(), "stays silent while its Node object is gone"


def test_graceful_shutdown_hands_over_make_before_break(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    agents = _one_service(kube, start_agent, ("node-a", "node-b"))
    owner = next(a for a in agents if a.node == kube.annotation("web", NODE))
    other = next(a for a in agents if a is not owner)
    eventually(lambda: responder(owner).ips() == {"198.18.10.1"})
    started = time.monotonic()
    thread = threading.Thread(target=owner.shutdown)
    thread.start()
    eventually(lambda: responder(other).ips() == {"198.18.10.1"}, timeout=3.0, what="new node answering")
    took_over = time.monotonic()
    assert responder(owner).ips() == {"198.18.10.1"}, "the old node still answers when the new one starts"
    thread.join(10)
    assert not thread.is_alive()
    silent = next(t for t, a in responder(owner).history if t > started and not a)
    assert silent >= took_over - 0.05
    assert time.monotonic() - started < 5.0
    assert kube.lease(f"l2lb-node-{owner.node}") is None
    lease = kube.lease("l2lb-controller") or {}
    assert lease["spec"].get("holderIdentity") == other.node or eventually(lambda: kube.holder() == other.node)


def test_metrics_endpoint_exports_the_agent_metrics(kube: Kube, start_agent: Callable[..., Agent]) -> None:
    (agent,) = _one_service(kube, start_agent)
    eventually(lambda: responder(agent).ips())
    address = agent.metrics_address
    assert address is not None
    expected = (
        "l2lb_is_controller 1.0",
        "l2lb_announced_ips 1.0",
        'l2lb_api_requests_total{code="200",resource="leases",verb="update"}',
        "l2lb_heartbeat_renew_seconds_count",
        "l2lb_services_allocated 1.0",
        'l2lb_pool_available{pool="lan"} 13.0',
        "l2lb_reconcile_seconds_count",
        "l2lb_api_errors_total",
        "l2lb_arp_replies_total",
        "l2lb_garp_sent_total",
    )

    def missing() -> list[str]:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=2) as response:
            text = response.read().decode()
        return [name for name in expected if name not in text]

    eventually(lambda: not missing(), what=f"metrics {missing()}")
