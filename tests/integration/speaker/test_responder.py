"""The ARP responder on a real (namespaced) wire: who-has answers, gratuitous ARP, conflicts, link changes.

Every test builds its own lab (bridge + node namespaces + client namespace on 198.18.100.0/24) and runs
speakers with ``python -m l2lb_agent.speaker.runner`` inside node namespaces; the client probes with scapy.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest
from netns import Lab, Neighbour, ProbeResult
from speaker_harness import Speaker

pytestmark = pytest.mark.netns


def wait_probe(
    lab: Lab, target: str, predicate: Callable[[ProbeResult], bool], *, count: int, timeout: float = 5.0
) -> ProbeResult:
    """Probe until the result satisfies ``predicate`` (the speaker reacts asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        result = lab.arp_probe(target, count=count, timeout_ms=200)
        if predicate(result) or time.monotonic() > deadline:
            return result


def test_answers_who_has_with_the_node_mac_once(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    node1 = lab.node(1)
    speaker = start_speaker(node1, [lab.vip(0)])
    speaker.wait_stats(lambda s: s["counters"]["totals"]["garps_sent"] == 6)  # burst over: 3 rounds x 2 forms

    result = lab.arp_probe(lab.vip(0), count=20, settle_ms=10)

    assert result.sent == 20
    assert result.unanswered == 0
    assert [len(r.replies) for r in result.records] == [1] * 20, "exactly one reply per who-has"
    assert result.macs == {node1.mac}
    assert result.split_brain == []
    totals = speaker.totals()
    assert totals["requests_seen"] == 20  # its own gratuitous requests are not counted as questions
    assert totals["replies_sent"] == 20
    assert totals["conflicts"] == 0  # nor are its own announcements taken for someone else's
    assert totals["garps_sent"] == 6
    # The VIP is answered, never configured: the node's kernel does not own it.
    assert lab.vip(0) not in lab.ip(node1, "-4", "addr", "show")


def test_unassigned_ips_get_no_answer(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    speaker = start_speaker(lab.node(1), [lab.vip(0)])

    result = lab.arp_probe(lab.vip(1), count=3, timeout_ms=100)

    assert result.unanswered == 3
    totals = speaker.totals()
    assert totals["requests_seen"] == 3
    assert totals["replies_sent"] == 0


def test_removing_an_ip_stops_the_answers(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    speaker = start_speaker(lab.node(1), [lab.vip(0), lab.vip(1)])
    assert lab.arp_probe(lab.vip(0), count=2).unanswered == 0

    speaker.assign(lab.vip(1))  # vip(0) withdrawn; set_assignments returned before the ack

    assert lab.arp_probe(lab.vip(0), count=3, timeout_ms=100).unanswered == 3
    kept = lab.arp_probe(lab.vip(1), count=2)
    assert kept.unanswered == 0
    assert kept.macs == {lab.node(1).mac}


def test_gratuitous_burst_updates_the_client_without_it_asking(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    client, node1, node2 = lab.client, lab.node(1), lab.node(2)
    assert lab.vip(0) not in lab.neighbours(client)

    first = start_speaker(node1, [lab.vip(0)])
    entry = wait_neighbour(lab, lab.vip(0), node1.mac)
    assert entry.mac == node1.mac
    # Created from the gratuitous ARP (arp_accept=1): STALE. Had the client asked, it would be REACHABLE.
    assert entry.state == ("STALE",)

    # Takeover: node1 withdraws, node2 announces; the client's entry follows without a new who-has.
    first.set({})
    start_speaker(node2, [lab.vip(0)])
    entry = wait_neighbour(lab, lab.vip(0), node2.mac)
    assert entry.mac == node2.mac
    assert entry.state == ("STALE",)


def wait_neighbour(lab: Lab, ip: str, mac: str, timeout: float = 3.0) -> Neighbour:
    """The client's neighbour entry for ``ip`` once it points at ``mac`` (or whatever it is at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        entry = lab.neighbours(lab.client).get(ip)
        if (entry is not None and entry.mac == mac) or time.monotonic() > deadline:
            assert entry is not None, f"client has no neighbour entry for {ip}: {lab.neighbours(lab.client)}"
            return entry
        time.sleep(0.02)


def test_burst_then_periodic_refresh_in_both_forms(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    node1 = lab.node(1)
    prober = lab.start_prober(lab.vip(0), interval_ms=50)
    start = time.monotonic()
    start_speaker(node1, [lab.vip(0)], garp_rounds=3, garp_interval=0.1, refresh=0.4)
    # Burst rounds at ~0, 0.1, 0.2 s, then one round every 0.4 s; each round sends both forms.
    deadline = time.monotonic() + 5.0
    while len(prober.result().garps) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = prober.stop()

    garps = [g for g in seen.garps if g.t >= start]
    assert len(garps) >= 12
    assert {g.mac for g in garps} == {node1.mac}
    requests = sorted(g.t for g in garps if g.op == "request")
    replies = sorted(g.t for g in garps if g.op == "reply")
    assert abs(len(requests) - len(replies)) <= 1, "every round sends the request and the reply form"
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(requests)]
    assert all(0.05 < gap < 0.2 for gap in gaps[:2]), f"burst rounds ~0.1 s apart: {gaps}"
    assert all(0.3 < gap < 0.6 for gap in gaps[2:]), f"refresh rounds ~0.4 s apart: {gaps}"
    assert len(gaps) >= 4
    answered = seen.answered
    assert answered, "the speaker answers the prober's who-has too"
    assert seen.macs == {node1.mac}


def test_two_speakers_for_one_ip_fire_the_conflict_hook(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    node1, node2 = lab.node(1), lab.node(2)
    first = start_speaker(node1, [lab.vip(0)])
    first.wait_stats(lambda s: s["counters"]["totals"]["garps_sent"] == 6)
    assert first.conflicts() == []

    second = start_speaker(node2, [lab.vip(0)])

    event = first.stream.wait_for(lambda e: e.get("event") == "conflict", timeout=3.0)
    assert (event["ip"], event["ifname"], event["mac"]) == (lab.vip(0), node1.ifname, node2.mac)
    # What the client sees is split brain: two answers per who-has, one from each node.
    probe = lab.arp_probe(lab.vip(0), count=5, settle_ms=10)
    assert probe.macs == {node1.mac, node2.mac}
    assert len(probe.split_brain) == 5
    # Replies to the client are unicast to it, so the second speaker learns of the first only from GARPs;
    # a fresh announcement by the first makes the second see the conflict as well.
    first.stream.send({"cmd": "announce", "ip": lab.vip(0)})
    event = second.stream.wait_for(lambda e: e.get("event") == "conflict", timeout=3.0)
    assert event["mac"] == node1.mac
    # The hold-off keeps one conflict per (ip, interface, MAC) per second, not one per frame.
    assert len(first.conflicts()) == 1


@pytest.mark.parametrize("where", ["node interface", "bridge port"])
def test_survives_its_interface_going_down_and_up(lab: Lab, start_speaker: Callable[..., Speaker], where: str) -> None:
    node1 = lab.node(1)
    speaker = start_speaker(node1, [lab.vip(0)])
    speaker.wait_stats(lambda s: s["counters"]["totals"]["garps_sent"] == 6)
    set_state = lab.set_link if where == "node interface" else lab.set_port

    set_state(node1, False)
    speaker.wait_stats(lambda s: s["links"][0]["up"] is False)
    assert lab.arp_probe(lab.vip(0), count=2, timeout_ms=100).unanswered == 2

    set_state(node1, True)
    stats = speaker.wait_stats(lambda s: s["links"][0]["up"] is True)
    result = wait_probe(lab, lab.vip(0), lambda r: r.unanswered == 0, count=3)
    assert result.unanswered == 0
    assert result.macs == {node1.mac}
    # Coming back up is a takeover from the network's point of view: a fresh burst is sent.
    stats = speaker.wait_stats(lambda s: s["counters"]["totals"]["garps_sent"] >= 12)
    assert stats["counters"]["totals"]["socket_opens"] == 1  # the bound socket survived


def test_survives_its_interface_being_recreated(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    node1 = lab.node(1)
    old_mac = node1.mac
    speaker = start_speaker(node1, [lab.vip(0)])
    assert lab.arp_probe(lab.vip(0), count=1).macs == {old_mac}

    lab.replug(node1)  # delete the veth pair and create it again, with a new MAC
    assert node1.mac != old_mac

    result = wait_probe(lab, lab.vip(0), lambda r: r.macs == {node1.mac}, count=2)
    assert result.macs == {node1.mac}, "answers carry the new interface's MAC"
    stats = speaker.stats()
    assert stats["counters"]["totals"]["socket_opens"] == 2
    assert stats["links"][0]["mac"] == node1.mac


def test_answers_a_fast_stream_of_who_has(lab: Lab, start_speaker: Callable[..., Speaker]) -> None:
    """A stream of who-has (1 ms apart) is answered, every time by the node's MAC.

    Latency goals (p99 <= 2 ms at 1k/s) are measured in benchmarks/, not asserted here: a timed test on a
    shared 2-core machine would measure the machine.
    """
    start_speaker(lab.node(1), [lab.vip(0)])
    lab.arp_probe(lab.vip(0), count=1)  # warm-up: the speaker has answered once
    prober = lab.start_prober(lab.vip(0), interval_ms=1.0)
    prober.stream.wait_for(lambda e: e.get("type") == "probe" and e["seq"] >= 500, timeout=20.0)
    result = prober.stop()
    assert result.sent >= 500
    assert result.macs == {lab.node(1).mac}
    assert result.unanswered <= result.sent // 100, f"{result.unanswered} of {result.sent} who-has unanswered"
