"""The agent as the lab and systemd run it: ``python -m l2lb_agent run --config FILE``, healthz, SIGTERM -> 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from agent_harness import AGENT_USER, Kube, eventually

AGENT_DIR = Path(__file__).resolve().parents[3] / "files" / "l2lb_agent"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthz(port: int) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None


def test_agent_process_becomes_healthy_and_exits_cleanly_on_sigterm(
    kube: Kube, kubeconfig: Path, tmp_path: Path
) -> None:
    port = _free_port()
    config = tmp_path / "agent.yml"
    config.write_text(
        f"node_name: proc-node\nkubeconfig: {kubeconfig}\nspeaker: {{enabled: false}}\n"
        f"metrics_address: 127.0.0.1:{port}\ndrain_timeout: 2\nlog_level: info\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "l2lb_agent", "run", "--config", str(config)],
        cwd=AGENT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = eventually(lambda: (h := _healthz(port)) and h[0] == 200 and h, timeout=20.0, what="healthz 200")
        assert health[1].startswith("ok:"), health
        assert eventually(lambda: kube.holder() == "proc-node", what="the only agent leads")
        assert kube.lease("l2lb-node-proc-node") is not None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read() if process.stderr else ""
    assert "Traceback" not in stderr, stderr
    assert "level=info logger=l2lb.agent msg=stopped node=proc-node graceful=true" in stderr, stderr
    assert kube.lease("l2lb-node-proc-node") is None, "heartbeat lease deleted on the way out"
    assert kube.holder() == "", "controller lease released"
    assert kube.api.token(AGENT_USER) not in stderr, "no secrets in the logs"


def _run_agent(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2lb_agent", "run", "--config", str(config)],
        cwd=AGENT_DIR,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_startup_error_is_one_line_with_the_traceback_only_at_debug(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("this: is: not a kubeconfig\n")
    for level in ("info", "debug"):
        config = tmp_path / f"agent-{level}.yml"
        config.write_text(
            f"node_name: proc-node\nkubeconfig: {broken}\nspeaker: {{enabled: false}}\n"
            f"metrics_address: 127.0.0.1:0\nlog_level: {level}\n"
        )
        result = _run_agent(config)
        assert result.returncode == 1, result
        lines = [line for line in result.stderr.splitlines() if line.startswith("l2lb-agent: ")]
        assert len(lines) == 1 and lines[0].startswith("l2lb-agent: cannot start: "), result.stderr
        if level == "info":
            assert "Traceback" not in result.stderr, result.stderr
        else:
            assert "Traceback" in result.stderr, "the traceback is logged at debug level"
