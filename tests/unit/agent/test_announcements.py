"""The announcing-node/-interfaces annotations: plain form for the common case, per-IP otherwise."""

from __future__ import annotations

from l2lb_agent.model.contract import Announcement, format_announcements, parse_announcements


def _annotations(node: str | None, ifaces: str | None) -> dict[str, str]:
    out = {}
    if node is not None:
        out["l2lb.io/announcing-node"] = node
    if ifaces is not None:
        out["l2lb.io/announcing-interfaces"] = ifaces
    return out


def test_one_node_for_all_ingress_ips_is_the_plain_form() -> None:
    node, ifaces = format_announcements([Announcement("198.18.10.1", "node-a", ("eth0",))], ["198.18.10.1"])
    assert (node, ifaces) == ("node-a", "eth0")
    parsed = parse_announcements(_annotations(node, ifaces), ["198.18.10.1"])
    assert parsed == {"198.18.10.1": Announcement("198.18.10.1", "node-a", ("eth0",))}


def test_ips_on_different_nodes_use_the_per_ip_form_and_round_trip() -> None:
    announcements = [
        Announcement("198.18.20.7", "node-b", ("eth1", "eth2")),
        Announcement("198.18.10.1", "node-a", ("eth0",)),
    ]
    node, ifaces = format_announcements(announcements, ["198.18.10.1", "198.18.20.7"])
    assert node == "198.18.10.1=node-a,198.18.20.7=node-b"
    assert ifaces == "198.18.10.1=eth0,198.18.20.7=eth1+eth2"
    parsed = parse_announcements(_annotations(node, ifaces), [])
    assert parsed == {a.ip: a for a in announcements}


def test_external_ip_not_in_ingress_forces_the_per_ip_form() -> None:
    node, _ = format_announcements([Announcement("198.18.30.5", "node-a", ("eth0",))], [])
    assert node == "198.18.30.5=node-a"


def test_plain_form_covers_exactly_the_ingress_ips() -> None:
    parsed = parse_announcements(_annotations("node-a", "eth0,eth1"), ["198.18.10.1", "bogus", "198.18.10.2"])
    assert sorted(parsed) == ["198.18.10.1", "198.18.10.2"]
    assert parsed["198.18.10.2"].interfaces == ("eth0", "eth1")


def test_nothing_announced_means_no_annotations_and_malformed_entries_are_skipped() -> None:
    assert format_announcements([], ["198.18.10.1"]) == (None, None)
    assert parse_announcements({}, ["198.18.10.1"]) == {}
    parsed = parse_announcements(_annotations("x=node-a,198.18.10.1=node-b,198.18.10.2=", None), [])
    assert parsed == {"198.18.10.1": Announcement("198.18.10.1", "node-b", ())}
