"""Contract: Leases through CoordinationV1Api, used the way leader election and heartbeats use them."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from controlplane import ControlPlane


def lease_body(name: str, holder: str, duration: int = 2) -> dict[str, object]:
    now = datetime.datetime.now(datetime.UTC)
    return {
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        },
    }


def test_leader_election_round_trip_with_conflicts(api: client.ApiClient, namespace: str) -> None:
    leases = client.CoordinationV1Api(api)
    created = leases.create_namespaced_lease(namespace, lease_body("l2lb-controller", "node-a"))
    assert created.spec.holder_identity == "node-a"
    with pytest.raises(client.ApiException) as caught:
        leases.create_namespaced_lease(namespace, lease_body("l2lb-controller", "node-b"))
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["reason"] == "AlreadyExists"

    # Both candidates read the same version; the first renewal wins, the second conflicts.
    seen_by_a = leases.read_namespaced_lease("l2lb-controller", namespace)
    seen_by_b = leases.read_namespaced_lease("l2lb-controller", namespace)
    seen_by_a.spec.renew_time = datetime.datetime.now(datetime.UTC)
    renewed = leases.replace_namespaced_lease("l2lb-controller", namespace, seen_by_a)
    assert int(renewed.metadata.resource_version) > int(seen_by_a.metadata.resource_version)

    seen_by_b.spec.holder_identity = "node-b"
    seen_by_b.spec.lease_transitions = 1
    with pytest.raises(client.ApiException) as caught:
        leases.replace_namespaced_lease("l2lb-controller", namespace, seen_by_b)
    body = json.loads(caught.value.body)
    assert caught.value.status == 409
    assert body["reason"] == "Conflict"
    assert body["message"].startswith(
        'Operation cannot be fulfilled on leases.coordination.k8s.io "l2lb-controller": the object has been modified'
    )
    assert body["details"] == {"name": "l2lb-controller", "group": "coordination.k8s.io", "kind": "leases"}

    # After re-reading, the takeover succeeds.
    fresh = leases.read_namespaced_lease("l2lb-controller", namespace)
    fresh.spec.holder_identity = "node-b"
    fresh.spec.lease_transitions = 1
    taken = leases.replace_namespaced_lease("l2lb-controller", namespace, fresh)
    assert (taken.spec.holder_identity, taken.spec.lease_transitions) == ("node-b", 1)


def test_lease_times_are_microtime_in_utc(api: client.ApiClient, namespace: str, raw: Callable[..., Any]) -> None:
    leases = client.CoordinationV1Api(api)
    moment = datetime.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    body = lease_body("times", "node-a")
    body["spec"]["renewTime"] = moment  # type: ignore[index]
    created = leases.create_namespaced_lease(namespace, body)
    assert created.spec.renew_time == moment
    _, _, stored = raw("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/times")
    assert stored["spec"]["renewTime"] == "2026-03-04T03:06:07.123456Z"
    assert stored["metadata"]["creationTimestamp"].endswith("Z")
    assert "." not in stored["metadata"]["creationTimestamp"]


def test_lease_validation(api: client.ApiClient, namespace: str) -> None:
    leases = client.CoordinationV1Api(api)
    with pytest.raises(client.ApiException) as caught:
        leases.create_namespaced_lease(namespace, lease_body("bad", "node-a", duration=0))
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["message"] == (
        'Lease.coordination.k8s.io "bad" is invalid: spec.leaseDurationSeconds: Invalid value: 0: '
        "must be greater than 0"
    )


def test_heartbeat_requests_are_counted_per_user(
    server: ControlPlane, user_client: Callable[[str], client.ApiClient], namespace: str
) -> None:
    """A heartbeat's reads and writes, as kube-apiserver's audit log records them for the user who made
    them (an agent's ServiceAccount in production; the test user carol here)."""
    leases = client.CoordinationV1Api(user_client("carol"))
    leases.create_namespaced_lease(namespace, lease_body("l2lb-node-a", "node-a"))
    counter = server.counter("carol")
    for _ in range(3):
        current = leases.read_namespaced_lease("l2lb-node-a", namespace)
        current.spec.renew_time = datetime.datetime.now(datetime.UTC)
        leases.replace_namespaced_lease("l2lb-node-a", namespace, current)
    leases.patch_namespaced_lease("l2lb-node-a", namespace, {"metadata": {"annotations": {"l2lb.io/interfaces": "[]"}}})
    leases.list_namespaced_lease(namespace)
    expected = {("get", "leases"): 3, ("update", "leases"): 3, ("patch", "leases"): 1, ("list", "leases"): 1}
    assert counter.counts() == expected
    assert counter.total() == 8
    assert {(e["objectRef"]["namespace"], e["objectRef"]["apiGroup"]) for e in counter.events()} == {
        (namespace, "coordination.k8s.io")
    }
