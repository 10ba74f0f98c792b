"""IP ranges and pool blocks (``cidr``, or ``start`` with optional ``stop``), IPv4 and IPv6.

Ranges are kept as integer bounds so that a /64 costs nothing; nothing here enumerates a range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

from .problems import Problems, check_known_keys, expect_type, join_path

# Union, not |: this module runs on the nodes, whose Python may be 3.9.
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True, order=True)
class IPRange:
    """An inclusive range of addresses of one IP version."""

    version: int
    first: int
    last: int

    @classmethod
    def from_addresses(cls, start: IPAddress, stop: IPAddress) -> IPRange:
        return cls(start.version, int(start), int(stop))

    @property
    def start(self) -> IPAddress:
        return ipaddress.ip_address(self.first) if self.version == 4 else ipaddress.IPv6Address(self.first)

    @property
    def stop(self) -> IPAddress:
        return ipaddress.ip_address(self.last) if self.version == 4 else ipaddress.IPv6Address(self.last)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.version and self.first <= int(ip) <= self.last

    def intersection(self, other: IPRange) -> IPRange | None:
        if other.version != self.version:
            return None
        first, last = max(self.first, other.first), min(self.last, other.last)
        return IPRange(self.version, first, last) if first <= last else None

    def addresses(self) -> Iterator[IPAddress]:
        """Yield the addresses in order (lazily; callers stop early)."""
        make = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        for value in range(self.first, self.last + 1):
            yield make(value)

    def __str__(self) -> str:
        if self.first == self.last:
            return str(self.start)
        return f"{self.start}-{self.stop}"


def parse_ip(value: Any) -> IPAddress | None:
    """An address from a string, or None."""
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class Block:
    """One pool block as the user wrote it, plus its address range."""

    range: IPRange
    cidr: str | None = None
    start: str | None = None
    stop: str | None = None

    @property
    def is_cidr(self) -> bool:
        return self.cidr is not None

    def usable(self, allow_first_last: bool) -> IPRange | None:
        """The range IPAM may hand out; CIDR blocks skip network and broadcast unless allowed.

        Like Cilium, only CIDR blocks larger than /31 (IPv6: /127) lose their first and last address;
        start/stop ranges are used as written.
        """
        if allow_first_last or self.cidr is None or self.range.size <= 2:
            return self.range
        return IPRange(self.range.version, self.range.first + 1, self.range.last - 1)

    def to_spec(self) -> dict[str, str]:
        if self.cidr is not None:
            return {"cidr": self.cidr}
        out = {"start": str(self.start)}
        if self.stop is not None:
            out["stop"] = self.stop
        return out

    def __str__(self) -> str:
        return self.cidr if self.cidr is not None else str(self.range)


BLOCK_KEYS = ("cidr", "start", "stop")


def parse_cidr(value: Any, obj: str, path: str, problems: Problems) -> Block | None:
    """Parse a CIDR string into a block; a CIDR with host bits set gets a fix naming the network."""
    if not expect_type(value, str, obj, path, problems, "string such as 198.18.10.0/24"):
        return None
    text = value.strip()
    if "/" not in text:
        problems.add(
            obj,
            path,
            f"{value!r} is not a valid CIDR: no prefix length",
            f"write it as an address/prefix, e.g. {text}/32 for a single address",
            kind="invalid_cidr",
        )
        return None
    address_text, _, prefix_text = text.partition("/")
    address = parse_ip(address_text)
    if address is None:
        problems.add(
            obj,
            path,
            f"{value!r} is not a valid CIDR: {address_text!r} is not an IP address",
            "write an address/prefix such as 198.18.10.0/24",
            kind="invalid_cidr",
        )
        return None
    max_prefix = 32 if address.version == 4 else 128
    if not prefix_text.isdigit() or int(prefix_text) > max_prefix:
        problems.add(
            obj,
            path,
            f"{value!r} is not a valid CIDR: prefix length /{prefix_text} is not in 0-{max_prefix} "
            f"for IPv{address.version}",
            f"use a prefix length between 0 and {max_prefix}",
            kind="invalid_cidr",
        )
        return None
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        loose = ipaddress.ip_network(text, strict=False)
        problems.add(
            obj,
            path,
            f"{value!r} is not a valid CIDR: host bits are set",
            f"did you mean {loose}?",
            kind="invalid_cidr",
        )
        return None
    rng = IPRange(network.version, int(network.network_address), int(network.broadcast_address))
    return Block(rng, cidr=str(network))


def parse_block(raw: Any, obj: str, path: str, problems: Problems) -> Block | None:
    """Parse one ``blocks`` entry: ``{cidr}`` or ``{start, stop?}``."""
    if not expect_type(raw, Mapping, obj, path, problems, "mapping with cidr, or start and stop"):
        return None
    before = len(problems)
    check_known_keys(raw, BLOCK_KEYS, obj, path, problems)
    if "cidr" in raw and ("start" in raw or "stop" in raw):
        problems.add(
            obj,
            path,
            "give either cidr or start/stop, not both",
            "split it into two blocks",
            kind="invalid_block",
        )
        return None
    if "cidr" in raw:
        block = parse_cidr(raw["cidr"], obj, join_path(path, "cidr"), problems)
        return block if len(problems) == before else None
    if "start" not in raw:
        if "stop" in raw:
            problems.add(
                obj,
                join_path(path, "start"),
                "missing: stop given without start",
                "add start (the first address of the range)",
                kind="missing",
            )
        else:
            problems.add(obj, path, "empty block", "give cidr, or start and optionally stop", kind="missing")
        return None
    start = _parse_address(raw["start"], obj, join_path(path, "start"), problems)
    stop = start
    if raw.get("stop") is not None:
        stop = _parse_address(raw["stop"], obj, join_path(path, "stop"), problems)
    if start is None or stop is None:
        return None
    if start.version != stop.version:
        problems.add(
            obj,
            path,
            f"mixes IPv{start.version} start {start} with IPv{stop.version} stop {stop}",
            "use one IP version per block; put IPv4 and IPv6 ranges in separate blocks",
            kind="mixed_family",
        )
        return None
    if int(start) > int(stop):
        problems.add(
            obj,
            path,
            f"start {start} is after stop {stop}",
            f"swap them: start {stop}, stop {start}",
            kind="start_after_stop",
        )
        return None
    return Block(
        IPRange.from_addresses(start, stop),
        start=str(start),
        stop=str(stop) if raw.get("stop") is not None else None,
    )


def _parse_address(value: Any, obj: str, path: str, problems: Problems) -> IPAddress | None:
    if not expect_type(value, str, obj, path, problems, "string such as 198.18.10.20"):
        return None
    ip = parse_ip(value)
    if ip is None:
        fix = "write a single address; use cidr for a prefix" if "/" in value else "write an IPv4 or IPv6 address"
        problems.add(obj, path, f"{value!r} is not a valid IP address", fix, kind="invalid_address")
    return ip
