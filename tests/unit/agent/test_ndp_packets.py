"""NDP (RFC 4861) frame parsing and building, checked against scapy as an independent oracle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_getnsma,
    in6_getnsmac,
)
from scapy.layers.l2 import Ether
from scapy.pton_ntop import inet_pton

from l2lb_agent.speaker import ndp

CLIENT_MAC = "02:18:00:00:00:02"
NODE_MAC = "02:18:00:00:00:11"
CLIENT_IP = "2001:2::2"
VIP = "2001:2::f0"


def scapy_ns(target: str = VIP, src: str = CLIENT_IP, hlim: int = 255, lladdr: bool = True) -> bytes:
    group = in6_getnsma(inet_pton(10, target))
    packet = Ether(src=CLIENT_MAC, dst=in6_getnsmac(group)) / IPv6(src=src, dst=ndp.ip_to_str(group), hlim=hlim)
    packet = packet / ICMPv6ND_NS(tgt=target)
    if lladdr:
        packet = packet / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT_MAC)
    return bytes(packet)


def test_parses_a_scapy_solicitation_with_its_source_lladdr() -> None:
    frame = ndp.parse_frame(scapy_ns())
    assert frame is not None
    assert frame.kind is ndp.NdpKind.SOLICIT
    assert ndp.ip_to_str(frame.target) == VIP and ndp.ip_to_str(frame.src_ip) == CLIENT_IP
    assert frame.lladdr is not None and frame.lladdr.hex(":") == CLIENT_MAC
    assert ndp.ip_to_str(frame.dst_ip) == "ff02::1:ff00:f0"
    assert frame.describe() == f"neighbor solicitation, who has {VIP} (from {CLIENT_IP}, {CLIENT_MAC})"


def test_a_dad_probe_is_told_apart_and_answered_to_all_nodes() -> None:
    frame = ndp.parse_frame(scapy_ns(src="::", lladdr=False))
    assert frame is not None and frame.kind is ndp.NdpKind.DAD
    answer = Ether(ndp.build_solicited_na(frame, ndp.mac_to_bytes(NODE_MAC)))
    assert answer[IPv6].dst == "ff02::1" and answer[Ether].dst == "33:33:00:00:00:01"
    assert answer[ICMPv6ND_NA].S == 0 and answer[ICMPv6ND_NA].O == 1 and answer[ICMPv6ND_NA].R == 0


def test_invalid_solicitations_are_not_ndp() -> None:
    assert ndp.parse_frame(scapy_ns(hlim=64)) is None  # forwarded by a router: hop limit below 255
    assert ndp.parse_frame(scapy_ns(src="::", lladdr=True)) is None  # DAD with a source lladdr (§7.1.1)
    good = scapy_ns()
    corrupt = good[:-9] + bytes([good[-9] ^ 0xFF]) + good[-8:]  # one bit of the target flipped: bad checksum
    assert ndp.parse_frame(corrupt) is None
    zero_option = good[:-8] + bytes([ndp.OPT_SOURCE_LLADDR, 0]) + good[-6:]
    assert ndp.parse_frame(zero_option) is None
    assert ndp.parse_frame(good[:70]) is None
    assert ndp.parse_frame(b"") is None


def test_solicited_advertisement_is_what_scapy_and_rfc_4861_expect() -> None:
    solicit = ndp.parse_frame(scapy_ns())
    assert solicit is not None
    raw = ndp.build_solicited_na(solicit, ndp.mac_to_bytes(NODE_MAC))
    packet = Ether(raw)
    assert packet[Ether].src == NODE_MAC and packet[Ether].dst == CLIENT_MAC
    assert packet[IPv6].src == VIP and packet[IPv6].dst == CLIENT_IP and packet[IPv6].hlim == 255
    na = packet[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 1, 1) and na.tgt == VIP
    assert packet[ICMPv6NDOptDstLLAddr].lladdr == NODE_MAC
    # scapy's own checksum of the same message equals ours
    theirs = packet.copy()
    del theirs[ICMPv6ND_NA].cksum
    assert Ether(bytes(theirs))[ICMPv6ND_NA].cksum == na.cksum
    parsed = ndp.parse_frame(raw)
    assert parsed is not None and parsed.kind is ndp.NdpKind.SOLICITED_ADVERT
    assert parsed.describe() == f"neighbor advertisement, tgt is {VIP} at {NODE_MAC} [SO]"


def test_unsolicited_advertisement_is_the_rfc_4861_7_2_6_form() -> None:
    raw = ndp.build_unsolicited_na(ndp.mac_to_bytes(NODE_MAC), ndp.ip_to_bytes(VIP))
    packet = Ether(raw)
    assert packet[Ether].dst == "33:33:00:00:00:01" and packet[IPv6].dst == "ff02::1"
    na = packet[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 0, 1) and na.tgt == VIP
    assert packet[ICMPv6NDOptDstLLAddr].lladdr == NODE_MAC
    parsed = ndp.parse_frame(raw)
    assert parsed is not None and parsed.kind is ndp.NdpKind.UNSOLICITED_ADVERT
    assert parsed.lladdr == ndp.mac_to_bytes(NODE_MAC)


def test_a_multicast_solicited_advertisement_is_refused() -> None:
    raw = bytes(
        Ether(src=CLIENT_MAC, dst="33:33:00:00:00:01")
        / IPv6(src=CLIENT_IP, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(tgt=VIP, R=0, S=1, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=CLIENT_MAC)
    )
    assert ndp.parse_frame(raw) is None


def test_our_solicitation_parses_in_scapy_and_in_ndp() -> None:
    raw = ndp.build_solicit(ndp.mac_to_bytes(CLIENT_MAC), ndp.ip_to_bytes(CLIENT_IP), ndp.ip_to_bytes(VIP))
    packet = Ether(raw)
    assert packet[ICMPv6ND_NS].tgt == VIP and packet[ICMPv6NDOptSrcLLAddr].lladdr == CLIENT_MAC
    assert packet[Ether].dst == "33:33:ff:00:00:f0" and packet[IPv6].dst == "ff02::1:ff00:f0"
    parsed = ndp.parse_frame(raw)
    assert parsed is not None and parsed.kind is ndp.NdpKind.SOLICIT
    dad = ndp.parse_frame(ndp.build_solicit(ndp.mac_to_bytes(CLIENT_MAC), ndp.UNSPECIFIED, ndp.ip_to_bytes(VIP)))
    assert dad is not None and dad.kind is ndp.NdpKind.DAD and dad.lladdr is None


def test_solicited_node_group_and_its_mac() -> None:
    ip = ndp.ip_to_bytes("2001:2::abcd:1234")
    assert ndp.ip_to_str(ndp.solicited_node(ip)) == "ff02::1:ffcd:1234"
    assert ndp.multicast_mac(ndp.solicited_node(ip)).hex(":") == "33:33:ff:cd:12:34"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_never_raises_on_garbage(data: bytes) -> None:
    ndp.parse_frame(data)
    ndp.parse_frame(scapy_ns()[:78] + data)
