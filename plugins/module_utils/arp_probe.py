# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Neighbour probe for the arp_probe module: who answers ARP (IPv4) or NDP (IPv6) for an IP on this host's L2
segment, from which MAC, how fast.

Three parts, I/O only in the middle one:

- planning (pure): pick the interface for each IP by its directly attached subnet (netinfo facts) and the
  sender IP of the question, or explain why the IP cannot be probed from here;
- the wire: scapy builds the questions (ARP who-has; for IPv6 a Neighbor Solicitation to the target's
  solicited-node group) and dissects the answers; raw AF_PACKET sockets bound to ETH_P_ARP or ETH_P_IPV6
  carry them (no libpcap), so the kernel's neighbour table is neither read nor changed;
- shaping (pure): responders per MAC, split brain, latency and a diagnosis a user can act on.

Every round sends one question per IP, then listens ``timeout`` seconds for all answers, so a second,
slower responder is still seen. Neither ARP nor NDP has a request id: an answer is matched to its IP by the
IP it is about (ARP sender IP; the NA's target) and the address it is sent to (our sender IP). An answer
later than ``timeout`` counts for the next round. For IPv6 only solicited advertisements count as answers.
"""

from __future__ import annotations

import ipaddress
import itertools
import select
import socket
import statistics
import struct
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.netinfo import (
    Interface,
    attached_address,
    attached_interfaces,
)

try:
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import ARP, Ether
    from scapy.utils6 import in6_getnsma, in6_getnsmac
except ImportError:
    HAS_SCAPY = False
    SCAPY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_SCAPY = True
    SCAPY_IMPORT_ERROR = None

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
SO_TIMESTAMPNS = 35  # Linux; Python's socket module does not export it
_TIMESPEC = struct.Struct("@qq")
_BROADCAST = "ff:ff:ff:ff:ff:ff"
_ARP_REQUEST = 1
_ARP_REPLY = 2


class ArpProbeError(Exception):
    """An option or a host condition that stops the whole probe; the message names the object and the fix."""


class ArpSocketPermissionError(ArpProbeError):
    """The raw socket could not be opened for lack of privilege."""


# ---- planning ----


@dataclass(frozen=True)
class ProbePlan:
    """How one IP is probed (interface, sender IP), or why it cannot be (``error`` and ``diagnosis``)."""

    ip: str
    interface: str | None = None
    source_ip: str | None = None
    error: str | None = None
    diagnosis: str | None = None
    attached: bool = True
    """Whether a subnet of ``interface`` contains ``ip`` (False only when the interface was forced)."""
    warnings: tuple[str, ...] = ()

    @property
    def probeable(self) -> bool:
        return self.error is None


def check_targets(ips: Sequence[str]) -> list[str]:
    """The addresses to probe, canonical and without repeats; ArpProbeError naming every bad entry."""
    targets: list[str] = []
    bad = []
    for position, value in enumerate(ips):
        text = str(value).strip()
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            bad.append(f"ips[{position}] {value!r}: not an IP address (write a single address such as 198.18.0.241)")
            continue
        if address.is_multicast or address.is_unspecified or address.is_loopback or address.is_link_local:
            bad.append(f"ips[{position}] {value!r}: not a unicast address a service could have")
        elif str(address) not in targets:
            targets.append(str(address))
    if bad:
        raise ArpProbeError("; ".join(bad))
    if not targets:
        raise ArpProbeError("ips: give at least one address to probe")
    return targets


def check_source_ip(source_ip: str | None) -> str | None:
    """The sender IP option in canonical form (None when not set); it is used for the targets of its family."""
    if source_ip is None or not str(source_ip).strip():
        return None
    try:
        address = ipaddress.ip_address(str(source_ip).strip())
    except ValueError:
        raise ArpProbeError(f"source_ip {source_ip!r}: not an IP address") from None
    if address.is_unspecified or address.is_multicast:
        raise ArpProbeError(f"source_ip {source_ip!r}: must be an address of this host")
    return str(address)


def find_interface(name: str, interfaces: Sequence[Interface]) -> Interface:
    """The interface called ``name``; ArpProbeError listing the interfaces that exist otherwise."""
    for iface in interfaces:
        if iface.name == name:
            return iface
    names = ", ".join(i.name for i in interfaces) or "none"
    raise ArpProbeError(f"interface {name!r} does not exist on this host; interfaces here: {names}")


def choose_interface(ip: str, interfaces: Sequence[Interface]) -> Interface | None:
    """The interface to probe ``ip`` on: one whose directly attached subnet contains it, as the kernel would route.

    Among several, one that can do ARP and is up comes first, then the lowest index.
    """
    candidates = attached_interfaces(ip, interfaces)
    if not candidates:
        return None
    return min(candidates, key=lambda i: (not i.can_announce, not i.usable, not i.arp, i.index))


def protocol(ip: str) -> str:
    """How ``ip``'s neighbours are asked: ``ARP`` (IPv4) or ``NDP`` (IPv6)."""
    return "NDP" if ipaddress.ip_address(ip).version == 6 else "ARP"


def wrong_subnet_diagnosis(ip: str) -> str:
    tool = "ndisc6" if protocol(ip) == "NDP" else "arping"
    return (
        f"this host has no interface in a subnet containing {ip} — {protocol(ip)} only works on the same L2 "
        f"segment ({tool} would silently get no answer); run the probe from a host in that subnet"
    )


def unusable_reason(iface: Interface) -> str | None:
    """Why ARP or NDP cannot be sent on ``iface`` (None if it can)."""
    if not iface.arp:
        return f"interface {iface.name} does not do ARP or NDP (not Ethernet, or NOARP)"
    if not iface.admin_up:
        return f"interface {iface.name} is administratively down"
    if not iface.carrier:
        return f"interface {iface.name} has no carrier (cable, switch port or peer down)"
    if not iface.usable:
        return f"interface {iface.name} is not operational (state {iface.oper_state})"
    return None


def plan_probe(
    ip: str, interfaces: Sequence[Interface], *, interface: str | None = None, source_ip: str | None = None
) -> ProbePlan:
    """Interface and sender IP for probing ``ip``, or a plan carrying the error and its diagnosis.

    ``interface`` forces the interface (ArpProbeError if it does not exist); ``source_ip`` forces the
    sender IP for targets of its family, which otherwise is the interface's own address in the subnet
    containing ``ip`` (or, on a forced interface without such a subnet, its first address of that family;
    for IPv6 a global one before a link-local one).
    """
    version = ipaddress.ip_address(ip).version
    if source_ip is not None and ipaddress.ip_address(source_ip).version != version:
        source_ip = None  # the option is for the other family
    if interface is not None:
        iface = find_interface(interface, interfaces)
    else:
        chosen = choose_interface(ip, interfaces)
        if chosen is None:
            return ProbePlan(
                ip, error=f"no directly attached subnet contains {ip}", diagnosis=wrong_subnet_diagnosis(ip)
            )
        iface = chosen
    reason = unusable_reason(iface)
    if reason is not None:
        return ProbePlan(
            ip,
            interface=iface.name,
            error=reason,
            diagnosis=f"bring {iface.name} up (or set the interface option to another one) and probe again",
        )
    own = attached_address(ip, iface)
    warnings: list[str] = []
    if source_ip is not None:
        sender = source_ip
        if all(a.address != source_ip for a in iface.addresses):
            warnings.append(
                f"source_ip {source_ip} is not an address of {iface.name}: the hosts that answer may cache "
                f"{source_ip} at this host's MAC"
            )
    elif own is not None:
        sender = own.address
    else:
        same = sorted(
            (a.address for a in iface.addresses if a.family == version),
            key=lambda a: ipaddress.ip_address(a).is_link_local,
        )
        if not same:
            return ProbePlan(
                ip,
                interface=iface.name,
                attached=False,
                error=f"interface {iface.name} has no IPv{version} address to send the {_question(ip)} from",
                diagnosis=f"set source_ip to an address in the subnet of {ip}, or probe from a host in that subnet",
            )
        sender = same[0]
    if sender == ip:
        return ProbePlan(
            ip,
            interface=iface.name,
            source_ip=sender,
            error=f"{ip} is this host's own address on {iface.name}",
            diagnosis=f"probe from another host: a host does not answer its own {_question(ip)}",
        )
    return ProbePlan(ip, interface=iface.name, source_ip=sender, attached=own is not None, warnings=tuple(warnings))


def plan_probes(
    ips: Sequence[str],
    interfaces: Sequence[Interface],
    *,
    interface: str | None = None,
    source_ip: str | None = None,
) -> list[ProbePlan]:
    """:func:`plan_probe` for every IP (validated by :func:`check_targets`/:func:`check_source_ip` first)."""
    targets = check_targets(ips)
    sender = check_source_ip(source_ip)
    if interface is not None:
        find_interface(interface, interfaces)  # a missing interface fails the whole probe, before any traffic
    return [plan_probe(ip, interfaces, interface=interface, source_ip=sender) for ip in targets]


# ---- shaping ----


@dataclass(frozen=True)
class Reply:
    """One ARP reply to one of our who-has: who sent it, in which round, how long after the request."""

    mac: str
    round: int
    latency_ms: float


@dataclass
class ProbeOutcome:
    """What the wire gave for one plan: requests sent, replies received, or why it could not be probed."""

    requests: int = 0
    replies: list[Reply] = field(default_factory=list)
    error: str | None = None
    source_mac: str | None = None


def responders(replies: Iterable[Reply]) -> list[dict[str, Any]]:
    """One entry per answering MAC, in order of first answer: ``mac``, ``replies``, ``first_latency_ms``."""
    by_mac: dict[str, dict[str, Any]] = {}
    for reply in sorted(replies, key=lambda r: (r.round, r.latency_ms)):
        entry = by_mac.setdefault(reply.mac, {"mac": reply.mac, "replies": 0, "first_latency_ms": reply.latency_ms})
        entry["replies"] += 1
    return list(by_mac.values())


def round_latencies(replies: Iterable[Reply]) -> list[float]:
    """First-answer latency of every answered request."""
    first: dict[int, float] = {}
    for reply in replies:
        first[reply.round] = min(first.get(reply.round, reply.latency_ms), reply.latency_ms)
    return [first[r] for r in sorted(first)]


def split_brain_requests(replies: Iterable[Reply]) -> int:
    """How many who-has were answered by more than one MAC."""
    macs: dict[int, set[str]] = {}
    for reply in replies:
        macs.setdefault(reply.round, set()).add(reply.mac)
    return sum(1 for seen in macs.values() if len(seen) > 1)


def _question(ip: str) -> str:
    return "neighbor solicitation" if protocol(ip) == "NDP" else "who-has"


def unanswered_diagnosis(plan: ProbePlan, requests: int, timeout: float) -> str:
    text = (
        f"no host answered {requests} {_question(plan.ip)} for {plan.ip} on {plan.interface} ({timeout:g} s "
        "each): nothing "
        "announces it on this segment — check that a Service holds this IP (service_info) and that the node "
        "announcing it runs the agent with an interface matching the policy (interface_info, lease_info)"
    )
    if not plan.attached:
        text += f"; note that {plan.interface} has no subnet containing {plan.ip}: it may be on another L2 segment"
    return text


def split_brain_diagnosis(ip: str, macs: Sequence[str], simultaneous: int) -> str:
    listed = ", ".join(macs)
    if simultaneous:
        return (
            f"{len(macs)} hosts answer {protocol(ip)} for {ip} ({listed}): more than one node announces it (split "
            "brain), "
            "so each client reaches whichever answered last — find the announcing node with service_info and "
            "stop the others (a stale agent, a second load balancer such as MetalLB or Cilium, or a host that "
            "has the address configured)"
        )
    return (
        f"{len(macs)} MACs answered for {ip} ({listed}) but never two to the same {_question(ip)}: the IP moved "
        "between them during the probe (a failover) or they alternate — probe again to see whether it settles"
    )


def outage(replies: Iterable[Reply], requests: int, interval: float) -> dict[str, Any]:
    """How answering went over time, for a run of many rounds ``interval`` seconds apart (a failover watch).

    ``longest_gap_ms``: the longest time between two answered rounds (unanswered rounds at the start or end
    count up to the first/after the last answer); ``mac_timeline``: when, after the first round, the answering
    MAC changed, with the gap in answers just before the change (``gap_before_ms``: the outage a client saw
    when the IP moved). Times are round starts, so they are exact to one interval.
    """
    by_round: dict[int, list[str]] = {}
    for reply in replies:
        by_round.setdefault(reply.round, []).append(reply.mac)
    answered = sorted(by_round)
    if not answered:
        return {"longest_gap_ms": round(requests * interval * 1000, 1), "mac_timeline": []}
    edges = [-1, *answered, requests]
    longest = max(b - a for a, b in itertools.pairwise(edges)) if requests else 0
    timeline: list[dict[str, Any]] = []
    previous = -1
    for number in answered:
        macs = sorted(set(by_round[number]))
        if not timeline or timeline[-1]["macs"] != macs:
            gap = round((number - previous) * interval * 1000, 1) if timeline else 0.0
            timeline.append({"at_ms": round(number * interval * 1000, 1), "macs": macs, "gap_before_ms": gap})
        previous = number
    return {"longest_gap_ms": round(longest * interval * 1000, 1), "mac_timeline": timeline}


def summarize(plan: ProbePlan, outcome: ProbeOutcome | None, *, timeout: float) -> dict[str, Any]:
    """The module's per-IP result from a plan and what the wire gave for it."""
    outcome = outcome or ProbeOutcome()
    result: dict[str, Any] = {
        "ip": plan.ip,
        "interface": plan.interface,
        "source_ip": plan.source_ip,
        "source_mac": outcome.source_mac,
        "requests": outcome.requests,
        "answered_requests": 0,
        "answered": False,
        "responders": [],
        "split_brain": False,
        "split_brain_requests": 0,
        "latency_ms": None,
        "error": plan.error or outcome.error,
        "diagnosis": plan.diagnosis,
    }
    if result["error"] is not None:
        if plan.error is None:  # the wire failed on a plan that was fine
            result["diagnosis"] = f"check that {plan.interface} still exists and is up, then probe again"
        return result
    answers = responders(outcome.replies)
    latencies = round_latencies(outcome.replies)
    simultaneous = split_brain_requests(outcome.replies)
    result.update(
        answered_requests=len(latencies),
        answered=bool(answers),
        responders=answers,
        split_brain=len(answers) > 1,
        split_brain_requests=simultaneous,
    )
    if latencies:
        result["latency_ms"] = {"min": min(latencies), "median": round(statistics.median(latencies), 3)}
    result.update(outage(outcome.replies, outcome.requests, timeout))
    if not answers:
        result["diagnosis"] = unanswered_diagnosis(plan, outcome.requests, timeout)
    elif len(answers) > 1:
        result["diagnosis"] = split_brain_diagnosis(plan.ip, [a["mac"] for a in answers], simultaneous)
    return result


# ---- the wire ----


def who_has(source_mac: str, source_ip: str, target_ip: str) -> bytes:
    """A broadcast ARP request for ``target_ip`` from ``source_ip``/``source_mac`` (scapy)."""
    frame = Ether(dst=_BROADCAST, src=source_mac, type=ETH_P_ARP) / ARP(
        op=_ARP_REQUEST, hwsrc=source_mac, psrc=source_ip, hwdst="00:00:00:00:00:00", pdst=target_ip
    )
    return bytes(frame)


def neighbor_solicitation(source_mac: str, source_ip: str, target_ip: str) -> bytes:
    """An NS for ``target_ip`` to its solicited-node group, from ``source_ip``/``source_mac`` with our MAC as
    Source Link-Layer Address (scapy)."""
    group = in6_getnsma(socket.inet_pton(socket.AF_INET6, target_ip))
    frame = (
        Ether(dst=in6_getnsmac(group), src=source_mac)
        / IPv6(src=source_ip, dst=socket.inet_ntop(socket.AF_INET6, group), hlim=255)
        / ICMPv6ND_NS(tgt=target_ip)
        / ICMPv6NDOptSrcLLAddr(lladdr=source_mac)
    )
    return bytes(frame)


def question(source_mac: str, source_ip: str, target_ip: str) -> bytes:
    """The ARP who-has or the IPv6 Neighbor Solicitation for ``target_ip``."""
    if protocol(target_ip) == "NDP":
        return neighbor_solicitation(source_mac, source_ip, target_ip)
    return who_has(source_mac, source_ip, target_ip)


def read_arp(frame: bytes) -> tuple[int, str, str, str] | None:
    """scapy's reading of an answer: (op, sender MAC, IP it is about, IP it is sent to); None if it is neither
    ARP nor a Neighbor Advertisement. A solicited NA reads as an ARP reply (op 2), any other NA as op 0."""
    try:
        packet = Ether(frame)
    except Exception:  # scapy raises assorted errors on truncated junk; such a frame is simply not ours
        return None
    if packet.haslayer(ARP):
        arp = packet[ARP]
        return int(arp.op), str(arp.hwsrc).lower(), str(arp.psrc), str(arp.pdst)
    if packet.haslayer(ICMPv6ND_NA) and packet[IPv6].hlim == 255:
        na = packet[ICMPv6ND_NA]
        mac = packet[ICMPv6NDOptDstLLAddr].lladdr if packet.haslayer(ICMPv6NDOptDstLLAddr) else packet.src
        about = str(ipaddress.ip_address(na.tgt))
        return (_ARP_REPLY if na.S else 0), str(mac).lower(), about, str(ipaddress.ip_address(packet[IPv6].dst))
    return None


class ArpSocketLike(Protocol):
    interface: str
    mac: str

    def fileno(self) -> int: ...

    def send(self, frame: bytes) -> None: ...

    def receive(self) -> list[tuple[bytes, int]]: ...

    def close(self) -> None: ...


class ArpSocket:
    """A raw AF_PACKET socket on one interface that sees only ARP frames (IPv6 ones with ``ipv6``), with kernel
    receive timestamps."""

    def __init__(self, interface: str, ipv6: bool = False) -> None:
        self.interface = interface
        try:
            # Protocol 0 receives nothing until bind() picks the interface and ETH_P_ARP.
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise ArpSocketPermissionError(
                f"cannot open a raw ARP socket on {interface}: {exc.strerror or exc} — arp_probe needs root or "
                "CAP_NET_RAW; run the task with become: true"
            ) from None
        try:
            self._sock.bind((interface, ETH_P_IPV6 if ipv6 else ETH_P_ARP))
            self._sock.setblocking(False)
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.mac = self._sock.getsockname()[4].hex(":")
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, frame: bytes) -> None:
        self._sock.send(frame)

    def receive(self) -> list[tuple[bytes, int]]:
        """Every frame waiting now (not our own outgoing ones), each with its kernel receive time (ns)."""
        frames: list[tuple[bytes, int]] = []
        while True:
            try:
                data, ancdata, _, address = self._sock.recvmsg(1024, 64)
            except (BlockingIOError, InterruptedError):
                return frames
            if address[2] == socket.PACKET_OUTGOING:
                continue
            received_ns = time.time_ns()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    received_ns = seconds * 1_000_000_000 + nanoseconds
            frames.append((data, received_ns))

    def close(self) -> None:
        self._sock.close()


def _wait_readable(sockets: Sequence[ArpSocketLike], timeout: float) -> list[ArpSocketLike]:
    readable, _, _ = select.select(list(sockets), [], [], max(0.0, timeout))
    return readable


SocketFactory = Callable[..., ArpSocketLike]
"""open_socket(interface) for ARP, open_socket(interface, ipv6=True) for NDP."""
Waiter = Callable[[Sequence[ArpSocketLike], float], Sequence[ArpSocketLike]]
_Wire = tuple[str, bool]  # (interface, IPv6): one socket each


def run_probes(
    plans: Sequence[ProbePlan],
    *,
    count: int,
    timeout: float,
    open_socket: SocketFactory = ArpSocket,
    wait_readable: Waiter = _wait_readable,
) -> dict[str, ProbeOutcome]:
    """Send ``count`` rounds of questions for every probeable plan and collect the answers, by IP.

    Only the planned IPs are asked for, only on their planned interfaces. ArpSocketPermissionError if
    a raw socket cannot be opened for lack of privilege; any other socket failure is recorded as the
    ``error`` of the plans on that interface and family.
    """
    outcomes = {plan.ip: ProbeOutcome() for plan in plans if plan.probeable}
    by_wire: dict[_Wire, list[ProbePlan]] = {}
    for plan in plans:
        if plan.probeable and plan.interface is not None:
            by_wire.setdefault((plan.interface, protocol(plan.ip) == "NDP"), []).append(plan)
    sockets: dict[_Wire, ArpSocketLike] = {}
    try:
        for (name, ipv6), group in by_wire.items():
            try:
                sockets[(name, ipv6)] = open_socket(name, ipv6=True) if ipv6 else open_socket(name)
            except ArpSocketPermissionError:
                raise
            except OSError as exc:
                for plan in group:
                    outcomes[plan.ip].error = f"cannot probe on {name}: {exc.strerror or exc}"
        frames: dict[str, bytes] = {}
        # (interface, probed IP, our sender IP) -> plan: how an answer finds its request
        expected: dict[tuple[str, str, str], ProbePlan] = {}
        for wire, sock in sockets.items():
            for plan in by_wire[wire]:
                assert plan.source_ip is not None
                outcomes[plan.ip].source_mac = sock.mac
                frames[plan.ip] = question(sock.mac, plan.source_ip, plan.ip)
                expected[(wire[0], plan.ip, plan.source_ip)] = plan
        for round_number in range(count):
            sent_ns = _send_round(sockets, by_wire, frames, outcomes)
            deadline = time.monotonic() + timeout
            while sockets and (remaining := deadline - time.monotonic()) > 0:
                for sock in wait_readable(list(sockets.values()), remaining):
                    _collect(sock, round_number, expected, sent_ns, outcomes)
    finally:
        for sock in sockets.values():
            sock.close()
    return outcomes


def _send_round(
    sockets: dict[_Wire, ArpSocketLike],
    by_wire: dict[_Wire, list[ProbePlan]],
    frames: dict[str, bytes],
    outcomes: dict[str, ProbeOutcome],
) -> dict[str, int]:
    sent_ns: dict[str, int] = {}
    for wire, sock in list(sockets.items()):
        for plan in by_wire[wire]:
            sent_ns[plan.ip] = time.time_ns()
            try:
                sock.send(frames[plan.ip])
            except OSError as exc:  # e.g. the interface went down meanwhile: stop using it
                for failed in by_wire[wire]:
                    outcomes[failed.ip].error = f"sending on {wire[0]} failed: {exc.strerror or exc}"
                sockets.pop(wire).close()
                break
            outcomes[plan.ip].requests += 1
    return sent_ns


def _collect(
    sock: ArpSocketLike,
    round_number: int,
    expected: dict[tuple[str, str, str], ProbePlan],
    sent_ns: dict[str, int],
    outcomes: dict[str, ProbeOutcome],
) -> None:
    for data, received_ns in sock.receive():
        facts = read_arp(data)
        if facts is None:
            continue
        op, sender_mac, sender_ip, target_ip = facts
        plan = expected.get((sock.interface, sender_ip, target_ip))
        # Only answers to our question count: gratuitous ARP and unsolicited NAs (sent to the IP itself or to
        # all-nodes) and others' requests do not.
        if op != _ARP_REPLY or plan is None or plan.ip not in sent_ns:
            continue
        latency = round(max(0, received_ns - sent_ns[plan.ip]) / 1e6, 3)
        outcomes[plan.ip].replies.append(Reply(sender_mac, round_number, latency))


def probe(
    ips: Sequence[str],
    interfaces: Sequence[Interface],
    *,
    interface: str | None = None,
    source_ip: str | None = None,
    count: int = 3,
    timeout: float = 0.5,
    open_socket: SocketFactory = ArpSocket,
    wait_readable: Waiter = _wait_readable,
) -> dict[str, Any]:
    """Plan, probe and shape: ``probes`` ({ip: result}), ``answered``/``unanswered``/``split_brain``/``failed``
    (lists of IPs) and ``warnings``. ArpProbeError for bad options or when no socket can be opened."""
    if count < 1:
        raise ArpProbeError(f"count: must be at least 1, got {count}")
    if not timeout > 0:
        raise ArpProbeError(f"timeout: must be more than 0 seconds, got {timeout}")
    plans = plan_probes(ips, interfaces, interface=interface, source_ip=source_ip)
    outcomes = run_probes(plans, count=count, timeout=timeout, open_socket=open_socket, wait_readable=wait_readable)
    results = {plan.ip: summarize(plan, outcomes.get(plan.ip), timeout=timeout) for plan in plans}
    warnings = list(dict.fromkeys(w for plan in plans for w in plan.warnings))
    return {
        "probes": results,
        "answered": [ip for ip, r in results.items() if r["answered"]],
        "unanswered": [ip for ip, r in results.items() if not r["answered"] and r["error"] is None],
        "split_brain": [ip for ip, r in results.items() if r["split_brain"]],
        # not "failed": a non-empty "failed" key in a module result makes Ansible fail the task
        "unprobed": [ip for ip, r in results.items() if r["error"] is not None],
        "warnings": warnings,
    }
