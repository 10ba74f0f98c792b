"""ARP frame parsing and building, checked against scapy as an independent oracle."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from l2lb_agent.speaker import arp

CLIENT_MAC = "02:18:00:00:00:02"
NODE_MAC = "02:18:00:00:00:11"
CLIENT_IP = "198.18.0.2"
VIP = "198.18.0.100"

macs = st.binary(min_size=6, max_size=6)
ipv4s = st.binary(min_size=4, max_size=4)


def scapy_who_has(target: str = VIP, sender_ip: str = CLIENT_IP, dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    return bytes(
        Ether(dst=dst, src=CLIENT_MAC)
        / ARP(op=1, hwsrc=CLIENT_MAC, psrc=sender_ip, hwdst="00:00:00:00:00:00", pdst=target)
    )


def test_parses_a_scapy_who_has() -> None:
    frame = arp.parse_frame(scapy_who_has())
    assert frame is not None
    assert frame.op == arp.OP_REQUEST
    assert frame.dst_mac == arp.BROADCAST_MAC
    assert arp.mac_to_str(frame.src_mac) == CLIENT_MAC
    assert arp.mac_to_str(frame.sender_mac) == CLIENT_MAC
    assert arp.ip_to_str(frame.sender_ip) == CLIENT_IP
    assert frame.target_mac == arp.ZERO_MAC
    assert arp.ip_to_str(frame.target_ip) == VIP
    assert arp.classify(frame) is arp.ArpKind.WHO_HAS
    assert arp.is_question(frame)
    assert frame.describe() == f"who-has {VIP} tell {CLIENT_IP} ({CLIENT_MAC})"


def test_reply_is_what_scapy_would_send() -> None:
    request = arp.parse_frame(scapy_who_has())
    assert request is not None
    reply = arp.build_reply(request, arp.mac_to_bytes(NODE_MAC))
    expected = bytes(
        Ether(dst=CLIENT_MAC, src=NODE_MAC) / ARP(op=2, hwsrc=NODE_MAC, psrc=VIP, hwdst=CLIENT_MAC, pdst=CLIENT_IP)
    )
    assert reply == expected.ljust(arp.ETH_MIN_FRAME_LEN, b"\0")
    dissected = Ether(reply)
    assert dissected[ARP].op == 2
    assert dissected[ARP].hwsrc == NODE_MAC
    assert dissected[ARP].psrc == VIP
    assert dissected[ARP].hwdst == CLIENT_MAC
    assert dissected[ARP].pdst == CLIENT_IP
    assert dissected.dst == CLIENT_MAC  # unicast to the asker, like the kernel


def test_reply_to_an_rfc5227_probe_defends_the_address() -> None:
    probe = arp.parse_frame(scapy_who_has(sender_ip="0.0.0.0"))
    assert probe is not None
    assert arp.classify(probe) is arp.ArpKind.PROBE
    assert arp.is_question(probe)
    reply = Ether(arp.build_reply(probe, arp.mac_to_bytes(NODE_MAC)))
    assert (reply[ARP].op, reply[ARP].psrc, reply[ARP].pdst, reply.dst) == (2, VIP, "0.0.0.0", CLIENT_MAC)


def test_unpadded_reply_is_exactly_scapys_frame() -> None:
    request = arp.parse_frame(scapy_who_has())
    assert request is not None
    assert len(arp.build_reply(request, arp.mac_to_bytes(NODE_MAC), pad=False)) == arp.ARP_FRAME_LEN


@pytest.mark.parametrize(
    ("build", "op", "target_mac"),
    [
        (arp.build_gratuitous_request, 1, "00:00:00:00:00:00"),
        # Linux honours a reply-form GARP only if target MAC == sender MAC (RFC 5944 form).
        (arp.build_gratuitous_reply, 2, NODE_MAC),
    ],
)
def test_gratuitous_arp_both_forms(build: object, op: int, target_mac: str) -> None:
    assert callable(build)
    raw = build(arp.mac_to_bytes(NODE_MAC), arp.ip_to_bytes(VIP))
    assert len(raw) == arp.ETH_MIN_FRAME_LEN
    packet = Ether(raw)
    assert packet.dst == "ff:ff:ff:ff:ff:ff"
    assert packet.src == NODE_MAC
    assert packet.type == arp.ETH_P_ARP
    assert packet[ARP].op == op
    assert packet[ARP].hwsrc == NODE_MAC
    assert packet[ARP].psrc == VIP
    assert packet[ARP].pdst == VIP
    assert packet[ARP].hwdst == target_mac
    parsed = arp.parse_frame(raw)
    assert parsed is not None
    assert arp.is_gratuitous(parsed)
    assert not arp.is_question(parsed)
    expected_kind = arp.ArpKind.GRATUITOUS_REQUEST if op == 1 else arp.ArpKind.GRATUITOUS_REPLY
    assert parsed.kind is expected_kind


def test_scapy_gratuitous_and_plain_replies_are_classified() -> None:
    garp_request = Ether(src=NODE_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=NODE_MAC, psrc=VIP, pdst=VIP)
    garp_reply = Ether(src=NODE_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=2, hwsrc=NODE_MAC, psrc=VIP, hwdst="ff:ff:ff:ff:ff:ff", pdst=VIP
    )
    reply = Ether(src=NODE_MAC, dst=CLIENT_MAC) / ARP(op=2, hwsrc=NODE_MAC, psrc=VIP, hwdst=CLIENT_MAC, pdst=CLIENT_IP)
    parsed = [arp.parse_frame(bytes(p)) for p in (garp_request, garp_reply, reply)]
    kinds = [arp.classify(frame) for frame in parsed if frame is not None]
    assert kinds == [arp.ArpKind.GRATUITOUS_REQUEST, arp.ArpKind.GRATUITOUS_REPLY, arp.ArpKind.REPLY]


def test_build_request_matches_scapy() -> None:
    raw = arp.build_request(arp.mac_to_bytes(CLIENT_MAC), arp.ip_to_bytes(CLIENT_IP), arp.ip_to_bytes(VIP), pad=False)
    assert raw == scapy_who_has()


@settings(max_examples=300, deadline=None)
@given(dst=macs, src=macs, op=st.sampled_from([1, 2]), sha=macs, spa=ipv4s, tha=macs, tpa=ipv4s)
def test_round_trip_with_scapy(dst: bytes, src: bytes, op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    # scapy builds, we parse.
    scapy_frame = bytes(
        Ether(dst=dst.hex(":"), src=src.hex(":"))
        / ARP(
            op=op,
            hwsrc=sha.hex(":"),
            psrc=arp.ip_to_str(spa),
            hwdst=tha.hex(":"),
            pdst=arp.ip_to_str(tpa),
        )
    )
    parsed = arp.parse_frame(scapy_frame)
    assert parsed == arp.ArpFrame(dst, src, op, sha, spa, tha, tpa)
    # we build, scapy parses.
    ours = arp.build_frame(
        dst_mac=dst, src_mac=src, op=op, sender_mac=sha, sender_ip=spa, target_mac=tha, target_ip=tpa
    )
    dissected = Ether(ours)
    assert (dissected.dst, dissected.src, dissected.type) == (dst.hex(":"), src.hex(":"), 0x0806)
    a = dissected[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (
        op,
        sha.hex(":"),
        arp.ip_to_str(spa),
        tha.hex(":"),
        arp.ip_to_str(tpa),
    )
    # and both agree byte for byte (ours is padded to the Ethernet minimum).
    assert ours == scapy_frame.ljust(arp.ETH_MIN_FRAME_LEN, b"\0")
    assert arp.parse_frame(ours) == parsed


@pytest.mark.parametrize("length", range(arp.ARP_FRAME_LEN))
def test_short_frames_are_rejected(length: int) -> None:
    assert arp.parse_frame(scapy_who_has()[:length]) is None


def test_padding_and_trailing_bytes_are_accepted() -> None:
    raw = scapy_who_has()
    assert arp.parse_frame(raw + b"\0" * 18) == arp.parse_frame(raw)
    assert arp.parse_frame(bytearray(raw + b"junk")) == arp.parse_frame(raw)
    assert arp.parse_frame(memoryview(raw)) == arp.parse_frame(raw)


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (12, "!H", 0x0800),  # ethertype IPv4
        (14, "!H", 6),  # hardware type IEEE 802
        (16, "!H", 0x86DD),  # protocol type IPv6
        (18, "!B", 8),  # hardware address length
        (19, "!B", 16),  # protocol address length
        (20, "!H", 3),  # op RARP request
        (20, "!H", 0),
    ],
)
def test_frames_that_are_not_ipv4_arp_over_ethernet_are_rejected(offset: int, fmt: str, value: int) -> None:
    raw = bytearray(scapy_who_has())
    struct.pack_into(fmt, raw, offset, value)
    assert arp.parse_frame(bytes(raw)) is None


def test_vlan_tagged_and_non_arp_frames_are_rejected() -> None:
    tagged = Ether(dst="ff:ff:ff:ff:ff:ff", src=CLIENT_MAC) / Dot1Q(vlan=7) / ARP(psrc=CLIENT_IP, pdst=VIP)
    udp = Ether(dst=NODE_MAC, src=CLIENT_MAC) / IP(src=CLIENT_IP, dst=VIP) / UDP(dport=53) / (b"x" * 40)
    assert arp.parse_frame(bytes(tagged)) is None
    assert arp.parse_frame(bytes(udp)) is None
    assert arp.parse_frame(b"") is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=128))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = arp.parse_frame(data)
    assert result is None or isinstance(result, arp.ArpFrame)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=arp.ARP_FRAME_LEN - 14, max_size=80))
def test_random_arp_payloads_never_raise(payload: bytes) -> None:
    result = arp.parse_frame(b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + payload)
    if result is not None:
        assert result.op in (arp.OP_REQUEST, arp.OP_REPLY)
        assert isinstance(arp.classify(result), arp.ArpKind)


def test_build_frame_validates_lengths_and_op() -> None:
    def build(op: int = 1, src_mac: bytes = b"\x02" * 6, sender_ip: bytes = b"\xc6\x12\x00\x02") -> bytes:
        return arp.build_frame(
            dst_mac=arp.BROADCAST_MAC,
            src_mac=src_mac,
            op=op,
            sender_mac=b"\x02" * 6,
            sender_ip=sender_ip,
            target_mac=arp.ZERO_MAC,
            target_ip=b"\xc6\x12\x00\x64",
        )

    assert arp.parse_frame(build()) is not None
    with pytest.raises(ValueError, match="sender_ip: expected 4 bytes, got 16"):
        build(sender_ip=b"\0" * 16)
    with pytest.raises(ValueError, match="src_mac: expected 6 bytes"):
        build(src_mac=b"\0" * 5)
    with pytest.raises(ValueError, match="op: expected 1"):
        build(op=3)


def test_address_helpers() -> None:
    assert arp.mac_to_bytes("02:18:00:0A:b:ff") == bytes([2, 0x18, 0, 10, 11, 255])
    assert arp.mac_to_bytes("02-18-00-0a-0b-ff") == bytes([2, 0x18, 0, 10, 11, 255])
    assert arp.mac_to_str(bytes([2, 0x18, 0, 10, 11, 255])) == "02:18:00:0a:0b:ff"
    assert arp.ip_to_bytes("198.18.0.100") == bytes([198, 18, 0, 100])
    assert arp.ip_to_str(bytes([198, 18, 0, 100])) == "198.18.0.100"
    for bad_mac in ("", "02:18:00:00:00", "02:18:00:00:00:00:00", "zz:18:00:00:00:00", "021:8:00:00:00:00"):
        with pytest.raises(ValueError, match="not a MAC address"):
            arp.mac_to_bytes(bad_mac)
    for bad_ip in ("", "1", "198.18.0", "198.18.0.256", "fe80::1", "198.18.0.1/24"):
        with pytest.raises(ValueError, match="not an IPv4 address"):
            arp.ip_to_bytes(bad_ip)


def test_parse_and_reply_are_cheap() -> None:
    """The hot path (parse + reply) must leave the 2 ms p99 budget to the kernel and the scheduler."""
    raw = scapy_who_has()
    mac = arp.mac_to_bytes(NODE_MAC)
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        frame = arp.parse_frame(raw)
        assert frame is not None
        arp.build_reply(frame, mac)
    per_frame_us = (time.perf_counter() - start) / n * 1e6
    assert per_frame_us < 50, f"parse+reply took {per_frame_us:.1f} µs per frame"
