"""Heartbeat and controller Lease bodies: how they are written and read (no I/O, no judgement).

The names and annotation keys live in :mod:`.model.contract`; this module turns them into Lease objects
and back (:func:`heartbeat_body`, :func:`parse_heartbeat`) and reads the timing fields every observer needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .config import LeaseTiming
from .controller.types import InterfaceInfo
from .model.contract import (  # noqa: F401  (re-exported for the agent's other modules)
    ANNOTATION_CANDIDATE,
    ANNOTATION_DRAINING,
    ANNOTATION_INTERFACES,
    ANNOTATION_LEASE_DURATION,
    CONTROLLER_LEASE,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NODE_LEASE_PREFIX,
    ROLE_LABEL,
    node_lease_name,
)


def micro_time(when: datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC).

    Never a whole second: the kubernetes client re-serializes the body's times with ``isoformat()``, which
    drops a zero fraction, and kube-apiserver rejects a MicroTime without one (400) — one write in a million.
    """
    moment = when or datetime.now(timezone.utc)
    if moment.microsecond == 0:
        moment = moment.replace(microsecond=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_duration(lease: Mapping[str, Any], default: float = 2.0) -> float:
    """The precise duration: our annotation (the API field is whole seconds), else the field."""
    meta = lease.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(ANNOTATION_LEASE_DURATION)
    if text is not None:
        try:
            value = float(text)
            if value > 0:
                return value
        except ValueError:
            pass
    seconds = (lease.get("spec") or {}).get("leaseDurationSeconds")
    return float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else default


def lease_holder(lease: Mapping[str, Any] | None) -> str:
    if not lease:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@dataclass(frozen=True)
class HeartbeatInfo:
    """What a node's heartbeat Lease says (apart from liveness, which is the observer's judgement)."""

    node: str
    duration: float
    draining: bool
    interfaces: tuple[InterfaceInfo, ...]
    interfaces_known: bool  # false when the annotation is missing or unreadable
    candidate: bool = False  # the agent may run the controller (it can be a warm standby)


def parse_heartbeat(lease: Mapping[str, Any]) -> HeartbeatInfo | None:
    """Read a heartbeat Lease; None for leases that are not node heartbeats."""
    meta = lease.get("metadata") or {}
    name = str(meta.get("name") or "")
    if not name.startswith(NODE_LEASE_PREFIX):
        return None
    node = name[len(NODE_LEASE_PREFIX) :]
    annotations = meta.get("annotations") or {}
    interfaces, known = parse_interfaces(annotations.get(ANNOTATION_INTERFACES))
    return HeartbeatInfo(
        node=node,
        duration=lease_duration(lease),
        draining=str(annotations.get(ANNOTATION_DRAINING, "")).lower() == "true",
        interfaces=interfaces,
        interfaces_known=known,
        candidate=str(annotations.get(ANNOTATION_CANDIDATE, "")).lower() == "true",
    )


def parse_interfaces(text: Any) -> tuple[tuple[InterfaceInfo, ...], bool]:
    if not isinstance(text, str):
        return (), False
    try:
        raw = json.loads(text)
    except ValueError:
        return (), False
    if not isinstance(raw, list):
        return (), False
    result = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        subnets = entry.get("subnets") or []
        result.append(
            InterfaceInfo(
                name=entry["name"],
                mac=str(entry.get("mac") or ""),
                up=bool(entry.get("up")),
                subnets=tuple(str(s) for s in subnets if isinstance(s, str)),
                ndp=entry.get("ndp") is True,
            )
        )
    return tuple(result), True


def interfaces_annotation(interfaces: Sequence[InterfaceInfo]) -> str:
    body = [
        {"name": i.name, "mac": i.mac, "up": i.up, "subnets": list(i.subnets), **({"ndp": True} if i.ndp else {})}
        for i in interfaces
    ]
    return json.dumps(sorted(body, key=lambda e: str(e["name"])), separators=(",", ":"))


def heartbeat_body(
    namespace: str,
    node: str,
    timing: LeaseTiming,
    interfaces: Sequence[InterfaceInfo],
    *,
    draining: bool,
    candidate: bool = False,
    resource_version: str = "",
    acquire_time: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The heartbeat Lease as this node writes it."""
    renew = micro_time(now)
    annotations = {
        ANNOTATION_LEASE_DURATION: str(float(timing.lease_duration)),
        ANNOTATION_INTERFACES: interfaces_annotation(interfaces),
    }
    if draining:
        annotations[ANNOTATION_DRAINING] = "true"
    if candidate:
        annotations[ANNOTATION_CANDIDATE] = "true"
    metadata: dict[str, Any] = {
        "name": node_lease_name(node),
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROLE_LABEL: "heartbeat"},
        "annotations": annotations,
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": timing.lease_duration_seconds,
            "acquireTime": acquire_time or renew,
            "renewTime": renew,
        },
    }
