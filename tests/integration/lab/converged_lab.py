"""The lab after site.yml and the demo Services (`make lab`'s state), shared by the modules that break it.

One converged lab per test package (``converged`` in conftest.py): converging takes about two minutes, and
every scenario starts from a serving lab and must leave one behind (``lab_``).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from lab_harness import Lab, lab

NAMESPACE = "default"
ECHO = "lab-echo"
ECHO_IP = "198.18.0.241"
LOCAL = "lab-local"  # externalTrafficPolicy: Local, its one backend on l2lb-node3
DUAL = "lab-dual"  # PreferDualStack: an IPv4 and an IPv6 address, on one node
DEMO = ("lab-echo", "lab-dns-tcp", "lab-dns-udp", LOCAL, DUAL)
WORKERS = ("l2lb-node2", "l2lb-node3")
WORKER_LABEL = "node-role.kubernetes.io/worker"
ANNOUNCING_NODE = "l2lb.io/announcing-node"
AGENT_PYTHON = "/opt/l2lb/venv/bin/python"
DIAG_NS = "l2lb-diag"
POLICY = ("l2lb.io", "v1alpha1", "l2announcementpolicies", "workers")
POOL6 = ("l2lb.io", "v1alpha1", "loadbalancerippools", "lab-v6")
NODE_BY_NAME = {node.name: node for node in lab.NODES}


@dataclass
class Report:
    text: str

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def row(self, service: str, ip: str = "") -> str:
        """The table row of a service (and IP) and its diagnosis line, if any."""
        for index, line in enumerate(self.lines):
            cells = line.split()
            if cells and cells[0] == service and (not ip or cells[1] == ip):
                following = self.lines[index + 1] if index + 1 < len(self.lines) else ""
                return line + ("\n" + following if following.lstrip().startswith("->") else "")
        raise AssertionError(f"no row for {service} {ip} in the report:\n{self.text}")

    def diagnosis(self, service: str, ip: str = "") -> str:
        row = self.row(service, ip)
        assert row.split("\n")[0].rstrip().endswith("FAIL"), f"{service} should FAIL:\n{self.text}"
        return row.split("->", 1)[1].strip()


class Converged:
    """The lab after site.yml and the demo Services, with what the scenarios need to break and mend it."""

    def __init__(self, running: Lab, workdir: Path) -> None:
        self.lab = running
        self.workdir = workdir
        self.api = config.new_client_from_config(config_file=running.state["api"]["kubeconfig"])
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.runs = 0

    # -- verify.yml -----------------------------------------------------------------------------

    def verify(self, namespace: str = NAMESPACE) -> Report:
        self.runs += 1
        report_file = self.workdir / f"report-{self.runs:02d}.txt"
        proc = self.lab.playbook(
            "verify.yml",
            "-e",
            "verify_fail_on_problems=false",
            "-e",
            f"verify_report_file={report_file}",
            "-e",
            f"verify_service_namespace={namespace}",
            timeout=300,
        )
        assert proc.returncode == 0, f"verify.yml failed itself:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        report = Report(report_file.read_text())
        print(f"\n{report.text}")
        return report

    # -- the API --------------------------------------------------------------------------------

    def holder(self, name: str = ECHO, namespace: str = NAMESPACE) -> str:
        service = self.core.read_namespaced_service(name, namespace)
        return (service.metadata.annotations or {}).get(ANNOUNCING_NODE, "")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.3)

    def ip(self, name: str, namespace: str = NAMESPACE) -> str:
        found = self.ips(name, namespace)
        return found[0] if found else ""

    def ips(self, name: str, namespace: str = NAMESPACE) -> list[str]:
        """Every ingress IP of the Service, in status order (IPv4 first for the dual-stack demo Service)."""
        service = self.core.read_namespaced_service(name, namespace)
        ingress = (service.status.load_balancer.ingress or []) if service.status.load_balancer else []
        return [str(entry.ip) for entry in ingress]

    def serving(self) -> bool:
        """Every demo Service assigned to a worker; lab-echo's IP answered through kube-proxy by a lab-echo
        backend, lab-local's by a backend on the node that announces it."""
        holders = {name: self.holder(name) for name in DEMO}
        if not all(holder in WORKERS for holder in holders.values()):
            return False
        try:
            echo, _ = lab.backend_from_client(ECHO_IP, 80)
            local, _ = lab.backend_from_client(self.ip(LOCAL), 80)
        except lab.LabError:
            return False
        return echo.startswith(f"{ECHO}-") and local.startswith(f"{LOCAL}-") and local.endswith(f"@{holders[LOCAL]}")

    def wait_serving(self, timeout: float = 45) -> None:
        self.wait_for("the demo Services to be served by their assigned worker again", self.serving, timeout)

    # -- the lab --------------------------------------------------------------------------------

    def lab_cli(self, *args: str) -> str:
        """`lab.py <args>` on this lab (backends, kube-proxy mode); its stdout."""
        proc = self.lab.cli(*args, timeout=180)
        assert proc.returncode == 0, f"lab.py {' '.join(args)} failed:\n{proc.stderr}"
        return proc.stdout

    def backends(self) -> list[dict[str, Any]]:
        return list(json.loads(self.lab_cli("backend", "list", "--json")))

    def in_node(self, node: str, *cmd: str) -> str:
        return self.lab.in_node(node, *cmd)

    def other_worker(self, node: str) -> str:
        return next(worker for worker in WORKERS if worker != node)

    def forget_neighbour(self, ip: str) -> None:
        """Drop the client's ARP cache entry so the next connection asks the wire again."""
        lab.run(["ip", "-n", lab.CLIENT_NS, "neigh", "flush", "to", ip, "dev", lab.CLIENT_IF], check=False)

    @contextmanager
    def rogue_speaker(self, node: str, ip: str) -> Iterator[None]:
        """The agent's own ARP responder, run by hand on ``node``, answering for ``ip`` (until stdin closes)."""
        cmd = [AGENT_PYTHON, "-m", "l2lb_agent.speaker.runner", "--iface", "host0", "--ip", ip, "--control"]
        proc = start_ready(lab.in_node(self.lab.init_pid(node), cmd), f"rogue speaker on {node}", subprocess.DEVNULL)
        try:
            yield
        finally:
            assert proc.stdin is not None
            proc.stdin.close()  # --control: end of input stops it cleanly
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            self.forget_neighbour(ip)

    @contextmanager
    def arp_dropped(self, node: str, ip: str) -> Iterator[None]:
        """Drop the ARP frames ``node`` sends about ``ip`` where they enter the lab bridge (its veth port)."""
        rule = ["FORWARD", "-i", NODE_BY_NAME[node].veth, "-p", "ARP", "--arp-ip-src", ip, "-j", "DROP"]
        lab.run(["ebtables-nft", "-A", *rule])
        try:
            yield
        finally:
            lab.run(["ebtables-nft", "-D", *rule])
            self.forget_neighbour(ip)

    @contextmanager
    def agents_frozen(self) -> Iterator[None]:
        nodes = [node.name for node in lab.NODES]
        try:
            for node in nodes:
                self.in_node(node, "systemctl", "kill", "--signal=SIGSTOP", "l2lb-agent.service")
            yield
        finally:
            for node in nodes:
                self.in_node(node, "systemctl", "kill", "--signal=SIGCONT", "l2lb-agent.service")


def undo_all(*steps: Callable[[], object]) -> None:
    """Run every repair step even when one fails (later tests need them all), then raise the first failure."""
    errors: list[BaseException] = []
    for step in steps:
        try:
            step()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


# -- watching the Service IPs from the client while something breaks ---------------------------------


def start_ready(cmd: list[str], what: str, stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start a JSON-lines helper (arpprobe, tcpprobe, the agent's responder) and wait for its "ready" line."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    if '"ready"' not in ready:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"{what} did not start: {ready!r}")
    return proc


class JsonLines:
    """A JSON-lines prober started with :func:`start_ready` whose output is read as it comes, by threads: a pipe
    left unread fills within seconds at these rates, and the prober then blocks and stops probing."""

    def __init__(self, cmd: list[str], what: str) -> None:
        self.proc = start_ready(cmd, what)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.readers = [
            threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or []), daemon=True),
            threading.Thread(target=lambda: self.errors.extend(self.proc.stderr or []), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def stop(self) -> list[dict[str, Any]]:
        """End of stdin stops it; every event it wrote."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        for reader in self.readers:
            reader.join(10)
        return [json.loads(line) for line in self.lines if line.strip()]


PROBE_INTERVAL_MS = 50


@dataclass
class ArpRecord:
    """What the client saw for one Service IP: every probe's send time and the MACs that answered it."""

    ip: str
    probes: list[tuple[float, list[str]]]

    @property
    def answered(self) -> list[float]:
        return [sent for sent, macs in self.probes if macs]

    def macs(self) -> set[str]:
        return {mac for _, macs in self.probes for mac in macs}

    def longest_silence(self) -> float:
        """Seconds between two answered probes (or from the first probe / to the last one), the longest."""
        if not self.probes:
            return float("inf")
        marks = [self.probes[0][0], *self.answered, self.probes[-1][0]]
        return max(b - a for a, b in itertools.pairwise(marks))

    def summary(self) -> str:
        return (
            f"{self.ip}: {len(self.answered)}/{len(self.probes)} probes answered, "
            f"longest silence {self.longest_silence() * 1000:.0f} ms, MACs {sorted(self.macs())}"
        )


@contextmanager
def arp_watch(ips: list[str], records: dict[str, ArpRecord]) -> Iterator[None]:
    """Probe each IP from the client every 50 ms (tests/arpprobe.py: ARP, or NDP for IPv6) for the block's duration."""
    probers: dict[str, JsonLines] = {}
    env_cmd = ["env", f"PYTHONPATH={lab.REPO / 'tests'}"]
    try:
        for ip in ips:
            argv = [*env_cmd, lab.lab_python(), "-m", "arpprobe", "--iface", lab.CLIENT_IF, "--target", ip]
            argv += ["--interval-ms", str(PROBE_INTERVAL_MS), "--stop-on-eof"]
            if ":" in ip:  # NDP: the solicitation's source is the client's IPv6 address
                argv += ["--src-ip", lab.CLIENT_IP6]
            probers[ip] = JsonLines(lab.in_client(argv), f"arpprobe for {ip}")
        yield
    finally:
        for ip, prober in probers.items():
            probes = [
                (float(event["sent"]), [reply["mac"] for reply in event["replies"]])
                for event in prober.stop()
                if event.get("type") == "probe"
            ]
            records[ip] = ArpRecord(ip, probes)


@dataclass
class TcpRecord:
    """What the client saw connecting to one Service IP again and again: (sent, ok, first line answered)."""

    target: str
    probes: list[tuple[float, bool, str]]

    def longest_outage(self) -> float:
        """Seconds from the last answered connection before a run of failures to the first one after it."""
        answered = [sent for sent, ok, _ in self.probes if ok]
        if not answered:
            return float("inf")
        marks = [self.probes[0][0], *answered, self.probes[-1][0]]
        return max(b - a for a, b in itertools.pairwise(marks))

    def answers(self) -> list[str]:
        return [answer for _, ok, answer in self.probes if ok]

    def summary(self) -> str:
        failed = sum(1 for _, ok, _ in self.probes if not ok)
        return (
            f"{self.target}: {len(self.probes)} connections, {failed} failed, longest outage "
            f"{self.longest_outage() * 1000:.0f} ms, answered by {sorted(set(self.answers()))}"
        )


@contextmanager
def tcp_watch(ip: str, port: int, records: dict[str, TcpRecord], interval_ms: int = 20) -> Iterator[None]:
    """Connect to ``ip:port`` from the client every ``interval_ms`` (tests/tcpprobe.py) during the block."""
    argv = ["env", f"PYTHONPATH={lab.REPO / 'tests'}", lab.lab_python(), "-m", "tcpprobe", "--target", ip]
    argv += ["--port", str(port), "--interval-ms", str(interval_ms), "--stop-on-eof"]
    prober = JsonLines(lab.in_client(argv), f"tcpprobe for {ip}")
    try:
        yield
    finally:
        probes = [
            (float(event["sent"]), bool(event["ok"]), str(event["answer"]))
            for event in prober.stop()
            if event.get("type") == "probe"
        ]
        records[f"{ip}:{port}"] = TcpRecord(f"{ip}:{port}", probes)
