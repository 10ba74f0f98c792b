"""The kube layer's informer against the stand-in: list + watch, resume after the server ends a watch,
re-list on 410 Gone, fold in our own writes; every request counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_harness import Kube, eventually

from k8s_standin import ApiServer
from l2lb_agent.kube import SERVICES, Informer, KubeClient
from l2lb_agent.metrics import Metrics


def _names(informer: Informer) -> set[str]:
    return {obj["metadata"]["name"] for obj in informer.items()}


def test_informer_follows_changes_through_expiring_watches_and_410(tmp_path: Path) -> None:
    # Only the last 2 events are kept, so a stale resourceVersion gets 410 Gone.
    api = ApiServer(state_dir=tmp_path / "standin", history_size=2).start()
    try:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        kube = Kube(api, kubeconfig)
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
        assert informer.wait_synced(5.0)
        assert {"before-0", "before-1", "before-2"} <= _names(informer)

        kube.create_service("added")
        eventually(lambda: ("ADDED", "added") in seen, what="ADDED event")
        kube.core.patch_namespaced_service("added", "default", {"metadata": {"labels": {"x": "y"}}})
        eventually(lambda: ("MODIFIED", "added") in seen, what="MODIFIED event")
        kube.core.delete_namespaced_service("before-0", "default")
        eventually(lambda: ("DELETED", "before-0") in seen, what="DELETED event")

        # Fall behind: the next resumed watch asks for history the server no longer has.
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
        informer.stop()
    finally:
        api.stop()


def test_own_write_is_folded_in_once(kube: Kube, kubeconfig: Path) -> None:
    client = KubeClient(str(kubeconfig))
    informer = Informer(client, SERVICES)
    events: list[str] = []
    informer.add_handler(lambda kind, old, new: events.append(kind))
    informer.start()
    assert informer.wait_synced(5.0)
    kube.create_service("web")
    eventually(lambda: events.count("ADDED") == 1)
    stored = client.patch_service("default", "web", {"metadata": {"annotations": {"k": "v"}}})
    informer.store_written(stored)
    assert (informer.get("default/web") or {})["metadata"]["annotations"]["k"] == "v"
    assert events.count("MODIFIED") == 1, "our write is seen at once"
    kube.create_service("other")
    eventually(lambda: events.count("ADDED") == 2)
    assert events.count("MODIFIED") == 1, "the watch event for our own write is not a second change"
    informer.stop()
