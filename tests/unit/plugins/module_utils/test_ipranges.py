"""IP blocks and ranges: parsing, usable addresses, intersections; IPv4 and IPv6."""

from __future__ import annotations

import ipaddress

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.ipranges import Block, IPRange, parse_block
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.problems import Problems


def _block(raw: dict) -> Block:
    problems = Problems()
    block = parse_block(raw, "pool", "blocks[0]", problems)
    assert not problems and block is not None, [str(p) for p in problems]
    return block


def test_cidr_usable_skips_network_and_broadcast_unless_allowed() -> None:
    block = _block({"cidr": "198.18.10.0/29"})
    assert (block.range.size, block.usable(False).size, block.usable(True).size) == (8, 6, 8)
    assert str(block.usable(False).start) == "198.18.10.1"


def test_tiny_cidrs_and_ranges_are_used_whole() -> None:
    assert _block({"cidr": "198.18.10.4/31"}).usable(False).size == 2
    assert _block({"cidr": "198.18.10.4/32"}).usable(False).size == 1
    assert _block({"start": "198.18.10.0", "stop": "198.18.10.9"}).usable(False).size == 10


def test_start_only_is_one_address() -> None:
    block = _block({"start": "198.18.10.7"})
    assert block.range.size == 1 and block.to_spec() == {"start": "198.18.10.7"}


def test_ipv6_cidr_is_not_enumerated() -> None:
    block = _block({"cidr": "2001:db8::/48"})
    assert block.range.version == 6 and block.range.size == 2**80
    assert next(block.usable(False).addresses()) == ipaddress.IPv6Address("2001:db8::1")


def test_intersection_and_contains() -> None:
    a = IPRange(4, 10, 20)
    assert a.intersection(IPRange(4, 15, 30)) == IPRange(4, 15, 20)
    assert a.intersection(IPRange(4, 21, 30)) is None
    assert a.intersection(IPRange(6, 10, 20)) is None
    assert a.contains(ipaddress.IPv4Address(12)) and not a.contains(ipaddress.IPv6Address(12))


def test_str_forms() -> None:
    assert str(_block({"cidr": "198.18.10.0/30"})) == "198.18.10.0/30"
    assert str(_block({"start": "198.18.10.1", "stop": "198.18.10.3"})) == "198.18.10.1-198.18.10.3"
