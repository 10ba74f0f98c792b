"""Interface facts (l2lb_agent.netinfo): pattern semantics, subnets, and netlink listing/watching in a lab."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
from netns import Lab

from l2lb_agent import netinfo
from l2lb_agent.netinfo import Address, Interface, InterfaceChange, InterfaceWatcher


def iface(name: str, *cidrs: str, up: bool = True) -> Interface:
    return Interface(
        name=name,
        index=len(name),
        mac="02:18:00:00:00:01",
        kind=None,
        admin_up=up,
        oper_state="UP" if up else "DOWN",
        carrier=up,
        mtu=1500,
        arp=True,
        addresses=tuple(Address(c.split("/")[0], int(c.split("/")[1])) for c in cidrs),
    )


# ---- pure ----


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        ([], "anything0", True),  # empty list: every interface, as in Cilium
        (["eth0"], "eth0", True),
        (["eth0"], "veth0a1b", True),  # unanchored (Go regexp.MatchString / re.search)
        (["^eth[0-9]+$"], "veth0a1b", False),
        (["^eth[0-9]+"], "eth12", True),
        (["^eth[0-9]+"], "enp0s25", False),
        (["^eth[0-9]+", "^enp"], "enp0s25", True),
        (["bond0\\."], "bond0.100", True),
    ],
)
def test_interface_patterns_match_like_cilium(patterns: list[str], name: str, expected: bool) -> None:
    assert netinfo.name_matches(name, patterns) is expected
    assert netinfo.name_matches(name, netinfo.compile_interface_patterns(patterns)) is expected


def test_a_bad_pattern_is_named_with_its_position() -> None:
    with pytest.raises(ValueError, match=r"interfaces\[1\] '\(eth': not a valid regular expression"):
        netinfo.compile_interface_patterns(["^eth", "(eth"])


def test_matching_interfaces_keeps_order_and_filters() -> None:
    interfaces = [iface("eth0"), iface("veth9"), iface("enp1s0")]
    assert [i.name for i in netinfo.matching_interfaces(interfaces, ["^e"])] == ["eth0", "enp1s0"]
    assert [i.name for i in netinfo.matching_interfaces(interfaces, [])] == ["eth0", "veth9", "enp1s0"]


def test_directly_attached_subnets() -> None:
    interfaces = [iface("eth0", "198.18.0.11/24", "fe80::1/64"), iface("eth1", "198.19.4.1/22")]
    assert [i.name for i in netinfo.attached_interfaces("198.18.0.200", interfaces)] == ["eth0"]
    assert [i.name for i in netinfo.attached_interfaces("198.19.7.255", interfaces)] == ["eth1"]
    assert netinfo.attached_interfaces("198.19.8.1", interfaces) == []
    assert netinfo.is_directly_attached("fe80::99", interfaces)
    assert not netinfo.is_directly_attached("198.18.1.1", interfaces)
    with pytest.raises(ValueError):
        netinfo.is_directly_attached("not-an-ip", interfaces)


def test_facts_are_json_and_round_trip() -> None:
    original = iface("eth0", "198.18.0.11/24", "198.18.0.12/24", "fe80::1/64")
    data = json.loads(json.dumps(original.to_dict()))
    assert data["subnets"] == ["198.18.0.0/24", "fe80::/64"]
    assert data["usable"] is True
    assert data["addresses"][0] == {
        "address": "198.18.0.11",
        "prefixlen": 24,
        "family": 4,
        "network": "198.18.0.0/24",
    }
    assert Interface.from_dict(data) == original
    assert iface("eth0", up=False).to_dict()["usable"] is False


# ---- in a lab ----


@pytest.mark.netns
def test_lists_the_namespace_interfaces(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(nodes=1, subnet="198.18.101.0/24", client=False)
    node = lab.node(1)

    interfaces = netinfo.list_interfaces(node.netns)

    assert [i.name for i in interfaces] == [node.ifname]  # loopback skipped
    (only,) = interfaces
    assert only.mac == node.mac
    assert only.kind == "veth"
    assert only.usable and only.can_announce and only.arp
    assert [a.to_dict() for a in only.addresses] == [
        {"address": node.ip, "prefixlen": 24, "family": 4, "network": "198.18.101.0/24"}
    ]
    assert only.subnets == ("198.18.101.0/24",)
    assert netinfo.is_directly_attached(lab.vip(0), interfaces)
    assert not netinfo.is_directly_attached("198.18.102.1", interfaces)
    assert [i.name for i in netinfo.list_interfaces(node.netns, include_loopback=True)] == ["lo", node.ifname]


@pytest.mark.netns
def test_lists_from_inside_the_namespace_too(make_lab: Callable[..., Lab]) -> None:
    """How the agent runs it: no netns argument, from a process in the node's namespace."""
    lab = make_lab(nodes=1, subnet="198.18.101.0/24", client=False)
    node = lab.node(1)
    lab.set_link(node, False)

    code = (
        "import json; from l2lb_agent import netinfo; "
        "print(json.dumps([i.to_dict() for i in netinfo.list_interfaces()]))"
    )
    facts = json.loads(lab.run_python(node, ["-c", code]))

    assert [(f["name"], f["mac"], f["admin_up"], f["usable"]) for f in facts] == [(node.ifname, node.mac, False, False)]


class Changes:
    def __init__(self) -> None:
        self.seen: list[InterfaceChange] = []
        self._cond = threading.Condition()

    def __call__(self, change: InterfaceChange) -> None:
        with self._cond:
            self.seen.append(change)
            self._cond.notify_all()

    def wait(
        self,
        kind: str,
        name: str,
        timeout: float = 3.0,
        where: Callable[[InterfaceChange], bool] = lambda change: True,
    ) -> InterfaceChange:
        """The first unclaimed change of this kind for this interface (and matching ``where``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for change in self.seen:
                    if change.kind == kind and change.interface.name == name and where(change):
                        self.seen.remove(change)
                        return change
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(c.kind, c.interface.name) for c in self.seen]
                    raise TimeoutError(f"no {kind} change for {name}; saw {seen}")
                self._cond.wait(remaining)


@pytest.mark.netns
def test_watcher_reports_link_down_up_and_replacement(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(nodes=1, subnet="198.18.101.0/24", client=False)
    node = lab.node(1)
    changes = Changes()

    with InterfaceWatcher(changes, netns=node.netns) as watcher:
        assert [(i.name, i.mac, i.usable) for i in watcher.snapshot()] == [(node.ifname, node.mac, True)]

        lab.set_link(node, False)
        down = changes.wait("down", node.ifname)
        assert (down.interface.admin_up, down.previous.usable if down.previous else None) == (False, True)

        lab.set_link(node, True)
        assert changes.wait("up", node.ifname).interface.usable

        lab.set_port(node, False)  # carrier loss: still admin up, no longer usable
        lost = changes.wait("down", node.ifname)
        assert lost.interface.admin_up and not lost.interface.carrier
        lab.set_port(node, True)
        changes.wait("up", node.ifname)

        lab.ip(node, "addr", "add", "198.18.101.200/24", "dev", node.ifname)
        added = changes.wait("changed", node.ifname, where=lambda c: len(c.interface.addresses) == 2)
        assert [a.address for a in added.interface.addresses] == [node.ip, "198.18.101.200"]

        old_index = watcher.snapshot()[0].index
        lab.replug(node)
        removed = changes.wait("removed", node.ifname)
        assert removed.interface.index == old_index
        readded = changes.wait("added", node.ifname)
        assert readded.interface.index != old_index
        back = changes.wait("up", node.ifname)  # the lab sets MAC and address, then brings it up
        assert (back.interface.index, back.interface.mac) == (readded.interface.index, node.mac)
        assert back.interface.subnets == ("198.18.101.0/24",)
        assert [(i.index, i.mac) for i in watcher.snapshot()] == [(back.interface.index, node.mac)]
