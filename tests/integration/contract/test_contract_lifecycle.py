"""Contract: kube-apiserver restarted keeps state, credentials and port; its watches end cleanly when it
stops; its audit log tells whose requests were which; an admin kubeconfig works."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch

from controlplane import ControlPlane


def test_stop_and_start_keep_state_credentials_and_port(connect: Callable[..., client.ApiClient]) -> None:
    with ControlPlane() as plane:  # its own: this test stops kube-apiserver
        plane.add_node("node-a")
        core = client.CoreV1Api(connect(plane))
        created = core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}, "data": {"a": "1"}})
        port, token, ca = plane.port, plane.admin_token, Path(plane.ca_file).read_bytes()
        plane.stop_apiserver()
        assert not plane.apiserver_running
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            client.CoreV1Api(connect(plane)).list_namespace(_request_timeout=2)
        plane.start_apiserver()
        assert (plane.port, plane.admin_token, Path(plane.ca_file).read_bytes()) == (port, token, ca)
        # The old client (same CA, same token, same URL) carries on once its pool reconnects.
        kept = core.read_namespaced_config_map("kept", "default")
        assert kept.data == {"a": "1"}
        assert kept.metadata.resource_version == created.metadata.resource_version
        assert kept.metadata.uid == created.metadata.uid
        again = core.create_namespaced_config_map("default", {"metadata": {"name": "after-restart"}})
        assert int(again.metadata.resource_version) > int(created.metadata.resource_version)
        assert [n.metadata.name for n in core.list_node().items] == ["node-a"]


def test_watches_end_cleanly_when_the_server_stops(connect: Callable[..., client.ApiClient]) -> None:
    with ControlPlane() as plane:  # its own: this test stops kube-apiserver
        core = client.CoreV1Api(connect(plane))
        outcome: dict[str, Any] = {}
        started = threading.Event()

        def run() -> None:
            try:
                stream = watch.Watch().stream(
                    core.list_namespaced_config_map, "default", label_selector="set=stop", timeout_seconds=60
                )
                for event in stream:
                    outcome.setdefault("events", []).append(event["type"])
                    started.set()
                outcome["ended"] = time.monotonic()
            except Exception as exc:  # the assertion below reports it
                outcome["error"] = exc

        core.create_namespaced_config_map("default", {"metadata": {"name": "seen", "labels": {"set": "stop"}}})
        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(5)
        stopped = time.monotonic()
        plane.stop_apiserver()
        thread.join(10)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["events"] == ["ADDED"]
        # --shutdown-watch-termination-grace-period=2s: kube-apiserver ends its watches, then exits.
        assert outcome["ended"] - stopped < 3


def test_audit_log_counts_each_users_requests(
    server: ControlPlane, user_client: Callable[[str], client.ApiClient], namespace: str
) -> None:
    """What ``ControlPlane.counter(user)`` reads: kube-apiserver's audit log, one event per request of that
    user, keyed (verb, resource[/subresource]); a watch counts once, from the moment it starts."""
    carol, dave = client.CoreV1Api(user_client("carol")), client.CoreV1Api(user_client("dave"))
    carol.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    counted, other, everyone = server.counter("carol"), server.counter("dave"), server.counter()
    audit_offset = server.audit_log.stat().st_size
    carol.read_namespaced_service("web", namespace)
    dave.read_namespaced_service("web", namespace)
    carol.patch_namespaced_service_status("web", namespace, {"status": {"conditions": []}})
    carol.patch_namespaced_service_status("web", namespace, {"status": {"conditions": []}})
    carol.list_namespaced_service(namespace)
    dave.list_namespaced_service(namespace)
    # A watch counts as soon as it is open (its ResponseStarted stage)...
    open_watch = carol.list_namespaced_service(namespace, watch=True, timeout_seconds=1, _preload_content=False)
    try:
        assert counted.counts()[("watch", "services")] == 1
    finally:
        open_watch.read()  # to its end, timeoutSeconds later
        open_watch.release_conn()
    # ...and still once when it has ended (its ResponseComplete stage is not counted again).
    list(watch.Watch().stream(carol.list_namespaced_service, namespace, timeout_seconds=1))
    assert counted.counts() == {
        ("get", "services"): 1,
        ("patch", "services/status"): 2,
        ("list", "services"): 1,
        ("watch", "services"): 2,
    }
    assert counted.total() == 6
    assert {e["user"]["username"] for e in counted.events()} == {"carol"}
    assert other.counts() == {("get", "services"): 1, ("list", "services"): 1}
    # Without a user, every client's requests count (kube-controller-manager's too): at least both.
    assert everyone.counts()[("get", "services")] >= 2
    assert everyone.counts()[("list", "services")] >= 2
    assert everyone.counts()[("patch", "services/status")] >= 2
    # Each ended watch has both stages in the log; the counter took one of each.
    with server.audit_log.open("rb") as log:
        log.seek(audit_offset)
        complete_lines = log.read().split(b"\n")[:-1]  # the last may be being written (by another request)
    stages = [
        event["stage"]
        for event in map(json.loads, complete_lines)
        if event["verb"] == "watch" and event["user"]["username"] == "carol"
    ]
    assert stages == ["ResponseStarted", "ResponseComplete"] * 2
    counted.reset()
    assert counted.counts() == {}
    carol.read_namespaced_service_status("web", namespace)
    assert counted.counts() == {("get", "services/status"): 1}


def test_kubeconfig_is_private_and_loadable(server: ControlPlane, tmp_path: Path) -> None:
    path = server.write_kubeconfig(tmp_path / "admin.kubeconfig", namespace="kube-system")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with config.new_client_from_config(config_file=str(path)) as api_client:
        names = [ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items]
    assert {"default", "kube-system"} <= set(names)
    other = server.write_kubeconfig(tmp_path / "other", token="wrong", server_url=server.url)
    with (
        config.new_client_from_config(config_file=str(other)) as api_client,
        pytest.raises(client.ApiException) as caught,
    ):
        client.CoreV1Api(api_client).list_namespace()
    assert caught.value.status == 401
