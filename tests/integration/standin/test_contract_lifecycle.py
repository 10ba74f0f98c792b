"""Contract: restarts keep state, watches end cleanly on stop, counting, kubeconfig and the standalone process."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
from contract_support import STANDIN_ONLY
from kubernetes import client, config, watch

from k8s_standin import ApiServer

TESTS_DIR = Path(__file__).resolve().parents[2]


def test_stop_and_start_keep_state_credentials_and_port(
    tmp_path: Path, connect: Callable[..., client.ApiClient]
) -> None:
    server = ApiServer(state_dir=tmp_path, nodes=["node-a"]).start()
    try:
        core = client.CoreV1Api(connect(server))
        created = core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}, "data": {"a": "1"}})
        port, token, ca = server.port, server.admin_token, Path(server.ca_file).read_bytes()
        server.stop()
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            client.CoreV1Api(connect(server)).list_namespace(_request_timeout=2)
        server.start()
        assert (server.port, server.admin_token, Path(server.ca_file).read_bytes()) == (port, token, ca)
        # The old client (same CA, same token, same URL) carries on once its pool reconnects.
        kept = core.read_namespaced_config_map("kept", "default")
        assert kept.data == {"a": "1"}
        assert kept.metadata.resource_version == created.metadata.resource_version
        again = core.create_namespaced_config_map("default", {"metadata": {"name": "after-restart"}})
        assert int(again.metadata.resource_version) > int(created.metadata.resource_version)
        assert [n.metadata.name for n in core.list_node().items] == ["node-a"]
    finally:
        server.stop()
    # A new server on the same state directory reuses the CA and admin token (objects are in memory only).
    second = ApiServer(state_dir=tmp_path)
    assert second.admin_token == token
    assert Path(second.ca_file).read_bytes() == ca


def test_watches_end_cleanly_when_the_server_stops(connect: Callable[..., client.ApiClient]) -> None:
    server = ApiServer().start()
    try:
        core = client.CoreV1Api(connect(server))
        outcome: dict[str, Any] = {}
        started = threading.Event()

        def run() -> None:
            try:
                stream = watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=60)
                for event in stream:
                    outcome.setdefault("events", []).append(event["type"])
                    started.set()
                outcome["ended"] = time.monotonic()
            except Exception as exc:  # the assertion below reports it
                outcome["error"] = exc

        core.create_namespaced_config_map("default", {"metadata": {"name": "seen"}})
        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(5)
        stopped = time.monotonic()
        server.stop()
        thread.join(10)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["events"] == ["ADDED"]
        assert outcome["ended"] - stopped < 3
    finally:
        server.stop()


@STANDIN_ONLY  # request counting: the real server has only aggregate metrics
def test_request_counts_via_python_and_http(
    standin: ApiServer, api: client.ApiClient, raw: Callable[..., Any], namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    standin.reset_counts()
    core.read_namespaced_service("web", namespace)
    core.patch_namespaced_service_status("web", namespace, {"status": {"conditions": []}})
    core.patch_namespaced_service_status("web", namespace, {"status": {"conditions": []}})
    core.list_namespaced_service(namespace)
    list(watch.Watch().stream(core.list_namespaced_service, namespace, timeout_seconds=1))
    assert standin.request_counts() == {
        ("get", "services"): 1,
        ("patch", "services/status"): 2,
        ("list", "services"): 1,
        ("watch", "services"): 1,
    }
    status, _, body = raw("GET", "/_standin/requests")
    assert status == 200
    assert body["total"] == 5
    assert {"verb": "patch", "resource": "services/status", "count": 2} in body["items"]
    status, _, _ = raw("DELETE", "/_standin/requests")
    assert status == 200
    assert standin.request_counts() == {}


def test_kubeconfig_is_private_and_loadable(standin: ApiServer, tmp_path: Path) -> None:
    path = standin.write_kubeconfig(tmp_path / "admin.kubeconfig", namespace="kube-system")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with config.new_client_from_config(config_file=str(path)) as api_client:
        names = [ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items]
    assert {"default", "kube-system"} <= set(names)
    other = standin.write_kubeconfig(tmp_path / "other", token="wrong", server_url=standin.url)
    with (
        config.new_client_from_config(config_file=str(other)) as api_client,
        pytest.raises(client.ApiException) as caught,
    ):
        client.CoreV1Api(api_client).list_namespace()
    assert caught.value.status == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_standalone_process(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "k8s_standin",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            str(tmp_path),
            "--node",
            "node-x",
            "--extra-san",
            "198.18.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == f"k8s-standin ready https://127.0.0.1:{port}"
        for name in ("ca.crt", "admin-token", "admin.kubeconfig"):
            assert (tmp_path / name).exists(), name
        assert stat.S_IMODE((tmp_path / "admin-token").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "admin.kubeconfig").stat().st_mode) == 0o600
        with config.new_client_from_config(config_file=str(tmp_path / "admin.kubeconfig")) as api_client:
            nodes = client.CoreV1Api(api_client).list_node().items
        assert [n.metadata.name for n in nodes] == ["node-x"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
