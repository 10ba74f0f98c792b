"""The agent's configuration: one YAML file, validated with every problem reported at once.

Example (every key but ``node_name`` and ``kubeconfig`` has a default)::

    node_name: node-a
    kubeconfig: /etc/l2lb-agent/kubeconfig
    namespace: l2lb-system
    heartbeat: {renew_interval: 0.5, lease_duration: 2.0}
    controller: {renew_interval: 0.5, lease_duration: 2.0, enabled: true, standbys: 1}
    speaker: {enabled: true, garp_count: 3, garp_interval: 0.25, refresh_interval: 30, interfaces: ["^eth"]}
    drain_timeout: 10
    metrics_address: 127.0.0.1:9469
    log_level: info
    log_format: text

``heartbeat.clock_skew_seconds`` (default 0) exists **for testing clock skew only**: it offsets the
``renewTime``/``acquireTime`` this node writes into its heartbeat Lease by that many seconds (negative:
in the past), as a node with a wrong wall clock would. Liveness never reads those timestamps, so a
skewed node must stay alive; the end-to-end tests use it to prove that. Never set it in production.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model.problems import ModelError, Problems, check_known_keys, expect_type, join_path

DEFAULT_NAMESPACE = "l2lb-system"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9469"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
_OBJ = "config"
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TOP_KEYS = (
    "node_name",
    "kubeconfig",
    "namespace",
    "heartbeat",
    "controller",
    "speaker",
    "drain_timeout",
    "metrics_address",
    "log_level",
    "log_format",
)
LEASE_KEYS = ("renew_interval", "lease_duration")
HEARTBEAT_KEYS = (*LEASE_KEYS, "clock_skew_seconds")
CONTROLLER_KEYS = (*LEASE_KEYS, "enabled", "standbys")
SPEAKER_KEYS = ("enabled", "garp_count", "garp_interval", "refresh_interval", "interfaces")


class ConfigError(ModelError):
    """The configuration has problems; ``problems`` lists all of them."""

    def __init__(self, problems: Problems | list[Any], source: str = "") -> None:
        super().__init__(problems)
        count = len(self.problems)
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        self.args = (f"{count} problem{'s' if count != 1 else ''}{where}:\n{lines}",)


@dataclass(frozen=True)
class LeaseTiming:
    """How often a Lease is renewed, and how long observers wait for a change before calling it dead."""

    renew_interval: float = 0.5
    lease_duration: float = 2.0

    @property
    def lease_duration_seconds(self) -> int:
        """``spec.leaseDurationSeconds`` is an integer in the API: round up, at least 1."""
        return max(1, math.ceil(self.lease_duration))


@dataclass(frozen=True)
class HeartbeatConfig(LeaseTiming):
    # Testing only: seconds added to the wall-clock times this node writes into its heartbeat Lease
    # (negative = in the past), to simulate a skewed clock. See the module docstring.
    clock_skew_seconds: float = 0.0


@dataclass(frozen=True)
class ControllerConfig(LeaseTiming):
    enabled: bool = True  # false: never stand for election (this node only heartbeats and speaks)
    # Warm standbys the elected controller keeps (they watch what it watches, to take over at once);
    # the other candidates stay cold: they watch only their own objects and the controller Lease.
    standbys: int = 1


@dataclass(frozen=True)
class SpeakerConfig:
    enabled: bool = True  # false: no ARP at all (API-level tests, or a node that only runs the controller)
    garp_count: int = 3
    garp_interval: float = 0.25
    refresh_interval: float = 30.0
    interfaces: tuple[str, ...] = ()  # regexes narrowing the candidate interfaces; empty = every Ethernet link


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    kubeconfig: str
    namespace: str = DEFAULT_NAMESPACE
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)
    drain_timeout: float = 10.0
    metrics_address: str | None = DEFAULT_METRICS_ADDRESS  # None: no metrics/healthz listener
    log_level: str = "info"
    log_format: str = "text"

    @property
    def metrics_host_port(self) -> tuple[str, int] | None:
        if self.metrics_address is None:
            return None
        return split_host_port(self.metrics_address)

    def summary(self) -> str:
        """One line per setting that matters, for ``check-config`` and the start-up log."""
        speaker = (
            f"enabled, garp {self.speaker.garp_count}x every {self.speaker.garp_interval}s, "
            f"refresh {self.speaker.refresh_interval}s, interfaces {list(self.speaker.interfaces) or 'all'}"
            if self.speaker.enabled
            else "disabled"
        )
        controller = (
            f"renew {self.controller.renew_interval}s, lease {self.controller.lease_duration}s"
            if self.controller.enabled
            else "disabled (never stands for election)"
        )
        return "\n".join(
            [
                f"node_name: {self.node_name}",
                f"kubeconfig: {self.kubeconfig}",
                f"namespace: {self.namespace}",
                f"heartbeat: renew {self.heartbeat.renew_interval}s, lease {self.heartbeat.lease_duration}s"
                + (
                    f", clock skew {self.heartbeat.clock_skew_seconds:+g}s (testing only)"
                    if self.heartbeat.clock_skew_seconds
                    else ""
                ),
                f"controller: {controller}",
                f"speaker: {speaker}",
                f"drain_timeout: {self.drain_timeout}s",
                f"metrics_address: {self.metrics_address or 'disabled'}",
                f"log: {self.log_level} ({self.log_format})",
            ]
        )


def split_host_port(address: str) -> tuple[str, int]:
    """``127.0.0.1:9469`` / ``[::1]:9469`` -> (host, port); ValueError with the reason."""
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
    else:
        host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{host!r} is not an IP address") from None
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return host, int(port)


def load_config(path: str | Path, *, check_files: bool = True) -> AgentConfig:
    """Read and validate the YAML file; :class:`ConfigError` lists every problem."""
    source = str(path)
    problems = Problems()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        problems.add(_OBJ, "", f"cannot read {source}: {exc.strerror or exc}", "check the path and its permissions")
        raise ConfigError(problems, source) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.add(_OBJ, "", f"not valid YAML{where}: {problem}", "fix the YAML syntax")
        raise ConfigError(problems, source) from None
    base = Path(path).resolve().parent
    return parse_config(raw, source=source, check_files=check_files, base_dir=base)


def parse_config(raw: Any, *, source: str = "", check_files: bool = False, base_dir: Path | None = None) -> AgentConfig:
    """Validate a parsed config mapping; :class:`ConfigError` lists every problem."""
    problems = Problems()
    if raw is None:
        raw = {}
    if not expect_type(raw, Mapping, _OBJ, "", problems, "mapping of settings"):
        raise ConfigError(problems, source)
    check_known_keys(raw, TOP_KEYS, _OBJ, "", problems)

    node_name = _node_name(raw, problems)
    kubeconfig = _kubeconfig(raw, problems, check_files, base_dir)
    namespace = raw.get("namespace", DEFAULT_NAMESPACE)
    if expect_type(namespace, str, _OBJ, "namespace", problems, "string") and not _DNS_LABEL_RE.match(namespace):
        problems.add(_OBJ, "namespace", f"{namespace!r} is not a valid namespace name", "use e.g. l2lb-system")

    heartbeat_raw = _section(raw, "heartbeat", HEARTBEAT_KEYS, problems)
    heartbeat_timing = _lease_timing(raw, "heartbeat", HEARTBEAT_KEYS, problems, section=heartbeat_raw)
    heartbeat = HeartbeatConfig(
        heartbeat_timing.renew_interval, heartbeat_timing.lease_duration, _clock_skew(heartbeat_raw, problems)
    )
    controller_raw = _section(raw, "controller", CONTROLLER_KEYS, problems)
    timing = _lease_timing(raw, "controller", CONTROLLER_KEYS, problems, section=controller_raw)
    standbys = controller_raw.get("standbys", 1)
    if expect_type(standbys, int, _OBJ, "controller.standbys", problems, "whole number") and not 0 <= standbys <= 9:
        problems.add(_OBJ, "controller.standbys", f"{standbys} is out of range", "use 0 to 9; 1 suits most clusters")
    if not isinstance(standbys, int) or isinstance(standbys, bool) or not 0 <= standbys <= 9:
        standbys = 1
    controller = ControllerConfig(
        timing.renew_interval,
        timing.lease_duration,
        _flag(controller_raw, "controller", "enabled", True, problems),
        standbys,
    )
    speaker = _speaker(raw, problems)
    drain_timeout = _number(raw, "", "drain_timeout", 10.0, problems, minimum=0.0, allow_zero=True)
    metrics_address = _metrics_address(raw, problems)
    log_level = _choice(raw, "log_level", "info", LOG_LEVELS, problems)
    log_format = _choice(raw, "log_format", "text", LOG_FORMATS, problems)
    if problems:
        raise ConfigError(problems, source)
    return AgentConfig(
        node_name=node_name,
        kubeconfig=kubeconfig,
        namespace=namespace,
        heartbeat=heartbeat,
        controller=controller,
        speaker=speaker,
        drain_timeout=drain_timeout,
        metrics_address=metrics_address,
        log_level=log_level,
        log_format=log_format,
    )


def _node_name(raw: Mapping[str, Any], problems: Problems) -> str:
    if "node_name" not in raw or raw["node_name"] in (None, ""):
        problems.add(_OBJ, "node_name", "missing", "set it to this node's Kubernetes node name, e.g. node-a")
        return ""
    name = raw["node_name"]
    if not expect_type(name, str, _OBJ, "node_name", problems, "string"):
        return ""
    # The heartbeat Lease is l2lb-node-<node>; it must stay a valid object name.
    if len(name) > 243 or not _DNS_SUBDOMAIN_RE.match(name):
        problems.add(
            _OBJ,
            "node_name",
            f"{name!r} is not a valid Kubernetes node name",
            "use the node's name as `kubectl get nodes` shows it (lowercase letters, digits, '-', '.')",
        )
    return name


def _kubeconfig(raw: Mapping[str, Any], problems: Problems, check_files: bool, base_dir: Path | None) -> str:
    if "kubeconfig" not in raw or raw["kubeconfig"] in (None, ""):
        problems.add(_OBJ, "kubeconfig", "missing", "set it to the path of the agent's kubeconfig file")
        return ""
    value = raw["kubeconfig"]
    if not expect_type(value, str, _OBJ, "kubeconfig", problems, "string (a file path)"):
        return ""
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if check_files and not path.is_file():
        problems.add(_OBJ, "kubeconfig", f"{str(path)!r} does not exist or is not a file", "point it at a kubeconfig")
    return str(path)


def _section(raw: Mapping[str, Any], name: str, keys: tuple[str, ...], problems: Problems) -> Mapping[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not expect_type(value, Mapping, _OBJ, name, problems, "mapping"):
        return {}
    check_known_keys(value, keys, _OBJ, name, problems)
    return value


def _lease_timing(
    raw: Mapping[str, Any],
    name: str,
    keys: tuple[str, ...],
    problems: Problems,
    section: Mapping[str, Any] | None = None,
) -> LeaseTiming:
    body = section if section is not None else _section(raw, name, keys, problems)
    renew = _number(body, name, "renew_interval", 0.5, problems, minimum=0.05)
    duration = _number(body, name, "lease_duration", 2.0, problems, minimum=0.1)
    if renew is not None and duration is not None and duration <= renew:
        problems.add(
            _OBJ,
            f"{name}.lease_duration",
            f"must be greater than renew_interval ({_fmt(renew)})",
            f"use at least 3x renew_interval, e.g. {_fmt(renew * 4)}",
        )
    return LeaseTiming(renew, duration)


def _clock_skew(body: Mapping[str, Any], problems: Problems) -> float:
    """``heartbeat.clock_skew_seconds``: any finite number of seconds, either sign (testing only)."""
    path = "heartbeat.clock_skew_seconds"
    value = body.get("clock_skew_seconds", 0.0)
    if not expect_type(value, (int, float), _OBJ, path, problems, "number of seconds"):
        return 0.0
    if not math.isfinite(float(value)):
        problems.add(_OBJ, path, f"{value} is not a finite number", "use e.g. -30 (a clock 30 s behind)")
        return 0.0
    return float(value)


def _speaker(raw: Mapping[str, Any], problems: Problems) -> SpeakerConfig:
    body = _section(raw, "speaker", SPEAKER_KEYS, problems)
    enabled = _flag(body, "speaker", "enabled", True, problems)
    count = body.get("garp_count", 3)
    path = "speaker.garp_count"
    if expect_type(count, int, _OBJ, path, problems, "whole number") and not 0 <= count <= 100:
        problems.add(_OBJ, path, f"{count} is out of range", "use 0 (no burst) to 100; 3 suits most networks")
        count = 3
    if not isinstance(count, int) or isinstance(count, bool):
        count = 3
    interval = _number(body, "speaker", "garp_interval", 0.25, problems, minimum=0.0, allow_zero=True)
    refresh = _number(body, "speaker", "refresh_interval", 30.0, problems, minimum=0.0, allow_zero=True)
    patterns: list[str] = []
    raw_patterns = body.get("interfaces") or []
    if expect_type(raw_patterns, list, _OBJ, "speaker.interfaces", problems, "list of interface regexes"):
        for i, pattern in enumerate(raw_patterns):
            p_path = join_path("speaker.interfaces", i)
            if not expect_type(pattern, str, _OBJ, p_path, problems, "string (a regex such as ^eth[0-9]+$)"):
                continue
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.add(_OBJ, p_path, f"{pattern!r} is not a valid regex: {exc}", "fix it, e.g. ^eth[0-9]+$")
                continue
            patterns.append(pattern)
    return SpeakerConfig(enabled, count, interval, refresh, tuple(patterns))


def _metrics_address(raw: Mapping[str, Any], problems: Problems) -> str | None:
    value = raw.get("metrics_address", DEFAULT_METRICS_ADDRESS)
    if value is None or value == "":
        return None
    if not expect_type(value, str, _OBJ, "metrics_address", problems, "string HOST:PORT"):
        return None
    try:
        split_host_port(value)
    except ValueError as exc:
        problems.add(_OBJ, "metrics_address", f"{value!r}: {exc}", f"use HOST:PORT, e.g. {DEFAULT_METRICS_ADDRESS}")
    return value


def _choice(raw: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...], problems: Problems) -> str:
    value = raw.get(key, default)
    if not expect_type(value, str, _OBJ, key, problems, f"one of {', '.join(allowed)}"):
        return default
    if value.lower() not in allowed:
        problems.add(_OBJ, key, f"unknown value {value!r}", f"use one of {', '.join(allowed)}")
        return default
    return value.lower()


def _flag(body: Mapping[str, Any], section: str, key: str, default: bool, problems: Problems) -> bool:
    value = body.get(key, default)
    if not expect_type(value, bool, _OBJ, join_path(section, key), problems, "boolean, true or false"):
        return default
    return bool(value)


def _number(
    body: Mapping[str, Any],
    section: str,
    key: str,
    default: float,
    problems: Problems,
    *,
    minimum: float,
    allow_zero: bool = False,
) -> Any:
    path = join_path(section, key)
    value = body.get(key, default)
    if not expect_type(value, (int, float), _OBJ, path, problems, "number of seconds"):
        return None
    value = float(value)
    if not math.isfinite(value) or (value < minimum and not (allow_zero and value == 0)):
        lowest = "0 or more" if allow_zero and minimum == 0 else f"at least {_fmt(minimum)}"
        problems.add(_OBJ, path, f"{_fmt(value)} is out of range", f"use {lowest} seconds")
        return None
    return value


def _fmt(value: float) -> str:
    return f"{value:g}"
