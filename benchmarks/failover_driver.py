"""The failover runs, executed inside the lab's client namespace (started by :mod:`benchmarks.failover`).

    ip netns exec <client-ns> python -m benchmarks.failover_driver --spec FILE

From the client namespace it can reach everything it needs over the lab bridge: it runs the real control
plane (tests/controlplane.py: etcd and kube-controller-manager on the namespace's loopback, kube-apiserver
on the client's own address, port 6443; they inherit this process's namespace), the agents in the node
namespaces (``ip netns exec``) with their ARP speakers on, authenticated as their own user with the agents'
RBAC, and the ARP prober (tests/arpprobe.py) on the client's interface. For every timing
configuration it starts 3 agents and one LoadBalancer Service, then repeatedly kills the agent whose
MAC answers the Service IP (SIGKILL or SIGTERM, alternating), measures the largest gap between answered
probes (every 10 ms) around the kill, restarts that agent and waits until it is healthy again.

Output: JSON lines; ``{"event": "spawned", "pid": ..., "start": ...}`` for every process it starts, the
control plane's included (so the parent can clean up even if this process is killed), ``{"event":
"progress", ...}``, and one ``{"event": "result", "configs": [...]}`` at the end. It stops every process
it started before exiting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.common import AGENT_USER, PYTHON, REPO, ProcessSet, prepare_cluster, python_env, setup_paths

setup_paths()

from netns import JsonLinesProcess, ProbeRecord, ProbeResult  # noqa: E402

from controlplane import ControlPlane  # noqa: E402

METRICS_PORT = 9469
KINDS = ("SIGKILL", "SIGTERM")
API_PORT = 6443


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Driver:
    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.client = spec["client"]
        self.nodes = spec["nodes"]
        self.vips = {"IPv4": spec["vip"], "IPv6": spec["vip6"]}
        self.vip = spec["vip"]  # the one the running configuration probes
        self.procs = ProcessSet()
        self.agents: dict[str, subprocess.Popen[Any]] = {}
        self.mac_to_node = {n["mac"]: n["role"] for n in self.nodes}
        self.core: Any = None
        self.coordination: Any = None
        self.plane: ControlPlane | None = None

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = self.procs.popen(argv, **kwargs)
        emit(event="spawned", pid=proc.pid, start=proc_start(proc.pid))
        return proc

    # ---- the API ----

    def start_api(self) -> None:
        """The control plane in this (the client's) namespace, the API on the client's address."""
        from kubernetes import client

        from l2lb_agent.model.render import API_VERSION, GROUP, POLICY_PLURAL, POOL_PLURAL, VERSION

        # etcd and kube-controller-manager listen on 127.0.0.1 of this namespace (the lab brings lo up).
        subprocess.run(["ip", "-n", self.client["netns"], "link", "set", "lo", "up"], check=True, timeout=10)
        plane = ControlPlane(
            users=[(AGENT_USER, ["l2lb-bench"])],
            host=self.client["ip"],
            port=API_PORT,
            state_dir=self.workdir / "controlplane",
        )
        self.plane = plane
        try:
            plane.start()
        finally:
            for pid in plane.pids().values():
                if pid is not None:
                    emit(event="spawned", pid=pid, start=proc_start(pid))
        self.kubeconfig = str(
            plane.write_kubeconfig(self.workdir / "agents.kubeconfig", plane.token(AGENT_USER), user=AGENT_USER)
        )
        api = prepare_cluster(plane)
        for node in self.nodes:  # registered as kubelets would, so the agents' Node informers see them
            plane.add_node(node["role"], addresses=[node["ip"], node["ip6"]])
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        custom = client.CustomObjectsApi(api)
        pool = {"blocks": [{"cidr": f"{self.vips['IPv4']}/32"}, {"cidr": f"{self.vips['IPv6']}/128"}]}
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            POOL_PLURAL,
            {"apiVersion": API_VERSION, "kind": "LoadBalancerIPPool", "metadata": {"name": "bench"}, "spec": pool},
        )
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            POLICY_PLURAL,
            {
                "apiVersion": API_VERSION,
                "kind": "L2AnnouncementPolicy",
                "metadata": {"name": "lab"},
                "spec": {"interfaces": [f"^{self.client['ifname']}$"]},
            },
        )
        self.core.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {
                    "type": "LoadBalancer",
                    "ports": [{"port": 80, "protocol": "TCP"}],
                    "selector": {"app": "web"},
                    # Both families, one node: each configuration probes one of the two addresses.
                    "ipFamilies": ["IPv4", "IPv6"],
                    "ipFamilyPolicy": "RequireDualStack",
                },
            },
        )

    def controller(self) -> str:
        lease = json.loads(
            self.coordination.read_namespaced_lease("l2lb-controller", "l2lb-system", _preload_content=False).data
        )
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    # ---- agents ----

    def agent_config(self, node: dict[str, Any], timing: dict[str, float]) -> Path:
        import yaml

        config = {
            "node_name": node["role"],
            "kubeconfig": self.kubeconfig,
            "heartbeat": {"renew_interval": timing["renew"], "lease_duration": timing["duration"]},
            "controller": {"renew_interval": timing["renew"], "lease_duration": timing["duration"]},
            "speaker": {"enabled": True, "interfaces": [f"^{node['ifname']}$"]},
            "metrics_address": f"{node['ip']}:{METRICS_PORT}",
            "drain_timeout": 10,
            "log_level": "info",
        }
        path = self.workdir / f"{node['role']}-{timing['name']}.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start_agent(self, node: dict[str, Any], timing: dict[str, float]) -> None:
        config = self.agent_config(node, timing)
        logfile = open(self.workdir / f"{node['role']}.log", "ab")  # noqa: SIM115 (owned by the process)
        argv = ["ip", "netns", "exec", node["netns"], PYTHON, "-m", "l2lb_agent", "run", "--config", str(config)]
        self.agents[node["role"]] = self.spawn(
            argv, stdout=logfile, stderr=subprocess.STDOUT, env=python_env(), cwd=str(REPO)
        )
        logfile.close()

    def healthz(self, node: dict[str, Any]) -> tuple[int, str] | None:
        url = f"http://{node['ip']}:{METRICS_PORT}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return None

    def wait_healthy(self, nodes: Sequence[dict[str, Any]], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        while pending:
            pending = [n for n in pending if not ((h := self.healthz(n)) and h[0] == 200 and h[1].startswith("ok"))]
            if not pending:
                return
            for n in pending:
                proc = self.agents[n["role"]]
                if proc.poll() is not None:
                    raise RuntimeError(f"agent {n['role']} exited with {proc.returncode}: {self.log_tail(n)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents not healthy within {timeout}s: {[n['role'] for n in pending]}")
            time.sleep(0.1)

    def log_tail(self, node: dict[str, Any], lines: int = 15) -> str:
        path = self.workdir / f"{node['role']}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop_agents(self) -> None:
        for role, proc in list(self.agents.items()):
            self.procs.stop(proc, kill=True)
            del self.agents[role]

    # ---- the prober ----

    def start_prober(self, interval_ms: float) -> JsonLinesProcess:
        slots = 16
        argv = [PYTHON, "-m", "arpprobe", "--iface", self.client["ifname"], "--target", self.vip]
        if ":" in self.vip:
            base6 = self.client["ip6"].rsplit(":", 1)[0]
            argv += ["--src-ip", self.client["ip6"], *(f"--src-ip={base6}:{0x240 + i:x}" for i in range(slots - 1))]
        else:
            argv += ["--src-ip", self.client["ip"]]
            base = self.client["ip"].rsplit(".", 1)[0]
            for i in range(slots - 1):
                argv += ["--src-ip", f"{base}.{240 + i}"]
        argv += ["--interval-ms", str(interval_ms), "--timeout-ms", "100", "--stop-on-eof"]
        proc = self.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stream = JsonLinesProcess(proc)
        stream.wait_for(lambda e: e.get("type") == "ready", timeout=30.0)
        return stream

    @staticmethod
    def records(stream: JsonLinesProcess, start: int = 0) -> list[ProbeRecord]:
        return [ProbeRecord.from_event(e) for e in stream.events()[start:] if e.get("type") == "probe"]

    def steady_announcer(self, stream: JsonLinesProcess, timeout: float = 30.0) -> str:
        """The node whose MAC alone answered every probe of the last 0.5 s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = time.monotonic()
            recent = [r for r in self.records(stream, max(0, stream.count() - 200)) if now - r.sent < 0.6]
            window = [r for r in recent if now - r.sent > 0.1]
            if len(window) >= 30 and all(len(r.macs) == 1 for r in window):
                macs = {m for r in window for m in r.macs}
                if len(macs) == 1:
                    mac = next(iter(macs))
                    if mac in self.mac_to_node:
                        return self.mac_to_node[mac]
        raise RuntimeError(f"no single node answered {self.vip} steadily within {timeout}s")

    # ---- one failover ----

    def restart(self, role: str, timing: dict[str, Any]) -> None:
        """Stop one agent gracefully and start it again (moves what it held; not measured)."""
        node = next(n for n in self.nodes if n["role"] == role)
        proc = self.agents[role]
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30.0)
        self.procs.stop(proc, kill=True)
        self.start_agent(node, timing)
        self.wait_healthy([node])

    def failover(self, stream: JsonLinesProcess, kind: str, timing: dict[str, Any], victim: str) -> dict[str, Any]:
        node = next(n for n in self.nodes if n["role"] == victim)
        was_controller = self.controller() == victim
        start_index = stream.count()
        time.sleep(0.3)  # a stretch of answered probes before the kill
        killed_at = time.monotonic()
        self.agents[victim].send_signal(signal.SIGKILL if kind == "SIGKILL" else signal.SIGTERM)
        old_mac = node["mac"]
        deadline = killed_at + 30.0
        recovered: ProbeRecord | None = None
        while time.monotonic() < deadline and recovered is None:
            time.sleep(0.05)
            for record in self.records(stream, start_index):
                if record.sent > killed_at and record.replies and old_mac not in record.macs:
                    recovered = record
                    break
        if recovered is None:
            raise RuntimeError(f"{kind} of {victim}: nobody else answered {self.vip} within 30s")
        time.sleep(0.3)  # the probes just after the recovery
        records = self.records(stream, start_index)
        window = [r for r in records if killed_at - 0.3 <= r.sent <= recovered.sent + 0.2]
        result = ProbeResult(tuple(window))
        gap = result.max_gap_ms()
        double = len(result.split_brain)
        # The agent exits by itself after SIGTERM (drain); after SIGKILL it is gone already.
        proc = self.agents[victim]
        try:
            code = proc.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc, kill=True)
            code = None
        self.procs.stop(proc)
        self.start_agent(node, timing)
        self.wait_healthy([node])
        return {
            "kind": kind,
            "victim": victim,
            "was_controller": was_controller,
            "gap_ms": round(gap, 1),
            "new_node": self.mac_to_node.get(next(iter(recovered.macs)), "?"),
            "recovered_after_ms": round((recovered.sent - killed_at) * 1e3, 1),
            "double_answers": double,
            "exit_code": code,
        }

    def run_config(self, timing: dict[str, Any], runs: int) -> dict[str, Any]:
        self.vip = self.vips[timing.get("family", "IPv4")]
        for node in self.nodes:
            self.start_agent(node, timing)
        self.wait_healthy(self.nodes)
        stream = self.start_prober(self.spec["interval_ms"])
        results: list[dict[str, Any]] = []
        # Half the runs of each kind kill a node that is both announcing and the controller (the worst
        # case: the controller must be replaced before anything moves), half one that only announces.
        # When the cluster is not in a state the remaining runs need, restart an agent gracefully (not
        # measured) to move the controller or the IP, up to a bound (no balancing for a single run).
        want = {(kind, ctrl): n for kind in KINDS for ctrl, n in ((True, runs // 2), (False, runs - runs // 2))}
        max_shuffles = 4 * runs if runs >= 2 else 0
        shuffles, last_kind = 0, ""
        try:
            self.steady_announcer(stream, timeout=60.0)
            while any(want.values()):
                announcer = self.steady_announcer(stream)
                controller = self.controller()
                if controller not in self.agents:  # between two controllers: look again in a moment
                    time.sleep(0.2)
                    continue
                ctrl = controller == announcer
                options = [k for k in KINDS if want[(k, ctrl)] > 0]
                if not options:
                    if shuffles < max_shuffles:
                        shuffles += 1
                        self.restart(announcer if ctrl else controller, timing)
                        continue
                    options = [k for k in KINDS if want[(k, not ctrl)] > 0]
                kind = next((k for k in options if k != last_kind), options[0])
                result = self.failover(stream, kind, timing, announcer)
                key = (kind, result["was_controller"])
                if want[key] == 0:
                    key = (kind, not result["was_controller"])
                want[key] -= 1
                last_kind = kind
                results.append(result)
                emit(event="progress", config=timing["name"], run=len(results), of=2 * runs, **result)
        finally:
            stream.close_stdin()
            self.procs.stop(stream.proc)
            self.stop_agents()
        return {"timing": timing, "runs": results, "shuffles": shuffles}

    def close(self) -> None:
        self.procs.close()
        if self.plane is not None:
            self.plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.failover_driver")
    parser.add_argument("--spec", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    driver = Driver(spec, Path(spec["workdir"]))
    try:
        driver.start_api()
        configs = [driver.run_config(timing, spec["runs"]) for timing in spec["timings"]]
        emit(event="result", configs=configs)
    except Exception as exc:
        emit(event="error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        # A SIGTERM now must not cut the cleanup short: the control plane's components are not our
        # ProcessSet's (no parent-death signal) and would be left to the parent's SIGKILL.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
