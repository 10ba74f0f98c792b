"""tcp_probe against real sockets on loopback: one server talks first, one does not, one port is closed."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.baremetal.l2lb.plugins.modules import tcp_probe


@pytest.fixture
def servers() -> Iterator[dict[str, int]]:
    """Two listening sockets on 127.0.0.1: `talks` sends a line on accept, `silent` never sends; and a closed port."""
    socks, stop = [], threading.Event()

    def serve(sock: socket.socket, greeting: bytes) -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                if greeting:
                    conn.sendall(greeting)
                stop.wait(1.0)

    ports = {}
    for name, greeting in (("talks", b"web-2@n3\nclient 127.0.0.1:1\n"), ("silent", b"")):
        sock = socket.create_server(("127.0.0.1", 0))
        socks.append(sock)
        ports[name] = sock.getsockname()[1]
        threading.Thread(target=serve, args=(sock, greeting), daemon=True).start()
    closed = socket.create_server(("127.0.0.1", 0))
    ports["closed"] = closed.getsockname()[1]
    closed.close()
    try:
        yield ports
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def _run(capsys: pytest.CaptureFixture[str], **args: Any) -> tuple[int, dict[str, Any]]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        tcp_probe.main()
    return int(exit_info.value.code or 0), json.loads(capsys.readouterr().out)


def test_tcp_probe_reads_the_first_line_when_the_server_talks(
    capsys: pytest.CaptureFixture[str], servers: dict[str, int]
) -> None:
    targets = [{"service": "default/web", "ip": "127.0.0.1", "port": servers[name]} for name in servers]
    code, result = _run(capsys, targets=targets, timeout=2, read_timeout=0.3)
    assert code == 0 and result["changed"] is False
    by_port = {r["port"]: r for r in result["results"]}
    assert by_port[servers["talks"]]["ok"] and by_port[servers["talks"]]["answer"] == "web-2@n3"
    assert by_port[servers["silent"]]["ok"] and by_port[servers["silent"]]["answer"] == ""
    closed = by_port[servers["closed"]]
    assert not closed["ok"] and "refused" in closed["error"].lower() and closed["service"] == "default/web"


def test_tcp_probe_refuses_a_target_without_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(capsys, targets=[{"ip": "127.0.0.1"}])
    assert code == 1 and result["msg"].startswith("targets[0] is ") and "needs an ip and a port" in result["msg"]
