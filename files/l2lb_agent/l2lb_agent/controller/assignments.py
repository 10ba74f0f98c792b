"""The assignment objects: what the scheduler decided, per node, as the speakers read it. Pure.

One ``L2Assignment`` per node that has a heartbeat (empty when the node announces nothing: its speaker
then knows a controller of this version runs and never falls back to the 0.1 annotations), named after
the node, in the agents' namespace. Writes are ordered make-before-break: objects that gain addresses
first, then those that only lose some, deletions last, so a moving IP is never unassigned everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..model.contract import (
    SOURCE_EXTERNAL_IP,
    SOURCE_LOAD_BALANCER,
    AssignedIP,
    assignment_body,
    assignment_spec,
    assignment_standby,
)
from .ipam import IPAMResult
from .scheduler import ScheduleResult


@dataclass(frozen=True)
class AssignmentWrite:
    """Create, replace or delete one node's assignment object."""

    op: str  # "create" | "update" | "delete"
    node: str
    name: str
    body: dict[str, Any] | None = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def desired_assignments(ipam: IPAMResult, sched: ScheduleResult, nodes: Iterable[str]) -> dict[str, list[AssignedIP]]:
    """node -> its entries, for every node with a heartbeat and every node the scheduler used."""
    lb_ips = {ip for alloc in ipam.services.values() for ip in alloc.ips}
    result: dict[str, list[AssignedIP]] = {node: [] for node in nodes}
    for ip, announcement in sched.assignments.items():
        source = SOURCE_LOAD_BALANCER if ip in lb_ips else SOURCE_EXTERNAL_IP
        services = tuple(sorted(sched.ip_services.get(ip, ())))
        result.setdefault(announcement.node, []).append(
            AssignedIP(ip, tuple(announcement.interfaces), services, source)
        )
    return result


def assigned_nodes(objects: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """ip -> node as the assignment objects say now (what keeps assignments sticky across controllers)."""
    result: dict[str, str] = {}
    for obj in sorted(objects, key=lambda o: str((o.get("metadata") or {}).get("name") or "")):
        spec = obj.get("spec")
        if not isinstance(spec, Mapping):
            continue
        node = spec.get("node")
        items = spec.get("announcements")
        if not isinstance(node, str) or not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("ip"), str):
                result.setdefault(item["ip"], node)
    return result


def choose_standbys(candidates: Iterable[str], current: Mapping[str, Mapping[str, Any]], count: int) -> set[str]:
    """Up to ``count`` warm standbys among ``candidates`` (alive, not draining, not the leader, controller enabled).

    Sticky: a standby that is still a candidate stays one (going warm costs a full list of everything);
    free places go to candidates in name order, so every controller picks the same ones.
    """
    eligible = sorted(set(candidates))
    keep = [n for n in eligible if assignment_standby(current.get(n)) is True][:count]
    fill = [n for n in eligible if n not in keep][: max(0, count - len(keep))]
    return set(keep + fill)


def plan_assignments(
    desired: Mapping[str, list[AssignedIP]],
    current: Mapping[str, Mapping[str, Any]],
    namespace: str,
    standbys: Iterable[str] = (),
) -> list[AssignmentWrite]:
    """The writes that make the objects say ``desired``; ``current`` is keyed by object name."""
    warm = set(standbys)
    grows: list[AssignmentWrite] = []
    shrinks: list[AssignmentWrite] = []
    deletes: list[AssignmentWrite] = []
    by_node: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for name, obj in current.items():
        raw_spec = obj.get("spec")
        by_node[str(name)] = (obj, raw_spec if isinstance(raw_spec, Mapping) else {})
    for node in sorted(desired):
        body = assignment_body(namespace, node, desired[node], standby=node in warm)
        name = body["metadata"]["name"]
        wanted_ips = {e.ip for e in desired[node]}
        if name not in by_node:
            grows.append(AssignmentWrite("create", node, name, body, tuple(sorted(wanted_ips))))
            continue
        obj, spec = by_node[name]
        if spec == assignment_spec(node, desired[node], standby=node in warm):
            continue
        have = {str(i.get("ip")) for i in (spec.get("announcements") or []) if isinstance(i, Mapping)}
        meta = dict(obj.get("metadata") or {})
        body["metadata"] = {**meta, "labels": {**(meta.get("labels") or {}), **body["metadata"]["labels"]}}
        write = AssignmentWrite(
            "update", node, name, body, tuple(sorted(wanted_ips - have)), tuple(sorted(have - wanted_ips))
        )
        (grows if write.added or not write.removed else shrinks).append(write)
    wanted_names = {assignment_body(namespace, node, [])["metadata"]["name"] for node in desired}
    for name in sorted(set(by_node) - wanted_names):
        obj, spec = by_node[name]
        gone = tuple(sorted(str(i.get("ip")) for i in (spec.get("announcements") or []) if isinstance(i, Mapping)))
        deletes.append(AssignmentWrite("delete", str(spec.get("node") or name), name, None, (), gone))
    return grows + shrinks + deletes
