"""The responder's thread-safe API, without touching the wire (no thread started, no sockets bound)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from l2lb_agent.speaker.responder import Responder, ResponderConfig


@pytest.fixture
def responder() -> Iterator[Responder]:
    r = Responder(ResponderConfig())
    try:
        yield r
    finally:
        r.stop()


def test_assignments_round_trip(responder: Responder) -> None:
    responder.set_assignments({"198.18.0.101": ["eth1", "eth0"], "198.18.0.100": ["eth0"]})
    assert responder.assignments() == {"198.18.0.100": ["eth0"], "198.18.0.101": ["eth0", "eth1"]}
    responder.set_assignments({"2001:2:0:1:0::100": ["eth0"], "198.18.0.100": ["eth0"]})
    assert responder.assignments() == {"198.18.0.100": ["eth0"], "2001:2:0:1::100": ["eth0"]}
    responder.set_assignments({"198.18.0.101": ["eth1"]})
    assert responder.assignments() == {"198.18.0.101": ["eth1"]}
    responder.set_assignments({})
    assert responder.assignments() == {}


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        ({"fe80::1": ["eth0"]}, "not a unicast address"),
        ({"ff02::1": ["eth0"]}, "not a unicast address"),
        ({"224.0.0.1": ["eth0"]}, "not a unicast address"),
        ({"198.18.0.300": ["eth0"]}, "not an IP address"),
        ({"2001:2::g": ["eth0"]}, "not an IP address"),
        ({"198.18.0.100": "eth0"}, "must be a list of names"),
        ({"198.18.0.100": [""]}, "not an interface name"),
        ({"198.18.0.100": ["a" * 16]}, "not an interface name"),
        ({"198.18.0.100": ["eth/0"]}, "not an interface name"),
    ],
)
def test_bad_assignments_are_refused_whole(
    responder: Responder, assignments: dict[str, list[str]], message: str
) -> None:
    responder.set_assignments({"198.18.0.1": ["eth0"]})
    with pytest.raises(ValueError, match=message):
        responder.set_assignments({"198.18.0.2": ["eth0"], **assignments})
    assert responder.assignments() == {"198.18.0.1": ["eth0"]}


def test_counters_start_at_zero(responder: Responder) -> None:
    counters = responder.counters().to_dict()
    assert counters["per_ip"] == {}
    assert set(counters["totals"]) >= {"requests_seen", "replies_sent", "garps_sent", "conflicts"}
    assert not any(counters["totals"].values())


@pytest.mark.parametrize(
    ("field", "value"),
    [("garp_burst_rounds", -1), ("garp_burst_interval", -0.1), ("refresh_interval", -1), ("link_check_interval", 0)],
)
def test_config_rejects_nonsense(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ResponderConfig(**{field: value})  # type: ignore[arg-type]


def test_stop_clears_assignments_and_is_idempotent() -> None:
    r = Responder()
    r.set_assignments({"198.18.0.1": ["eth0"]})
    r.stop()
    r.stop()
    assert r.assignments() == {}
    assert not r.running
