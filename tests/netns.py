"""Network-namespace labs for integration tests: a bridge, N node namespaces and a client, all isolated.

Everything lives in namespaces this module creates (nothing touches the host's own interfaces):

    l2lb-t<tag>-br   holds the bridge "l2lb-br"; one veth port per host, named like the host's namespace
    l2lb-t<tag>-n1.. the nodes; each has one interface "l2lb0" with 198.18.x.11, .12, ...
    l2lb-t<tag>-c    the client (198.18.x.2, arp_accept=1 so gratuitous ARP updates its neighbour table)

Service IPs for tests: ``lab.vip(i)`` = .100 + i. Continuous probers also send from .240-.254.

<tag> is 4 random hex digits, so parallel runs do not collide. Addresses must lie in 198.18.0.0/15.
IPv6 is disabled in every namespace so no traffic other than ours (IPv4 in 198.18.0.0/15, ARP) is sent,
unless the lab is built with ``subnet6`` (a /64 in 2001:2::/48, RFC 5180's benchmarking prefix): then the lab
interfaces get IPv6 (hosts ::2, ::11, ::12, ...; ``lab.vip6(i)`` = ::100 + i) without DAD, router
solicitations or autoconfiguration, and NDP and MLD stay on the lab's own bridge.
Teardown kills only the processes started through the lab (by PID) and deletes the namespaces, which
deletes the bridge and veths with them. A lab records its owner (PID + start time) in /run/l2lb-netns;
``cleanup_stale_labs()`` removes namespaces of labs whose owner is gone (crashed earlier runs).

Use it as a context manager (``with Lab(nodes=2) as lab:``) or through the ``make_lab`` fixture, and
``arp_probe``/``start_prober`` (scapy, from the client) to see who answers ARP and how fast.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
AGENT_PATH = REPO / "files" / "l2lb_agent"
TESTS_PATH = REPO / "tests"
PYTHON = sys.executable
ALLOWED_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
ALLOWED_NETWORK6 = ipaddress.IPv6Network("2001:2::/48")
NS_PREFIX = "l2lb-t"
OWNER_DIR = Path("/run/l2lb-netns")
BRIDGE = "l2lb-br"
HOST_IFNAME = "l2lb0"
_NS_RE = re.compile(r"^l2lb-t([0-9a-f]{4})-(br|c|n\d+)$")
PROBE_SLOT_BASE = 240  # .240-.254 of the lab subnet: extra sender IPs of continuous probers
PROBE_SLOTS = 16
_MAX_NODES = 99  # keeps "l2lb-tXXXX-nNN" within the 15-character interface name limit


def netns_capable() -> str | None:
    """None if this process can build labs, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"iproute2 'ip netns' unusable: {exc}"
    return None


def require_netns() -> None:
    """Fail the calling test (never skip it) unless labs can be built here."""
    reason = netns_capable()
    if reason is not None:
        pytest.fail(f"cannot run here: {reason}")


# ---- running things in namespaces ----


class CommandFailed(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()[-2000:]}"


def sh(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command (no shell), return stdout; CommandFailed (with stderr in the message) on failure."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input, env=env)
    if check and proc.returncode != 0:
        raise CommandFailed(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc.stdout


def ns_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """``ip netns exec`` prefix; it execs the command, so a Popen's PID is the command's own."""
    return ["ip", "netns", "exec", netns, *argv]


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Python subprocesses: the agent package and tests/ importable, unbuffered output."""
    env = dict(os.environ)
    paths = [str(AGENT_PATH), str(TESTS_PATH)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def list_netns() -> list[str]:
    out = sh(["ip", "-j", "netns", "list"], check=False)
    try:
        return [entry["name"] for entry in json.loads(out or "[]")]
    except (ValueError, KeyError, TypeError):
        return [line.split()[0] for line in out.splitlines() if line.strip()]


# ---- stale labs ----


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime; comm may contain spaces


def _owner_alive(tag: str) -> bool:
    try:
        owner = json.loads((OWNER_DIR / f"{tag}.json").read_text())
        return _proc_start_time(int(owner["pid"])) == str(owner["start"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cleanup_stale_labs() -> list[str]:
    """Delete namespaces of labs whose owner process is gone; return their names.

    Only names this module creates (l2lb-tXXXX-br/-c/-nN) are considered, and only when the owner
    record is missing or names a dead process. Processes still inside are left alone (not ours to kill);
    the namespace disappears with them.
    """
    removed = []
    for name in list_netns():
        match = _NS_RE.match(name)
        if match and not _owner_alive(match.group(1)):
            proc = subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
            if proc.returncode == 0:
                removed.append(name)
    if OWNER_DIR.is_dir():
        for record in OWNER_DIR.glob("*.json"):
            if not _owner_alive(record.stem):
                with contextlib.suppress(OSError):
                    record.unlink()
    return removed


# ---- the lab ----


@dataclass
class Host:
    """One namespace plugged into the lab bridge."""

    role: str
    """"client", "node1", "node2", ..."""
    netns: str
    ifname: str
    ip: str
    prefixlen: int
    mac: str
    port: str
    """The bridge-side veth (in the bridge namespace)."""
    index: int
    """0 for the client, i for node i."""
    ip6: str | None = None
    """The host's IPv6 address (a lab with ``subnet6``), prefix /64."""

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str | None
    state: tuple[str, ...]


class Lab:
    """A bridge with node and client namespaces; see the module docstring."""

    def __init__(
        self,
        nodes: int = 2,
        subnet: str = "198.18.100.0/24",
        *,
        client: bool = True,
        host_ifname: str = HOST_IFNAME,
        subnet6: str | None = None,
    ) -> None:
        network = ipaddress.ip_network(subnet)
        network6 = ipaddress.ip_network(subnet6) if subnet6 is not None else None
        if network6 is not None and (
            not isinstance(network6, ipaddress.IPv6Network)
            or not network6.subnet_of(ALLOWED_NETWORK6)
            or network6.prefixlen != 64
        ):
            raise ValueError(f"subnet6 {subnet6}: lab IPv6 addresses must be a /64 in {ALLOWED_NETWORK6}")
        if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(ALLOWED_NETWORK):
            raise ValueError(f"subnet {subnet}: lab addresses must lie in {ALLOWED_NETWORK}")
        if network.num_addresses < 256:
            raise ValueError(f"subnet {subnet}: use a /24 or larger (hosts use .2, .11+, VIPs .100+)")
        if not 0 <= nodes <= _MAX_NODES:
            raise ValueError(f"nodes: between 0 and {_MAX_NODES}, got {nodes}")
        if not host_ifname.startswith("l2lb") or len(host_ifname) > 15:
            raise ValueError(f"host_ifname {host_ifname!r}: must start with 'l2lb' and fit 15 characters")
        self.network = network
        self.network6 = network6
        self.tag = ""
        self.host_ifname = host_ifname
        self._want_nodes = nodes
        self._want_client = client
        self.nodes: list[Host] = []
        self._client: Host | None = None
        self._namespaces: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._mac_generation: dict[int, int] = {}
        self._started = False

    # -- lifecycle --

    @property
    def bridge_netns(self) -> str:
        return f"{NS_PREFIX}{self.tag}-br"

    @property
    def client(self) -> Host:
        if self._client is None:
            raise RuntimeError("this lab was built without a client")
        return self._client

    @property
    def hosts(self) -> list[Host]:
        return ([self._client] if self._client else []) + self.nodes

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Lab:
        if self._started:
            return self
        self._started = True
        cleanup_stale_labs()
        self._claim_tag()
        try:
            self._add_netns(self.bridge_netns)
            self._ip(self.bridge_netns, "link", "add", BRIDGE, "type", "bridge")
            self._ip(self.bridge_netns, "link", "set", BRIDGE, "up")
            if self._want_client:
                self._client = self._plug("client", f"{NS_PREFIX}{self.tag}-c", 0, str(self.network[2]))
                self.sysctl(self._client, "net.ipv4.conf.all.arp_accept", "1")
                self.sysctl(self._client, f"net.ipv4.conf.{self.host_ifname}.arp_accept", "1")
            for i in range(1, self._want_nodes + 1):
                self.nodes.append(self._plug(f"node{i}", f"{NS_PREFIX}{self.tag}-n{i}", i, str(self.network[10 + i])))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop our processes (by PID), delete our namespaces and the owner record. Safe to call twice."""
        for proc in reversed(self._processes):
            terminate(proc)
        self._processes.clear()
        for netns in reversed(self._namespaces):
            sh(["ip", "netns", "delete", netns], check=False)
        self._namespaces.clear()
        if self.tag:
            with contextlib.suppress(OSError):
                (OWNER_DIR / f"{self.tag}.json").unlink()

    def _claim_tag(self) -> None:
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        existing = set(list_netns())
        record = json.dumps({"pid": os.getpid(), "start": _proc_start_time(os.getpid())})
        for _ in range(100):
            tag = secrets.token_hex(2)
            if any(name.startswith(f"{NS_PREFIX}{tag}-") for name in existing):
                continue
            try:
                fd = os.open(OWNER_DIR / f"{tag}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(record)
            self.tag = tag
            return
        raise RuntimeError("could not find a free lab tag")

    def _add_netns(self, netns: str) -> None:
        sh(["ip", "netns", "add", netns])
        self._namespaces.append(netns)
        if self.network6 is None:
            # No IPv6 (no router solicitations, MLD or DAD leaving our interfaces).
            self.sysctl(netns, "net.ipv6.conf.all.disable_ipv6", "1", check=False)
            self.sysctl(netns, "net.ipv6.conf.default.disable_ipv6", "1", check=False)
        else:
            # IPv6 with only the addresses we give: no autoconfiguration, router solicitations or DAD.
            for conf in ("all", "default"):
                for key, value in (("accept_ra", "0"), ("autoconf", "0"), ("router_solicitations", "0")):
                    self.sysctl(netns, f"net.ipv6.conf.{conf}.{key}", value, check=False)
                self.sysctl(netns, f"net.ipv6.conf.{conf}.accept_dad", "0", check=False)
        self._ip(netns, "link", "set", "lo", "up")

    def _mac(self, index: int) -> str:
        generation = self._mac_generation.get(index, 0)
        return f"02:18:{self.tag[:2]}:{self.tag[2:]}:{generation:02x}:{index:02x}"

    def _plug(self, role: str, netns: str, index: int, address: str) -> Host:
        self._add_netns(netns)
        host = Host(
            role=role,
            netns=netns,
            ifname=self.host_ifname,
            ip=address,
            prefixlen=self.network.prefixlen,
            mac=self._mac(index),
            port=netns,
            index=index,
            ip6=str(self.network6[int(str(index + 10 if index else 2), 16)]) if self.network6 is not None else None,
        )
        self._connect(host)
        return host

    def _connect(self, host: Host) -> None:
        br = self.bridge_netns
        self._ip(br, "link", "add", host.port, "type", "veth", "peer", "name", host.ifname, "netns", host.netns)
        self._ip(host.netns, "link", "set", host.ifname, "address", host.mac)
        self._ip(br, "link", "set", host.port, "master", BRIDGE, "up")
        self._ip(host.netns, "addr", "add", host.cidr, "dev", host.ifname)
        if host.ip6 is not None:
            self._ip(host.netns, "-6", "addr", "add", f"{host.ip6}/64", "dev", host.ifname, "nodad")
        self._ip(host.netns, "link", "set", host.ifname, "up")

    # -- helpers --

    def vip(self, i: int = 0) -> str:
        """The i-th service IP of the lab: .100 + i (.240 and up are the probers')."""
        if not 0 <= i < 100:
            raise ValueError("vip index between 0 and 99")
        return str(self.network[100 + i])

    def vip6(self, i: int = 0) -> str:
        """The i-th IPv6 service IP of a lab with ``subnet6``: ::100 + i (hex, like ``vip``'s decimal .100)."""
        if self.network6 is None:
            raise RuntimeError("this lab was built without subnet6")
        if not 0 <= i < 0x100:
            raise ValueError("vip6 index between 0 and 255")
        return str(self.network6[0x100 + i])

    def node(self, i: int) -> Host:
        """Node i, counting from 1 like the namespace names."""
        return self.nodes[i - 1]

    @staticmethod
    def _ns(target: Host | str) -> str:
        return target.netns if isinstance(target, Host) else target

    def _ip(self, netns: str, *args: str, check: bool = True) -> str:
        return sh(["ip", "-n", netns, *args], check=check)

    def ip(self, target: Host | str, *args: str, check: bool = True) -> str:
        """``ip -n <ns> ARGS``; stdout."""
        return self._ip(self._ns(target), *args, check=check)

    def run(
        self,
        target: Host | str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run a command inside the namespace; stdout."""
        return sh(ns_argv(self._ns(target), argv), check=check, timeout=timeout, env=env)

    def run_python(self, target: Host | str, args: Sequence[str], *, timeout: float = 60.0) -> str:
        """Run this venv's Python inside the namespace (agent package and tests/ importable); stdout."""
        return self.run(target, [PYTHON, *args], timeout=timeout, env=python_env())

    def popen(self, target: Host | str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside the namespace; the lab terminates it (by PID) on close."""
        proc: subprocess.Popen[Any] = subprocess.Popen(ns_argv(self._ns(target), argv), **kwargs)
        self._processes.append(proc)
        return proc

    def python(self, target: Host | str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start this venv's Python inside the namespace with the agent package and tests/ importable."""
        kwargs.setdefault("env", python_env())
        return self.popen(target, [PYTHON, *args], **kwargs)

    def stop_process(self, proc: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
        """Terminate one process started through the lab; its return code."""
        terminate(proc, timeout)
        if proc in self._processes:
            self._processes.remove(proc)
        return proc.returncode

    def sysctl(self, target: Host | str, key: str, value: str, *, check: bool = True) -> None:
        self.run(target, ["sysctl", "-qw", f"{key}={value}"], check=check)

    def set_link(self, host: Host, up: bool) -> None:
        """Admin up/down of the host's own interface (inside its namespace)."""
        self._ip(host.netns, "link", "set", host.ifname, "up" if up else "down")

    def set_port(self, host: Host, up: bool) -> None:
        """Admin up/down of the bridge-side end: the host sees its carrier go away/come back."""
        self._ip(self.bridge_netns, "link", "set", host.port, "up" if up else "down")

    def replug(self, host: Host) -> Host:
        """Delete the host's veth pair and create it again (same names and IP, new MAC)."""
        self._ip(host.netns, "link", "delete", host.ifname)
        self._mac_generation[host.index] = self._mac_generation.get(host.index, 0) + 1
        host.mac = self._mac(host.index)
        self._connect(host)
        return host

    def link_mac(self, host: Host) -> str:
        info = json.loads(self._ip(host.netns, "-j", "link", "show", "dev", host.ifname))
        return str(info[0]["address"])

    def neighbours(self, host: Host, family: str = "-4") -> dict[str, Neighbour]:
        """The host's neighbour table (``-4`` or ``-6``) on its lab interface, by IP."""
        entries = json.loads(self._ip(host.netns, "-j", family, "neigh", "show", "dev", host.ifname) or "[]")
        return {e["dst"]: Neighbour(ip=e["dst"], mac=e.get("lladdr"), state=tuple(e.get("state", ()))) for e in entries}

    def flush_neighbours(self, host: Host, family: str = "-4") -> None:
        self._ip(host.netns, family, "neigh", "flush", "dev", host.ifname)

    # -- ARP probes (scapy, from the client) --

    def _probe_argv(
        self, target: str, extra: Sequence[str], source: Host | None, slots: int = 1
    ) -> tuple[Host, list[str]]:
        prober = source or self.client
        if ipaddress.ip_address(target).version == 6:
            if self.network6 is None or prober.ip6 is None:
                raise RuntimeError("an IPv6 probe needs a lab with subnet6")
            own, slot_ips = prober.ip6, [str(self.network6[0x240 + i]) for i in range(slots - 1)]
        else:
            own, slot_ips = prober.ip, [str(self.network[PROBE_SLOT_BASE + i]) for i in range(slots - 1)]
        argv = ["-m", "arpprobe", "--iface", prober.ifname, "--target", target, "--src-ip", own]
        for ip in slot_ips:
            argv += ["--src-ip", ip]
        return prober, [*argv, *extra]

    def arp_probe(
        self,
        target: str,
        *,
        count: int = 10,
        timeout_ms: float = 200.0,
        settle_ms: float = 5.0,
        source: Host | None = None,
    ) -> ProbeResult:
        """Send ``count`` who-has for ``target`` one after another; every answer with MAC and latency.

        Each probe waits up to ``timeout_ms`` for a first answer, then ``settle_ms`` for more (split brain).
        """
        prober, argv = self._probe_argv(
            target, ["--count", str(count), "--timeout-ms", str(timeout_ms), "--settle-ms", str(settle_ms)], source
        )
        out = self.run_python(prober, argv, timeout=30.0 + count * (timeout_ms + settle_ms) / 1e3)
        return ProbeResult.from_lines(out.splitlines())

    def start_prober(
        self,
        target: str,
        *,
        interval_ms: float = 20.0,
        timeout_ms: float = 100.0,
        source: Host | None = None,
        slots: int = PROBE_SLOTS,
    ) -> Prober:
        """Probe ``target`` every ``interval_ms`` in the background until ``stop()``; for failover gaps.

        The who-has rotate over ``slots`` sender IPs (the host's own, then .240, .241, ... of the lab subnet)
        so an answer arriving after the next probe still counts for the probe it answers. A probe is
        reported once ``min(timeout_ms, slots * interval_ms)`` has passed since it was sent.
        """
        if not 1 <= slots <= PROBE_SLOTS:
            raise ValueError(f"slots: between 1 and {PROBE_SLOTS}")
        extra = ["--interval-ms", str(interval_ms), "--timeout-ms", str(timeout_ms), "--stop-on-eof"]
        prober, argv = self._probe_argv(target, extra, source, slots)
        proc = self.python(
            prober,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Prober(JsonLinesProcess(proc), self)


def terminate(proc: subprocess.Popen[Any], timeout: float = 5.0, *, kill: bool = False) -> None:
    """Stop a process we started (SIGTERM, or SIGKILL with ``kill``; SIGKILL after ``timeout``), close its pipes."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()


# ---- JSON-lines subprocesses ----


class JsonLinesProcess:
    """A subprocess that talks JSON lines: a reader thread collects what it prints; ``send`` writes commands."""

    def __init__(self, proc: subprocess.Popen[Any]) -> None:
        self.proc = proc
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if proc.stderr is not None:
            threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"type": "unparsed", "event": "unparsed", "line": line.rstrip("\n")}
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._events)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0, *, start: int = 0
    ) -> dict[str, Any]:
        """The first event (from position ``start``) matching ``predicate``; TimeoutError with context if none."""
        deadline = time.monotonic() + timeout
        position = start
        with self._cond:
            while True:
                while position < len(self._events):
                    event = self._events[position]
                    position += 1
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise TimeoutError(
                        f"no matching event within {timeout}s; exit code {self.proc.poll()}; "
                        f"events: {self._events[-10:]}; stderr: {self.stderr[-2000:]}"
                    )
                self._cond.wait(min(remaining, 0.2))

    def count(self) -> int:
        with self._cond:
            return len(self._events)

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()

    def wait(self, timeout: float = 5.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code


# ---- probe results ----


@dataclass(frozen=True)
class Reply:
    mac: str
    rtt_ms: float


@dataclass(frozen=True)
class ProbeRecord:
    seq: int
    sent: float
    """CLOCK_MONOTONIC seconds when the who-has left (comparable with time.monotonic() here)."""
    replies: tuple[Reply, ...]

    @property
    def macs(self) -> frozenset[str]:
        return frozenset(r.mac for r in self.replies)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ProbeRecord:
        replies = tuple(Reply(str(r["mac"]), float(r["rtt_ms"])) for r in event["replies"])
        return cls(int(event["seq"]), float(event["sent"]), replies)


@dataclass(frozen=True)
class Garp:
    t: float
    mac: str
    op: str


@dataclass(frozen=True)
class ProbeResult:
    """What a prober saw: one record per who-has, plus gratuitous ARPs about the target."""

    records: tuple[ProbeRecord, ...]
    garps: tuple[Garp, ...] = field(default=())
    prober_mac: str | None = None

    @classmethod
    def from_events(cls, events: Sequence[dict[str, Any]]) -> ProbeResult:
        records, garps, mac = [], [], None
        for e in events:
            if e.get("type") == "probe":
                records.append(ProbeRecord.from_event(e))
            elif e.get("type") == "garp":
                garps.append(Garp(float(e["t"]), e["mac"], e["op"]))
            elif e.get("type") == "ready":
                mac = e.get("mac")
        return cls(tuple(records), tuple(garps), mac)

    @classmethod
    def from_lines(cls, lines: Sequence[str]) -> ProbeResult:
        return cls.from_events([json.loads(line) for line in lines if line.strip()])

    @property
    def sent(self) -> int:
        return len(self.records)

    @property
    def answered(self) -> list[ProbeRecord]:
        return [r for r in self.records if r.replies]

    @property
    def unanswered(self) -> int:
        return sum(1 for r in self.records if not r.replies)

    @property
    def macs(self) -> frozenset[str]:
        return frozenset(m for r in self.records for m in r.macs)

    @property
    def split_brain(self) -> list[ProbeRecord]:
        """Probes answered by more than one MAC."""
        return [r for r in self.records if len(r.macs) > 1]

    def latencies_ms(self) -> list[float]:
        """First-answer latency of every answered probe."""
        return [min(x.rtt_ms for x in r.replies) for r in self.records if r.replies]

    def percentile_ms(self, p: float) -> float:
        values = sorted(self.latencies_ms())
        if not values:
            raise ValueError("no answered probes")
        rank = max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))  # nearest rank
        return values[rank]

    def max_gap_ms(self, since: float | None = None, until: float | None = None) -> float:
        """Longest time between two consecutive answered probes (sent times), within the window."""
        times = [
            r.sent for r in self.answered if (since is None or r.sent >= since) and (until is None or r.sent <= until)
        ]
        if len(times) < 2:
            return float("inf")
        return max(b - a for a, b in itertools.pairwise(times)) * 1e3

    def mac_timeline(self) -> list[tuple[float, frozenset[str]]]:
        """(time, MACs) each time the set of answering MACs changed (unanswered probes skipped)."""
        timeline: list[tuple[float, frozenset[str]]] = []
        for r in self.answered:
            if not timeline or timeline[-1][1] != r.macs:
                timeline.append((r.sent, r.macs))
        return timeline


class Prober:
    """A background prober (``Lab.start_prober``)."""

    def __init__(self, stream: JsonLinesProcess, lab: Lab) -> None:
        self.stream = stream
        self._lab = lab
        ready = stream.wait_for(lambda e: e.get("type") == "ready", timeout=20.0)
        self.mac: str = ready["mac"]

    def result(self) -> ProbeResult:
        """What was seen so far (the prober keeps running)."""
        return ProbeResult.from_events(self.stream.events())

    def wait_until(
        self, predicate: Callable[[ProbeRecord], bool], timeout: float = 5.0, *, after: float | None = None
    ) -> ProbeRecord:
        """The first probe record (sent after monotonic time ``after``, if given) matching ``predicate``."""

        def matches(event: dict[str, Any]) -> bool:
            if event.get("type") != "probe":
                return False
            record = ProbeRecord.from_event(event)
            return (after is None or record.sent >= after) and predicate(record)

        return ProbeRecord.from_event(self.stream.wait_for(matches, timeout))

    def stop(self) -> ProbeResult:
        self.stream.close_stdin()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stream.wait(5.0)
        self._lab.stop_process(self.stream.proc)
        return self.result()


# ---- pytest ----


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """Factory fixture: ``lab = make_lab(nodes=2, subnet="198.18.100.0/24")``; torn down after the test."""
    require_netns()
    labs: list[Lab] = []

    def make(*args: Any, **kwargs: Any) -> Lab:
        lab = Lab(*args, **kwargs)
        labs.append(lab)
        return lab.start()

    try:
        yield make
    finally:
        for lab in reversed(labs):
            lab.close()
