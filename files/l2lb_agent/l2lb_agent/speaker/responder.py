"""The layer-2 wire: raw AF_PACKET sockets per interface, one thread answering ARP (IPv4) and NDP (IPv6).

The responder never adds a service IP to an interface (no host services are exposed on the VIP); it
only answers for it with the interface's MAC, announces it when it starts announcing (a burst, then a
slow refresh so a rebooted router relearns), and reports other MACs that claim one of its IPs
(``on_conflict``) so the agent can fence a split brain.

Per interface there are two sockets: one bound to ARP, one bound to IPv6 with a classic BPF filter that
lets only ICMPv6 Neighbor Solicitations and Advertisements through (a busy node's IPv6 traffic never
reaches Python). The families behave alike:

==========================  ==============================  =====================================================
                            IPv4 (ARP)                      IPv6 (NDP, RFC 4861)
==========================  ==============================  =====================================================
question answered           who-has, broadcast or unicast   NS to the target's solicited-node group or to our MAC
answer                      is-at, our MAC                  NA: Solicited + Override, Router clear, our MAC as TLLA
announcement (burst,        gratuitous ARP, request and     unsolicited NA to all-nodes (ff02::1), Override set
refresh)                    reply form                      (§7.2.6)
claim by another MAC        ARP from the IP                 NA for the IP, or NS from the IP
(``on_conflict``: fence)
address conflict probe      RFC 5227 probe: ignored         DAD probe (NS from ::): answered to all-nodes, so
                                                            the prober does not take the address; counted
                                                            (``dad_probes``) and logged
==========================  ==============================  =====================================================

For IPv6 the responder joins the solicited-node multicast group of every address it answers on each
interface (IPV6_JOIN_GROUP, so the kernel also answers MLD and a snooping bridge forwards the NS to us);
where the interface has IPv6 turned off it falls back to the MAC filter alone (PACKET_ADD_MEMBERSHIP).

Threading: every public method is safe to call from any thread. Callbacks (``on_conflict``,
``on_count``) run on the responder thread and must not block: hand work off to your own thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import heapq
import ipaddress
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from l2lb_agent.speaker import ndp
from l2lb_agent.speaker.arp import (
    ARP_FRAME_LEN,
    BROADCAST_MAC,
    ETH_P_ARP,
    OP_REQUEST,
    build_gratuitous_reply,
    build_gratuitous_request,
    build_reply,
    mac_to_str,
    parse_frame,
)

from ..worker import Worker

log = logging.getLogger(__name__)

ConflictCallback = Callable[[str, str, str], None]
"""on_conflict(ip, ifname, other_mac): another MAC claims an IP we announce on ifname."""

CountCallback = Callable[[str, "str | None", str], None]
"""on_count(counter, ip or None, ifname): one increment of a counter, for wiring Prometheus."""

ARPHRD_ETHER = 1
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_RUNNING = 0x40  # the kernel's "operationally up" (carrier and link-layer ready)
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name + ifr_flags, padded to 40 bytes
_RECV_BATCH = 64  # frames drained per readiness event before looking at timers again
_RECV_SIZE = 256  # ARP frames are 42..60 bytes; anything longer is truncated, which is fine
_RECV_SIZE_NDP = 1024  # NS/NA with options are ~90 bytes; a truncated one fails its checksum and is dropped
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP, _PACKET_DROP_MEMBERSHIP, _PACKET_MR_MULTICAST = 1, 2, 0
_SO_ATTACH_FILTER = 26
# Classic BPF, frames from the Ethernet header: IPv6, next header ICMPv6 (no extension headers: NDP has
# none), type 135 (NS) or 136 (NA); anything else is dropped in the kernel. (code, jt, jf, k) each.
_NDP_FILTER = (
    (0x28, 0, 0, 12),  # ldh [12]          ethertype
    (0x15, 0, 6, ndp.ETH_P_IPV6),  # jeq #0x86dd, else drop
    (0x30, 0, 0, 20),  # ldb [20]          IPv6 next header
    (0x15, 0, 4, ndp.IPPROTO_ICMPV6),  # jeq #58, else drop
    (0x30, 0, 0, 54),  # ldb [54]          ICMPv6 type
    (0x15, 1, 0, ndp.ICMPV6_NS),  # jeq #135 -> accept
    (0x15, 0, 1, ndp.ICMPV6_NA),  # jeq #136 -> accept, else drop
    (0x06, 0, 0, 0x40000),  # ret #262144     accept
    (0x06, 0, 0, 0),  # ret #0          drop
)
_LINK_GONE_ERRNOS = frozenset({errno.ENODEV, errno.ENXIO, errno.EBADF})

# Counter names, shared by counters() and on_count.
REQUESTS_SEEN = "requests_seen"  # who-has/probe requests received, any target IP
REQUESTS_FOR_US = "requests_for_us"  # ... whose target IP we answer on that interface
REPLIES_SENT = "replies_sent"  # ARP replies and solicited NAs (the IP says which family)
GARPS_SENT = "garps_sent"  # gratuitous ARP frames (request and reply form count one each)
UNSOLICITED_NAS_SENT = "unsolicited_nas_sent"  # IPv6 announcements (all-nodes NAs), the GARPs' twin
DAD_PROBES = "dad_probes"  # IPv6 DAD probes for an address we answer: a host wants it (after the hold-off)
CONFLICTS = "conflicts"  # on_conflict calls (after the hold-off)
SEND_ERRORS = "send_errors"
SOCKET_OPENS = "socket_opens"  # ARP sockets opened, including re-opens after an interface came back
_TOTALS = (
    REQUESTS_SEEN,
    REQUESTS_FOR_US,
    REPLIES_SENT,
    GARPS_SENT,
    UNSOLICITED_NAS_SENT,
    DAD_PROBES,
    CONFLICTS,
    SEND_ERRORS,
    SOCKET_OPENS,
)
_PER_IP = (REQUESTS_FOR_US, REPLIES_SENT, GARPS_SENT, UNSOLICITED_NAS_SENT, DAD_PROBES, CONFLICTS)


@dataclass(frozen=True)
class ResponderConfig:
    """Timings of announcements and of the interface checks. Defaults suit a LAN."""

    garp_burst_rounds: int = 3
    """Gratuitous ARP rounds when an IP starts being announced; each round sends the request and the
    reply form (routers differ in which one they honour)."""
    garp_burst_interval: float = 0.25
    """Seconds between burst rounds: 3 rounds span 0.5 s."""
    refresh_interval: float = 30.0
    """Seconds between periodic gratuitous ARPs after the burst; 0 turns the refresh off."""
    link_check_interval: float = 0.5
    """Seconds between checks for interfaces that vanished, came back, went up or changed MAC."""
    conflict_holdoff: float = 1.0
    """Minimum seconds between two on_conflict calls for the same (ip, interface, other MAC)."""

    def __post_init__(self) -> None:
        if self.garp_burst_rounds < 0:
            raise ValueError(f"garp_burst_rounds: must be >= 0, got {self.garp_burst_rounds}")
        for name in ("garp_burst_interval", "refresh_interval", "conflict_holdoff"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.link_check_interval <= 0:
            raise ValueError(f"link_check_interval: must be > 0, got {self.link_check_interval}")


@dataclass(frozen=True)
class LinkStatus:
    """What the responder knows about one interface it was asked to answer on."""

    ifname: str
    ifindex: int | None
    mac: str | None
    open: bool
    """A socket is bound to the interface (it exists and is Ethernet)."""
    ndp: bool
    """NDP is answered there too (the IPv6 socket is bound); IPv6 addresses are answered only then."""
    up: bool
    """Admin up and operationally up (IFF_UP and IFF_RUNNING)."""
    ips: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ips": list(self.ips)}


@dataclass(frozen=True)
class ResponderCounters:
    """A snapshot of the counters: totals, and per announced IP."""

    totals: dict[str, int]
    per_ip: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.totals), "per_ip": {ip: dict(c) for ip, c in self.per_ip.items()}}


@dataclass(eq=False)
class _Link:
    """Responder-thread state of one interface."""

    ifname: str
    sock: socket.socket | None = None
    sock6: socket.socket | None = None  # NS/NA only (BPF)
    mcast: socket.socket | None = None  # holds the solicited-node group memberships (IPV6_JOIN_GROUP)
    groups: dict[bytes, str] = field(default_factory=dict)  # joined group -> "ipv6" or "mac" (fallback)
    ifindex: int | None = None
    mac: bytes = b""
    up: bool = False
    last_error: str | None = None


@dataclass(order=True)
class _Due:
    """A scheduled gratuitous ARP round; stale once the (ip, ifname) generation moved on."""

    when: float
    seq: int
    ip: bytes = field(compare=False)
    ifname: str = field(compare=False)
    generation: int = field(compare=False)
    round: int = field(compare=False)


class Responder(Worker):
    """Answers ARP (IPv4) and NDP (IPv6) for assigned addresses on the given interfaces; see the module docstring.

    Typical use::

        responder = Responder(on_conflict=agent.fence)
        responder.start()
        responder.set_assignments({"198.18.0.100": ["eth0"], "2001:2:0:1::100": ["eth0"]})
        ...
        responder.stop()
    """

    def __init__(
        self,
        config: ResponderConfig | None = None,
        *,
        on_conflict: ConflictCallback | None = None,
        on_count: CountCallback | None = None,
    ) -> None:
        super().__init__("l2lb-responder")
        self.config = config or ResponderConfig()
        self._on_conflict = on_conflict
        self._on_count = on_count
        self._lock = threading.Lock()
        # ifname -> IPs to answer there. Replaced wholesale (never mutated) so the responder thread
        # reads it without a lock, and a removed IP stops being answered as soon as set_assignments returns.
        self._answer: dict[str, frozenset[bytes]] = {}
        self._dirty = False
        self._announce_requests: list[bytes | None] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._totals = dict.fromkeys(_TOTALS, 0)
        self._per_ip: dict[bytes, dict[str, int]] = {}
        self._status: dict[str, LinkStatus] = {}
        # Responder-thread state only:
        self._links: dict[str, _Link] = {}
        self._applied: dict[str, frozenset[bytes]] = {}
        # (ip, ifname) -> generation of its current announcement; scheduled rounds of older ones are void.
        self._generation: dict[tuple[bytes, str], int] = {}
        self._generations = itertools.count(1)
        self._schedule: list[_Due] = []
        self._seq = itertools.count()
        self._own_macs: frozenset[bytes] = frozenset()
        self._last_conflict: dict[tuple[bytes, str, bytes, str], float] = {}
        self._selector = selectors.DefaultSelector()

    # ---- public API (any thread) ----

    def start(self) -> None:
        """Start the responder thread."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("Responder already started")
            thread = threading.Thread(target=self._worker_main, name=self._thread_name, daemon=True)
            self._thread = thread
        thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answering, join the thread and close every socket. Idempotent."""
        with self._lock:
            self._stopping.set()
            self._answer = {}
            thread = self._thread
        self._wakeup()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("responder thread did not stop within %.1fs", timeout)
                return
        if thread is None or not thread.is_alive():
            self._close_all()
            for sock in (self._wake_r, self._wake_w):
                sock.close()

    def __enter__(self) -> Responder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_assignments(self, assignments: Mapping[str, Iterable[str]]) -> None:
        """Replace the set of IPs to answer for: ``{ip: [ifname, ...]}``.

        New (ip, interface) pairs get an announcement burst (gratuitous ARP, unsolicited NA), then the
        periodic refresh; pairs no longer listed stop being answered before this returns. Raises ValueError
        (and changes nothing) for anything that is not an IP address or an interface name.
        """
        by_if: dict[str, set[bytes]] = {}
        for ip, ifnames in assignments.items():
            packed = ip_to_bytes(ip)
            if isinstance(ifnames, str):
                raise ValueError(f"{ip}: interfaces must be a list of names, got the string {ifnames!r}")
            for ifname in ifnames:
                if not isinstance(ifname, str) or not 0 < len(ifname) < 16 or "/" in ifname:
                    raise ValueError(f"{ip}: not an interface name: {ifname!r}")
                by_if.setdefault(ifname, set()).add(packed)
        with self._lock:
            if self._stopping.is_set():
                return
            self._answer = {ifname: frozenset(ips) for ifname, ips in by_if.items()}
            self._dirty = True
        self._wakeup()

    def assignments(self) -> dict[str, list[str]]:
        """The current assignments, as given to set_assignments (sorted)."""
        result: dict[str, list[str]] = {}
        for ifname, ips in self._answer.items():
            for ip in ips:
                result.setdefault(ip_to_str(ip), []).append(ifname)
        return {ip: sorted(ifnames) for ip, ifnames in sorted(result.items())}

    def announce(self, ip: str | None = None) -> None:
        """Send a fresh announcement burst for ``ip`` (or every assigned IP) on its interfaces."""
        packed = ip_to_bytes(ip) if ip is not None else None
        with self._lock:
            self._announce_requests.append(packed)
        self._wakeup()

    def links(self) -> list[LinkStatus]:
        """The interfaces in the current assignments and what the responder knows about them."""
        with self._lock:
            return [self._status[name] for name in sorted(self._status)]

    def counters(self) -> ResponderCounters:
        with self._lock:
            return ResponderCounters(
                totals=dict(self._totals),
                per_ip={ip_to_str(ip): dict(c) for ip, c in sorted(self._per_ip.items())},
            )

    # ---- responder thread ----

    def _poke(self) -> None:
        self._wakeup()

    def _wakeup(self) -> None:
        # BlockingIOError: a wake-up is already pending; OSError: we are shutting down.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        next_link_check = 0.0
        try:
            while True:
                with self._lock:
                    stopping = self._stopping.is_set()
                    dirty, self._dirty = self._dirty, False
                    requests, self._announce_requests = self._announce_requests, []
                if stopping:
                    return
                now = time.monotonic()
                if dirty:
                    self._apply_assignments(now)
                    next_link_check = now + self.config.link_check_interval
                for packed in requests:
                    self._restart_announcements(now, ip=packed)
                if now >= next_link_check:
                    self._check_links(now)
                    next_link_check = now + self.config.link_check_interval
                self._run_due(now)
                timeout = next_link_check - now
                if self._schedule:
                    timeout = min(timeout, self._schedule[0].when - now)
                for key, _ in self._selector.select(max(timeout, 0.0)):
                    if key.data is None:
                        self._drain_wake()
                    else:
                        self._receive(*key.data)
        finally:  # an exception ends the thread: Worker records it and logs it (a dead responder answers nothing)
            self._close_all()

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(512):
                pass

    def _receive(self, link: _Link, ipv6: bool) -> None:
        """Drain one of the link's sockets: ARP, or NDP (``ipv6``)."""
        sock = link.sock6 if ipv6 else link.sock
        if sock is None:
            return
        size, handle = (_RECV_SIZE_NDP, self._handle_ndp) if ipv6 else (_RECV_SIZE, self._handle_frame)
        for _ in range(_RECV_BATCH):
            try:
                data, address = sock.recvfrom(size)
            except BlockingIOError:
                return
            except OSError as exc:
                self._socket_error(link, exc)
                return
            if address[2] == socket.PACKET_OUTGOING:
                continue  # our own transmissions (and this node kernel's), looped back to packet sockets
            handle(link, sock, data)
            if (link.sock6 if ipv6 else link.sock) is not sock:
                return  # a send error re-opened or closed the socket

    def _reply(self, link: _Link, sock: socket.socket, ip: bytes, frame: bytes) -> bool:
        """Send an answer about ``ip`` and count it; False when the send failed (the socket was dealt with)."""
        self._count(REQUESTS_FOR_US, ip, link.ifname)
        try:
            sock.send(frame)
        except OSError as exc:
            self._count(SEND_ERRORS, ip, link.ifname)
            self._socket_error(link, exc)
            return False
        self._count(REPLIES_SENT, ip, link.ifname)
        return True

    def _handle_frame(self, link: _Link, sock: socket.socket, data: bytes) -> None:
        if len(data) < ARP_FRAME_LEN:
            return
        frame = parse_frame(data)
        if frame is None or frame.src_mac in self._own_macs or frame.sender_mac in self._own_macs:
            return
        ips = self._answer.get(link.ifname)
        if frame.op == OP_REQUEST and frame.sender_ip != frame.target_ip:
            self._count(REQUESTS_SEEN, None, link.ifname)
            # Answer a broadcast who-has, or a unicast refresh of a cache entry that points at us.
            if (
                ips is not None
                and frame.target_ip in ips
                and (frame.dst_mac == BROADCAST_MAC or frame.dst_mac == link.mac)
            ):
                if not self._reply(link, sock, frame.target_ip, build_reply(frame, link.mac)):
                    return
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s: %s -> is-at %s", link.ifname, frame.describe(), mac_to_str(link.mac))
        # Any ARP whose sender IP is one of ours, from a MAC that is not ours, claims that IP:
        # gratuitous ARP (both forms), a reply, or a request sent from the IP.
        if ips is not None and frame.sender_ip in ips:
            self._conflict(frame.sender_ip, link.ifname, frame.sender_mac)

    def _handle_ndp(self, link: _Link, sock: socket.socket, data: bytes) -> None:
        frame = ndp.parse_frame(data)
        if frame is None or frame.src_mac in self._own_macs or frame.lladdr in self._own_macs:
            return
        ips = self._answer.get(link.ifname)
        kind = frame.kind
        if kind in (ndp.NdpKind.SOLICIT, ndp.NdpKind.DAD):
            self._count(REQUESTS_SEEN, None, link.ifname)
            if ips is None or frame.target not in ips:
                if ips is not None and frame.src_ip in ips:  # an NS sent from our address: someone uses it
                    self._conflict(frame.src_ip, link.ifname, frame.lladdr or frame.src_mac)
                return
            # To the target's solicited-node group, or a unicast check of a cache entry that points at us.
            group_mac = ndp.multicast_mac(ndp.solicited_node(frame.target))
            if frame.dst_mac != group_mac and frame.dst_mac != link.mac:
                return
            if kind is ndp.NdpKind.DAD:
                # A host wants this address: defend it (the all-nodes NA makes its DAD fail), count, log.
                self._conflict(frame.target, link.ifname, frame.src_mac, counter=DAD_PROBES)
            if not self._reply(link, sock, frame.target, ndp.build_solicited_na(frame, link.mac)):
                return
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: %s -> advertised at %s", link.ifname, frame.describe(), mac_to_str(link.mac))
        elif ips is not None and frame.target in ips:
            # An advertisement of our address from another MAC (solicited or not) claims it.
            self._conflict(frame.target, link.ifname, frame.lladdr or frame.src_mac)

    def _conflict(self, ip: bytes, ifname: str, other_mac: bytes, *, counter: str = CONFLICTS) -> None:
        now = time.monotonic()
        key = (ip, ifname, other_mac, counter)
        last = self._last_conflict.get(key)
        if last is not None and now - last < self.config.conflict_holdoff:
            return
        self._last_conflict[key] = now
        self._count(counter, ip, ifname)
        if counter == DAD_PROBES:
            log.warning(
                "%s: %s runs duplicate address detection for %s, which we answer: defending the address",
                ifname,
                mac_to_str(other_mac),
                ip_to_str(ip),
            )
            return
        log.warning(
            "%s: %s is claimed by %s as well (we answer it with %s)",
            ifname,
            ip_to_str(ip),
            mac_to_str(other_mac),
            mac_to_str(self._links[ifname].mac) if ifname in self._links else "?",
        )
        if self._on_conflict is not None:
            try:
                self._on_conflict(ip_to_str(ip), ifname, mac_to_str(other_mac))
            except Exception:
                log.exception("on_conflict callback failed")

    def _count(self, name: str, ip: bytes | None, ifname: str) -> None:
        with self._lock:
            self._totals[name] += 1
            if ip is not None and name in _PER_IP:
                per_ip = self._per_ip.get(ip)
                if per_ip is None:
                    per_ip = self._per_ip[ip] = dict.fromkeys(_PER_IP, 0)
                per_ip[name] += 1
        if self._on_count is not None:
            try:
                self._on_count(name, ip_to_str(ip) if ip is not None else None, ifname)
            except Exception:
                log.exception("on_count callback failed")

    # -- assignments and announcements --

    def _apply_assignments(self, now: float) -> None:
        wanted = self._answer
        old = self._applied
        self._applied = wanted
        for ifname in set(old) | set(wanted):
            before = old.get(ifname, frozenset())
            after = wanted.get(ifname, frozenset())
            for ip in before - after:
                self._bump_generation(ip, ifname)
            link = self._links.get(ifname)
            if link is None and after:
                link = self._links[ifname] = _Link(ifname)
                self._open(link)
                continue  # _open announced everything assigned to it
            if link is not None and not after:
                self._close(link)
                del self._links[ifname]
                continue
            if link is not None and link.sock is not None:
                self._sync_groups(link)
                for ip in after - before:
                    self._start_burst(now, ip, ifname)
        self._forget_unassigned()
        self._publish_status()

    def _forget_unassigned(self) -> None:
        assigned = {ip for ips in self._applied.values() for ip in ips}
        self._generation = {
            key: gen for key, gen in self._generation.items() if key[1] in self._applied and key[0] in assigned
        }
        self._last_conflict = {key: t for key, t in self._last_conflict.items() if key[0] in assigned}
        with self._lock:
            for ip in [ip for ip in self._per_ip if ip not in assigned]:
                del self._per_ip[ip]

    def _bump_generation(self, ip: bytes, ifname: str) -> int:
        gen = self._generation[(ip, ifname)] = next(self._generations)
        return gen

    def _start_burst(self, now: float, ip: bytes, ifname: str) -> None:
        gen = self._bump_generation(ip, ifname)
        if self.config.garp_burst_rounds > 0:
            heapq.heappush(self._schedule, _Due(now, next(self._seq), ip, ifname, gen, 0))
        elif self.config.refresh_interval > 0:
            due = now + self.config.refresh_interval
            heapq.heappush(self._schedule, _Due(due, next(self._seq), ip, ifname, gen, 0))

    def _restart_announcements(self, now: float, *, ip: bytes | None = None, ifname: str | None = None) -> None:
        for name, ips in self._applied.items():
            link = self._links.get(name)
            if (ifname is not None and name != ifname) or link is None or link.sock is None:
                continue
            for assigned in ips:
                if ip is None or assigned == ip:
                    self._start_burst(now, assigned, name)

    def _run_due(self, now: float) -> None:
        rounds = self.config.garp_burst_rounds
        while self._schedule and self._schedule[0].when <= now:
            due = heapq.heappop(self._schedule)
            if self._generation.get((due.ip, due.ifname)) != due.generation:
                continue  # withdrawn or restarted since this was scheduled
            link = self._links.get(due.ifname)
            if link is not None and link.sock is not None and link.mac:
                self._announce(link, due.ip)
            if due.round + 1 < rounds:
                when = due.when + self.config.garp_burst_interval
            elif self.config.refresh_interval > 0:
                when = due.when + self.config.refresh_interval
            else:
                continue
            # Keep the cadence, but never schedule in the past after a long stall.
            when = max(when, now)
            heapq.heappush(
                self._schedule, _Due(when, next(self._seq), due.ip, due.ifname, due.generation, due.round + 1)
            )

    def _announce(self, link: _Link, ip: bytes) -> None:
        """One announcement round: gratuitous ARP in both forms (IPv4), or an unsolicited NA (IPv6)."""
        frames: tuple[bytes, ...]
        if len(ip) == 4:
            sock, counter = link.sock, GARPS_SENT
            frames = (build_gratuitous_request(link.mac, ip), build_gratuitous_reply(link.mac, ip))
        else:
            sock, counter, frames = link.sock6, UNSOLICITED_NAS_SENT, (ndp.build_unsolicited_na(link.mac, ip),)
        if sock is None:
            return
        for frame in frames:
            try:
                sock.send(frame)
            except OSError as exc:
                self._count(SEND_ERRORS, ip, link.ifname)
                if exc.errno != errno.ENETDOWN:
                    self._socket_error(link, exc)
                return
            self._count(counter, ip, link.ifname)

    # -- sockets and interfaces --

    def _open(self, link: _Link) -> bool:
        """Bind a socket to the interface; announce its IPs if that worked."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            # Protocol 0 at creation, ETH_P_ARP at bind: the socket never sees another interface's frames.
            sock.bind((link.ifname, ETH_P_ARP))
            sock.setblocking(False)
            _, _, _, hatype, mac = sock.getsockname()
            ifindex = socket.if_nametoindex(link.ifname)
            if hatype != ARPHRD_ETHER or len(mac) != 6:
                raise OSError(errno.EPROTOTYPE, f"not an Ethernet interface (hardware type {hatype})")
            up = _link_up(sock, link.ifname)
        except OSError as exc:
            sock.close()
            message = exc.strerror or str(exc)
            if link.last_error != message:
                log.warning("%s: cannot answer ARP here: %s", link.ifname, message)
                link.last_error = message
            return False
        link.sock, link.ifindex, link.mac, link.up, link.last_error = sock, ifindex, mac, up, None
        self._selector.register(sock, selectors.EVENT_READ, (link, False))
        link.sock6 = self._open_ndp(link)
        if link.sock6 is not None:
            self._selector.register(link.sock6, selectors.EVENT_READ, (link, True))
        self._sync_groups(link)
        self._refresh_own_macs()
        self._count(SOCKET_OPENS, None, link.ifname)
        log.info(
            "%s: answering %s as %s (index %d, %s)",
            link.ifname,
            "ARP and NDP" if link.sock6 is not None else "ARP",
            mac_to_str(mac),
            ifindex,
            _updown(up),
        )
        self._restart_announcements(time.monotonic(), ifname=link.ifname)
        return True

    def _open_ndp(self, link: _Link) -> socket.socket | None:
        """The IPv6 socket of a link whose ARP socket is open: NS and NA only (BPF), None if that fails."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            program = b"".join(struct.pack("HBBI", *insn) for insn in _NDP_FILTER)
            buffer = ctypes.create_string_buffer(program)
            fprog = struct.pack("HP", len(_NDP_FILTER), ctypes.addressof(buffer))
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)  # before bind: nothing else slips in
            sock.bind((link.ifname, ndp.ETH_P_IPV6))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("%s: cannot answer NDP here (IPv6 addresses are not answered): %s", link.ifname, exc)
            return None
        return sock

    def _sync_groups(self, link: _Link) -> None:
        """Join the solicited-node group of each IPv6 address answered on the link, leave the others."""
        if link.sock6 is None or link.ifindex is None:
            return
        wanted = {ndp.solicited_node(ip) for ip in self._applied.get(link.ifname, ()) if len(ip) == 16}
        for group in [g for g in link.groups if g not in wanted]:
            how = link.groups.pop(group)
            with contextlib.suppress(OSError):
                if how == "ipv6" and link.mcast is not None:
                    link.mcast.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, _mreq6(group, link.ifindex))
                elif how == "mac":
                    link.sock6.setsockopt(_SOL_PACKET, _PACKET_DROP_MEMBERSHIP, _mreq_mac(group, link.ifindex))
        for group in wanted - set(link.groups):
            link.groups[group] = self._join_group(link, group)

    def _join_group(self, link: _Link, group: bytes) -> str:
        """Join ``group`` on the link: as an IPv6 member (MLD, the NIC filter), else by its MAC alone."""
        assert link.sock6 is not None and link.ifindex is not None
        try:
            if link.mcast is None:
                link.mcast = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            link.mcast.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, _mreq6(group, link.ifindex))
            return "ipv6"
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "ipv6"  # joined already (by this socket)
            reason = exc.strerror or str(exc)
        try:
            link.sock6.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, _mreq_mac(group, link.ifindex))
        except OSError as exc:
            log.warning("%s: cannot join %s (%s, %s)", link.ifname, ndp.ip_to_str(group), reason, exc)
            return "none"
        log.info(
            "%s: joined %s by its MAC only (%s: IPv6 off on the interface?)", link.ifname, ndp.ip_to_str(group), reason
        )
        return "mac"

    def _close(self, link: _Link) -> None:
        sock, link.sock = link.sock, None
        sock6, link.sock6 = link.sock6, None
        mcast, link.mcast = link.mcast, None
        link.groups.clear()  # memberships end with their sockets
        for each in (sock, sock6):
            if each is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(each)
                each.close()
        if mcast is not None:
            mcast.close()
        if sock is not None:
            self._refresh_own_macs()

    def _close_all(self) -> None:
        for link in list(self._links.values()):
            self._close(link)
        self._links.clear()
        with contextlib.suppress(OSError, RuntimeError):
            self._selector.close()

    def _refresh_own_macs(self) -> None:
        self._own_macs = frozenset(link.mac for link in self._links.values() if link.sock is not None)

    def _socket_error(self, link: _Link, exc: OSError) -> None:
        if exc.errno == errno.ENETDOWN:
            # Link went down: the bound socket resumes by itself when it comes back up. Look now.
            link.up = False
            self._publish_status()
            return
        log.warning("%s: socket error %s; re-opening", link.ifname, exc)
        self._close(link)
        if exc.errno not in _LINK_GONE_ERRNOS:
            self._open(link)
        self._publish_status()

    def _check_links(self, now: float) -> None:
        """Re-open sockets of vanished/re-created interfaces, follow MAC changes, re-announce on link up."""
        changed = False
        for link in self._links.values():
            if link.sock is None:
                changed |= self._open(link)
                continue
            try:
                ifindex = socket.if_nametoindex(link.ifname)
            except OSError:
                ifindex = None
            if ifindex != link.ifindex:
                log.info("%s: interface vanished or was re-created; re-opening", link.ifname)
                self._close(link)
                self._open(link)
                changed = True
                continue
            try:
                bound_name, _, _, _, mac = link.sock.getsockname()
                up = _link_up(link.sock, link.ifname)
            except OSError:
                continue
            if bound_name != link.ifname or len(mac) != 6:
                # The device we were bound to is gone (same index re-used, or renamed): bind afresh.
                self._close(link)
                self._open(link)
                changed = True
                continue
            if mac != link.mac:
                log.info("%s: MAC changed %s -> %s", link.ifname, mac_to_str(link.mac), mac_to_str(mac))
                link.mac = mac
                self._refresh_own_macs()
                self._restart_announcements(now, ifname=link.ifname)
                changed = True
            if up != link.up:
                log.info("%s: link %s", link.ifname, _updown(up))
                link.up = up
                changed = True
                if up:
                    self._restart_announcements(now, ifname=link.ifname)
        if changed:
            self._publish_status()

    def _publish_status(self) -> None:
        status = {}
        for name, link in self._links.items():
            status[name] = LinkStatus(
                ifname=name,
                ifindex=link.ifindex if link.sock is not None else None,
                mac=mac_to_str(link.mac) if link.mac else None,
                open=link.sock is not None,
                ndp=link.sock6 is not None,
                up=link.sock is not None and link.up,
                ips=tuple(sorted(ip_to_str(ip) for ip in self._applied.get(name, ()))),
            )
        with self._lock:
            self._status = status


def _mreq6(group: bytes, ifindex: int) -> bytes:
    return group + struct.pack("@I", ifindex)  # struct ipv6_mreq


def _mreq_mac(group: bytes, ifindex: int) -> bytes:
    # struct packet_mreq: ifindex, type, address length, address (8 bytes)
    return struct.pack("@iHH8s", ifindex, _PACKET_MR_MULTICAST, 6, ndp.multicast_mac(group))


def ip_to_bytes(ip: str) -> bytes:
    """A unicast IPv4 or IPv6 address -> 4 or 16 bytes; ValueError naming the problem otherwise."""
    if not isinstance(ip, str):
        raise ValueError(f"not an IP address: {ip!r}")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"not an IP address: {ip!r}") from None
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_loopback
        or (address.version == 6 and address.is_link_local)
    ):
        raise ValueError(f"{ip}: not a unicast address a service could use")
    return address.packed


def ip_to_str(ip: bytes) -> str:
    return str(ipaddress.ip_address(ip))


def _link_up(sock: socket.socket, ifname: str) -> bool:
    request = _IFREQ.pack(ifname.encode(), 0)
    flags: int = _IFREQ.unpack(fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
    return bool(flags & _IFF_UP) and bool(flags & _IFF_RUNNING)


def _updown(up: bool) -> str:
    return "up" if up else "down"
