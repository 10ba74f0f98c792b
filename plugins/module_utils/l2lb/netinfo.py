"""Interface facts from netlink (pyroute2): names, MACs, state, subnets, and a watcher for changes.

The heartbeat publishes these facts so the controller schedules an IP only onto a node that has an up
interface matching the policy; the watcher lets the agent republish as soon as a link goes down.

Interface patterns follow Cilium's CiliumL2AnnouncementPolicy ``interfaces``: each entry is a regular
expression matched *unanchored* (Cilium calls Go's ``regexp.MatchString``; here ``re.search``), and an
empty list selects every interface. So ``eth0`` also matches ``veth0a1b``; write ``^eth[0-9]+$`` to
mean "eth followed by digits". Python ``re`` and Go RE2 agree on the patterns used for interface names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
IFF_LOWER_UP = 0x10000
ARPHRD_ETHER = 1
_AF_INET = 2
_AF_INET6 = 10
# RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR: links and addresses, nothing else.
_WATCH_GROUPS = 0x1 | 0x10 | 0x100
_USABLE_OPER_STATES = frozenset({"UP", "UNKNOWN"})  # UNKNOWN: drivers that do not report operstate


@dataclass(frozen=True)
class Address:
    """One address on an interface, with its prefix length."""

    address: str
    prefixlen: int

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def network(self) -> str:
        """The directly attached subnet, e.g. ``198.18.0.0/24``."""
        return str(ipaddress.ip_interface(f"{self.address}/{self.prefixlen}").network)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "prefixlen": self.prefixlen, "family": self.family, "network": self.network}


@dataclass(frozen=True)
class Interface:
    """Facts about one network interface (loopback excluded by the listing functions)."""

    name: str
    index: int
    mac: str | None
    kind: str | None
    """Link kind from netlink (``veth``, ``bridge``, ``vlan``, ``bond``...); None for plain NICs."""
    admin_up: bool
    oper_state: str
    """The kernel's operational state: UP, DOWN, LOWERLAYERDOWN, DORMANT, UNKNOWN..."""
    carrier: bool
    mtu: int
    arp: bool
    """An Ethernet link that does ARP (not NOARP, not a tun/wireguard-style L3 device)."""
    addresses: tuple[Address, ...] = field(default=())

    @property
    def usable(self) -> bool:
        """Admin up with carrier and an operational state that passes traffic."""
        return self.admin_up and self.carrier and self.oper_state in _USABLE_OPER_STATES

    @property
    def can_announce(self) -> bool:
        """Usable, and ARP can be answered on it."""
        return self.usable and self.arp

    @property
    def subnets(self) -> tuple[str, ...]:
        """Directly attached subnets (IPv4 first), without duplicates."""
        seen: dict[str, None] = {}
        for addr in sorted(self.addresses, key=lambda a: (a.family, a.address)):
            seen.setdefault(addr.network)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, including the derived ``usable``, ``can_announce`` and ``subnets``."""
        return {
            "name": self.name,
            "index": self.index,
            "mac": self.mac,
            "kind": self.kind,
            "admin_up": self.admin_up,
            "oper_state": self.oper_state,
            "carrier": self.carrier,
            "mtu": self.mtu,
            "arp": self.arp,
            "usable": self.usable,
            "can_announce": self.can_announce,
            "addresses": [a.to_dict() for a in self.addresses],
            "subnets": list(self.subnets),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Interface:
        return cls(
            name=data["name"],
            index=int(data["index"]),
            mac=data.get("mac"),
            kind=data.get("kind"),
            admin_up=bool(data["admin_up"]),
            oper_state=str(data["oper_state"]),
            carrier=bool(data["carrier"]),
            mtu=int(data.get("mtu", 0)),
            arp=bool(data.get("arp", True)),
            addresses=tuple(Address(a["address"], int(a["prefixlen"])) for a in data.get("addresses", ())),
        )


@dataclass(frozen=True)
class InterfaceChange:
    """What the watcher saw: ``added``, ``removed``, ``up``, ``down`` or ``changed``.

    ``up``/``down`` mean the interface became usable / stopped being usable; ``changed`` covers every
    other difference (addresses, MAC, name, admin state without a usability change).
    """

    kind: str
    interface: Interface
    """The new facts; for ``removed``, the last known ones."""
    previous: Interface | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "interface": self.interface.to_dict(),
            "previous": self.previous.to_dict() if self.previous is not None else None,
        }


# ---- listing ----


def list_interfaces(netns: str | None = None, *, include_loopback: bool = False) -> list[Interface]:
    """All interfaces of this (or the named) network namespace, sorted by index."""
    from pyroute2 import IPRoute

    kwargs: dict[str, Any] = {} if netns is None else {"netns": netns, "flags": 0}
    with IPRoute(**kwargs) as ipr:
        links = list(ipr.get_links())
        addrs = list(ipr.get_addr())
    return _assemble(links, addrs, include_loopback)


def _assemble(links: Iterable[Any], addrs: Iterable[Any], include_loopback: bool) -> list[Interface]:
    by_index: dict[int, list[Address]] = {}
    for msg in addrs:
        addr = _address(msg)
        if addr is not None:
            by_index.setdefault(int(msg["index"]), []).append(addr)
    result = []
    for msg in links:
        iface = _interface(msg, by_index.get(int(msg["index"]), ()))
        if iface is not None and (include_loopback or not _is_loopback(msg)):
            result.append(iface)
    return sorted(result, key=lambda i: i.index)


def _is_loopback(msg: Any) -> bool:
    return bool(int(msg.get("flags") or 0) & IFF_LOOPBACK)


def _interface(msg: Any, addresses: Iterable[Address]) -> Interface | None:
    name = msg.get("IFLA_IFNAME")
    if name is None:
        return None
    flags = int(msg.get("flags") or 0)
    carrier = msg.get("IFLA_CARRIER")
    linkinfo = msg.get("IFLA_LINKINFO")
    kind = linkinfo.get("IFLA_INFO_KIND") if linkinfo is not None else None
    mac = msg.get("IFLA_ADDRESS")
    return Interface(
        name=str(name),
        index=int(msg["index"]),
        mac=str(mac) if mac else None,
        kind=str(kind) if kind else None,
        admin_up=bool(flags & IFF_UP),
        oper_state=str(msg.get("IFLA_OPERSTATE") or "UNKNOWN"),
        carrier=bool(carrier) if carrier is not None else bool(flags & IFF_LOWER_UP),
        mtu=int(msg.get("IFLA_MTU") or 0),
        arp=int(msg.get("ifi_type") or 0) == ARPHRD_ETHER and not flags & IFF_NOARP,
        addresses=tuple(sorted(addresses, key=lambda a: (a.family, a.address))),
    )


def _address(msg: Any) -> Address | None:
    family = msg.get("family")
    # IPv4: IFA_LOCAL is our address (IFA_ADDRESS is the peer on point-to-point links).
    value = msg.get("IFA_LOCAL") if family == _AF_INET else msg.get("IFA_ADDRESS")
    if family == _AF_INET and value is None:
        value = msg.get("IFA_ADDRESS")
    if family not in (_AF_INET, _AF_INET6) or value is None:
        return None
    return Address(str(value), int(msg["prefixlen"]))


# ---- matching ----


def compile_interface_patterns(patterns: Sequence[str], field_name: str = "interfaces") -> list[re.Pattern[str]]:
    """Compile policy interface regexes; ValueError naming the bad one as ``<field_name>[i]``."""
    compiled = []
    for position, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"{field_name}[{position}] {pattern!r}: not a valid regular expression: {exc}") from None
    return compiled


def name_matches(name: str, patterns: Sequence[str | re.Pattern[str]]) -> bool:
    """True if any pattern is found in ``name`` (``re.search``); an empty list matches every name."""
    if not patterns:
        return True
    return any((p.search(name) if isinstance(p, re.Pattern) else re.search(p, name)) for p in patterns)


def matching_interfaces(interfaces: Iterable[Interface], patterns: Sequence[str]) -> list[Interface]:
    """The interfaces whose name matches one of ``patterns`` (see the module docstring)."""
    compiled = compile_interface_patterns(patterns)
    return [iface for iface in interfaces if name_matches(iface.name, compiled)]


def attached_interfaces(ip: str, interfaces: Iterable[Interface]) -> list[Interface]:
    """Interfaces with a directly attached subnet containing ``ip`` (ValueError if ip is not an IP)."""
    address = ipaddress.ip_address(ip)
    return [
        iface
        for iface in interfaces
        if any(a.family == address.version and address in ipaddress.ip_network(a.network) for a in iface.addresses)
    ]


def is_directly_attached(ip: str, interfaces: Iterable[Interface]) -> bool:
    """Whether ``ip`` lies in a subnet directly attached to one of ``interfaces``."""
    return bool(attached_interfaces(ip, interfaces))


def attached_address(ip: str, interface: Interface) -> Address | None:
    """The interface's own address in the directly attached subnet containing ``ip`` (None if none does)."""
    address = ipaddress.ip_address(ip)
    for addr in interface.addresses:
        if addr.family == address.version and address in ipaddress.ip_network(addr.network):
            return addr
    return None


# ---- watching ----

ChangeCallback = Callable[[InterfaceChange], None]


class InterfaceWatcher:
    """Follows link and address changes through netlink events and reports them to ``on_change``.

    ``start()`` returns once the initial state is loaded (``snapshot()``); the callback then runs on
    the watcher's thread for every change, and must not block. If the kernel drops events (netlink
    buffer overrun), the watcher re-reads the whole state and reports the differences.
    """

    def __init__(self, on_change: ChangeCallback, *, netns: str | None = None, include_loopback: bool = False) -> None:
        self._on_change = on_change
        self._netns = netns
        self._include_loopback = include_loopback
        self._state: dict[int, Interface] = {}
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("InterfaceWatcher already started")
        self._thread = threading.Thread(target=self._thread_main, name="l2lb-netinfo-watch", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("interface watcher did not load the initial state in time")
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop finished meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> InterfaceWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Interface]:
        with self._state_lock:
            return sorted(self._state.values(), key=lambda i: i.index)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start() if it happens before ready
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("interface watcher stopped")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        from pyroute2 import AsyncIPRoute

        kwargs: dict[str, Any] = {} if self._netns is None else {"netns": self._netns, "flags": 0}
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with AsyncIPRoute(**kwargs) as ipr:
            await ipr.bind(groups=_WATCH_GROUPS)
            await self._resync(ipr, report=False)
            self._ready.set()
            reader = asyncio.ensure_future(self._read(ipr))
            stopper = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, stopper):
                task.cancel()
            if reader.done() and not reader.cancelled():
                failure = reader.exception()
                if failure is not None:
                    raise failure

    async def _read(self, ipr: Any) -> None:
        while True:
            try:
                messages = [msg async for msg in ipr.get()]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. ENOBUFS: events were lost, so re-read everything
                log.warning("netlink event stream failed (%s); re-reading interface state", exc)
                await self._resync(ipr, report=True)
                continue
            for msg in messages:
                self._apply(msg)

    async def _resync(self, ipr: Any, *, report: bool) -> None:
        links = [msg async for msg in await ipr.get_links()]
        addrs = [msg async for msg in await ipr.get_addr()]
        fresh = {i.index: i for i in _assemble(links, addrs, self._include_loopback)}
        with self._state_lock:
            old, self._state = self._state, fresh
        if report:
            for index in sorted(set(old) | set(fresh)):
                self._report(old.get(index), fresh.get(index))

    def _apply(self, msg: Any) -> None:
        event = msg.get("event")
        index = msg.get("index")
        if index is None:
            return
        with self._state_lock:
            old = self._state.get(int(index))
        new: Interface | None
        if event == "RTM_NEWLINK":
            if not self._include_loopback and _is_loopback(msg):
                return
            new = _interface(msg, old.addresses if old is not None else ())
        elif event == "RTM_DELLINK":
            new = None
        elif event in ("RTM_NEWADDR", "RTM_DELADDR") and old is not None:
            addr = _address(msg)
            if addr is None:
                return
            addresses = [a for a in old.addresses if a != addr]
            if event == "RTM_NEWADDR":
                addresses.append(addr)
            new = _replace_addresses(old, addresses)
        else:
            return
        with self._state_lock:
            if new is None:
                self._state.pop(int(index), None)
            else:
                self._state[int(index)] = new
        self._report(old, new)

    def _report(self, old: Interface | None, new: Interface | None) -> None:
        if old == new:
            return
        if new is None:
            assert old is not None
            change = InterfaceChange("removed", old, old)
        elif old is None:
            change = InterfaceChange("added", new, None)
        elif old.usable != new.usable:
            change = InterfaceChange("up" if new.usable else "down", new, old)
        else:
            change = InterfaceChange("changed", new, old)
        try:
            self._on_change(change)
        except Exception:
            log.exception("interface change callback failed")


def _replace_addresses(iface: Interface, addresses: Iterable[Address]) -> Interface:
    return replace(iface, addresses=tuple(sorted(addresses, key=lambda a: (a.family, a.address))))
