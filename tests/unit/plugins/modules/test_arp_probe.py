"""The arp_probe module: interface choice by subnet, result shaping, split brain, diagnoses, over a fake wire."""

from __future__ import annotations

import functools
import json
import socket
import time
from collections.abc import Sequence
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from ansible_collections.baremetal.l2lb.plugins.module_utils import arp_probe as backend
from ansible_collections.baremetal.l2lb.plugins.module_utils.arp_probe import (
    ArpProbeError,
    ArpSocket,
    ArpSocketPermissionError,
    ProbeOutcome,
    ProbePlan,
    Reply,
    check_targets,
    choose_interface,
    plan_probe,
    plan_probes,
    read_arp,
    run_probes,
    summarize,
    who_has,
)
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.netinfo import Address, Interface
from ansible_collections.baremetal.l2lb.plugins.modules import arp_probe

CLIENT_MAC = "02:18:00:00:00:02"
NODE1 = "02:18:00:00:00:11"
NODE2 = "02:18:00:00:00:12"


def iface(name: str, index: int, *cidrs: str, up: bool = True, arp: bool = True) -> Interface:
    return Interface(
        name=name,
        index=index,
        mac=f"02:18:00:00:01:{index:02x}",
        kind=None,
        admin_up=up,
        oper_state="UP" if up else "DOWN",
        carrier=up,
        mtu=1500,
        arp=arp,
        addresses=tuple(Address(c.split("/")[0], int(c.split("/")[1])) for c in cidrs),
    )


HOST = [
    iface("eth0", 2, "198.18.0.2/24", "fe80::2/64", "2001:2:0:1::2/64"),
    iface("eth1", 3, "198.19.1.2/24", "198.19.2.2/24"),
]


# ---- a fake segment ----


class FakeWire:
    """Who answers which IP (MAC, delay in seconds, copies), plus unrelated frames that arrive with every request."""

    def __init__(
        self,
        answers: dict[str, list[tuple[str, float]]] | None = None,
        *,
        noise: Sequence[bytes] = (),
        fail_open: dict[str, OSError] | None = None,
    ) -> None:
        self.answers = answers or {}
        self.noise = list(noise)
        self.fail_open = fail_open or {}
        self.sent: list[tuple[str, bytes]] = []
        self.sockets: list[FakeSocket] = []

    def open(self, interface: str, ipv6: bool = False) -> FakeSocket:
        if interface in self.fail_open:
            raise self.fail_open[interface]
        sock = FakeSocket(self, interface, ipv6)
        self.sockets.append(sock)
        return sock


class FakeSocket:
    def __init__(self, wire: FakeWire, interface: str, ipv6: bool = False) -> None:
        self.wire = wire
        self.interface = interface
        self.ipv6 = ipv6
        self.mac = CLIENT_MAC
        self.queue: list[tuple[float, bytes, int]] = []
        self.closed = False

    def fileno(self) -> int:
        return -1

    def send(self, frame: bytes) -> None:
        now_ns = time.time_ns()
        self.wire.sent.append((self.interface, frame))
        if self.ipv6:
            self._advertise(Ether(frame), now_ns)
            return
        request = Ether(frame)[ARP]
        for mac, delay in self.wire.answers.get(str(request.pdst), []):
            reply = Ether(dst=request.hwsrc, src=mac) / ARP(
                op=2, hwsrc=mac, psrc=request.pdst, hwdst=request.hwsrc, pdst=request.psrc
            )
            self.queue.append((time.monotonic() + delay, bytes(reply), now_ns + int(delay * 1e9)))
        for extra in self.wire.noise:
            self.queue.append((time.monotonic(), extra, now_ns))

    def _advertise(self, solicit: Any, now_ns: int) -> None:
        """Solicited NAs from each answering MAC, and an unsolicited one that must not count as an answer."""
        ns, asker = solicit[ICMPv6ND_NS], solicit[IPv6].src
        assert solicit[IPv6].hlim == 255 and solicit[ICMPv6NDOptSrcLLAddr].lladdr == CLIENT_MAC
        for mac, delay in self.wire.answers.get(str(ns.tgt), []):
            reply = (
                Ether(dst=solicit.src, src=mac)
                / IPv6(src=ns.tgt, dst=asker, hlim=255)
                / ICMPv6ND_NA(tgt=ns.tgt, R=0, S=1, O=1)
                / ICMPv6NDOptDstLLAddr(lladdr=mac)
            )
            self.queue.append((time.monotonic() + delay, bytes(reply), now_ns + int(delay * 1e9)))
        announcement = (
            Ether(dst="33:33:00:00:00:01", src=NODE2)
            / IPv6(src=ns.tgt, dst="ff02::1", hlim=255)
            / ICMPv6ND_NA(tgt=ns.tgt, R=0, S=0, O=1)
            / ICMPv6NDOptDstLLAddr(lladdr=NODE2)
        )
        self.queue.append((time.monotonic(), bytes(announcement), now_ns))

    def ready(self) -> bool:
        return any(due <= time.monotonic() for due, _, _ in self.queue)

    def receive(self) -> list[tuple[bytes, int]]:
        now = time.monotonic()
        due = [(frame, ns) for at, frame, ns in self.queue if at <= now]
        self.queue = [entry for entry in self.queue if entry[0] > now]
        return due

    def close(self) -> None:
        self.closed = True


def fake_wait(sockets: Sequence[Any], timeout: float) -> list[Any]:
    ready = [s for s in sockets if s.ready()]
    if not ready:
        time.sleep(min(timeout, 0.001))
    return ready


def run(wire: FakeWire, ips: Sequence[str], **options: Any) -> dict[str, Any]:
    options.setdefault("count", 3)
    options.setdefault("timeout", 0.03)
    return backend.probe(ips, HOST, open_socket=wire.open, wait_readable=fake_wait, **options)


# ---- planning ----


def test_interface_is_chosen_by_the_attached_subnet() -> None:
    assert choose_interface("198.18.0.241", HOST) is HOST[0]
    assert choose_interface("198.19.2.200", HOST) is HOST[1]
    assert choose_interface("198.18.1.1", HOST) is None


def test_an_up_arp_interface_is_preferred_among_several_in_the_subnet() -> None:
    down = iface("eth0", 2, "198.18.0.2/24", up=False)
    noarp = iface("tun0", 3, "198.18.0.3/24", arp=False)
    good = iface("eth9", 9, "198.18.0.9/24")
    assert choose_interface("198.18.0.241", [down, noarp, good]) is good
    # A down interface loses its connected route, so the kernel would send through the up one.
    assert choose_interface("198.18.0.241", [down, noarp]) is noarp
    assert (
        plan_probe("198.18.0.241", [down, noarp]).error
        == "interface tun0 does not do ARP or NDP (not Ethernet, or NOARP)"
    )


def test_plan_uses_the_interface_address_in_the_subnet_as_sender() -> None:
    assert plan_probe("198.19.2.200", HOST) == ProbePlan("198.19.2.200", interface="eth1", source_ip="198.19.2.2")


def test_ip_outside_every_attached_subnet_gets_the_wrong_subnet_diagnosis() -> None:
    plan = plan_probe("198.18.0.241", [iface("host0", 2, "198.18.4.2/24")])
    assert not plan.probeable
    assert plan.interface is None
    assert plan.error == "no directly attached subnet contains 198.18.0.241"
    assert plan.diagnosis == (
        "this host has no interface in a subnet containing 198.18.0.241 — ARP only works on the same L2 segment "
        "(arping would silently get no answer); run the probe from a host in that subnet"
    )


def test_down_interface_is_an_error_for_that_ip() -> None:
    plan = plan_probe("198.18.0.241", [iface("eth0", 2, "198.18.0.2/24", up=False)])
    assert plan.error == "interface eth0 is administratively down"
    assert plan.diagnosis is not None and plan.diagnosis.startswith("bring eth0 up")


def test_forced_interface_outside_the_subnet_sends_from_its_first_ipv4() -> None:
    plan = plan_probe("198.18.0.241", HOST, interface="eth1")
    assert (plan.interface, plan.source_ip, plan.attached, plan.error) == ("eth1", "198.19.1.2", False, None)


def test_forced_interface_without_ipv4_asks_for_source_ip() -> None:
    bare = iface("eth5", 5)
    plan = plan_probe("198.18.0.241", [bare], interface="eth5")
    assert plan.error == "interface eth5 has no IPv4 address to send the who-has from"
    assert plan.diagnosis is not None and plan.diagnosis.startswith("set source_ip")
    assert plan_probe("198.18.0.241", [bare], interface="eth5", source_ip="198.18.0.2").probeable


def test_missing_forced_interface_fails_the_whole_probe_naming_the_interfaces() -> None:
    with pytest.raises(
        ArpProbeError, match=r"^interface 'eth7' does not exist on this host; interfaces here: eth0, eth1$"
    ):
        plan_probes(["198.18.0.241"], HOST, interface="eth7")


def test_foreign_source_ip_is_used_with_a_warning() -> None:
    plan = plan_probe("198.18.0.241", HOST, source_ip="198.18.0.250")
    assert (plan.interface, plan.source_ip) == ("eth0", "198.18.0.250")
    assert plan.warnings == (
        "source_ip 198.18.0.250 is not an address of eth0: the hosts that answer may cache 198.18.0.250 "
        "at this host's MAC",
    )
    assert plan_probe("198.18.0.241", HOST, source_ip="198.18.0.2").warnings == ()


def test_probing_our_own_address_is_refused() -> None:
    plan = plan_probe("198.18.0.2", HOST)
    assert plan.error == "198.18.0.2 is this host's own address on eth0"


def test_targets_are_validated_all_at_once_and_deduplicated() -> None:
    assert check_targets(["198.18.0.241", " 198.18.0.241", "198.18.0.242"]) == ["198.18.0.241", "198.18.0.242"]
    with pytest.raises(ArpProbeError) as info:
        check_targets(["nope", "fe80::1", "198.18.0.1", "ff02::1"])
    assert str(info.value) == (
        "ips[0] 'nope': not an IP address (write a single address such as 198.18.0.241); "
        "ips[1] 'fe80::1': not a unicast address a service could have; "
        "ips[3] 'ff02::1': not a unicast address a service could have"
    )
    assert check_targets(["2001:2:0:1:0::100", "198.18.0.1"]) == ["2001:2:0:1::100", "198.18.0.1"]
    with pytest.raises(ArpProbeError, match="at least one"):
        check_targets([])


def test_bad_source_ip_is_refused() -> None:
    with pytest.raises(ArpProbeError, match=r"^source_ip 'x': not an IP address$"):
        plan_probes(["198.18.0.241"], HOST, source_ip="x")
    with pytest.raises(ArpProbeError, match=r"must be an address of this host"):
        plan_probes(["198.18.0.241"], HOST, source_ip="0.0.0.0")


def test_ipv6_is_asked_from_a_global_address_of_the_attached_subnet_and_source_ip_keeps_to_its_family() -> None:
    plan = plan_probe("2001:2:0:1::100", HOST)
    assert (plan.interface, plan.source_ip, plan.error) == ("eth0", "2001:2:0:1::2", None)
    v4, v6 = plan_probes(["198.18.0.241", "2001:2:0:1::100"], HOST, source_ip="198.18.0.5")
    assert v4.source_ip == "198.18.0.5" and v6.source_ip == "2001:2:0:1::2"
    # On an interface without the subnet, a global address of the family before a link-local one.
    forced = plan_probe("2001:2:0:9::1", HOST, interface="eth0")
    assert (forced.source_ip, forced.attached) == ("2001:2:0:1::2", False)
    none = plan_probe("2001:2:0:9::1", HOST, interface="eth1")
    assert none.error == "interface eth1 has no IPv6 address to send the neighbor solicitation from"
    wrong = plan_probe("2001:2:0:9::1", HOST)
    assert wrong.error == "no directly attached subnet contains 2001:2:0:9::1"
    assert "NDP only works on the same L2 segment" in (wrong.diagnosis or "")


def test_ipv6_probe_counts_solicited_advertisements_only() -> None:
    wire = FakeWire({"2001:2:0:1::100": [(NODE1, 0.0)], "198.18.0.241": [(NODE1, 0.0)]})
    result = run(wire, ["2001:2:0:1::100", "198.18.0.241"])
    v6 = result["probes"]["2001:2:0:1::100"]
    assert v6["answered"] and v6["requests"] == 3 and v6["answered_requests"] == 3
    # The unsolicited NA from NODE2 that follows every solicitation is an announcement, not an answer.
    assert [r["mac"] for r in v6["responders"]] == [NODE1] and not v6["split_brain"]
    assert result["answered"] == ["2001:2:0:1::100", "198.18.0.241"]
    assert sorted((s.interface, s.ipv6) for s in wire.sockets) == [("eth0", False), ("eth0", True)]


def test_ipv6_two_responders_are_split_brain_with_ndp_in_the_words() -> None:
    wire = FakeWire({"2001:2:0:1::100": [(NODE1, 0.0), (NODE2, 0.002)]})
    v6 = run(wire, ["2001:2:0:1::100"])["probes"]["2001:2:0:1::100"]
    assert v6["split_brain"] and v6["split_brain_requests"] == 3
    assert v6["diagnosis"].startswith(f"2 hosts answer NDP for 2001:2:0:1::100 ({NODE1}, {NODE2})")
    silent = run(FakeWire(), ["2001:2:0:1::101"])["probes"]["2001:2:0:1::101"]
    assert silent["diagnosis"].startswith("no host answered 3 neighbor solicitation for 2001:2:0:1::101 on eth0")


# ---- shaping ----


PLAN = ProbePlan("198.18.0.241", interface="eth0", source_ip="198.18.0.2")


def test_one_responder_is_answered_without_diagnosis() -> None:
    outcome = ProbeOutcome(requests=3, replies=[Reply(NODE1, r, ms) for r, ms in ((0, 0.4), (1, 0.2), (2, 0.3))])
    result = summarize(PLAN, outcome, timeout=0.5)
    assert result["answered"] is True
    assert result["split_brain"] is False
    assert result["responders"] == [{"mac": NODE1, "replies": 3, "first_latency_ms": 0.4}]
    assert result["latency_ms"] == {"min": 0.2, "median": 0.3}
    assert (result["requests"], result["answered_requests"]) == (3, 2 + 1)
    assert result["error"] is None and result["diagnosis"] is None


def test_two_macs_answering_one_request_is_split_brain() -> None:
    replies = [Reply(NODE1, 0, 0.1), Reply(NODE2, 0, 0.5), Reply(NODE1, 1, 0.2), Reply(NODE2, 1, 0.3)]
    result = summarize(PLAN, ProbeOutcome(requests=2, replies=replies), timeout=0.5)
    assert result["split_brain"] is True
    assert result["split_brain_requests"] == 2
    assert [(r["mac"], r["replies"], r["first_latency_ms"]) for r in result["responders"]] == [
        (NODE1, 2, 0.1),
        (NODE2, 2, 0.5),
    ]
    assert result["latency_ms"] == {"min": 0.1, "median": 0.15}  # the first answer of each request
    assert result["diagnosis"].startswith(
        f"2 hosts answer ARP for 198.18.0.241 ({NODE1}, {NODE2}): more than one node announces it (split brain)"
    )


def test_macs_that_take_turns_are_split_brain_but_told_apart_as_a_move() -> None:
    replies = [Reply(NODE1, 0, 0.1), Reply(NODE2, 1, 0.1)]
    result = summarize(PLAN, ProbeOutcome(requests=2, replies=replies), timeout=0.5)
    assert result["split_brain"] is True
    assert result["split_brain_requests"] == 0
    assert "never two to the same who-has" in result["diagnosis"]


def test_no_answer_is_diagnosed() -> None:
    result = summarize(PLAN, ProbeOutcome(requests=3), timeout=0.5)
    assert (result["answered"], result["split_brain"], result["latency_ms"], result["error"]) == (
        False,
        False,
        None,
        None,
    )
    assert result["diagnosis"].startswith(
        "no host answered 3 who-has for 198.18.0.241 on eth0 (0.5 s each): nothing announces it on this segment"
    )
    assert "has no subnet containing" not in result["diagnosis"]
    forced = ProbePlan("198.18.0.241", interface="eth1", source_ip="198.19.1.2", attached=False)
    assert "eth1 has no subnet containing 198.18.0.241" in summarize(forced, ProbeOutcome(3), timeout=0.5)["diagnosis"]


def test_an_unprobeable_plan_keeps_its_error_and_diagnosis() -> None:
    plan = plan_probe("198.18.0.241", [])
    result = summarize(plan, None, timeout=0.5)
    assert result["error"] == "no directly attached subnet contains 198.18.0.241"
    assert result["diagnosis"] == plan.diagnosis
    assert (result["requests"], result["answered"], result["interface"]) == (0, False, None)


# ---- packets ----


def test_who_has_is_a_broadcast_request_that_read_arp_understands() -> None:
    frame = who_has(CLIENT_MAC, "198.18.0.2", "198.18.0.241")
    packet = Ether(frame)
    assert (packet.dst, packet.src, packet.type) == ("ff:ff:ff:ff:ff:ff", CLIENT_MAC, 0x0806)
    assert read_arp(frame) == (1, CLIENT_MAC, "198.18.0.2", "198.18.0.241")


def test_read_arp_ignores_other_frames() -> None:
    assert read_arp(bytes(Ether(dst=CLIENT_MAC, src=NODE1, type=0x0800) / (b"\x45" + bytes(40)))) is None
    assert read_arp(b"\x01\x02") is None


# ---- probing over the fake wire ----


def test_one_responder_over_the_wire() -> None:
    wire = FakeWire({"198.18.0.241": [(NODE1, 0.002)]})
    report = run(wire, ["198.18.0.241"])
    result = report["probes"]["198.18.0.241"]
    assert result["answered"] is True
    assert [r["mac"] for r in result["responders"]] == [NODE1]
    assert result["responders"][0]["replies"] == 3
    assert 2.0 <= result["responders"][0]["first_latency_ms"] < 20.0
    assert (result["interface"], result["source_ip"], result["source_mac"]) == ("eth0", "198.18.0.2", CLIENT_MAC)
    assert report["answered"] == ["198.18.0.241"]
    assert report["split_brain"] == report["unanswered"] == report["unprobed"] == []
    assert all(sock.closed for sock in wire.sockets)


def test_only_who_has_for_the_requested_ips_is_sent_on_their_interfaces() -> None:
    wire = FakeWire()
    run(wire, ["198.18.0.241", "198.19.2.7", "198.18.9.9"], count=2)
    sent = sorted((name, read_arp(frame)) for name, frame in wire.sent)
    assert sent == [
        ("eth0", (1, CLIENT_MAC, "198.18.0.2", "198.18.0.241")),
        ("eth0", (1, CLIENT_MAC, "198.18.0.2", "198.18.0.241")),
        ("eth1", (1, CLIENT_MAC, "198.19.2.2", "198.19.2.7")),
        ("eth1", (1, CLIENT_MAC, "198.19.2.2", "198.19.2.7")),
    ]
    assert all(Ether(frame).dst == "ff:ff:ff:ff:ff:ff" for _, frame in wire.sent)


def test_two_responders_over_the_wire_are_split_brain() -> None:
    wire = FakeWire({"198.18.0.241": [(NODE1, 0.001), (NODE2, 0.004)]})
    report = run(wire, ["198.18.0.241", "198.18.0.242"])
    result = report["probes"]["198.18.0.241"]
    assert result["split_brain"] is True
    assert result["split_brain_requests"] == 3
    assert {r["mac"] for r in result["responders"]} == {NODE1, NODE2}
    assert report["split_brain"] == ["198.18.0.241"]
    assert report["unanswered"] == ["198.18.0.242"]
    assert report["probes"]["198.18.0.242"]["answered"] is False


def test_gratuitous_arp_and_answers_to_other_askers_are_not_counted() -> None:
    garp = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=NODE2) / ARP(op=2, hwsrc=NODE2, psrc="198.18.0.241", pdst="198.18.0.241")
    )
    other = bytes(Ether(dst=NODE1, src=NODE2) / ARP(op=2, hwsrc=NODE2, psrc="198.18.0.241", pdst="198.18.0.77"))
    request = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=NODE2) / ARP(op=1, hwsrc=NODE2, psrc="198.18.0.241", pdst="198.18.0.2")
    )
    wire = FakeWire({"198.18.0.241": [(NODE1, 0.001)]}, noise=[garp, other, request, b"junk"])
    result = run(wire, ["198.18.0.241"])["probes"]["198.18.0.241"]
    assert [r["mac"] for r in result["responders"]] == [NODE1]
    assert result["split_brain"] is False


def test_nobody_answering_over_the_wire() -> None:
    report = run(FakeWire(), ["198.18.0.241"], count=2)
    result = report["probes"]["198.18.0.241"]
    assert (result["answered"], result["requests"], result["answered_requests"]) == (False, 2, 0)
    assert report["unanswered"] == ["198.18.0.241"]


def test_the_probe_takes_count_rounds_of_timeout_however_many_ips() -> None:
    started = time.monotonic()
    run(FakeWire(), [f"198.18.0.{i}" for i in range(100, 140)], count=2, timeout=0.05)
    assert 0.1 <= time.monotonic() - started < 0.5


def test_a_socket_that_cannot_open_fails_only_its_ips() -> None:
    wire = FakeWire({"198.18.0.241": [(NODE1, 0.001)]}, fail_open={"eth1": OSError(19, "No such device")})
    report = run(wire, ["198.18.0.241", "198.19.1.50"])
    assert report["answered"] == ["198.18.0.241"]
    assert report["unprobed"] == ["198.19.1.50"]
    assert report["probes"]["198.19.1.50"]["error"] == "cannot probe on eth1: No such device"


def test_missing_privilege_fails_the_whole_probe() -> None:
    wire = FakeWire(fail_open={"eth0": ArpSocketPermissionError("no privilege")})
    with pytest.raises(ArpSocketPermissionError):
        run(wire, ["198.18.0.241"])


def test_bad_count_and_timeout_are_refused() -> None:
    with pytest.raises(ArpProbeError, match=r"^count: must be at least 1, got 0$"):
        run(FakeWire(), ["198.18.0.241"], count=0)
    with pytest.raises(ArpProbeError, match=r"^timeout: must be more than 0 seconds, got 0"):
        run(FakeWire(), ["198.18.0.241"], timeout=0)


def test_raw_socket_permission_error_says_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(backend.socket, "socket", refuse)
    with pytest.raises(ArpSocketPermissionError) as info:
        ArpSocket("eth0")
    assert str(info.value) == (
        "cannot open a raw ARP socket on eth0: Operation not permitted — arp_probe needs root or CAP_NET_RAW; "
        "run the task with become: true"
    )


def test_run_probes_skips_unprobeable_plans() -> None:
    wire = FakeWire()
    outcomes = run_probes([plan_probe("198.18.7.1", HOST)], count=1, timeout=0.01, open_socket=wire.open)
    assert outcomes == {}
    assert wire.sent == [] and wire.sockets == []


# ---- the module ----


def _module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, wire: FakeWire | None, **args: Any
) -> tuple[int, dict[str, Any]]:
    monkeypatch.setattr(arp_probe, "list_interfaces", lambda: HOST)
    if wire is not None:
        monkeypatch.setattr(
            arp_probe, "probe", functools.partial(backend.probe, open_socket=wire.open, wait_readable=fake_wait)
        )
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        arp_probe.main()
    return int(exit_info.value.code or 0), json.loads(capsys.readouterr().out)


def test_module_reports_per_ip_and_never_changes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = FakeWire({"198.18.0.241": [(NODE1, 0.001)]})
    code, result = _module(
        capsys, monkeypatch, wire, ips=["198.18.0.241", "198.18.7.1"], timeout=0.02, _ansible_check_mode=True
    )
    assert code == 0
    assert result["changed"] is False
    assert result["answered"] == ["198.18.0.241"]
    assert result["unprobed"] == ["198.18.7.1"]
    assert result["probes"]["198.18.7.1"]["diagnosis"].startswith(
        "this host has no interface in a subnet containing 198.18.7.1"
    )
    assert result["warnings_list"] == []


def test_module_passes_source_ip_warnings_on(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, result = _module(
        capsys, monkeypatch, FakeWire(), ips=["198.18.0.241"], source_ip="198.18.0.99", count=1, timeout=0.01
    )
    assert code == 0
    assert result["warnings_list"] == [
        "source_ip 198.18.0.99 is not an address of eth0: the hosts that answer may cache 198.18.0.99 at this "
        "host's MAC"
    ]
    assert any("source_ip 198.18.0.99" in w["event"]["msg"] for w in result["warnings"])


def test_module_fails_cleanly_without_privilege(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(backend.socket, "socket", refuse)
    code, result = _module(capsys, monkeypatch, None, ips=["198.18.0.241"])
    assert code == 1
    assert "needs root or CAP_NET_RAW" in result["msg"]
    assert "exception" not in result


def test_module_fails_cleanly_on_bad_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, result = _module(capsys, monkeypatch, None, ips=["198.18.0.241"], interface="eth7")
    assert code == 1
    assert result["msg"] == "interface 'eth7' does not exist on this host; interfaces here: eth0, eth1"
    code, result = _module(capsys, monkeypatch, None, ips=["web"], count=1)
    assert code == 1
    assert result["msg"].startswith("ips[0] 'web': not an IP address")


def test_documented_options_are_the_accepted_ones(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, result = _module(capsys, monkeypatch, FakeWire(), ips=["198.18.0.241"], count=1, timeout=0.01)
    documented = yaml.safe_load(arp_probe.DOCUMENTATION)["options"]
    assert set(result["invocation"]["module_args"]) == set(documented)


def test_outage_measures_the_longest_gap_and_the_mac_changes() -> None:
    from ansible_collections.baremetal.l2lb.plugins.module_utils.arp_probe import Reply, outage

    # 20 ms rounds: node A answers rounds 0-9, nobody 10-99 (1.8 s), node B from round 100 on.
    replies = [Reply("aa", r, 0.1) for r in range(10)] + [Reply("bb", r, 0.1) for r in range(100, 150)]
    result = outage(replies, 150, 0.02)
    assert result["longest_gap_ms"] == 1820.0
    assert result["mac_timeline"] == [
        {"at_ms": 0.0, "macs": ["aa"], "gap_before_ms": 0.0},
        {"at_ms": 2000.0, "macs": ["bb"], "gap_before_ms": 1820.0},
    ]
    assert outage([], 50, 0.02) == {"longest_gap_ms": 1000.0, "mac_timeline": []}
    assert outage([Reply("aa", r, 0.1) for r in range(5)], 5, 0.02)["longest_gap_ms"] == 20.0
