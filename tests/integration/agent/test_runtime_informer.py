"""The kube layer's informer against kube-apiserver: list + watch, resume after the server ends a watch,
re-list on 410 Gone, fold in our own writes; every request counted; a watch that goes silent (the stall
proxy stops relaying it without closing) is ended at once by restart_watch() and replaced by the watchdog
within one period."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import Kube, eventually

from controlplane import ControlPlane
from l2lb_agent.kube import SERVICES, Informer, KubeClient
from l2lb_agent.metrics import Metrics
from l2lb_agent.watchdog import Watchdog


def _names(informer: Informer) -> set[str]:
    return {obj["metadata"]["name"] for obj in informer.items()}


@pytest.fixture
def uncached(tmp_path: Path) -> Iterator[tuple[Kube, Path]]:
    """A control plane of its own whose Service watches are served by etcd (no watch cache), so that a watch
    from a compacted resourceVersion gets 410 Gone as soon as it asks — as a watch that fell behind
    compaction does on a cluster. (The watch cache answers a very old resourceVersion by replaying its
    whole state while its window still starts at its first list, which depends on the suite's history.)"""
    with ControlPlane(extra_apiserver_args=["--watch-cache-sizes=services#0"]) as plane:
        kubeconfig = plane.write_kubeconfig(tmp_path / "uncached.kubeconfig")
        yield Kube(plane, kubeconfig), kubeconfig


def test_informer_follows_changes_through_expiring_watches_and_410(uncached: tuple[Kube, Path]) -> None:
    kube, kubeconfig = uncached
    metrics = Metrics()
    # Watches the server ends after 1 s, so the informer resumes them from its resourceVersion.
    informer = Informer(KubeClient(str(kubeconfig), metrics), SERVICES, watch_timeout=(1, 1))
    seen: list[tuple[str, str]] = []

    def record(kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        obj = new or old
        if obj is not None:
            seen.append((kind, obj["metadata"]["name"]))

    informer.add_handler(record)
    for i in range(3):
        kube.create_service(f"before-{i}")
    informer.start()
    try:
        assert informer.wait_synced(5.0)
        assert {"before-0", "before-1", "before-2"} <= _names(informer)

        kube.create_service("added")
        eventually(lambda: ("ADDED", "added") in seen, what="ADDED event")
        kube.core.patch_namespaced_service("added", "default", {"metadata": {"labels": {"x": "y"}}})
        eventually(lambda: ("MODIFIED", "added") in seen, what="MODIFIED event")
        kube.core.delete_namespaced_service("before-0", "default")
        eventually(lambda: ("DELETED", "before-0") in seen, what="DELETED event")
        assert metrics.value("l2lb_watch_restarts_total", {"resource": "services", "reason": "gone"}) is None

        # Fall behind: the next resumed watch asks for a resourceVersion etcd has compacted away.
        kube.api.compact_etcd()
        informer._rv = "1"
        eventually(
            lambda: metrics.value("l2lb_watch_restarts_total", {"resource": "services", "reason": "gone"}),
            what="a re-list after 410 Gone",
        )
        kube.create_service("after")
        eventually(lambda: "after" in _names(informer), what="changes after the re-list")
        assert _names(informer) >= {"added", "after", "before-1", "before-2"}
        assert "before-0" not in _names(informer)
        assert metrics.value("l2lb_api_requests_total", {"verb": "list", "resource": "services", "code": "200"}) == 2
        assert not metrics.value("l2lb_watch_restarts_total", {"resource": "services", "reason": "error"})
    finally:
        informer.stop()


def test_own_write_is_folded_in_once(kube: Kube, kubeconfig: Path) -> None:
    client = KubeClient(str(kubeconfig))
    informer = Informer(client, SERVICES)
    seen: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, old, new: seen.append((kind, (new or old or {})["metadata"]["name"])))

    def events(kind: str, name: str) -> int:
        return seen.count((kind, name))

    informer.start()
    try:
        assert informer.wait_synced(5.0)
        kube.create_service("web")
        eventually(lambda: events("ADDED", "web") == 1, what=f"web ADDED once (seen: {seen})")
        stored = client.patch_service("default", "web", {"metadata": {"annotations": {"k": "v"}}})
        informer.store_written(stored)
        assert (informer.get("default/web") or {})["metadata"]["annotations"]["k"] == "v"
        assert events("MODIFIED", "web") == 1, f"our write is seen at once: {seen}"
        kube.create_service("other")
        eventually(lambda: events("ADDED", "other") == 1, what=f"other ADDED (seen: {seen})")
        assert events("MODIFIED", "web") == 1, f"the watch event for our own write is not a second change: {seen}"
        assert events("ADDED", "web") == 1, seen
    finally:
        informer.stop()


def _lists(metrics: Metrics) -> float:
    return metrics.value("l2lb_api_requests_total", {"verb": "list", "resource": "services", "code": "200"}) or 0


@pytest.mark.parametrize("relist", [True, False], ids=["relist", "resume"])
def test_restart_watch_ends_a_silent_stream_at_once(kube: Kube, kubeconfig: Path, relist: bool) -> None:
    """``restart_watch()`` re-lists; ``restart_watch(relist=False)`` (the agent after an API outage)
    reopens the watch from its resourceVersion and the server replays what the stalled stream missed."""
    metrics = Metrics()
    informer = Informer(KubeClient(str(kubeconfig), metrics), SERVICES)
    informer.start()
    try:
        assert informer.wait_synced(5.0)
        eventually(lambda: informer.watch_started_at is not None, what="the watch open")
        assert kube.stall_watches("services") == 1
        kube.create_service("unseen")
        time.sleep(0.5)
        assert "unseen" not in _names(informer), "the stalled watch must not deliver anything"
        started = time.monotonic()
        informer.restart_watch(relist=relist)
        # The old watch.Watch().stop() only set a flag read after the next event: the read would have
        # blocked until its timeout (minutes). Shutting the socket down ends it now.
        eventually(lambda: "unseen" in _names(informer), timeout=1.0, what="the change after restart_watch")
        assert time.monotonic() - started < 1.0
        assert metrics.value("l2lb_watch_restarts_total", {"resource": "services", "reason": "restart"}) == 1
        assert _lists(metrics) == (2 if relist else 1)
        kube.create_service("after")
        eventually(lambda: "after" in _names(informer), what="the new watch delivers")
        assert not metrics.value("l2lb_watch_restarts_total", {"resource": "services", "reason": "error"})
    finally:
        informer.stop()
    assert not informer.running and informer.failure is None, "a stopped informer is not a dead one"


def test_watchdog_replaces_a_watch_that_stopped_sending_bookmarks_within_one_period(
    kube: Kube, kubeconfig: Path
) -> None:
    # kube-apiserver's watch cache sends a watcher a bookmark when the store has moved past what the watcher
    # has seen: about every minute, and 2 s before the watch's own timeout. Watches of 4 s and a Service
    # touched every 0.5 s (a cluster where things happen) bring events and bookmarks every few seconds, so
    # silence for 3 s means a stall; a live watch is never judged one.
    stall_after, period = 3.0, 0.25
    ticking = threading.Event()
    kube.create_service("tick")

    def tick() -> None:
        n = 0
        while not ticking.wait(0.5):
            n += 1
            kube.core.patch_namespaced_service("tick", "default", {"metadata": {"labels": {"n": str(n)}}})

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    informer = Informer(KubeClient(str(kubeconfig), Metrics()), SERVICES, watch_timeout=(4, 4), stall_after=stall_after)
    quiet = Informer(
        KubeClient(str(kubeconfig), Metrics()), SERVICES, name="quiet", watch_timeout=(4, 4), stall_after=stall_after
    )
    watchdog = Watchdog("watchdog", period, lambda: [informer, quiet], settle=stall_after)
    informer.start()
    quiet.start()
    watchdog.start()
    try:
        eventually(lambda: informer.bookmarks_seen and quiet.bookmarks_seen, timeout=15.0, what="bookmarks")
        time.sleep(3 * stall_after)
        assert watchdog.restarts == 0, "a watch that delivers is not stalled"
        eventually(
            lambda: informer.watch_started_at is not None and quiet.watch_started_at is not None,
            what="both watching",
        )
        assert kube.stall_watches("services") == 2
        informer.restart_watch()  # only `quiet` stays stalled: the watchdog must find it alone
        eventually(lambda: informer.watch_started_at is not None, what="informer watching again")
        stalled_at = time.monotonic()
        kube.create_service("later")
        eventually(lambda: "later" in _names(informer), what="the restarted informer")
        # Judged stalled stall_after after its last event or bookmark (at most stall_after from now), then
        # replaced at the next round: one period; a little for the re-list itself.
        eventually(
            lambda: "later" in _names(quiet),
            timeout=stall_after + period + 1.0,
            what="the watchdog replacing the stalled watch",
        )
        recovered = time.monotonic() - stalled_at
        assert watchdog.restarts == 1, watchdog.restarts
        assert recovered <= stall_after + period + 1.0, recovered
        kube.create_service("after")
        eventually(lambda: "after" in _names(quiet), what="the new watch delivers")
    finally:
        ticking.set()
        ticker.join()
        watchdog.stop()
        informer.stop()
        quiet.stop()
