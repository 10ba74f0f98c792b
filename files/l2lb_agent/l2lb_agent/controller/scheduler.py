"""Scheduling: which node announces each service IP, on which interfaces. Pure and deterministic.

The unit of scheduling is an IP, not a Service: Services sharing an IP are placed together, so two
nodes never answer ARP for one address. A node is eligible for an IP when it is alive, not draining,
schedulable, selected by a policy that selects *every* Service on the IP (with ``loadBalancerIPs``
for ingress IPs, ``externalIPs`` for ``spec.externalIPs``), has an up interface matching that
policy, and — for ``externalTrafficPolicy: Local`` Services — a ready local endpoint.

Assignments are sticky: an IP stays on its current node while that node is eligible (no fail-back
when a node returns). New or displaced IPs go to the least-loaded eligible node, ties by name, in
address order. Eligibility is computed once per distinct set of selecting policies, not per IP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from ..model.model import Policy
from ..model.selectors import uses_pseudo_labels
from .ipam import IPAMResult, gc_paused
from .types import (
    EXTERNAL_TRAFFIC_POLICY_LOCAL,
    REASON_NO_ELIGIBLE_NODE,
    Announcement,
    InterfaceInfo,
    NodeInfo,
    Refusal,
    ServiceInfo,
)

__all__ = ["ScheduleResult", "schedule"]


@dataclass(frozen=True)
class ScheduleResult:
    """Every announced IP is either in ``assignments`` or in ``unschedulable`` (never both).

    ``ip_services`` maps each of those IPs to the Services announced on it (LoadBalancer ingress
    and externalIPs alike); ``service_ips`` is the reverse, for writing each Service's annotations.
    """

    assignments: dict[str, Announcement]
    unschedulable: dict[str, Refusal]
    ip_services: dict[str, tuple[str, ...]] = field(default_factory=dict)
    service_ips: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class _Member:
    """A Service on an IP, and through which field (ingress or spec.externalIPs) it got there."""

    service: ServiceInfo
    external: bool


@dataclass
class _Candidates:
    """For one set of eligible policies: the usable nodes and their matching up interfaces."""

    interfaces: dict[str, tuple[InterfaceInfo, ...]]
    ordered: list[str]  # node names, sorted
    problem: str = ""


def _mask_bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


class _Scheduler:
    def __init__(
        self,
        policies: Sequence[Policy],
        nodes: Sequence[NodeInfo],
        local_endpoints: Mapping[str, AbstractSet[str]],
    ) -> None:
        self.policies = list(policies)
        self.nodes = sorted(nodes, key=lambda n: n.name)
        self.node_by_name = {n.name: n for n in self.nodes}
        self.local_endpoints = local_endpoints
        self.lb_bits = sum(1 << i for i, p in enumerate(self.policies) if p.load_balancer_ips)
        self.ext_bits = sum(1 << i for i, p in enumerate(self.policies) if p.external_ips)
        # Per node: which policies select it, and each policy's matching up interfaces there.
        self.node_masks: dict[str, int] = {}
        self.node_policy_ifaces: dict[tuple[str, int], tuple[InterfaceInfo, ...]] = {}
        for node in self.nodes:
            mask = 0
            for i, policy in enumerate(self.policies):
                if policy.selects_node(node.labels):
                    mask |= 1 << i
                    self.node_policy_ifaces[(node.name, i)] = tuple(
                        iface for iface in node.interfaces if iface.up and policy.matches_interface(iface.name)
                    )
            self.node_masks[node.name] = mask
        self._service_masks: dict[tuple[tuple[str, str], ...], int] = {}
        # Cilium's pseudo-labels only when a policy looks at them: else the mask cache stays keyed by label set.
        self.pseudo = uses_pseudo_labels(p.service_selector for p in self.policies)
        self._candidates: dict[tuple[int, int], _Candidates] = {}
        self._subnets: dict[tuple[str, str], tuple[tuple[int, int, int], ...]] = {}

    def service_mask(self, service: ServiceInfo) -> int:
        """Bitmask of policies whose serviceSelector selects the Service (cached by labels)."""
        match = service.selector_labels if self.pseudo else service.labels
        labels = tuple(sorted(match.items()))
        mask = self._service_masks.get(labels)
        if mask is None:
            mask = sum(1 << i for i, p in enumerate(self.policies) if p.selects_service(match))
            self._service_masks[labels] = mask
        return mask

    def member_mask(self, member: _Member) -> int:
        return self.service_mask(member.service) & (self.ext_bits if member.external else self.lb_bits)

    def candidates(self, mask: int, version: int = 4) -> _Candidates:
        """The nodes and interfaces that may announce an address of IP ``version`` for policies ``mask``."""
        cached = self._candidates.get((mask, version))
        if cached is None:
            cached = self._compute_candidates(mask, version)
            self._candidates[(mask, version)] = cached
        return cached

    def _compute_candidates(self, mask: int, version: int) -> _Candidates:
        interfaces: dict[str, tuple[InterfaceInfo, ...]] = {}
        selected_usable: list[str] = []
        unusable: list[str] = []
        no_ndp: list[str] = []  # IPv6: nodes with matching up interfaces, none of them answering NDP
        for node in self.nodes:
            selecting = self.node_masks[node.name] & mask
            if not selecting:
                continue
            if not node.alive:
                unusable.append(f"{node.name} (heartbeat expired)")
                continue
            if node.draining:
                unusable.append(f"{node.name} (draining)")
                continue
            if not node.schedulable:
                unusable.append(f"{node.name} (unschedulable)")
                continue
            selected_usable.append(node.name)
            bits = _mask_bits(selecting)
            if len(bits) == 1:
                matching = self.node_policy_ifaces[(node.name, bits[0])]
            else:
                names = {iface.name for bit in bits for iface in self.node_policy_ifaces[(node.name, bit)]}
                matching = tuple(iface for iface in node.interfaces if iface.name in names)
            if version == 6:  # IPv6 only where the speaker answers NDP
                with_ndp = tuple(iface for iface in matching if iface.ndp)
                if matching and not with_ndp:
                    no_ndp.append(node.name)
                matching = with_ndp
            if matching:
                interfaces[node.name] = matching
        result = _Candidates(interfaces, sorted(interfaces))
        if interfaces:
            return result
        policy_names = ", ".join(f'"{self.policies[i].name}"' for i in _mask_bits(mask))
        if not selected_usable:
            detail = f"; selected but not usable: {', '.join(unusable)}" if unusable else ""
            result.problem = f"no policy selects any alive node (policy {policy_names}){detail}"
            return result
        patterns = sorted({p for i in _mask_bits(mask) for p in self.policies[i].interfaces})
        if patterns and all(self.policies[i].interfaces for i in _mask_bits(mask)):
            what = f"up interface matching {' or '.join(patterns)}"
        else:
            what = "up interface"
        if no_ndp:
            result.problem = (
                f"no node answers IPv6 here: {','.join(no_ndp)} have an {what} but answer no NDP on it (IPv6 is "
                f"off on the interface, or the agent is older than 0.2.0 and answers only ARP) (policy {policy_names})"
            )
            return result
        result.problem = f"nodes {','.join(selected_usable)} have no {what} (policy {policy_names})"
        return result

    def announce_interfaces(self, node: str, ifaces: tuple[InterfaceInfo, ...], ip: tuple[int, int]) -> tuple[str, ...]:
        """The matching up interfaces whose subnet holds the IP if any do, else all matching ones."""
        if len(ifaces) == 1:
            return (ifaces[0].name,)
        version, value = ip
        on_link = tuple(
            iface.name
            for iface in ifaces
            if any(v == version and lo <= value <= hi for v, lo, hi in self.subnets(node, iface))
        )
        return on_link or tuple(iface.name for iface in ifaces)

    def subnets(self, node: str, iface: InterfaceInfo) -> tuple[tuple[int, int, int], ...]:
        cached = self._subnets.get((node, iface.name))
        if cached is None:
            parsed: list[tuple[int, int, int]] = []
            for cidr in iface.subnets:
                try:
                    net = ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    continue
                parsed.append((net.version, int(net.network_address), int(net.broadcast_address)))
            cached = tuple(parsed)
            self._subnets[(node, iface.name)] = cached
        return cached


def _no_policy_message(members: Sequence[_Member], masks: Sequence[int]) -> str:
    if len(members) != len(masks):
        raise ValueError(f"{len(members)} members but {len(masks)} policy masks")
    for member, mask in zip(members, masks):
        if not mask:
            field_name = "externalIPs" if member.external else "loadBalancerIPs"
            return f"no policy selects the Service {member.service.key} (no policy with {field_name}: true selects it)"
    keys = ", ".join(m.service.key for m in members)
    return f"no policy selects the Service: no single policy selects all Services sharing this IP ({keys})"


def schedule(
    allocation: IPAMResult,
    services: Sequence[ServiceInfo],
    policies: Sequence[Policy],
    nodes: Sequence[NodeInfo],
    local_endpoints: Mapping[str, AbstractSet[str]] | None = None,
    current: Mapping[str, str] | None = None,
) -> ScheduleResult:
    """Place every announced IP on a node; see the module docstring for the rules.

    ``allocation`` says which LoadBalancer IPs exist and who shares them; ``services`` supplies
    labels, traffic policy and ``spec.externalIPs`` (any Service type). ``local_endpoints`` maps a
    Service key to the nodes with a ready local endpoint; ``current`` maps IP -> node as read from
    the Services' announcing-node annotations. Feeding the result back as ``current`` with nothing
    else changed returns the same result.
    """
    with gc_paused():
        return _schedule(allocation, services, policies, nodes, local_endpoints or {}, current or {})


def _schedule(
    allocation: IPAMResult,
    services: Sequence[ServiceInfo],
    policies: Sequence[Policy],
    nodes: Sequence[NodeInfo],
    local_endpoints: Mapping[str, AbstractSet[str]],
    current: Mapping[str, str],
) -> ScheduleResult:
    scheduler = _Scheduler(policies, nodes, local_endpoints)
    by_key = {s.key: s for s in services}

    members: dict[str, list[_Member]] = {}
    for key, alloc in allocation.services.items():
        service = by_key.get(key)
        if service is None:
            continue
        for ip in alloc.ips:
            members.setdefault(ip, []).append(_Member(service, external=False))
    if scheduler.ext_bits:
        for service in services:
            # externalIPs are ours only when a policy asks for them; otherwise not our business at all.
            if not service.external_ips or not scheduler.member_mask(_Member(service, external=True)):
                continue
            for text in service.external_ips:
                try:
                    ip = str(ipaddress.ip_address(text.strip()))
                except ValueError:
                    continue
                members.setdefault(ip, []).append(_Member(service, external=True))

    parsed: dict[str, tuple[int, int]] = {}
    for ip, on_ip in members.items():
        on_ip.sort(key=lambda m: (m.service.key, m.external))  # messages and results independent of input order
        address = ipaddress.ip_address(ip)
        parsed[ip] = (address.version, int(address))
    order = sorted(members, key=parsed.__getitem__)

    assignments: dict[str, Announcement] = {}
    unschedulable: dict[str, Refusal] = {}
    load: dict[str, int] = {node.name: 0 for node in scheduler.nodes}
    pending: list[tuple[str, _Candidates, AbstractSet[str] | None]] = []

    for ip in order:
        on_ip = members[ip]
        masks = [scheduler.member_mask(m) for m in on_ip]
        mask = -1
        for m in masks:
            mask &= m
        if mask <= 0:
            unschedulable[ip] = Refusal(REASON_NO_ELIGIBLE_NODE, _no_policy_message(on_ip, masks))
            continue
        cands = scheduler.candidates(mask, parsed[ip][0])
        if cands.problem:
            unschedulable[ip] = Refusal(REASON_NO_ELIGIBLE_NODE, cands.problem)
            continue
        allowed: AbstractSet[str] | None = None
        local_keys = sorted(
            {m.service.key for m in on_ip if m.service.external_traffic_policy == EXTERNAL_TRAFFIC_POLICY_LOCAL}
        )
        for key in local_keys:
            ready = local_endpoints.get(key, frozenset())
            allowed = ready if allowed is None else allowed & ready
        if allowed is not None and not any(name in cands.interfaces for name in allowed):
            unschedulable[ip] = Refusal(
                REASON_NO_ELIGIBLE_NODE,
                f"no ready local endpoint on any eligible node for {', '.join(local_keys)} "
                "(externalTrafficPolicy: Local)",
            )
            continue
        node = current.get(ip)
        if node is not None and node in cands.interfaces and (allowed is None or node in allowed):
            assignments[ip] = Announcement(
                ip, node, scheduler.announce_interfaces(node, cands.interfaces[node], parsed[ip])
            )
            load[node] += 1
        else:
            pending.append((ip, cands, allowed))

    # A Service's IPs stay together (its IPv4 and IPv6 address on one node, as MetalLB and Cilium do): a new IP
    # goes to a node that already holds another IP of one of its Services, if that node is eligible for it.
    by_service: dict[str, list[str]] = {}
    for ip in order:
        for member in members[ip]:
            by_service.setdefault(member.service.key, []).append(ip)
    for ip, cands, allowed in pending:
        eligible = cands.ordered if allowed is None else [n for n in cands.ordered if n in allowed]
        partners = {
            assignments[other].node
            for member in members[ip]
            for other in by_service[member.service.key]
            if other != ip and other in assignments
        }
        node = min(eligible, key=lambda n: (n not in partners, load[n], n))
        assignments[ip] = Announcement(
            ip, node, scheduler.announce_interfaces(node, cands.interfaces[node], parsed[ip])
        )
        load[node] += 1

    ip_services = {ip: tuple(dict.fromkeys(m.service.key for m in members[ip])) for ip in order}
    service_ips: dict[str, list[str]] = {}
    for ip in order:
        for key in ip_services[ip]:
            service_ips.setdefault(key, []).append(ip)
    return ScheduleResult(
        assignments=dict(sorted(assignments.items(), key=lambda item: parsed[item[0]])),
        unschedulable=unschedulable,
        ip_services=ip_services,
        service_ips={key: tuple(ips) for key, ips in service_ips.items()},
    )
