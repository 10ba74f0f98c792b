"""From API objects (plain dicts as watched) to the controller's plain data types. Pure, no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..leases import HeartbeatInfo, parse_heartbeat
from ..model.contract import parse_announcements, ready_endpoints
from ..model.model import Policy, parse_policy, parse_pool
from ..model.problems import Problems
from ..model.render import API_VERSION, POLICY_KIND, POOL_KIND
from .types import NodeInfo, PoolInfo, ServiceInfo, ServicePort

EXCLUDE_FROM_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def ingress_ips(service: Mapping[str, Any]) -> tuple[str, ...]:
    """``status.loadBalancer.ingress[].ip`` in order."""
    status = service.get("status") or {}
    lb = status.get("loadBalancer") or {} if isinstance(status, Mapping) else {}
    ingress = lb.get("ingress") or [] if isinstance(lb, Mapping) else []
    return tuple(str(e["ip"]) for e in ingress if isinstance(e, Mapping) and e.get("ip"))


def service_info(service: Mapping[str, Any]) -> ServiceInfo:
    meta = _meta(service)
    spec = service.get("spec") or {}
    if not isinstance(spec, Mapping):
        spec = {}
    ports = []
    for port in spec.get("ports") or []:
        if isinstance(port, Mapping) and isinstance(port.get("port"), int):
            ports.append(
                ServicePort(int(port["port"]), str(port.get("protocol") or "TCP"), str(port.get("name") or ""))
            )
    families = tuple(str(f) for f in spec.get("ipFamilies") or () if isinstance(f, str)) or ("IPv4",)
    lb_class = spec.get("loadBalancerClass")
    lb_ip = spec.get("loadBalancerIP")
    return ServiceInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        type=str(spec.get("type") or "ClusterIP"),
        load_balancer_class=str(lb_class) if lb_class else None,
        labels=_str_map(meta.get("labels")),
        annotations=_str_map(meta.get("annotations")),
        ports=tuple(ports),
        external_traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
        ip_families=families,
        ingress_ips=ingress_ips(service),
        external_ips=tuple(str(ip) for ip in spec.get("externalIPs") or () if isinstance(ip, str)),
        created=str(meta.get("creationTimestamp") or ""),
        load_balancer_ip=str(lb_ip) if lb_ip else None,
    )


def service_key(service: Mapping[str, Any]) -> str:
    meta = _meta(service)
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


def _manifest(kind: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The CR as the model parses it: list items may lack kind/apiVersion, and only the spec matters."""
    spec = raw.get("spec")
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": _meta(raw).get("name")},
        "spec": spec if spec is not None else {},
    }


def parse_pools(raw_pools: Iterable[Mapping[str, Any]]) -> tuple[list[PoolInfo], dict[str, list[str]]]:
    """Valid pools for IPAM, and the problems of each invalid pool CR (by name): skip, don't crash."""
    pools: list[PoolInfo] = []
    invalid: dict[str, list[str]] = {}
    for index, raw in enumerate(sorted(raw_pools, key=lambda p: str(_meta(p).get("name")))):
        meta = _meta(raw)
        name = str(meta.get("name") or f"pools[{index}]")
        problems = Problems()
        pool = parse_pool(_manifest(POOL_KIND, raw), index, problems, [])
        if pool is None or problems:
            invalid[name] = [str(p) for p in problems] or ["not a valid pool"]
            continue
        pools.append(PoolInfo(pool, created=str(meta.get("creationTimestamp") or ""), uid=str(meta.get("uid") or "")))
    return pools, invalid


def parse_policies(raw_policies: Iterable[Mapping[str, Any]]) -> tuple[list[Policy], dict[str, list[str]]]:
    policies: list[Policy] = []
    invalid: dict[str, list[str]] = {}
    for index, raw in enumerate(sorted(raw_policies, key=lambda p: str(_meta(p).get("name")))):
        meta = _meta(raw)
        name = str(meta.get("name") or f"policies[{index}]")
        problems = Problems()
        policy = parse_policy(_manifest(POLICY_KIND, raw), index, problems, [])
        if policy is None or problems:
            invalid[name] = [str(p) for p in problems] or ["not a valid policy"]
            continue
        policies.append(policy)
    return policies, invalid


def local_endpoints(slices: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Service key -> nodes with a ready endpoint (EndpointSlices labelled kubernetes.io/service-name)."""
    return {key: {node for node in nodes if node} for key, nodes in ready_endpoints(slices).items()}


def node_infos(
    leases: Iterable[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
    alive: Callable[[str], bool],
) -> list[NodeInfo]:
    """One NodeInfo per heartbeat Lease; labels and cordon state from the Node object.

    When the API has Node objects at all, a heartbeat without its Node is a node that is gone (not a
    candidate). A cluster with no Node objects (a bare API) schedules on heartbeats alone.
    """
    result = []
    have_nodes = bool(nodes)
    for lease in leases:
        beat: HeartbeatInfo | None = parse_heartbeat(lease)
        if beat is None:
            continue
        node = nodes.get(beat.node)
        if have_nodes and node is None:
            continue
        labels = _str_map(_meta(node).get("labels")) if node is not None else {}
        spec = (node.get("spec") or {}) if node is not None else {}
        schedulable = (
            not (isinstance(spec, Mapping) and spec.get("unschedulable")) and EXCLUDE_FROM_LB_LABEL not in labels
        )
        result.append(
            NodeInfo(
                name=beat.node,
                labels=labels,
                alive=alive(str(_meta(lease).get("name"))),
                draining=beat.draining,
                schedulable=schedulable,
                interfaces=beat.interfaces,
            )
        )
    return sorted(result, key=lambda n: n.name)


def current_assignments(services: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """ip -> node as the Services' announcing-node annotations say now (oldest Service wins a disagreement)."""
    result: dict[str, str] = {}
    ordered = sorted(services, key=lambda s: (str(_meta(s).get("creationTimestamp") or ""), service_key(s)))
    for service in ordered:
        annotations = _str_map(_meta(service).get("annotations"))
        for ip, announcement in parse_announcements(annotations, ingress_ips(service)).items():
            result.setdefault(ip, announcement.node)
    return result


def canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None
