# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers that turn API objects into the facts our verify modules report (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.contract import (
    ANNOTATION_ANNOUNCING_INTERFACES,
    ANNOTATION_ANNOUNCING_NODE,
    ANNOTATION_DRAINING,
    ANNOTATION_INTERFACES,
    ANNOTATION_LEASE_DURATION,
    ANNOTATION_POOL,
    CILIUM_LEASE_PREFIX,
    CONTROLLER_LEASE,
    LB_CLASS,
    NODE_LEASE_PREFIX,
    SHARING_KEY_ANNOTATIONS,
    parse_announcements,
    parse_assignment,
)


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 (as the API writes MicroTime) to an aware datetime."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def lease_view(lease: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Holder, timings and the age of renewTime by *this* host's clock (informative only: skew shows here)."""
    meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
    renew = parse_time(spec.get("renewTime"))
    now = now or datetime.now(UTC)
    annotations = meta.get("annotations") or {}
    duration = annotations.get(ANNOTATION_LEASE_DURATION) or spec.get("leaseDurationSeconds")
    return {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "holder": spec.get("holderIdentity") or "",
        "renew_time": spec.get("renewTime"),
        "renew_age_seconds": round((now - renew).total_seconds(), 3) if renew else None,
        "lease_duration_seconds": float(duration) if duration not in (None, "") else None,
        "resource_version": meta.get("resourceVersion", ""),
        "draining": str(annotations.get(ANNOTATION_DRAINING, "")).lower() == "true",
        "interfaces": _json_list(annotations.get(ANNOTATION_INTERFACES)),
    }


def _json_list(text: Any) -> list[Any]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return []
    return value if isinstance(value, list) else []


def classify_leases(
    first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]] | None, now: datetime | None = None
) -> dict[str, Any]:
    """Group leases into node heartbeats, the controller and Cilium per-service leases.

    With two reads some time apart (``second``), a lease is *alive* when its resourceVersion changed in
    between: liveness judged by observing change, never by comparing another host's clock with ours.
    """
    later = {(lease.get("metadata") or {}).get("name"): lease for lease in (second or first)}
    heartbeats: dict[str, Any] = {}
    controller: dict[str, Any] | None = None
    cilium: dict[str, Any] = {}
    for lease in first:
        name = (lease.get("metadata") or {}).get("name", "")
        current = later.get(name, lease)
        view = lease_view(current, now)
        if second is not None:
            view["alive"] = name in later and view["resource_version"] != lease_view(lease)["resource_version"]
        if name.startswith(NODE_LEASE_PREFIX):
            heartbeats[name[len(NODE_LEASE_PREFIX) :]] = view
        elif name == CONTROLLER_LEASE:
            controller = view
        elif name.startswith(CILIUM_LEASE_PREFIX):
            cilium[name[len(CILIUM_LEASE_PREFIX) :]] = view
    return {"heartbeats": heartbeats, "controller": controller, "cilium": cilium}


CILIUM_LB_CLASS = "io.cilium/l2-announcer"
# Service condition types worth reporting: ours, and Cilium LB-IPAM's (cilium.io/IPAMRequestSatisfied).
CONDITION_PREFIXES = ("l2lb.io/", "cilium.io/", "io.cilium/")


def is_our_load_balancer(service: Mapping[str, Any], cilium: bool = False) -> bool:
    """A LoadBalancer Service l2lb handles (no class or ours); with ``cilium``, also Cilium's L2 class."""
    spec = service.get("spec") or {}
    classes = (None, LB_CLASS, CILIUM_LB_CLASS) if cilium else (None, LB_CLASS)
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in classes


def assignments_by_ip(objects: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    """ip -> (node, interfaces) as the L2Assignment objects say: what the speakers really answer."""
    result: dict[str, tuple[str, list[str]]] = {}
    for obj in objects:
        node = str((obj.get("spec") or {}).get("node") or "")
        entries, _ = parse_assignment(obj, node)
        for ip, entry in entries.items():
            result.setdefault(ip, (node, list(entry.interfaces)))
    return result


def service_view(
    service: Mapping[str, Any],
    assigned: Mapping[str, tuple[str, list[str]]] | None = None,
    endpoints: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """What verify needs to know about one LoadBalancer Service.

    ``assigned`` (from :func:`assignments_by_ip`): the announcing node and interfaces come from the
    assignment objects, which the speakers follow; None (a 0.1 cluster, or Cilium) reads the annotations.
    ``annotated_node`` is always the informational annotation, for comparison. ``announcements`` has the node and
    interfaces per IP (a Service's IPs may sit on different nodes); ``announcing_node`` joins them. ``endpoints`` (from
    ``contract.ready_endpoints``) gives ``ready_endpoints`` (a count) and ``endpoint_nodes`` (node -> count);
    None (EndpointSlices not readable) leaves both None.
    """
    meta, spec, status = service.get("metadata") or {}, service.get("spec") or {}, service.get("status") or {}
    ready = dict((endpoints or {}).get(f"{meta.get('namespace', '')}/{meta.get('name', '')}") or {})
    annotations = meta.get("annotations") or {}
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    interfaces = annotations.get(ANNOTATION_ANNOUNCING_INTERFACES, "")
    node = annotations.get(ANNOTATION_ANNOUNCING_NODE, "")
    iface_list = [i for i in interfaces.split(",") if i]
    ips = [entry["ip"] for entry in ingress if entry.get("ip")]
    if assigned is not None:
        found = [assigned[ip] for ip in ips if ip in assigned]
        node = ",".join(dict.fromkeys(n for n, _ in found))
        iface_list = list(dict.fromkeys(i for _, ifaces in found for i in ifaces))
        per_ip = {ip: {"node": assigned[ip][0], "interfaces": list(assigned[ip][1])} for ip in ips if ip in assigned}
    else:
        per_ip = {
            ip: {"node": a.node, "interfaces": list(a.interfaces)}
            for ip, a in parse_announcements(annotations, ips).items()
        }
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "ips": ips,
        "external_ips": list(spec.get("externalIPs") or []),
        "pool": annotations.get(ANNOTATION_POOL, ""),
        "sharing_key": next((annotations[k] for k in SHARING_KEY_ANNOTATIONS if annotations.get(k)), ""),
        "ports": [
            {"port": p.get("port"), "protocol": p.get("protocol", "TCP"), "name": p.get("name", "")}
            for p in spec.get("ports") or []
        ],
        "external_traffic_policy": spec.get("externalTrafficPolicy", "Cluster"),
        "announcing_node": node,
        "announcing_interfaces": iface_list,
        "announcements": per_ip,
        "annotated_node": annotations.get(ANNOTATION_ANNOUNCING_NODE, ""),
        "ready_endpoints": None if endpoints is None else sum(ready.values()),
        "endpoint_nodes": None if endpoints is None else dict(sorted(ready.items())),
        "conditions": [
            {k: c.get(k, "") for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
            if str(c.get("type", "")).startswith(CONDITION_PREFIXES)
        ],
    }
