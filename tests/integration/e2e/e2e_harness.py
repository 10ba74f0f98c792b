"""The end-to-end lab: real agent processes in node namespaces, a real control plane on the lab network.

Layout (one lab per test module, see ``conftest.py``)::

    bridge namespace  l2lb-br with 198.18.120.1/23: etcd, kube-apiserver v1.37.2 and kube-controller-manager
                      (``tests/controlplane.py``, built by ``make components``) run here; kube-apiserver
                      listens on 198.18.120.1:6443, so every node reaches the API over the lab network —
                      the same wire as ARP; etcd and the controller manager use this namespace's loopback
    node1..node3      one agent process each (``python -m l2lb_agent run``), interface l2lb0 (.11-.13 and
                      2001:2:0:120::11-13), registered as Nodes (labels, InternalIPs, Ready) as a kubelet would
    node4             no agent: a bystander "station" that probes when the client itself must stay silent
    client            198.18.120.2 and 2001:2:0:120::2, arp_accept=1, probes with scapy (tests/arpprobe.py)

The lab is dual stack (IPv6 on 2001:2:0:120::/64, RFC 5180's benchmarking prefix; the API stays on IPv4), and
so is the control plane's Service range: a Service asks for its families with ``service(..., families=...)``.

The control-plane processes are started from this test process with the calling thread inside the bridge
namespace (``in_netns``), so they live there; so do the calls that talk to them directly (start, stop,
the API outage's ``stop_apiserver``/``start_apiserver`` and their readiness waits, ``add_node``). The
agents authenticate as their own static-token user (``AGENT_USER``, in ``system:masters``), so
``plane.counter(user=AGENT_USER)`` counts their requests only (kube-apiserver's audit log), not the
controller manager's nor the test's. The test's own API client (admin) reaches kube-apiserver through a
small TCP relay on 127.0.0.1, so nothing is added to the host's network. Logs (agents, control plane,
audit log) stay in the module's work directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from agent_harness import NAMESPACE, Kube, eventually
from kubernetes import client
from netns import Host, JsonLinesProcess, Lab, ProbeResult

from controlplane import ControlPlane, RequestCounter
from l2lb_agent.model.model import build_model
from l2lb_agent.model.render import GROUP, POLICY_PLURAL, POOL_PLURAL, VERSION, render_policy, render_pool

REPO = Path(__file__).resolve().parents[3]
AGENT_PATH = REPO / "files" / "l2lb_agent"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
ARPWATCH = Path(__file__).resolve().parent / "arpwatch.py"

SUBNET = "198.18.120.0/23"
SUBNET6 = "2001:2:0:120::/64"
API_PORT = 6443
NODES = ("node1", "node2", "node3")
LAN_POOL = ("198.18.120.100", "198.18.120.139")  # the default pool: Services without an e2e-pool label
LAN_POOL6 = ("2001:2:0:120::100", "2001:2:0:120::13f")  # ... its IPv6 block
BULK_POOL = "198.18.121.0/24"  # Services labelled e2e-pool=bulk (200-Service tests)
POOL_LABEL = "e2e-pool"
NO_POLICY_LABEL = "e2e-no-policy"  # Services with this label are selected by no announcement policy
RENEW_INTERVAL = 0.5  # the agent defaults the contract names (renew every 0.5 s, duration 2 s)
LEASE_DURATION = 2.0
# Static-token users of the control plane: the agents (all of them, so that their requests can be counted
# apart from the controller manager's and the test's own) and a namespace user with no rights of its own.
AGENT_USER = "l2lb-e2e-agent"
NAMESPACE_USER = "alice"
NAMESPACE_USER_GROUP = "l2lb-e2e-team"
NAMESPACE_GONE_TIMEOUT = 120.0  # the namespace controller empties a deleted namespace asynchronously

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# ---- namespaces from inside this process ----


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with the *calling thread* in network namespace ``name`` (sockets opened there stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {name}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back from {name}: {os.strerror(err)}")
    finally:
        os.close(own)


def http_get(netns: str, url: str, timeout: float = 1.0, method: str = "GET") -> tuple[int, str] | None:
    """GET (or ``method``) ``url`` from inside ``netns`` (no proxies); (status, body) or None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with in_netns(netns):
        try:
            with opener.open(urllib.request.Request(url, method=method), timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return None


class TcpRelay:
    """127.0.0.1:<port> here -> ``host:port`` inside ``netns``: the test's own API client reaches the lab API."""

    def __init__(self, netns: str, host: str, port: int) -> None:
        self.netns, self.host, self.target_port = netns, host, port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._stopping = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="e2e-relay", daemon=True).start()

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with in_netns(self.netns):
                upstream = socket.create_connection((self.host, self.target_port), timeout=5.0)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.update((conn, upstream))
        finished = [0]

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                finished[0] += 1
                last = finished[0] == 2
                if last:
                    self._sockets.difference_update((src, dst))
            if last:  # both directions ended: close both ends
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.close()

        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)


# ---- agent processes ----


def _agent_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(AGENT_PATH)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class AgentProcess:
    """One node's agent as systemd would run it: ``python -m l2lb_agent run --config FILE`` in its namespace."""

    def __init__(self, lab: Lab, host: Host, name: str, workdir: Path, kubeconfig: Path) -> None:
        self.lab = lab
        self.host = host
        self.name = name
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.log_path = workdir / f"{name}.log"
        self.config_path = workdir / f"{name}.yml"
        self.proc: subprocess.Popen[Any] | None = None
        self.overrides: dict[str, Any] = {}
        self.debug_hooks = False
        self.agent_path: Path | None = None
        self.starts = 0

    @property
    def mac(self) -> str:
        return self.host.mac

    def config(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "node_name": self.name,
            "kubeconfig": str(self.kubeconfig),
            "namespace": NAMESPACE,
            "heartbeat": {"renew_interval": RENEW_INTERVAL, "lease_duration": LEASE_DURATION},
            "controller": {"renew_interval": RENEW_INTERVAL, "lease_duration": LEASE_DURATION},
            "speaker": {"interfaces": ["^l2lb0$"]},
            "drain_timeout": 10,
            "metrics_address": "127.0.0.1:9469",
            "log_level": "info",
            "log_format": "text",
        }
        for key, value in self.overrides.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return base

    def start(self, *, debug_hooks: bool = False, agent_path: Path | None = None, **overrides: Any) -> None:
        """Start with the default config plus ``overrides`` (merged one level deep).

        ``debug_hooks``: with ``L2LB_AGENT_DEBUG_HOOKS=1`` (``POST /debug/kill``, see :meth:`kill_thread`).
        ``agent_path``: run another version of the agent (the directory holding its ``l2lb_agent`` package).
        """
        assert not self.running, f"{self.name}: already running"
        self.overrides = overrides
        self.debug_hooks = debug_hooks
        self.agent_path = agent_path
        env = _agent_env()
        if agent_path is not None:
            env["PYTHONPATH"] = str(agent_path)
        if debug_hooks:
            env["L2LB_AGENT_DEBUG_HOOKS"] = "1"
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"===== start #{self.starts} at monotonic {time.monotonic():.3f}: {overrides or 'defaults'}\n")
        log_file = self.log_path.open("a")
        try:
            self.proc = self.lab.popen(
                self.host,
                [PYTHON, "-m", "l2lb_agent", "run", "--config", str(self.config_path)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        finally:
            log_file.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name}: not running"
        os.kill(self.proc.pid, signum)  # a PID we started (ip netns exec execs the agent itself)

    def kill(self) -> float:
        """SIGKILL; returns the monotonic time just before the signal."""
        t = time.monotonic()
        self.signal(signal.SIGKILL)
        self.reap(5.0)
        return t

    def reap(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.lab.stop_process(self.proc)  # already gone: only forgets it
        return self.proc.returncode

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful drain) and wait; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            if self.reap(timeout) is None:
                self.signal(signal.SIGKILL)
                self.reap(5.0)
        self.lab.stop_process(self.proc)
        return self.proc.returncode

    def healthz(self) -> tuple[int, str] | None:
        return http_get(self.host.netns, "http://127.0.0.1:9469/healthz")

    def kill_thread(self, thread: str) -> tuple[int, str] | None:
        """The debug hook (started with ``debug_hooks=True``): kill one thread inside the agent."""
        return http_get(self.host.netns, f"http://127.0.0.1:9469/debug/kill?thread={thread}", method="POST")

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample from /metrics (unlabelled, or with exactly these labels), or None."""
        answer = http_get(self.host.netns, "http://127.0.0.1:9469/metrics")
        if answer is None or answer[0] != 200:
            return None
        wanted = [name + " ", name + "{}"]
        if labels:
            wanted = [name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "} "]
        for line in answer[1].splitlines():
            if any(line.startswith(prefix) for prefix in wanted):
                return float(line.rsplit(" ", 1)[1])
        return None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


# ---- the client's passive ARP watcher ----


class ArpWatch:
    """``arpwatch.py`` in a host's namespace: every ARP frame it sends and receives, with times."""

    def __init__(self, lab: Lab, host: Host) -> None:
        self.host = host
        self._lab = lab
        proc = lab.popen(
            host,
            [PYTHON, str(ARPWATCH), "--iface", host.ifname],
            env=_agent_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stream = JsonLinesProcess(proc)
        self.stream.wait_for(lambda e: e.get("type") == "ready", timeout=20.0)

    def frames(self) -> list[dict[str, Any]]:
        return [e for e in self.stream.events() if e.get("type") == "arp"]

    def stop(self) -> list[dict[str, Any]]:
        self.stream.close_stdin()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stream.wait(5.0)
        self._lab.stop_process(self.stream.proc)
        return self.frames()


# ---- the whole thing ----


class E2E:
    """Lab + real control plane + three agents, with the helpers the scenarios share."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.lab = Lab(nodes=len(NODES) + 1, subnet=SUBNET, subnet6=SUBNET6)
        self.network = ipaddress.ip_network(SUBNET)
        self.api_ip = str(self.network[1])
        self.plane: ControlPlane | None = None
        self.relay: TcpRelay | None = None
        self.kube: Kube
        self.discovery: client.DiscoveryV1Api
        self.agents: dict[str, AgentProcess] = {}
        self._namespaces: list[str] = []
        self._pools: list[str] = []
        self._policies: list[str] = []
        self._iptables: set[str] = set()
        self._links_down: set[str] = set()
        self._ns_counter = 0

    # -- lifecycle --

    def start(self) -> E2E:
        self.lab.start()
        bridge = self.lab.bridge_netns
        self.lab.ip(bridge, "link", "set", "lo", "up")  # etcd and kube-controller-manager use its loopback
        self.lab.ip(bridge, "addr", "add", f"{self.api_ip}/{self.network.prefixlen}", "dev", "l2lb-br")
        self.plane = ControlPlane(
            users=[(AGENT_USER, ["system:masters"]), (NAMESPACE_USER, [NAMESPACE_USER_GROUP])],
            host=self.api_ip,
            port=API_PORT,
            state_dir=self.workdir / "controlplane",
        )
        with in_netns(bridge):  # the components inherit this thread's namespace
            self.plane.start()
            for i, name in enumerate(NODES, start=1):
                self.plane.add_node(name, addresses=[self.lab.node(i).ip, str(self.lab.node(i).ip6)])
        self.relay = TcpRelay(bridge, self.api_ip, API_PORT)
        test_kubeconfig = self.plane.write_kubeconfig(
            self.workdir / "test.kubeconfig", server_url=f"https://127.0.0.1:{self.relay.port}"
        )
        agent_kubeconfig = self.plane.write_kubeconfig(
            self.workdir / "agent.kubeconfig", token=self.plane.token(AGENT_USER), user=AGENT_USER
        )
        self.kube = Kube(self.plane, test_kubeconfig, agent_user=AGENT_USER)
        self.discovery = client.DiscoveryV1Api(self.kube.client)
        self.kube.setup()  # the agents' namespace and our CRDs, waited for until Established
        model = build_model(
            [
                {
                    "name": "e2e-lan",
                    "blocks": [
                        {"start": LAN_POOL[0], "stop": LAN_POOL[1]},
                        {"start": LAN_POOL6[0], "stop": LAN_POOL6[1]},
                    ],
                    "serviceSelector": {"matchExpressions": [{"key": POOL_LABEL, "operator": "DoesNotExist"}]},
                },
                {
                    "name": "e2e-bulk",
                    "blocks": [{"cidr": BULK_POOL}],
                    "allowFirstLastIPs": True,
                    "serviceSelector": {"matchLabels": {POOL_LABEL: "bulk"}},
                },
            ],
            [
                {
                    "name": "e2e-l2",
                    "interfaces": ["^l2lb0$"],
                    "serviceSelector": {"matchExpressions": [{"key": NO_POLICY_LABEL, "operator": "DoesNotExist"}]},
                }
            ],
        )
        for pool in model.pools:
            self.kube.custom.create_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, render_pool(pool))
        for policy in model.policies:
            self.kube.custom.create_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, render_policy(policy))
        for i, name in enumerate(NODES, start=1):
            self.agents[name] = AgentProcess(self.lab, self.lab.node(i), name, self.workdir, agent_kubeconfig)
        for agent in self.agents.values():
            agent.start()
        self.wait_ready(30.0)
        return self

    def close(self) -> None:
        for agent in self.agents.values():
            if agent.running:
                with contextlib.suppress(Exception):
                    agent.signal(signal.SIGKILL)
                    agent.reap(5.0)
        if self.relay is not None:
            self.relay.close()
        if self.plane is not None:
            try:
                with in_netns(self.lab.bridge_netns):
                    self.plane.stop()  # by PID (SIGTERM, then SIGKILL); the logs stay in the work directory
            except OSError:  # no bridge namespace to enter: stopping by PID works from anywhere
                self.plane.stop()
            shutil.rmtree(self.plane.state_dir / "etcd", ignore_errors=True)  # 64 MB of preallocated WAL
        self.lab.close()

    def counter(self) -> RequestCounter:
        """Counts the agents' requests (not the controller manager's, not the test's) from now on."""
        assert self.plane is not None
        return self.plane.counter(user=AGENT_USER)

    def api_start(self) -> None:
        """Start kube-apiserver again after :meth:`api_stop` (same port, data, tokens); returns once ready."""
        assert self.plane is not None
        with in_netns(self.lab.bridge_netns):
            self.plane.start_apiserver()

    def api_stop(self) -> None:
        """An API outage: kube-apiserver stops (SIGTERM, as a restart); etcd and the controller manager stay."""
        assert self.plane is not None
        with in_netns(self.lab.bridge_netns):
            self.plane.stop_apiserver()

    @property
    def api_running(self) -> bool:
        return self.plane is not None and self.plane.apiserver_running

    # -- hosts --

    @property
    def client_host(self) -> Host:
        return self.lab.client

    @property
    def station(self) -> Host:
        """node4: on the wire, no agent — probes when the client's own kernel must stay silent."""
        return self.lab.node(len(NODES) + 1)

    def mac(self, node: str) -> str:
        return self.agents[node].mac

    def node_by_mac(self, mac: str) -> str:
        return next((name for name, agent in self.agents.items() if agent.mac == mac), mac)

    def names(self, macs: Iterator[str] | Sequence[str] | frozenset[str]) -> list[str]:
        return sorted(self.node_by_mac(m) for m in macs)

    # -- readiness and reset --

    def controller(self) -> str:
        return self.kube.holder()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Every agent healthy (``ok:``), one controller, and the controller sees every node alive."""

        def ready() -> bool:
            for agent in self.agents.values():
                if not agent.running:
                    return False
                health = agent.healthz()
                if health is None or health[0] != 200 or not health[1].startswith("ok:"):
                    return False
            leader = self.controller()
            return leader in self.agents and self.agents[leader].metric("l2lb_nodes_alive") == len(self.agents)

        try:
            eventually(ready, timeout, 0.1, what="all agents healthy, a controller that sees every node")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

    def diagnostics(self) -> str:
        holder = "?"
        if self.api_running:
            with contextlib.suppress(Exception):
                holder = self.controller()
        lines = [f"controller lease holder: {holder}"]
        for name, agent in self.agents.items():
            lines.append(f"--- {name} running={agent.running} healthz={agent.healthz() if agent.running else None}")
            lines.append(agent.log_tail(25))
        return "\n".join(lines)

    def reset(self) -> None:
        """Back to three healthy default agents, an API that serves, no test objects, no cut links.

        Deleted test namespaces are waited for until they are gone (kube-controller-manager's namespace
        controller deletes their Services asynchronously), so their IPs are free before the next test and
        before the test's pools are deleted.
        """
        if self.plane is not None and not self.plane.apiserver_running:
            self.api_start()
        for netns in sorted(self._iptables):
            self.lab.run(netns, ["iptables", "-F"], check=False)
        self._iptables.clear()
        for name in sorted(self._links_down):
            self.lab.set_link(self.agents[name].host, True)
        self._links_down.clear()
        deleted = list(self._namespaces)
        for namespace in deleted:
            with contextlib.suppress(client.ApiException):
                self.kube.core.delete_namespace(namespace)
        self._namespaces.clear()
        # The Services go first, then their pools: a pool deleted under a Service that still holds one of
        # its IPs would leave the controller a transition (and counters) no test asked for.
        self.wait_namespaces_gone(deleted)
        for pool in self._pools:
            with contextlib.suppress(client.ApiException):
                self.kube.custom.delete_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, pool)
        self._pools.clear()
        for policy in self._policies:
            with contextlib.suppress(client.ApiException):
                self.kube.custom.delete_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, policy)
        self._policies.clear()
        for agent in self.agents.values():
            if agent.running and (agent.overrides or agent.debug_hooks or agent.agent_path is not None):
                agent.stop()
            if not agent.running:
                agent.start()
        self.wait_ready(30.0)

    def wait_namespaces_gone(self, names: Sequence[str], timeout: float = NAMESPACE_GONE_TIMEOUT) -> None:
        def gone() -> bool:
            for name in names:
                try:
                    self.kube.core.read_namespace(name, _preload_content=False)
                except client.ApiException as exc:
                    if exc.status == 404:
                        continue
                    raise
                return False
            return True

        eventually(gone, timeout, 0.2, what=f"namespaces {list(names)} deleted by the namespace controller")

    # -- arranging --

    def namespace(self) -> str:
        """A fresh namespace (a deleted one's name cannot be reused until it is gone: never reuse one)."""
        self._ns_counter += 1
        name = f"e2e-{self._ns_counter:02d}"
        self.kube.core.create_namespace({"metadata": {"name": name}})
        self._namespaces.append(name)
        return name

    def create_pool(self, name: str, body_spec: Mapping[str, Any]) -> None:
        model = build_model([{"name": name, **body_spec}], [])
        self._pools.append(name)
        self.kube.custom.create_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, render_pool(model.pools[0]))

    def service(
        self,
        namespace: str,
        name: str,
        *,
        ports: Sequence[int] = (80,),
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        local: bool = False,
        families: Sequence[str] = ("IPv4",),
    ) -> None:
        """A LoadBalancer Service (``local``: externalTrafficPolicy Local) of the IP ``families`` given, in order
        (two: RequireDualStack)."""
        spec: dict[str, Any] = {
            "type": "LoadBalancer",
            "ports": [{"name": f"p{p}", "port": p, "protocol": "TCP"} for p in ports],
            "selector": {"app": name},
            "ipFamilies": list(families),
            "ipFamilyPolicy": "RequireDualStack" if len(families) > 1 else "SingleStack",
        }
        if local:
            spec["externalTrafficPolicy"] = "Local"
        body = {
            "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})},
            "spec": spec,
        }
        self.kube.core.create_namespaced_service(namespace, body)

    def endpoint_slice(self, namespace: str, service: str, node: str, *, name: str | None = None) -> str:
        """An EndpointSlice for ``service`` with one ready endpoint on ``node``; returns its name."""
        index = NODES.index(node) + 1
        slice_name = name or f"{service}-e2e"
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.lab.node(index).ip], "conditions": {"ready": True}, "nodeName": node}],
            "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}],
        }
        self.discovery.create_namespaced_endpoint_slice(namespace, body)
        return slice_name

    def move_endpoint(self, namespace: str, slice_name: str, node: str) -> None:
        index = NODES.index(node) + 1
        endpoints = [{"addresses": [self.lab.node(index).ip], "conditions": {"ready": True}, "nodeName": node}]
        self.discovery.patch_namespaced_endpoint_slice(slice_name, namespace, {"endpoints": endpoints})

    def cut_api(self, node: str) -> None:
        """Drop everything between the node and the API address inside its namespace (ARP is untouched)."""
        netns = self.agents[node].host.netns
        self._iptables.add(netns)
        self.lab.run(netns, ["iptables", "-I", "OUTPUT", "-d", f"{self.api_ip}/32", "-j", "DROP"])
        self.lab.run(netns, ["iptables", "-I", "INPUT", "-s", f"{self.api_ip}/32", "-j", "DROP"])

    def link_down(self, node: str) -> None:
        self._links_down.add(node)
        self.lab.set_link(self.agents[node].host, False)

    # -- reading --

    def announcement(self, namespace: str, name: str) -> tuple[str | None, str | None]:
        """(first ingress IP, announcing node) as the Service says now."""
        service = self.kube.service(name, namespace)
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        ip = ingress[0]["ip"] if ingress else None
        node = ((service.get("metadata") or {}).get("annotations") or {}).get("l2lb.io/announcing-node")
        return ip, node

    def wait_announced(
        self,
        namespace: str,
        name: str,
        timeout: float = 10.0,
        *,
        where: Callable[[str], bool] = lambda node: True,
        what: str = "",
    ) -> tuple[str, str]:
        """Poll until the Service has an ingress IP and an announcing node for which ``where`` holds."""

        def check() -> tuple[str, str] | None:
            ip, node = self.announcement(namespace, name)
            if ip and node in self.agents and where(node):
                return ip, node
            return None

        try:
            result: tuple[str, str] = eventually(
                check, timeout, 0.02, what=what or f"{namespace}/{name} allocated and announced"
            )
        except AssertionError as exc:
            service = self.kube.service(name, namespace)
            raise AssertionError(
                f"{exc}\nservice: {json.dumps(service.get('status'))} "
                f"{json.dumps(service['metadata'].get('annotations'))}\n{self.diagnostics()}"
            ) from None
        return result

    def events_for(self, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kube.events(namespace)
            if (e.get("involvedObject") or {}).get("name") == name and e.get("reason") == reason
        ]

    def probe(self, ip: str, count: int = 5, source: Host | None = None) -> ProbeResult:
        """``count`` who-has one after another, lingering 50 ms after each first answer for a second one."""
        return self.lab.arp_probe(ip, count=count, timeout_ms=200, settle_ms=50, source=source)

    def describe(self, result: ProbeResult) -> str:
        answered = [self.names(r.macs) for r in result.records]
        return f"{result.sent} probes, {result.unanswered} unanswered, answered by {answered}"

    def wait_single_answerer(self, ip: str, node: str, timeout: float = 10.0, count: int = 3) -> ProbeResult:
        """Poll until ``count`` probes in a row are each answered by exactly one MAC: ``node``'s."""
        last: list[ProbeResult] = []

        def check() -> ProbeResult | None:
            result = self.probe(ip, count)
            last[:] = [result]
            ok = result.unanswered == 0 and all(len(r.replies) == 1 for r in result.records)
            return result if ok and result.macs == {self.mac(node)} else None

        try:
            result: ProbeResult = eventually(check, timeout, 0.05, what=f"only {node} answering ARP for {ip}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast probes: {self.describe(last[0]) if last else '-'}") from None
        return result


def lease_renew_time(lease: Mapping[str, Any]) -> datetime:
    text = str((lease.get("spec") or {}).get("renewTime"))
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def report(record_property: Callable[[str, object], None], name: str, value: object) -> None:
    """A measured number: printed (``-s`` / the captured output) and recorded in the JUnit XML."""
    print(f"[e2e] {name} = {value}")
    record_property(name, value)
