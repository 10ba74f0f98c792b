"""The contract between the elected controller, the speakers and the Ansible side, in one place.

Everything one side writes and another reads is spelled here, once:

* names: the LoadBalancer class, the Service annotations users and migrations write, the agents'
  namespace, the heartbeat and controller Lease names, the labels and annotations on those Leases;
* the assignment object (:data:`ASSIGNMENT_KIND`, one per node in the agents' namespace, named after
  the node): the only thing a speaker acts on. Only the agents' ServiceAccount may write it, so nothing
  a namespace user can write decides what a node answers on the wire (:func:`assignment_body`,
  :func:`parse_assignment`);
* the informational ``l2lb.io/announcing-node`` / ``l2lb.io/announcing-interfaces`` Service
  annotations (:func:`format_announcements`, :func:`parse_announcements`): what users and
  ``verify.yml`` read, and what agents of version 0.1 followed. No agent of this version answers
  because of them, except during the migration from 0.1 (see the speaker), and then only for
  addresses the Service's status subresource and a pool confirm.

The node agent ships this very file as ``l2lb_agent.model.contract``; standard library only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# ---- names ----

GROUP = "l2lb.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
LB_CLASS = "l2lb.io/l2-announcer"
ANNOTATION_IPS = "l2lb.io/ips"
ANNOTATION_SHARING_KEY = "l2lb.io/sharing-key"
ANNOTATION_ANNOUNCING_NODE = "l2lb.io/announcing-node"
ANNOTATION_ANNOUNCING_INTERFACES = "l2lb.io/announcing-interfaces"
ANNOTATION_POOL = "l2lb.io/pool"
# Requested-IP annotations honoured for migration, in order of precedence (ours first).
REQUESTED_IP_ANNOTATIONS = (
    ANNOTATION_IPS,
    "lbipam.cilium.io/ips",
    "io.cilium/lb-ipam-ips",
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
)
SHARING_KEY_ANNOTATIONS = (
    ANNOTATION_SHARING_KEY,
    "lbipam.cilium.io/sharing-key",
    "io.cilium/lb-ipam-sharing-key",
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
)
DEFAULT_NAMESPACE = "l2lb-system"
NODE_LEASE_PREFIX = "l2lb-node-"
CONTROLLER_LEASE = "l2lb-controller"
# Cilium's per-service L2 announcement leases (for checks on Cilium clusters).
CILIUM_LEASE_PREFIX = "cilium-l2announce-"

# Annotations and labels on the heartbeat and controller Leases.
ANNOTATION_LEASE_DURATION = "l2lb.io/lease-duration"
ANNOTATION_INTERFACES = "l2lb.io/interfaces"
ANNOTATION_DRAINING = "l2lb.io/draining"
ANNOTATION_CANDIDATE = "l2lb.io/candidate"  # "true": this agent may run the controller (controller.enabled)
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "baremetal.l2lb"
ROLE_LABEL = "l2lb.io/role"

# ---- the assignment object ----

ASSIGNMENT_KIND = "L2Assignment"
ASSIGNMENT_PLURAL = "l2assignments"
ASSIGNMENT_NODE_LABEL = "l2lb.io/node"
SOURCE_LOAD_BALANCER = "LoadBalancer"  # an address in status.loadBalancer.ingress, from a pool
SOURCE_EXTERNAL_IP = "ExternalIP"  # a spec.externalIPs entry a policy with externalIPs: true announces
SOURCES = (SOURCE_LOAD_BALANCER, SOURCE_EXTERNAL_IP)
# Linux interface names: 1-15 bytes, no '/', no whitespace, not '.' or '..'.
_IFNAME = re.compile(r"^[^/\s:]{1,15}$")

# Why a speaker refuses an entry (the ``reason`` label of l2lb_refused_announcements_total).
REFUSED_WRONG_NODE = "wrong_node"
REFUSED_MALFORMED = "malformed"
REFUSED_NOT_IN_POOL = "not_in_pool"
REFUSED_EXTERNAL_IP_NOT_ALLOWED = "external_ip_not_allowed"
REFUSED_NOT_OURS = "not_ours"  # migration from 0.1: the Service is not ours or its status lacks the IP
REFUSED_SERVICE_ANNOTATION = "service_annotation"  # the controller found announcement annotations it did not write


SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # on every EndpointSlice: the Service it belongs to


def ready_endpoints(slices: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Service key (``namespace/name``) -> node -> how many ready endpoints run there, from EndpointSlices.

    Every Service with a slice has a key, also when none of its endpoints is ready (an empty dict). An
    endpoint without ``nodeName`` counts under ``""``. API semantics: a missing ``ready`` condition means
    ready. An endpoint listed in two slices (one per address family) counts once, by its target or addresses.
    """
    seen: dict[str, dict[str, set[Any]]] = {}
    for eps in slices:
        meta = eps.get("metadata") if isinstance(eps, Mapping) else None
        labels = meta.get("labels") if isinstance(meta, Mapping) else None
        service = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, Mapping) else None
        if not isinstance(service, str) or not service:
            continue
        nodes = seen.setdefault(f"{meta.get('namespace') or 'default'}/{service}", {})  # type: ignore[union-attr]
        endpoints = eps.get("endpoints")
        for endpoint in endpoints if isinstance(endpoints, list) else []:
            if not isinstance(endpoint, Mapping):
                continue
            conditions = endpoint.get("conditions")
            if isinstance(conditions, Mapping) and conditions.get("ready") is False:
                continue
            target = endpoint.get("targetRef")
            identity: Any = (
                (target.get("namespace"), target.get("name"))
                if isinstance(target, Mapping) and target.get("name")
                else tuple(str(a) for a in endpoint.get("addresses") or [])
            )
            nodes.setdefault(str(endpoint.get("nodeName") or ""), set()).add(identity)
    return {key: {node: len(ids) for node, ids in nodes.items()} for key, nodes in seen.items()}


@dataclass(frozen=True)
class Announcement:
    """An IP scheduled onto a node, on these interfaces."""

    ip: str
    node: str
    interfaces: tuple[str, ...]


@dataclass(frozen=True)
class AssignedIP:
    """One entry of a node's assignment object: answer ``ip`` on ``interfaces``, for ``services``."""

    ip: str
    interfaces: tuple[str, ...]
    services: tuple[str, ...] = ()
    source: str = SOURCE_LOAD_BALANCER


@dataclass(frozen=True)
class Refused:
    """An entry a reader did not take, and why (one of the ``REFUSED_*`` reasons)."""

    ip: str
    reason: str
    detail: str


def node_lease_name(node: str) -> str:
    """The heartbeat Lease of a node."""
    return f"{NODE_LEASE_PREFIX}{node}"


def assignment_name(node: str) -> str:
    """The assignment object of a node: named after it, in the agents' namespace."""
    return node


def assignment_spec(node: str, entries: Iterable[AssignedIP], *, standby: bool = False) -> dict[str, Any]:
    """The ``spec`` of a node's assignment object, entries in address order (stable: no needless writes).

    ``standby``: this node stays warm — it is the controller, or one of the warm standbys the controller
    chose (they watch what the controller watches, so they can take over at once); every other candidate
    stays cold and watches only its own objects and the controller Lease.
    """
    announcements = []
    for entry in sorted(entries, key=lambda e: ip_sort_key(e.ip)):
        item: dict[str, Any] = {"ip": entry.ip, "interfaces": list(entry.interfaces), "source": entry.source}
        if entry.services:
            item["services"] = list(entry.services)
        announcements.append(item)
    return {"node": node, "standby": standby, "announcements": announcements}


def assignment_body(
    namespace: str, node: str, entries: Iterable[AssignedIP], *, standby: bool = False
) -> dict[str, Any]:
    """A whole assignment object, as the controller creates it."""
    return {
        "apiVersion": API_VERSION,
        "kind": ASSIGNMENT_KIND,
        "metadata": {
            "name": assignment_name(node),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ASSIGNMENT_NODE_LABEL: _label_value(node)},
        },
        "spec": assignment_spec(node, entries, standby=standby),
    }


def assignment_standby(obj: Mapping[str, Any] | None) -> bool | None:
    """Whether the object makes its node a warm standby; None when it does not say (no object, or 0.1's)."""
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("standby"), bool):
        return None
    return bool(spec["standby"])


def parse_assignment(obj: Mapping[str, Any] | None, node: str) -> tuple[dict[str, AssignedIP], list[Refused]]:
    """ip -> entry for what ``obj`` assigns to ``node``, and every entry refused (never raises).

    Refused: an object for another node (all of it), entries that are not a mapping, have no valid
    address, no valid interface name, or an unknown source. The same address twice is merged.
    """
    if not obj:
        return {}, []
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    if not isinstance(spec, Mapping):
        return {}, [Refused("-", REFUSED_MALFORMED, "spec is not a mapping")]
    raw = spec.get("announcements")
    items = raw if isinstance(raw, list) else []
    owner = spec.get("node")
    if owner != node:
        return {}, [Refused(str(_ip_of(i)), REFUSED_WRONG_NODE, f"spec.node is {owner!r}") for i in items] or [
            Refused("-", REFUSED_WRONG_NODE, f"spec.node is {owner!r}")
        ]
    result: dict[str, AssignedIP] = {}
    refused: list[Refused] = []
    for index, item in enumerate(items):
        where = f"spec.announcements[{index}]"
        if not isinstance(item, Mapping):
            refused.append(Refused("-", REFUSED_MALFORMED, f"{where} is not a mapping"))
            continue
        ip = canonical_ip(item.get("ip"))
        if ip is None:
            refused.append(Refused(str(item.get("ip")), REFUSED_MALFORMED, f"{where}.ip is not an IP address"))
            continue
        interfaces = _strings(item.get("interfaces"))
        bad = [i for i in interfaces if not _IFNAME.match(i)]
        if not interfaces or bad:
            refused.append(Refused(ip, REFUSED_MALFORMED, f"{where}.interfaces: no valid interface names"))
            continue
        source = item.get("source", SOURCE_LOAD_BALANCER)
        if source not in SOURCES:
            refused.append(Refused(ip, REFUSED_MALFORMED, f"{where}.source {source!r} is not one of {SOURCES}"))
            continue
        services = _strings(item.get("services"))
        before = result.get(ip)
        if before is not None:
            interfaces = list(dict.fromkeys([*before.interfaces, *interfaces]))
            services = list(dict.fromkeys([*before.services, *services]))
            source = before.source if before.source == SOURCE_LOAD_BALANCER else source
        result[ip] = AssignedIP(ip, tuple(interfaces), tuple(services), str(source))
    return result, refused


# ---- the informational Service annotations ----


def format_announcements(
    announcements: Sequence[Announcement], ingress_ips: Sequence[str]
) -> tuple[str | None, str | None]:
    """(announcing-node, announcing-interfaces) values for a Service; (None, None) when nothing is announced.

    Common case, one node for all of a Service's ingress IPs::

        l2lb.io/announcing-node: node-a
        l2lb.io/announcing-interfaces: eth0

    When one Service's IPs sit on different nodes or interfaces, ``spec.externalIPs`` are announced, or
    an ingress IP is not announced at all, both list ``ip=value`` pairs instead::

        l2lb.io/announcing-node: 198.18.10.1=node-a,198.18.20.7=node-b
        l2lb.io/announcing-interfaces: 198.18.10.1=eth0,198.18.20.7=eth1+eth2
    """
    if not announcements:
        return None, None
    ordered = sorted(announcements, key=lambda a: ip_sort_key(a.ip))
    nodes = {a.node for a in ordered}
    interface_sets = {tuple(a.interfaces) for a in ordered}
    ips = {a.ip for a in ordered}
    if len(nodes) == 1 and len(interface_sets) == 1 and ips == {canonical_ip(ip) for ip in ingress_ips}:
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
            canonical = canonical_ip(ip)
            if canonical:
                result[canonical] = Announcement(canonical, node_text, interfaces)
        return result
    per_ip_ifaces: dict[str, tuple[str, ...]] = {}
    for part in iface_text.split(","):
        ip, sep, names = part.strip().partition("=")
        canonical = canonical_ip(ip)
        if sep and canonical:
            per_ip_ifaces[canonical] = tuple(n for n in (x.strip() for x in names.split("+")) if n)
    result = {}
    for part in node_text.split(","):
        ip, sep, node = part.strip().partition("=")
        canonical = canonical_ip(ip)
        if sep and canonical and node.strip():
            result[canonical] = Announcement(canonical, node.strip(), per_ip_ifaces.get(canonical, ()))
    return result


# ---- helpers ----


def canonical_ip(text: Any) -> str | None:
    """The canonical text form of an IP address, or None when ``text`` is not one."""
    if not isinstance(text, str):
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def ip_sort_key(ip: str) -> tuple[int, int]:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (99, 0)
    return (address.version, int(address))


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and v]


def _ip_of(item: Any) -> Any:
    return item.get("ip", "-") if isinstance(item, Mapping) else "-"


def _label_value(text: str) -> str:
    """A label value (63 characters at most) naming ``text``; node names longer than that are cut."""
    return text[:63].rstrip("-_.")
