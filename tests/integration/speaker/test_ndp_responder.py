"""The responder's IPv6 side on a real (namespaced) wire: NS answered with NA, the solicited-node group joined,
unsolicited NAs as announcements, DAD probes defended, foreign NAs reported as conflicts.

The lab has IPv6 on 2001:2:0:100::/64 (RFC 5180's benchmarking prefix). The client probes with scapy
(``tests/arpprobe.py``), and scapy builds the frames the client injects: an oracle independent of the agent's
own NDP code. The client's kernel is a second oracle: it must accept our advertisements.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable

import pytest
from netns import Host, Lab, Neighbour
from speaker_harness import Speaker

pytestmark = pytest.mark.netns


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(nodes=2, subnet="198.18.100.0/24", subnet6="2001:2:0:100::/64")


def inject(lab: Lab, host: Host, scapy_expression: str) -> None:
    """Send one frame from ``host``'s lab interface, built by scapy from ``scapy_expression``."""
    code = (
        "from scapy.layers.l2 import Ether\n"
        "from scapy.layers.inet6 import *\n"
        "from scapy.sendrecv import sendp\n"
        "from scapy.utils6 import in6_getnsmac\n"
        "from socket import AF_INET6, inet_pton\n"
        f"sendp({scapy_expression}, iface={host.ifname!r}, verbose=False)\n"
    )
    lab.run_python(host, ["-c", code])


def solicited_node_group(ip: str) -> str:
    """ff02::1:ffXX:XXXX, spelled as ``ip -6 maddr`` spells it."""
    low = ipaddress.IPv6Address(ip).packed[13:]  # the low 24 bits
    return str(ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low))


def neighbour6(lab: Lab, ip: str, mac: str, timeout: float = 3.0) -> Neighbour | None:
    """The client's IPv6 neighbour entry for ``ip`` once it points at ``mac`` (or whatever it is at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        entry = lab.neighbours(lab.client, "-6").get(ip)
        if (entry is not None and entry.mac == mac) or time.monotonic() > deadline:
            return entry
        time.sleep(0.02)


def test_answers_neighbor_solicitations_with_a_solicited_override_advertisement(
    lab: Lab, start_speaker: Callable[..., Speaker]
) -> None:
    node1, vip = lab.node(1), lab.vip6(0)
    speaker = start_speaker(node1, [vip])
    speaker.wait_stats(lambda s: s["counters"]["totals"]["unsolicited_nas_sent"] == 3)  # the burst: 3 rounds

    result = lab.arp_probe(vip, count=20, settle_ms=10)

    assert result.unanswered == 0
    assert [len(r.replies) for r in result.records] == [1] * 20, "exactly one advertisement per solicitation"
    assert result.macs == {node1.mac}
    totals = speaker.totals()
    assert totals["replies_sent"] == 20
    assert totals["conflicts"] == 0 and totals["dad_probes"] == 0
    # The address is answered, never configured on the node.
    assert vip not in lab.ip(node1, "-6", "addr", "show")

    # The flags and option, as scapy reads them: Solicited and Override set, Router clear, our MAC as TLLA.
    code = f"""
import json, socket
from scapy.layers.l2 import Ether
from scapy.layers.inet6 import *
from scapy.sendrecv import srp1
from scapy.utils6 import in6_getnsma, in6_getnsmac
group = in6_getnsma(socket.inet_pton(socket.AF_INET6, {vip!r}))
ns = (Ether(dst=in6_getnsmac(group), src={lab.client.mac!r})
      / IPv6(src={lab.client.ip6!r}, dst=socket.inet_ntop(socket.AF_INET6, group), hlim=255)
      / ICMPv6ND_NS(tgt={vip!r}) / ICMPv6NDOptSrcLLAddr(lladdr={lab.client.mac!r}))
answer = srp1(ns, iface={lab.client.ifname!r}, timeout=2, verbose=False)  # scapy matches the NA to the NS
na = answer[ICMPv6ND_NA]
print(json.dumps({{"R": int(na.R), "S": int(na.S), "O": int(na.O), "tgt": na.tgt, "hlim": answer[IPv6].hlim,
                  "src": answer[IPv6].src, "dst": answer[IPv6].dst, "eth_dst": answer.dst,
                  "lladdr": answer[ICMPv6NDOptDstLLAddr].lladdr}}))
"""
    na = json.loads(lab.run_python(lab.client, ["-c", code]).strip().splitlines()[-1])
    assert na == {
        "R": 0,
        "S": 1,
        "O": 1,
        "tgt": vip,
        "hlim": 255,
        "src": vip,
        "dst": lab.client.ip6,
        "eth_dst": lab.client.mac,
        "lladdr": node1.mac,
    }


def test_joins_the_solicited_node_group_and_leaves_it_on_withdrawal(
    lab: Lab, start_speaker: Callable[..., Speaker]
) -> None:
    node1, vip = lab.node(1), lab.vip6(7)
    group = solicited_node_group(vip)
    assert group not in lab.ip(node1, "-6", "maddr", "show", "dev", node1.ifname)

    speaker = start_speaker(node1, [vip])
    deadline = time.monotonic() + 3
    while group not in lab.ip(node1, "-6", "maddr", "show", "dev", node1.ifname):
        assert time.monotonic() < deadline, "the speaker never joined the solicited-node group"
        time.sleep(0.05)

    speaker.set({})
    deadline = time.monotonic() + 3
    while group in lab.ip(node1, "-6", "maddr", "show", "dev", node1.ifname):
        assert time.monotonic() < deadline, "the speaker kept the group after the address was withdrawn"
        time.sleep(0.05)
    assert lab.arp_probe(vip, count=2, timeout_ms=100).unanswered == 2


def test_unassigned_addresses_get_no_answer(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    speaker = start_speaker(lab.node(1), [lab.vip6(0)])

    result = lab.arp_probe(lab.vip6(1), count=3, timeout_ms=100)

    assert result.unanswered == 3
    assert speaker.totals()["replies_sent"] == 0


def test_unsolicited_advertisements_move_the_clients_neighbour_entry(
    lab: Lab, start_speaker: Callable[..., Speaker]
) -> None:
    client, node1, node2, vip = lab.client, lab.node(1), lab.node(2), lab.vip6(0)
    first = start_speaker(node1, [vip])
    # The client's kernel resolves the address (a datagram to it makes it solicit) and learns node1.
    lab.run_python(
        client, ["-c", f"import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b'x', ({vip!r}, 9))"]
    )
    entry = neighbour6(lab, vip, node1.mac)
    assert entry is not None and entry.mac == node1.mac, lab.neighbours(client, "-6")

    # Takeover: node1 withdraws, node2 announces; the client's kernel follows the Override flag unasked.
    first.set({})
    start_speaker(node2, [vip])
    entry = neighbour6(lab, vip, node2.mac)
    assert entry is not None and entry.mac == node2.mac, lab.neighbours(client, "-6")


def test_a_dad_probe_for_our_address_is_defended_counted_and_not_fenced(
    lab: Lab, start_speaker: Callable[..., Speaker]
) -> None:
    node1, client, vip = lab.node(1), lab.client, lab.vip6(0)
    speaker = start_speaker(node1, [vip])
    speaker.wait_stats(lambda s: s["counters"]["totals"]["unsolicited_nas_sent"] == 3)
    prober = lab.start_prober(vip, interval_ms=50)  # collects the all-nodes advertisements it sees

    group = solicited_node_group(vip)
    inject(
        lab,
        client,
        f"Ether(src={client.mac!r}, dst=in6_getnsmac(inet_pton(AF_INET6, {group!r})))"
        f" / IPv6(src='::', dst={group!r}, hlim=255) / ICMPv6ND_NS(tgt={vip!r})",
    )

    stats = speaker.wait_stats(lambda s: s["counters"]["totals"]["dad_probes"] == 1)
    assert stats["counters"]["per_ip"][vip]["dad_probes"] == 1
    seen = prober.stop()
    defended = [g for g in seen.garps if g.mac == node1.mac]
    assert defended, "the DAD probe is answered to all-nodes, so the prober does not take the address"
    assert speaker.conflicts() == [], "a host probing for an address does not claim it: no fence"
    assert speaker.totals()["conflicts"] == 0


def test_a_foreign_advertisement_of_our_address_fires_the_conflict_hook(
    lab: Lab, start_speaker: Callable[..., Speaker]
) -> None:
    node1, client, vip = lab.node(1), lab.client, lab.vip6(0)
    speaker = start_speaker(node1, [vip])
    speaker.wait_stats(lambda s: s["counters"]["totals"]["unsolicited_nas_sent"] == 3)
    assert speaker.conflicts() == []

    inject(
        lab,
        client,
        f"Ether(src={client.mac!r}, dst='33:33:00:00:00:01') / IPv6(src={vip!r}, dst='ff02::1', hlim=255)"
        f" / ICMPv6ND_NA(tgt={vip!r}, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr={client.mac!r})",
    )

    event = speaker.stream.wait_for(lambda e: e.get("event") == "conflict", timeout=3.0)
    assert (event["ip"], event["ifname"], event["mac"]) == (vip, node1.ifname, client.mac)
    assert speaker.totals()["conflicts"] == 1


def test_ipv4_and_ipv6_on_one_interface_are_answered_side_by_side(
    lab: Lab, start_speaker: Callable[..., Speaker]
) -> None:
    node1 = lab.node(1)
    start_speaker(node1, [lab.vip(0), lab.vip6(0)])

    v4 = lab.arp_probe(lab.vip(0), count=5)
    v6 = lab.arp_probe(lab.vip6(0), count=5)

    assert v4.unanswered == 0 and v4.macs == {node1.mac}
    assert v6.unanswered == 0 and v6.macs == {node1.mac}
