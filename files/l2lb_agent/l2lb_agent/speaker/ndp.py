"""NDP over Ethernet for IPv6 (RFC 4861): parse Neighbor Solicitations and Advertisements, build the answers.

Pure functions, no I/O; the IPv6 twin of ``arp.py``. Frames are plain ``bytes``, MACs 6 bytes, IPv6 addresses
16 bytes (network order). Only untagged Ethernet II frames without IPv6 extension headers are handled: NDP
messages carry none (RFC 4861 §6.1: hop limit 255, no fragmentation), so a frame with one is not NDP we answer.

What a speaker needs:
- ``parse_frame``: an NS or NA (hop limit 255, code 0, a valid ICMPv6 checksum, the options well formed),
  ``None`` for anything else; never raises.
- ``build_solicited_na``: the answer to an NS for an address we announce (Solicited and Override set, Router
  clear, our MAC in a Target Link-Layer Address option), unicast to the asker; to all-nodes when the NS came
  from the unspecified address (a DAD probe: the prober learns the address is taken, RFC 4861 §7.2.4).
- ``build_unsolicited_na``: the takeover announcement of RFC 4861 §7.2.6 (all-nodes, Override set,
  Solicited clear), the twin of a gratuitous ARP.
- ``solicited_node`` / ``multicast_mac``: the group an NS for an address is sent to, and its MAC, which the
  speaker must join on each interface so that the NIC (and a bridge with multicast snooping) delivers it.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from dataclasses import dataclass

# Re-exported: one MAC spelling for both families.
from .arp import mac_to_bytes as mac_to_bytes
from .arp import mac_to_str as mac_to_str

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
NDP_HOP_LIMIT = 255
ICMPV6_NS = 135
ICMPV6_NA = 136
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
NA_ROUTER = 0x80000000
NA_SOLICITED = 0x40000000
NA_OVERRIDE = 0x20000000

ETH_HEADER_LEN = 14
IPV6_HEADER_LEN = 40
NS_NA_LEN = 24  # type, code, checksum, reserved/flags, target
MIN_FRAME_LEN = ETH_HEADER_LEN + IPV6_HEADER_LEN + NS_NA_LEN  # 78

UNSPECIFIED = b"\x00" * 16
ALL_NODES = socket.inet_pton(socket.AF_INET6, "ff02::1")
SOLICITED_NODE_PREFIX = bytes.fromhex("ff0200000000000000000001ff")  # ff02::1:ff00:0/104
_IPV6_HEADER = struct.Struct("!IHBB16s16s")  # version/class/flow, payload length, next header, hop limit, src, dst
_ETH_TYPE_IPV6 = struct.pack("!H", ETH_P_IPV6)


class NdpKind(enum.Enum):
    """What an NDP frame means to a speaker."""

    SOLICIT = "solicit"  # who has the target? (from an address of the asker)
    DAD = "dad"  # Duplicate Address Detection probe: an NS from the unspecified address (RFC 4862 §5.4)
    SOLICITED_ADVERT = "solicited-advert"  # an answer to someone's NS
    UNSOLICITED_ADVERT = "unsolicited-advert"  # an announcement (takeover), Solicited flag clear


@dataclass(frozen=True)
class NdpFrame:
    """An Ethernet II frame carrying an ICMPv6 Neighbor Solicitation or Advertisement."""

    __slots__ = ("dst_ip", "dst_mac", "flags", "lladdr", "src_ip", "src_mac", "target", "type")

    dst_mac: bytes
    src_mac: bytes
    src_ip: bytes
    dst_ip: bytes
    type: int  # ICMPV6_NS or ICMPV6_NA
    flags: int  # NA: R/S/O bits (the first 32 bits after the checksum); 0 for NS
    target: bytes
    lladdr: bytes | None  # NS: the Source, NA: the Target Link-Layer Address option, if present

    @property
    def kind(self) -> NdpKind:
        if self.type == ICMPV6_NS:
            return NdpKind.DAD if self.src_ip == UNSPECIFIED else NdpKind.SOLICIT
        return NdpKind.SOLICITED_ADVERT if self.flags & NA_SOLICITED else NdpKind.UNSOLICITED_ADVERT

    def describe(self) -> str:
        """One line for logs, in tcpdump's words."""
        target = ip_to_str(self.target)
        if self.type == ICMPV6_NS:
            who = "::" if self.src_ip == UNSPECIFIED else ip_to_str(self.src_ip)
            return f"neighbor solicitation, who has {target} (from {who}, {self.src_mac.hex(':')})"
        flags = "".join(
            name for bit, name in ((NA_ROUTER, "R"), (NA_SOLICITED, "S"), (NA_OVERRIDE, "O")) if self.flags & bit
        )
        mac = self.lladdr.hex(":") if self.lladdr else "no lladdr"
        return f"neighbor advertisement, tgt is {target} at {mac} [{flags or '-'}]"


def parse_frame(frame: bytes | bytearray | memoryview) -> NdpFrame | None:
    """Parse an Ethernet frame; None unless it is a valid NS or NA (RFC 4861 §7.1.1, §7.1.2). Never raises."""
    if len(frame) < MIN_FRAME_LEN:
        return None
    view = memoryview(frame)
    if bytes(view[12:14]) != _ETH_TYPE_IPV6:
        return None
    vtf, payload_len, next_header, hop_limit, src_ip, dst_ip = _IPV6_HEADER.unpack_from(view, ETH_HEADER_LEN)
    if vtf >> 28 != 6 or next_header != IPPROTO_ICMPV6 or hop_limit != NDP_HOP_LIMIT:
        return None
    start = ETH_HEADER_LEN + IPV6_HEADER_LEN
    if payload_len < NS_NA_LEN or start + payload_len > len(view):
        return None
    icmp = bytes(view[start : start + payload_len])  # Ethernet padding after the payload is ignored
    icmp_type, code = icmp[0], icmp[1]
    if icmp_type not in (ICMPV6_NS, ICMPV6_NA) or code != 0 or checksum(src_ip, dst_ip, icmp) != 0:
        return None
    (flags,) = struct.unpack_from("!I", icmp, 4)
    target = icmp[8:24]
    if target[0] == 0xFF:  # a multicast target is invalid in both messages
        return None
    lladdr = None
    wanted = OPT_SOURCE_LLADDR if icmp_type == ICMPV6_NS else OPT_TARGET_LLADDR
    offset = NS_NA_LEN
    while offset < len(icmp):
        if offset + 2 > len(icmp):
            return None
        opt_type, opt_len = icmp[offset], icmp[offset + 1]
        if opt_len == 0 or offset + 8 * opt_len > len(icmp):
            return None  # RFC 4861 §4.6: a zero-length option means the packet is discarded
        if opt_type == wanted and opt_len == 1:
            lladdr = icmp[offset + 2 : offset + 8]
        offset += 8 * opt_len
    if icmp_type == ICMPV6_NS:
        if src_ip == UNSPECIFIED and (lladdr is not None or not _is_solicited_node(dst_ip)):
            return None  # §7.1.1: a DAD probe carries no source lladdr and goes to the solicited-node group
        return NdpFrame(bytes(view[0:6]), bytes(view[6:12]), src_ip, dst_ip, icmp_type, 0, target, lladdr)
    if dst_ip[0] == 0xFF and flags & NA_SOLICITED:
        return None  # §7.1.2: a solicited NA is never multicast
    return NdpFrame(bytes(view[0:6]), bytes(view[6:12]), src_ip, dst_ip, icmp_type, flags & 0xE0000000, target, lladdr)


def build_solicited_na(solicit: NdpFrame, our_mac: bytes, our_ip: bytes | None = None) -> bytes:
    """Answer ``solicit`` (an NS for an address we announce): Solicited and Override set, Router clear.

    Unicast to the asker's address and MAC; a DAD probe (source ::) is answered to all-nodes with Solicited
    clear (RFC 4861 §7.2.4). The source address is ``our_ip`` (the announced address itself by default).
    """
    source = our_ip if our_ip is not None else solicit.target
    if solicit.src_ip == UNSPECIFIED:
        return _advertisement(our_mac, multicast_mac(ALL_NODES), source, ALL_NODES, solicit.target, NA_OVERRIDE)
    dst_mac = solicit.lladdr or solicit.src_mac
    return _advertisement(our_mac, dst_mac, source, solicit.src_ip, solicit.target, NA_SOLICITED | NA_OVERRIDE)


def build_unsolicited_na(our_mac: bytes, ip: bytes) -> bytes:
    """The takeover announcement (RFC 4861 §7.2.6): to all-nodes, Override set, Solicited and Router clear."""
    return _advertisement(our_mac, multicast_mac(ALL_NODES), ip, ALL_NODES, ip, NA_OVERRIDE)


def build_solicit(our_mac: bytes, our_ip: bytes, target: bytes) -> bytes:
    """An NS for ``target`` to its solicited-node group, with our MAC as Source Link-Layer Address (probes, tests).

    ``our_ip`` = :: makes it a DAD probe (no source lladdr option then, as §7.1.1 requires).
    """
    group = solicited_node(target)
    options = b"" if our_ip == UNSPECIFIED else bytes([OPT_SOURCE_LLADDR, 1]) + our_mac
    body = bytes([ICMPV6_NS, 0]) + b"\x00\x00" + b"\x00" * 4 + target + options
    return _frame(our_mac, multicast_mac(group), our_ip, group, body)


def _advertisement(src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes, target: bytes, flags: int) -> bytes:
    for name, value, size in (("src_mac", src_mac, 6), ("dst_mac", dst_mac, 6), ("target", target, 16)):
        if len(value) != size:
            raise ValueError(f"{name}: expected {size} bytes, got {len(value)}")
    body = bytes([ICMPV6_NA, 0]) + b"\x00\x00" + struct.pack("!I", flags) + target
    body += bytes([OPT_TARGET_LLADDR, 1]) + src_mac
    return _frame(src_mac, dst_mac, src_ip, dst_ip, body)


def _frame(src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes, icmp: bytes) -> bytes:
    summed = checksum(src_ip, dst_ip, icmp)
    icmp = icmp[:2] + struct.pack("!H", summed) + icmp[4:]
    header = _IPV6_HEADER.pack(6 << 28, len(icmp), IPPROTO_ICMPV6, NDP_HOP_LIMIT, src_ip, dst_ip)
    return dst_mac + src_mac + _ETH_TYPE_IPV6 + header + icmp


def checksum(src_ip: bytes, dst_ip: bytes, icmp: bytes) -> int:
    """The ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1); 0 when verifying a correct message."""
    data = src_ip + dst_ip + struct.pack("!I3xB", len(icmp), IPPROTO_ICMPV6) + icmp
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def solicited_node(ip: bytes) -> bytes:
    """The solicited-node multicast address of ``ip``: ff02::1:ffXX:XXXX (its low 24 bits)."""
    return SOLICITED_NODE_PREFIX + ip[13:16]


def _is_solicited_node(ip: bytes) -> bool:
    return len(ip) == 16 and ip[:13] == SOLICITED_NODE_PREFIX


def multicast_mac(group: bytes) -> bytes:
    """The Ethernet address an IPv6 multicast group maps to: 33:33 and its low 32 bits (RFC 2464 §7)."""
    return b"\x33\x33" + group[12:16]


def ip_to_bytes(ip: str) -> bytes:
    """An IPv6 address → 16 bytes; ValueError for anything else."""
    try:
        return ipaddress.IPv6Address(ip).packed
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ValueError(f"not an IPv6 address: {ip!r}") from None


def ip_to_str(ip: bytes) -> str:
    return str(ipaddress.IPv6Address(ip))
