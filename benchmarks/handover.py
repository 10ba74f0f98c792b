"""Table 6 — the IP follows the endpoints: what a client sees when the last local endpoint of an
``externalTrafficPolicy: Local`` Service goes away from the announcing node while another node has one.

On the lab (tests/lab/lab.py: real kube-proxy in every node, backends in EndpointSlices), after site.yml and the
demo Services. Each run: lab-local has one ready backend on the announcing worker and one on the other worker
(the IP stays put: assignments are sticky); the first is removed, the agents move the IP to the other worker.
The client connects every 10 ms (tests/tcpprobe.py, 50 ms timeout) and asks ARP every 10 ms
(tests/arpprobe.py) meanwhile. Two ways to remove a backend:

- graceful: its Pod deleted with a 2 s grace period, the way a kubelet drains one (the endpoint turns
  terminating, kube-proxy keeps serving it on that node while no ready local endpoint is left there), then the
  process stopped;
- abrupt: the process stopped first (a crash), then its Pod deleted.

Runs alternate direction (worker A -> B, then B -> A). The lab is brought up (and taken down again) when it is
down; a lab that is up is used as it is, with site.yml and the demo Services applied when lab-local has no
announcing node yet.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.ansible_run import LAB, ansible_env, ensure_collection_link, lab_status
from benchmarks.common import PYTHON, REPO, Table, log, percentile

SERVICE, NAMESPACE, APP = "lab-local", "default", "lab-local"
WORKERS = ("l2lb-node2", "l2lb-node3")
CLIENT_NS, CLIENT_IF = "l2lb-lab-client", "l2lb0"
ANNOUNCING = "l2lb.io/announcing-node"
RUNS = {"smoke": 1, "full": 10}  # per way of removal
GRACE_SECONDS = 2


def lab(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([*LAB, *args], capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    if proc.returncode != 0:
        raise RuntimeError(f"lab.py {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


class Probe:
    """A JSON-lines prober (tests/arpprobe.py, tests/tcpprobe.py) in the client namespace. Its stdout is read
    as it comes, by a thread: at 100 lines a second a pipe left unread fills in seconds, and the prober then
    blocks on its write and stops probing, which would show up as silence that is not there."""

    def __init__(self, module: str, *args: str) -> None:
        argv = ["ip", "netns", "exec", CLIENT_NS, "env", f"PYTHONPATH={REPO / 'tests'}", PYTHON, "-m", module, *args]
        self.module = module
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        if '"ready"' not in self.proc.stdout.readline():
            self.proc.kill()
            raise RuntimeError(f"{module} did not start: {self.proc.communicate(timeout=10)[1][-500:]}")
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self) -> list[dict[str, Any]]:
        """Stop it (end of stdin) and return its probe events."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        return [e for e in (json.loads(line) for line in self.lines) if e.get("type") == "probe"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def longest_gap(marks: list[float], start: float, end: float) -> float:
    """The longest time without an answer between ``start`` and ``end`` (seconds)."""
    points = [start, *sorted(m for m in marks if start <= m <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


class Lab:
    def __init__(self) -> None:
        from kubernetes import client, config

        state = json.loads(lab("status", "--json"))
        self.api = config.new_client_from_config(config_file=state["api"]["kubeconfig"])
        self.core = client.CoreV1Api(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)

    def holder(self) -> str:
        """The worker announcing lab-local; "" when it has none, or when the demo Services are not there yet."""
        found = self.core.list_namespaced_service(NAMESPACE, field_selector=f"metadata.name={SERVICE}").items
        return str((found[0].metadata.annotations or {}).get(ANNOUNCING, "")) if found else ""

    def endpoint_nodes(self) -> set[str]:
        slices = self.discovery.list_namespaced_endpoint_slice(
            NAMESPACE, label_selector=f"kubernetes.io/service-name={SERVICE}"
        )
        return {e.node_name for s in slices.items for e in s.endpoints or [] if e.conditions.ready}

    def wait(self, what: str, check: Any, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.02)
        return time.monotonic()


def one_run(cluster: Lab, graceful: bool) -> dict[str, float]:
    old = cluster.holder()
    new = next(w for w in WORKERS if w != old)
    lab("backend", "scale", APP, new, "1")
    cluster.wait(f"ready {APP} endpoints on {old} and {new}", lambda: cluster.endpoint_nodes() == {old, new})
    (victim,) = [
        b["name"] for b in json.loads(lab("backend", "list", "--json")) if b["app"] == APP and b["node"] == old
    ]
    ip = str(cluster.core.read_namespaced_service(SERVICE, NAMESPACE).status.load_balancer.ingress[0].ip)
    with ExitStack() as stack:
        arp = Probe("arpprobe", "--iface", CLIENT_IF, "--target", ip, "--interval-ms", "10", "--stop-on-eof")
        stack.callback(arp.kill)
        tcp = Probe("tcpprobe", "--target", ip, "--port", "80", "--interval-ms", "10", "--timeout-ms", "50",
                    "--stop-on-eof")  # fmt: skip
        stack.callback(tcp.kill)
        time.sleep(0.5)
        start = time.monotonic()
        # In the background: with a grace period the command itself lasts that long (the Pod terminating).
        removal = subprocess.Popen(
            [*LAB, "backend", "remove", victim, *(["--grace", str(GRACE_SECONDS)] if graceful else [])],
            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stack.callback(lambda: removal.poll() is None and removal.kill())
        moved = cluster.wait(f"{SERVICE} to move to {new}", lambda: cluster.holder() == new)
        _, errors = removal.communicate(timeout=120)
        if removal.returncode != 0:
            raise RuntimeError(f"lab.py backend remove {victim} failed: {errors.strip()[-1000:]}")
        time.sleep(1.0)
        end = time.monotonic()
        arp_events, tcp_events = arp.events(), tcp.events()
    answered_tcp = [e["sent"] for e in tcp_events if e["ok"]]
    answered_arp = [e["sent"] for e in arp_events if e["replies"]]
    if not any(e["ok"] and e["answer"].endswith(f"@{new}") for e in tcp_events):
        raise RuntimeError(f"{SERVICE} was never served from {new} during the run")
    return {
        "tcp_outage_ms": longest_gap(answered_tcp, start, end) * 1000,
        "arp_silence_ms": longest_gap(answered_arp, start, end) * 1000,
        "moved_ms": (moved - start) * 1000,
        "failed": sum(1 for e in tcp_events if not e["ok"] and start <= e["sent"] <= end),
    }


def run(size_name: str, workdir: Path) -> Table:
    table = Table(
        key="handover",
        title="6. Endpoint handover: the last local endpoint of an externalTrafficPolicy: Local Service removed "
        "(lab, real kube-proxy)",
        columns=[
            "removal",
            "runs",
            "TCP outage p50 ms",
            "TCP outage p95 ms",
            "TCP outage max ms",
            "failed connections (all runs)",
            "ARP silence max ms",
            "IP moved after p50 ms (API)",
        ],
        goal="graceful removal: no client-visible outage beyond one probe interval (p95 <= 100 ms)",
    )
    if os.geteuid() != 0:
        table.verdict = "not measured: the lab needs root"
        return table
    ensure_collection_link()
    status, data = lab_status()
    if [p for p in data.get("problems", []) if "a lab is up with state dir" in p]:
        table.verdict = "not measured: the lab is in use by another checkout"
        return table
    brought_up = status != 0
    cluster: Lab | None = None
    try:
        if brought_up:
            log("handover: bringing the lab up")
            lab("up", timeout=900)
        cluster = Lab()
        if not cluster.holder():
            log("handover: site.yml and the demo Services")
            for playbook in ("site.yml", "tests/lab/demo_services.yml"):
                argv = [str(Path(PYTHON).parent / "ansible-playbook"), "-i", "inventory/lab", playbook]
                done = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), env=ansible_env(),
                                      timeout=1200, check=False)  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(f"{playbook} failed: {done.stdout[-2000:]}")
        results: dict[str, list[dict[str, float]]] = {"graceful": [], "abrupt": []}
        for mode in results:
            for index in range(RUNS[size_name]):
                result = one_run(cluster, graceful=mode == "graceful")
                log(f"handover: {mode} run {index + 1}: TCP outage {result['tcp_outage_ms']:.0f} ms, ARP silence "
                    f"{result['arp_silence_ms']:.0f} ms, IP moved after {result['moved_ms']:.0f} ms")  # fmt: skip
                results[mode].append(result)
        for mode, runs in results.items():
            tcp = [r["tcp_outage_ms"] for r in runs]
            table.add(
                f"{mode} (Pod deleted with {GRACE_SECONDS} s grace, then stopped)" if mode == "graceful"
                else "abrupt (process stopped, then Pod deleted)",
                len(runs), f"{percentile(tcp, 50):.0f}", f"{percentile(tcp, 95):.0f}", f"{max(tcp):.0f}",
                sum(int(r["failed"]) for r in runs), f"{max(r['arp_silence_ms'] for r in runs):.0f}",
                f"{percentile([r['moved_ms'] for r in runs], 50):.0f}",
            )  # fmt: skip
        p95 = percentile([r["tcp_outage_ms"] for r in results["graceful"]], 95)
        table.verdict = f"graceful p95 {p95:.0f} ms: {'met' if p95 <= 100 else 'missed'} (goal 100 ms)"
    finally:
        try:
            if cluster is not None:
                cluster.api.close()
                # Back to the demo layout: lab-local's one backend on l2lb-node3.
                lab("backend", "scale", APP, "l2lb-node3", "1")
                lab("backend", "scale", APP, "l2lb-node2", "0")
        except Exception as exc:  # never hide the run's own error, never skip `down`
            log(f"handover: restoring lab-local's backends failed: {exc}")
        finally:
            if brought_up:
                lab("down")
    table.notes.append(
        "TCP outage: the longest time between two answered connections (one every 10 ms, 50 ms timeout) from "
        "the removal until 1 s after the IP moved; ARP silence likewise for who-has every 10 ms. 'IP moved "
        "after': from the start of the removal (the `lab.py backend remove` command, about 0.6 s of it Python "
        "start-up before the Pod is deleted) until the Service's announcing-node annotation names the other worker."
    )
    return table
