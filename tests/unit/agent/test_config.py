"""Agent configuration: defaults, every problem at once with field and fix, and the CLI around it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from l2lb_agent.cli import main
from l2lb_agent.config import ConfigError, load_config, parse_config

AGENT_DIR = Path(__file__).resolve().parents[3] / "files" / "l2lb_agent"


def _problems(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return [str(p) for p in info.value.problems]


def test_minimal_config_gets_the_documented_defaults() -> None:
    config = parse_config({"node_name": "node-a", "kubeconfig": "/etc/l2lb/kubeconfig"})
    assert config.namespace == "l2lb-system"
    assert (config.heartbeat.renew_interval, config.heartbeat.lease_duration) == (0.5, 2.0)
    assert (config.controller.renew_interval, config.controller.lease_duration) == (0.5, 2.0)
    assert config.heartbeat.lease_duration_seconds == 2
    assert config.metrics_address == "127.0.0.1:9469"
    assert config.metrics_host_port == ("127.0.0.1", 9469)
    assert config.speaker.enabled and config.speaker.garp_count == 3 and config.speaker.interfaces == ()
    assert config.drain_timeout == 10.0
    assert config.log_level == "info"


def test_lease_duration_must_exceed_renew_interval() -> None:
    problems = _problems(
        {"node_name": "a", "kubeconfig": "k", "heartbeat": {"renew_interval": 0.5, "lease_duration": 0.5}}
    )
    assert len(problems) == 1
    assert "heartbeat.lease_duration: must be greater than renew_interval (0.5)" in problems[0]
    assert "fix:" in problems[0]


def test_every_problem_is_reported_at_once_naming_field_and_fix() -> None:
    raw = {
        "node_name": "Node_A",
        "heartbeet": {},
        "controller": {"renew_interval": "fast", "lease_duration": 2},
        "speaker": {"garp_count": 500, "interfaces": ["eth[0-"], "refresh": 3},
        "metrics_address": "localhost",
        "log_level": "loud",
        "drain_timeout": -1,
    }
    problems = _problems(raw)
    text = "\n".join(problems)
    expected = [
        "config: node_name: 'Node_A' is not a valid Kubernetes node name",
        "config: kubeconfig: missing",
        'config: heartbeet: unknown key (fix: did you mean "heartbeat"?)',
        "config: controller.renew_interval: expected number of seconds",
        "config: speaker.garp_count: 500 is out of range",
        "config: speaker.interfaces[0]: 'eth[0-' is not a valid regex",
        'config: speaker.refresh: unknown key (fix: did you mean "refresh_interval"?)',
        "config: metrics_address: 'localhost': expected HOST:PORT",
        "config: log_level: unknown value 'loud'",
        "config: drain_timeout: -1 is out of range",
    ]
    for line in expected:
        assert line in text, f"missing {line!r} in:\n{text}"
    assert len(problems) == len(expected)


def test_metrics_can_be_disabled_and_port_zero_is_allowed() -> None:
    assert parse_config({"node_name": "a", "kubeconfig": "k", "metrics_address": None}).metrics_host_port is None
    assert parse_config({"node_name": "a", "kubeconfig": "k", "metrics_address": "[::1]:0"}).metrics_host_port == (
        "::1",
        0,
    )


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text("node_name: a\nheartbeat: {renew_interval: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not valid YAML at line" in str(info.value)


def test_kubeconfig_is_resolved_next_to_the_config_and_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text("node_name: a\nkubeconfig: kubeconfig\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "kubeconfig" in str(info.value) and "does not exist" in str(info.value)
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\n")
    assert load_config(path).kubeconfig == str(tmp_path / "kubeconfig")


def test_check_config_cli_ok_and_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\n")
    good = tmp_path / "good.yml"
    good.write_text("node_name: node-a\nkubeconfig: kubeconfig\nspeaker: {enabled: false}\n")
    assert main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "configuration is valid" in out and "node_name: node-a" in out and "speaker: disabled" in out

    bad = tmp_path / "bad.yml"
    bad.write_text("node_name: node-a\nkubeconfig: kubeconfig\nheartbeat: {renew_interval: 1, lease_duration: 1}\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "heartbeat.lease_duration: must be greater than renew_interval (1)" in err
    assert "Traceback" not in err


def test_python_dash_m_entry_point_checks_config_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("node: a\n")
    result = subprocess.run(
        [sys.executable, "-m", "l2lb_agent", "check-config", str(bad)],
        cwd=AGENT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert 'node: unknown key (fix: did you mean "node_name"?)' in result.stderr
    assert "Traceback" not in result.stderr
    version = subprocess.run(
        [sys.executable, "-m", "l2lb_agent", "version"], cwd=AGENT_DIR, capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("l2lb-agent ")
