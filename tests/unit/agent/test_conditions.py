"""Condition merging: only our types, transition time kept, no change means no write."""

from __future__ import annotations

from l2lb_agent.controller.conditions import Condition, changed_to_failure, merge

OWNED = ("l2lb.io/IPAllocated", "l2lb.io/Announced")


def test_unchanged_conditions_are_not_a_change() -> None:
    current = [
        {"type": "other.io/Ready", "status": "True", "reason": "X", "message": ""},
        {
            "type": "l2lb.io/IPAllocated",
            "status": "True",
            "reason": "Allocated",
            "message": "m",
            "lastTransitionTime": "t0",
        },
    ]
    merged, changed = merge(current, [Condition("l2lb.io/IPAllocated", "True", "Allocated", "m")], OWNED, "t1")
    assert not changed and merged == current


def test_message_change_keeps_transition_time_status_flip_sets_it() -> None:
    current = [
        {"type": "l2lb.io/IPAllocated", "status": "False", "reason": "A", "message": "m", "lastTransitionTime": "t0"}
    ]
    merged, changed = merge(current, [Condition("l2lb.io/IPAllocated", "False", "A", "m2")], OWNED, "t1")
    assert changed and merged[0]["lastTransitionTime"] == "t0" and merged[0]["message"] == "m2"
    merged, changed = merge(current, [Condition("l2lb.io/IPAllocated", "True", "Allocated", "")], OWNED, "t1")
    assert changed and merged[0]["lastTransitionTime"] == "t1"


def test_foreign_conditions_kept_and_ours_not_wanted_removed() -> None:
    current = [
        {"type": "other.io/Ready", "status": "True"},
        {"type": "l2lb.io/Announced", "status": "True", "reason": "Announced", "message": ""},
    ]
    merged, changed = merge(current, [], OWNED, "t1")
    assert changed and merged == [{"type": "other.io/Ready", "status": "True"}]


def test_failure_is_worth_an_event_only_when_new() -> None:
    failure = Condition("l2lb.io/IPAllocated", "False", "PoolExhausted", "no free address")
    assert changed_to_failure([], failure)
    merged, _ = merge([], [failure], OWNED, "t")
    assert not changed_to_failure(merged, failure)
    assert changed_to_failure(merged, Condition("l2lb.io/IPAllocated", "False", "PoolExhausted", "other"))
    assert not changed_to_failure(merged, Condition("l2lb.io/IPAllocated", "True", "Allocated", ""))
