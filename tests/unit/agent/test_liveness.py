"""Lease liveness as observers judge it: seen changing on the observer's own monotonic clock."""

from __future__ import annotations

from typing import Any

from l2lb_agent.liveness import LeaseObserver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def lease(
    name: str, rv: int, renew: str = "2024-01-01T00:00:00.000000Z", holder: str = "x", duration: str = "2.0"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(rv), "annotations": {"l2lb.io/lease-duration": duration}},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 2, "renewTime": renew},
    }


SELF = "l2lb-node-self"


def _observer() -> tuple[LeaseObserver, Clock]:
    clock = Clock()
    observer = LeaseObserver(self_name=SELF, clock=clock)
    observer.observe(SELF, lease(SELF, 1, holder="self"))
    return observer, clock


def _beat_self(observer: LeaseObserver, rv: int) -> None:
    observer.observe(SELF, lease(SELF, rv, holder="self"))


def test_lease_that_stops_changing_dies_after_its_duration() -> None:
    observer, clock = _observer()
    observer.observe("b", lease("b", 10))
    rv = 100
    for _ in range(3):  # 1.5 s of our own heartbeats, b silent
        clock.advance(0.5)
        rv += 1
        _beat_self(observer, rv)
    assert observer.alive("b")
    clock.advance(0.49)
    _beat_self(observer, rv + 1)
    assert observer.alive("b")
    clock.advance(0.02)
    assert not observer.alive("b")


def test_renew_time_far_in_the_past_does_not_matter_while_the_lease_keeps_changing() -> None:
    observer, clock = _observer()
    for i in range(20):  # 10 s; b's clock is 30 s behind (and not moving at all), but b keeps writing
        observer.observe("b", lease("b", 10 + i, renew="2020-01-01T00:00:00.000000Z"))
        _beat_self(observer, 100 + i)
        clock.advance(0.5)
        assert observer.alive("b")


def test_same_resource_version_again_is_not_a_change() -> None:
    observer, clock = _observer()
    observer.observe("b", lease("b", 10))
    for i in range(5):
        clock.advance(0.5)
        _beat_self(observer, 100 + i)
        observer.observe("b", lease("b", 10))  # a re-list delivering the same object
    assert not observer.alive("b")


def _tick(observer: LeaseObserver, clock: Clock, seconds: float, rv: list[int]) -> None:
    """Time passes with our own heartbeat seen every 0.5 s (a healthy view)."""
    for _ in range(round(seconds / 0.5)):
        clock.advance(0.5)
        rv[0] += 1
        _beat_self(observer, rv[0])


def test_blind_observer_freezes_judgement_and_gives_grace_when_it_sees_again() -> None:
    observer, clock = _observer()
    rv = [100]
    observer.observe("b", lease("b", 10))
    _tick(observer, clock, 1.0, rv)
    observer.observe("b", lease("b", 11))
    # API outage: nothing changes for 10 s, not even our own lease.
    clock.advance(10.0)
    assert observer.blind()
    assert observer.alive("b"), "our blindness is not b's death"
    # We see ourselves again: b gets a fresh full period from now.
    _beat_self(observer, 200)
    assert not observer.blind()
    assert observer.alive("b")
    _tick(observer, clock, 1.5, rv)
    assert observer.alive("b")
    clock.advance(0.49)
    assert observer.alive("b")
    clock.advance(0.02)
    assert not observer.alive("b")


def test_outage_right_after_our_own_renewal_does_not_kill_a_node_that_renewed_just_before() -> None:
    observer, clock = _observer()
    rv = [100]
    observer.observe("b", lease("b", 10))
    clock.advance(0.4)
    _beat_self(observer, 101)  # we renewed 0.4 s after b; then the API goes away for everyone
    clock.advance(5.0)
    assert observer.alive("b"), "judgement froze before b could look expired"
    _beat_self(observer, 102)
    observer.observe("b", lease("b", 11))
    _tick(observer, clock, 1.5, rv)
    assert observer.alive("b")


def test_lease_dead_before_the_outage_stays_dead() -> None:
    observer, clock = _observer()
    rv = [100]
    observer.observe("b", lease("b", 10))
    _tick(observer, clock, 2.5, rv)  # b expired at 1002.0 while we were watching
    assert not observer.alive("b")
    clock.advance(5.0)
    assert observer.blind() and not observer.alive("b")
    _beat_self(observer, 300)
    assert not observer.alive("b")


def test_api_recovery_grace_extends_every_live_lease() -> None:
    observer, clock = _observer()
    observer.observe("b", lease("b", 10))
    clock.advance(1.5)
    _beat_self(observer, 2)
    observer.grace()
    clock.advance(1.5)
    _beat_self(observer, 3)
    assert observer.alive("b")  # 3 s since b's last change, but the grace restarted its period


def test_released_or_deleted_lease_is_not_alive() -> None:
    observer, _clock = _observer()
    observer.observe("ctl", lease("ctl", 5, holder=""))
    assert not observer.alive("ctl")
    observer.observe("b", lease("b", 6))
    observer.observe("b", None)
    assert not observer.alive("b") and not observer.known("b")


def test_precise_duration_comes_from_the_annotation() -> None:
    observer, clock = _observer()
    observer.observe("b", lease("b", 10, duration="0.8"))
    clock.advance(0.5)
    _beat_self(observer, 2)
    assert observer.alive("b")
    clock.advance(0.31)
    assert not observer.alive("b")


def test_next_expiry_is_the_earliest_flip() -> None:
    observer, clock = _observer()
    observer.observe("b", lease("b", 10, duration="1.0"))
    assert observer.next_expiry() == clock.now + 1.0


def test_settled_once_every_listed_lease_changed_or_expired() -> None:
    observer, clock = _observer()
    observer.observe("l2lb-node-b", lease("l2lb-node-b", 10))
    observer.observe("l2lb-node-stale", lease("l2lb-node-stale", 20))
    assert observer.settled_at("l2lb-node-") == clock.now + 2.0
    clock.advance(0.5)
    observer.observe("l2lb-node-b", lease("l2lb-node-b", 11))  # b proves itself alive
    observer.observe("l2lb-node-stale", lease("l2lb-node-stale", 20))  # stale: listed again, unchanged
    assert observer.settled_at("l2lb-node-") == clock.now + 1.5, "still waiting for the stale one to expire"
    observer.observe("l2lb-node-stale", None)
    assert observer.settled_at("l2lb-node-") is None
