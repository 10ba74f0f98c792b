"""MicroTime strings the kubernetes client cannot mangle into a form kube-apiserver refuses."""

from __future__ import annotations

from datetime import datetime, timezone

from kubernetes import client

from l2lb_agent.leases import micro_time


def test_a_whole_second_still_carries_a_fraction_after_the_clients_reserialization() -> None:
    text = micro_time(datetime(2026, 12, 7, 15, 0, 0, 0, tzinfo=timezone.utc))
    assert text == "2026-12-07T15:00:00.000001Z"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    # What the client sends for a datetime: kube-apiserver's MicroTime needs the ".ffffff" part.
    assert "." in str(client.ApiClient().sanitize_for_serialization(parsed))


def test_other_times_are_kept_to_the_microsecond() -> None:
    assert micro_time(datetime(2026, 12, 7, 15, 0, 0, 123456, tzinfo=timezone.utc)) == "2026-12-07T15:00:00.123456Z"
