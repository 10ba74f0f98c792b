"""contract.ready_endpoints: what the controller (Local policy) and verify (no ready endpoints) read from slices."""

from __future__ import annotations

from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.contract import ready_endpoints


def _slice(service: str | None, *endpoints: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": service} if service else {}
    return {"metadata": {"namespace": namespace, "labels": labels}, "endpoints": list(endpoints)}


def _ep(pod: str, node: str | None, ready: bool | None = True, address: str = "198.18.11.10") -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "addresses": [address],
        "targetRef": {"kind": "Pod", "namespace": "default", "name": pod},
    }
    if node:
        endpoint["nodeName"] = node
    if ready is not None:
        endpoint["conditions"] = {"ready": ready}
    return endpoint


def test_counts_ready_endpoints_per_node() -> None:
    slices = [
        _slice("web", _ep("web-1", "n1"), _ep("web-2", "n3"), _ep("web-3", "n3", ready=False)),
        _slice("web", _ep("web-1", "n1", address="2001:2::10")),  # the IPv6 slice of the same pods: counted once
        _slice("idle", _ep("idle-1", "n2", ready=False)),
        _slice(None, _ep("x", "n1")),  # not a Service's slice
        _slice("web", _ep("web-9", None, ready=None), namespace="other"),  # no condition = ready, no nodeName
    ]
    assert ready_endpoints(slices) == {"default/web": {"n1": 1, "n3": 1}, "default/idle": {}, "other/web": {"": 1}}


def test_garbage_is_ignored_not_fatal() -> None:
    assert ready_endpoints([{}, {"metadata": None}, {"metadata": {"labels": {"kubernetes.io/service-name": 3}}},
                            _slice("web", "not an endpoint", {"conditions": "bad"})]) == {"default/web": {"": 1}}  # type: ignore[arg-type]  # fmt: skip
