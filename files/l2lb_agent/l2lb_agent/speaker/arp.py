"""ARP over Ethernet for IPv4: parse and build frames. Pure functions, no I/O.

Frames are plain ``bytes``; MAC addresses are 6-byte ``bytes`` and IPv4 addresses 4-byte ``bytes``
(network order) on the hot path, with string helpers for logs and APIs. Only untagged Ethernet II
frames are handled: on Linux an ``AF_PACKET`` socket sees VLAN traffic on the VLAN's own interface,
already untagged.
"""

from __future__ import annotations

import enum
import socket
import struct
from dataclasses import dataclass

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
OP_REQUEST = 1
OP_REPLY = 2

ETH_HEADER_LEN = 14
ARP_PAYLOAD_LEN = 28
ARP_FRAME_LEN = ETH_HEADER_LEN + ARP_PAYLOAD_LEN  # 42
ETH_MIN_FRAME_LEN = 60  # without FCS; shorter frames are padded on the wire anyway

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ZERO_IP = b"\x00" * 4

# Ethernet header + ARP payload in one unpack: dst, src, ethertype, htype, ptype, hlen, plen, op,
# sender MAC, sender IP, target MAC, target IP.
_FRAME = struct.Struct("!6s6sHHHBBH6s4s6s4s")
_ARP_FIXED = struct.pack("!HHBB", ARPHRD_ETHER, ETH_P_IP, 6, 4)
_ETH_TYPE_ARP = struct.pack("!H", ETH_P_ARP)
_OP_REQUEST = struct.pack("!H", OP_REQUEST)
_OP_REPLY = struct.pack("!H", OP_REPLY)
_PADDING = b"\x00" * (ETH_MIN_FRAME_LEN - ARP_FRAME_LEN)


class ArpKind(enum.Enum):
    """What an ARP frame means to a speaker."""

    WHO_HAS = "who-has"  # ordinary request: "who has target IP? tell sender IP"
    PROBE = "probe"  # RFC 5227 probe: request with sender IP 0.0.0.0 (address conflict detection)
    GRATUITOUS_REQUEST = "gratuitous-request"  # request with sender IP == target IP
    GRATUITOUS_REPLY = "gratuitous-reply"  # reply with sender IP == target IP
    REPLY = "reply"  # ordinary answer to someone's who-has


@dataclass(frozen=True)
class ArpFrame:
    """An Ethernet II frame carrying an ARP packet for IPv4 over Ethernet."""

    # Written out, not dataclass(slots=True): that needs Python 3.10 and the agent runs on 3.9.
    __slots__ = ("dst_mac", "op", "sender_ip", "sender_mac", "src_mac", "target_ip", "target_mac")

    dst_mac: bytes
    src_mac: bytes
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @property
    def kind(self) -> ArpKind:
        return classify(self)

    def describe(self) -> str:
        """One line for logs, in tcpdump's words."""
        kind = classify(self)
        if kind in (ArpKind.WHO_HAS, ArpKind.PROBE):
            return (
                f"who-has {ip_to_str(self.target_ip)} tell {ip_to_str(self.sender_ip)} ({mac_to_str(self.sender_mac)})"
            )
        return f"{kind.value} {ip_to_str(self.sender_ip)} is-at {mac_to_str(self.sender_mac)}"


def parse_frame(frame: bytes | bytearray | memoryview) -> ArpFrame | None:
    """Parse an Ethernet frame; None unless it is a well-formed ARP request or reply for IPv4.

    Trailing bytes (Ethernet padding up to 60 bytes) are allowed. Never raises for bad input.
    """
    if len(frame) < ARP_FRAME_LEN:
        return None
    dst, src, ethertype, htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _FRAME.unpack_from(frame, 0)
    if ethertype != ETH_P_ARP or htype != ARPHRD_ETHER or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    if op != OP_REQUEST and op != OP_REPLY:
        return None
    return ArpFrame(dst, src, op, sha, spa, tha, tpa)


def classify(frame: ArpFrame) -> ArpKind:
    """Tell who-has, probe, gratuitous (request or reply form) and plain reply apart."""
    if frame.op == OP_REQUEST:
        if frame.sender_ip == frame.target_ip:
            return ArpKind.GRATUITOUS_REQUEST
        if frame.sender_ip == ZERO_IP:
            return ArpKind.PROBE
        return ArpKind.WHO_HAS
    if frame.sender_ip == frame.target_ip:
        return ArpKind.GRATUITOUS_REPLY
    return ArpKind.REPLY


def is_gratuitous(frame: ArpFrame) -> bool:
    return frame.sender_ip == frame.target_ip


def is_question(frame: ArpFrame) -> bool:
    """True for requests that expect an answer from the target IP's owner (who-has and probes)."""
    return frame.op == OP_REQUEST and frame.sender_ip != frame.target_ip


def build_frame(
    *,
    dst_mac: bytes,
    src_mac: bytes,
    op: int,
    sender_mac: bytes,
    sender_ip: bytes,
    target_mac: bytes,
    target_ip: bytes,
    pad: bool = True,
) -> bytes:
    """Assemble an Ethernet + ARP frame, padded to the 60-byte Ethernet minimum unless ``pad`` is False."""
    for name, value, size in (
        ("dst_mac", dst_mac, 6),
        ("src_mac", src_mac, 6),
        ("sender_mac", sender_mac, 6),
        ("target_mac", target_mac, 6),
        ("sender_ip", sender_ip, 4),
        ("target_ip", target_ip, 4),
    ):
        if len(value) != size:
            raise ValueError(f"{name}: expected {size} bytes, got {len(value)}")
    if op not in (OP_REQUEST, OP_REPLY):
        raise ValueError(f"op: expected 1 (request) or 2 (reply), got {op}")
    return _assemble(
        dst_mac,
        src_mac,
        _OP_REQUEST if op == OP_REQUEST else _OP_REPLY,
        sender_mac,
        sender_ip,
        target_mac,
        target_ip,
        pad,
    )


def build_reply(request: ArpFrame, our_mac: bytes, *, pad: bool = True) -> bytes:
    """Answer ``request`` (a who-has or probe): "target IP is-at our_mac", sent unicast to the asker.

    Like the Linux kernel, the reply goes to the requester's hardware address and names it as target;
    for an RFC 5227 probe the target IP is 0.0.0.0, which tells the prober the address is taken.
    """
    return _assemble(
        request.sender_mac,
        our_mac,
        _OP_REPLY,
        our_mac,
        request.target_ip,
        request.sender_mac,
        request.sender_ip,
        pad,
    )


def build_gratuitous_request(our_mac: bytes, ip: bytes, *, pad: bool = True) -> bytes:
    """Gratuitous ARP, request form: broadcast "who-has ip tell ip" from our_mac (RFC 5227 announcement).

    The target hardware address is zero: it is ignored in requests.
    """
    return _assemble(BROADCAST_MAC, our_mac, _OP_REQUEST, our_mac, ip, ZERO_MAC, ip, pad)


def build_gratuitous_reply(our_mac: bytes, ip: bytes, *, pad: bool = True) -> bytes:
    """Gratuitous ARP, reply form: broadcast "ip is-at our_mac"; target MAC = our_mac as RFC 5944 says."""
    return _assemble(BROADCAST_MAC, our_mac, _OP_REPLY, our_mac, ip, our_mac, ip, pad)


def build_request(
    our_mac: bytes, our_ip: bytes, target_ip: bytes, *, dst_mac: bytes = BROADCAST_MAC, pad: bool = True
) -> bytes:
    """An ordinary who-has (used by probes and tests)."""
    return _assemble(dst_mac, our_mac, _OP_REQUEST, our_mac, our_ip, ZERO_MAC, target_ip, pad)


def _assemble(dst: bytes, src: bytes, op: bytes, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, pad: bool) -> bytes:
    # bytes.join is the cheapest way to build the frame in CPython; the hot path avoids struct.pack.
    parts = (dst, src, _ETH_TYPE_ARP, _ARP_FIXED, op, sha, spa, tha, tpa, _PADDING if pad else b"")
    return b"".join(parts)


def mac_to_bytes(mac: str) -> bytes:
    """'aa:bb:cc:dd:ee:ff' (or with '-') → 6 bytes; ValueError otherwise."""
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {mac!r}") from None


def mac_to_str(mac: bytes) -> str:
    return mac.hex(":")


def ip_to_bytes(ip: str) -> bytes:
    """Dotted-quad IPv4 → 4 bytes; ValueError for anything else (inet_aton alone accepts '1')."""
    try:
        packed = socket.inet_pton(socket.AF_INET, ip)
    except (OSError, TypeError):
        raise ValueError(f"not an IPv4 address: {ip!r}") from None
    return packed


def ip_to_str(ip: bytes) -> str:
    return socket.inet_ntoa(ip)
