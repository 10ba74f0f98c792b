"""The announcing-node / announcing-interfaces annotations: how the controller tells speakers who answers.

Common case, one node for all of a Service's ingress IPs (what people read and what tests assert)::

    l2lb.io/announcing-node: node-a
    l2lb.io/announcing-interfaces: eth0

covers exactly the IPs in ``status.loadBalancer.ingress``. When that is not enough — IPs of one
Service on different nodes or interfaces, ``spec.externalIPs`` announced, or an ingress IP that no
node may announce — both annotations list ``ip=value`` pairs instead::

    l2lb.io/announcing-node: 198.18.10.1=node-a,198.18.20.7=node-b
    l2lb.io/announcing-interfaces: 198.18.10.1=eth0,198.18.20.7=eth1+eth2

Only the IPs listed are announced. Pure functions; the controller writes, speakers read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from .types import ANNOTATION_ANNOUNCING_INTERFACES, ANNOTATION_ANNOUNCING_NODE, Announcement


def format_announcements(
    announcements: Sequence[Announcement], ingress_ips: Sequence[str]
) -> tuple[str | None, str | None]:
    """(announcing-node, announcing-interfaces) values for a Service; (None, None) when nothing is announced."""
    if not announcements:
        return None, None
    ordered = sorted(announcements, key=lambda a: _sort_key(a.ip))
    nodes = {a.node for a in ordered}
    interface_sets = {tuple(a.interfaces) for a in ordered}
    ips = {a.ip for a in ordered}
    if len(nodes) == 1 and len(interface_sets) == 1 and ips == {_canonical(ip) for ip in ingress_ips}:
        return ordered[0].node, ",".join(ordered[0].interfaces)
    node_value = ",".join(f"{a.ip}={a.node}" for a in ordered)
    iface_value = ",".join(f"{a.ip}={'+'.join(a.interfaces)}" for a in ordered)
    return node_value, iface_value


def parse_announcements(annotations: Mapping[str, Any], ingress_ips: Sequence[str]) -> dict[str, Announcement]:
    """ip -> Announcement as the annotations say (either form); malformed entries are skipped."""
    node_text = str(annotations.get(ANNOTATION_ANNOUNCING_NODE) or "").strip()
    if not node_text:
        return {}
    iface_text = str(annotations.get(ANNOTATION_ANNOUNCING_INTERFACES) or "").strip()
    if "=" not in node_text:
        interfaces = tuple(i for i in (p.strip() for p in iface_text.split(",")) if i and "=" not in i)
        result = {}
        for ip in ingress_ips:
            canonical = _canonical(ip)
            if canonical:
                result[canonical] = Announcement(canonical, node_text, interfaces)
        return result
    per_ip_ifaces: dict[str, tuple[str, ...]] = {}
    for part in iface_text.split(","):
        ip, sep, names = part.strip().partition("=")
        canonical = _canonical(ip)
        if sep and canonical:
            per_ip_ifaces[canonical] = tuple(n for n in (x.strip() for x in names.split("+")) if n)
    result = {}
    for part in node_text.split(","):
        ip, sep, node = part.strip().partition("=")
        canonical = _canonical(ip)
        if sep and canonical and node.strip():
            result[canonical] = Announcement(canonical, node.strip(), per_ip_ifaces.get(canonical, ()))
    return result


def _canonical(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return ""


def _sort_key(ip: str) -> tuple[int, int]:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (99, 0)
    return (address.version, int(address))
