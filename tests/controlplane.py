"""A real Kubernetes control plane for the tests and the lab: etcd, kube-apiserver, kube-controller-manager.

The binaries are the ones ``make components`` (``lab/build-components.sh``) builds from Go modules into
the cache outside the checkout (``$L2LB_GO_CACHE``, default ``/var/cache/l2lb-go``)::

    with ControlPlane(users=[("alice", ["team-a"])]) as cp:
        cp.url, cp.ca_file, cp.admin_token, cp.token("alice")
        cp.write_kubeconfig(path, cp.token("alice"))

Everything listens on 127.0.0.1 on free ports; the state (etcd data, certificates, keys, the token file,
the logs) lives in one directory, a temporary one by default. Authentication: static bearer tokens
(``--token-auth-file``) for the admin (group ``system:masters``) and for the named test users, and
service-account tokens signed with one generated RSA key. Authorization: ``Node,RBAC``. The controller
manager runs only the controllers a cluster without kubelets needs (service accounts and their tokens,
namespaces, the garbage collector, role aggregation, endpoints); never node-lifecycle or nodeipam.

``restart_apiserver()`` (or ``stop_apiserver()`` ... ``start_apiserver()`` for an outage of chosen length),
``restart_etcd()`` and ``compact_etcd()`` are for fault tests: the same ports, certificates, tokens and data
survive a restart. ``add_node()`` registers a Node as a kubelet would.

Who asked for what: kube-apiserver writes an audit log (level Metadata) that :class:`RequestCounter` reads,
so a test counts the requests of one user (an agent, a playbook's kubeconfig) and not the controller
manager's. ``request_counts()`` is kube-apiserver's own ``apiserver_request_total`` (every client).

A component that does not come up raises :class:`ControlPlaneError` naming it, its log file and the log's
last lines; everything already started is stopped (by PID: SIGTERM, then SIGKILL). Set
``L2LB_KEEP_CONTROLPLANE=1`` to keep a temporary state directory (logs included) after ``stop()``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pki import ensure_ca, issue_server_cert, write_kubeconfig
from pki import write_private as _write_private

KUBE_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.3"
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-proxy", "kubectl")

# Only 198.18.0.0/15 and 2001:2::/48 (benchmarking space) and loopback are ours to use on these machines.
# Dual stack, as users' clusters may be: IPv4 as the stand-in and the lab have it, and a /108 (the
# largest IPv6 service range kube-apiserver accepts) so that IPv6 and dual-stack Services validate.
DEFAULT_SERVICE_CIDR = "198.18.240.0/20,2001:2:0:ff::/108"
# kube-apiserver refuses a loopback --advertise-address ("cannot use public IP 127.0.0.1 with endpoint
# reconciler: ... may not be in the loopback range"). The address only goes into the endpoints of the
# `kubernetes` Service; nothing listens on it (the API listens on 127.0.0.1). The lab passes its own.
DEFAULT_ADVERTISE_ADDRESS = "198.18.130.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# What a cluster without kubelets needs; no node-lifecycle (it would taint kubelet-less nodes), no
# nodeipam, no service-lb-controller (it would compete with us for status.loadBalancer).
DEFAULT_CONTROLLERS = (
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "service-cidr-controller",
)


_REQUEST_TOTAL = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "APPLY": "patch", "DELETE": "delete"}

# Metadata is enough to count (user, verb, resource); no request or response bodies (no secrets) are logged.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


class ControlPlaneError(RuntimeError):
    """A component did not start (or is missing); the message names it and its log."""


def cache_dir() -> Path:
    """Where ``lab/build-components.sh`` puts the binaries (same rule as the script)."""
    if os.environ.get("L2LB_GO_CACHE"):
        return Path(os.environ["L2LB_GO_CACHE"])
    system = Path("/var/cache/l2lb-go")
    if system.exists() or os.access("/var/cache", os.W_OK):
        return system
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "l2lb-go"


def binary(name: str, cache: Path | None = None) -> Path:
    """The path of a built component, or a :class:`ControlPlaneError` saying how to build it."""
    base = cache or cache_dir()
    version_dir = f"etcd-{ETCD_VERSION}" if name == "etcd" else f"kube-{KUBE_VERSION}"
    path = base / version_dir / name
    if not os.access(path, os.X_OK):
        raise ControlPlaneError(f"{name} not found at {path}: run `make components` (lab/build-components.sh)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_certs(directory: Path, sans: Iterable[str]) -> None:
    """``ca.crt``/``ca.key`` and a serving pair ``apiserver.crt``/``apiserver.key`` signed by that CA."""
    ca_pem, ca_key_pem = ensure_ca(directory)
    cert_pem, key_pem = issue_server_cert(ca_pem, ca_key_pem, sans)
    (directory / "apiserver.crt").write_bytes(cert_pem)
    _write_private(directory / "apiserver.key", key_pem)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


class _Process:
    """One component: its command line, log file and process; started and stopped by PID.

    A process started by another Python process (``ControlPlane.attach``) is adopted by PID: it is signalled
    the same way and its end is seen in /proc (it cannot be waited for).
    """

    def __init__(self, name: str, argv: list[str], log: Path, adopted_pid: int | None = None) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.adopted_pid = adopted_pid if adopted_pid and _alive(adopted_pid) else None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.adopted_pid = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else self.adopted_pid

    def exited(self) -> int | None:
        if self.proc is None and self.adopted_pid is not None:
            return None if _alive(self.adopted_pid) else -1
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        adopted, self.adopted_pid = self.adopted_pid, None
        if proc is None:
            if adopted is not None:
                self._stop_adopted(adopted, grace)
            return
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    @staticmethod
    def _stop_adopted(pid: int, grace: float) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _alive(pid):
                return

    def failure(self, what: str) -> ControlPlaneError:
        code = self.exited()
        state = f"exited with code {code}" if code is not None else "still running"
        return ControlPlaneError(f"{self.name} {what} ({state}); log: {self.log}\n{_tail(self.log)}")


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback; a context manager.

    ``users``: (name, groups) pairs that get a static bearer token each (``token(name)``); RBAC decides
    what they may do. ``state_dir``: where data, certificates and logs go (a fresh temporary directory,
    removed on ``stop()``, by default; a given directory is kept).
    """

    def __init__(
        self,
        users: Iterable[tuple[str, Sequence[str]]] = (),
        *,
        state_dir: str | Path | None = None,
        cache: str | Path | None = None,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
        advertise_address: str = DEFAULT_ADVERTISE_ADDRESS,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        extra_apiserver_args: Sequence[str] = (),
        start_timeout: float = 90.0,
        unsafe_no_fsync: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._cache = Path(cache) if cache else None
        self.etcd_bin = binary("etcd", self._cache)
        self.apiserver_bin = binary("kube-apiserver", self._cache)
        self.controller_manager_bin = binary("kube-controller-manager", self._cache)
        self._owns_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="l2lb-controlplane-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.service_cidr = service_cidr
        # kube-apiserver listens on host:port (a free port by default); etcd and the controller manager
        # stay on loopback. A non-loopback host (the lab's bridge address) is also what it advertises.
        self.host, self.port = host, port
        self.advertise_address = advertise_address if ipaddress.ip_address(host).is_loopback else host
        self.controllers = list(controllers)
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.start_timeout = start_timeout
        self.unsafe_no_fsync = unsafe_no_fsync
        self.local = "127.0.0.1"
        self.etcd_client_port = self.etcd_peer_port = self.controller_manager_port = 0
        self.admin_token = secrets.token_urlsafe(32)
        self._users: dict[str, tuple[str, tuple[str, ...]]] = {}
        for user, groups in users:
            self._users[user] = (secrets.token_urlsafe(32), tuple(groups))
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._controller_manager: _Process | None = None

    # --- addresses and credentials -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{self.local}:{self.etcd_client_port}"

    @property
    def ca_file(self) -> str:
        return str(self.state_dir / "pki" / "ca.crt")

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def audit_log(self) -> Path:
        """kube-apiserver's audit log (JSON lines, one per request stage); see :class:`RequestCounter`."""
        return self.log_dir / "audit.log"

    def counter(self, user: str | None = None) -> RequestCounter:
        """A :class:`RequestCounter` of ``user``'s requests (any user's with None), counting from now."""
        return RequestCounter(self.audit_log, user)

    def token(self, user: str) -> str:
        """The static bearer token of a test user given in ``users``."""
        return self._users[user][0]

    @property
    def users(self) -> dict[str, tuple[str, ...]]:
        """Test user -> groups."""
        return {user: groups for user, (_, groups) in self._users.items()}

    def write_kubeconfig(
        self,
        path: str | Path,
        token: str | None = None,
        server_url: str | None = None,
        namespace: str | None = None,
        user: str = "admin",
    ) -> Path:
        """A kubeconfig with the CA inlined and a bearer token (the admin token by default), mode 0600."""
        return write_kubeconfig(
            path,
            "l2lb",
            server_url or self.url,
            Path(self.ca_file).read_bytes(),
            token or self.admin_token,
            user,
            namespace,
        )

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this control plane (the admin token by default)."""
        from kubernetes import client

        configuration = client.Configuration(host=self.url)
        configuration.ssl_ca_cert = self.ca_file
        configuration.api_key = {"authorization": "Bearer " + (token or self.admin_token)}
        return client.ApiClient(configuration)

    def request_counts(self) -> dict[tuple[str, str], int]:
        """(verb, resource) -> requests kube-apiserver has served since it started, from its own
        ``apiserver_request_total``; verbs as the stand-in's (create, update, patch, delete, get, list,
        watch). Every client counts, kube-controller-manager too: compare before and after, per resource.
        """
        code, body = self._get(self.url + "/metrics", ssl.create_default_context(cafile=self.ca_file), self.admin_token)
        if code != 200:
            raise ControlPlaneError(f"kube-apiserver /metrics answered {code}: {body[:200]!r}")
        counts: dict[tuple[str, str], int] = {}
        for line in body.decode().splitlines():
            match = _REQUEST_TOTAL.match(line)
            if not match:
                continue
            labels = dict(_LABEL.findall(match["labels"]))
            verb = _VERBS.get(labels.get("verb", ""), labels.get("verb", "").lower())
            key = (verb, labels.get("resource", ""))
            counts[key] = counts.get(key, 0) + int(float(match["value"]))
        return counts

    def add_node(
        self, name: str, labels: dict[str, str] | None = None, addresses: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Register a Node as a kubelet would (there is none): see ``register_node``."""
        with self.api_client() as api_client:
            return register_node(api_client, name, labels, addresses)

    # --- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        try:
            self._prepare()
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.save()
        return self

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL), newest first; remove a temporary state dir."""
        for process in (self._controller_manager, self._apiserver, self._etcd):
            if process is not None:
                process.stop()
        if self._owns_dir and os.environ.get("L2LB_KEEP_CONTROLPLANE") != "1":
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def pids(self) -> dict[str, int | None]:
        return {p.name: p.pid for p in (self._etcd, self._apiserver, self._controller_manager) if p is not None}

    STATE_FILE = "controlplane.json"

    def save(self) -> Path:
        """Write what :meth:`attach` needs (ports, command lines, PIDs) to ``<state_dir>/controlplane.json``."""
        processes = [p for p in (self._etcd, self._apiserver, self._controller_manager) if p is not None]
        data = {
            "host": self.host,
            "port": self.port,
            "etcd_client_port": self.etcd_client_port,
            "etcd_peer_port": self.etcd_peer_port,
            "controller_manager_port": self.controller_manager_port,
            "advertise_address": self.advertise_address,
            "service_cidr": self.service_cidr,
            "components": {p.name: {"argv": p.argv, "log": str(p.log), "pid": p.pid} for p in processes},
        }
        path = self.state_dir / self.STATE_FILE
        _write_private(path, json.dumps(data, indent=2).encode())
        return path

    @classmethod
    def attach(cls, state_dir: str | Path, start_timeout: float = 90.0) -> ControlPlane:
        """The control plane another process started in ``state_dir`` (the lab's), to restart or compact it.

        Its components are adopted by PID; ``stop()`` stops them but keeps the directory.
        """
        directory = Path(state_dir)
        try:
            data = json.loads((directory / cls.STATE_FILE).read_text())
            token = (directory / "admin-token").read_text().strip()
        except (OSError, ValueError) as exc:
            raise ControlPlaneError(f"no control plane state in {directory}: {exc}") from None
        plane = cls(
            state_dir=directory,
            host=data["host"],
            port=data["port"],
            advertise_address=data["advertise_address"],
            service_cidr=data["service_cidr"],
            start_timeout=start_timeout,
        )
        plane.admin_token = token
        plane.etcd_client_port, plane.etcd_peer_port = data["etcd_client_port"], data["etcd_peer_port"]
        plane.controller_manager_port = data["controller_manager_port"]
        components = data["components"]

        def adopt(name: str) -> _Process | None:
            entry = components.get(name)
            return _Process(name, entry["argv"], Path(entry["log"]), entry["pid"]) if entry else None

        plane._etcd, plane._apiserver = adopt("etcd"), adopt("kube-apiserver")
        plane._controller_manager = adopt("kube-controller-manager")
        return plane

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, as a real restart) and start it again on the same port."""
        self.stop_apiserver()
        self.start_apiserver()

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, then SIGKILL): an API outage until :meth:`start_apiserver`."""
        assert self._apiserver is not None
        self._apiserver.stop()

    def start_apiserver(self) -> None:
        """Start a stopped kube-apiserver again on the same port and data; returns once it is ready."""
        assert self._apiserver is not None
        if self._apiserver.exited() is None and self._apiserver.pid is not None:
            return
        self._apiserver.start()
        self.save()
        self._wait_apiserver()

    @property
    def apiserver_running(self) -> bool:
        return self._apiserver is not None and self._apiserver.pid is not None and self._apiserver.exited() is None

    def restart_etcd(self) -> None:
        """Stop etcd and start it again on its data; returns once kube-apiserver is ready again."""
        assert self._etcd is not None
        self._etcd.stop()
        self._etcd.start()
        self.save()
        self._wait_etcd()
        self._wait_apiserver()

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision (watches from older resourceVersions then get 410)."""
        status = self._etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/").decode(), "limit": 1})
        revision = int(status["header"]["revision"])
        self._etcd_call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    # --- internals -----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        pki = self.state_dir / "pki"
        self.log_dir.mkdir(exist_ok=True)
        pki.mkdir(exist_ok=True)
        service_ip = str(next(ipaddress.ip_network(self.service_cidr.split(",")[0]).hosts()))
        sans = [
            "127.0.0.1",
            self.host,
            self.advertise_address,
            service_ip,
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        _make_certs(pki, sans)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pki / "sa.key", _pem_key(sa_key))
        rows = [f"{self.admin_token},admin,admin,system:masters"]
        for user, (token, groups) in self._users.items():
            rows.append(f'{token},{user},{user},"{",".join(groups)}"')
        _write_private(self.state_dir / "tokens.csv", ("\n".join(rows) + "\n").encode())
        self.etcd_client_port, self.etcd_peer_port = free_port(), free_port()
        self.port = self.port or free_port(self.host)
        self.controller_manager_port = free_port()
        self.write_kubeconfig(self.state_dir / "admin.kubeconfig")
        _write_private(self.state_dir / "admin-token", (self.admin_token + "\n").encode())
        (self.state_dir / "audit-policy.yaml").write_text(AUDIT_POLICY)

    def _start_etcd(self) -> None:
        peer = f"http://{self.local}:{self.etcd_peer_port}"
        argv = [
            str(self.etcd_bin),
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--listen-metrics-urls=",
            "--log-level=warn",
        ]
        if self.unsafe_no_fsync:
            argv.append("--unsafe-no-fsync")
        self._etcd = _Process("etcd", argv, self.log_dir / "etcd.log")
        self._etcd.start()
        self._wait_etcd()

    def _start_apiserver(self) -> None:
        pki = self.state_dir / "pki"
        argv = [
            str(self.apiserver_bin),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--bind-address={self.host}",
            f"--secure-port={self.port}",
            f"--advertise-address={self.advertise_address}",
            f"--service-cluster-ip-range={self.service_cidr}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            f"--token-auth-file={self.state_dir / 'tokens.csv'}",
            "--enable-priority-and-fairness=true",
            # Default 0 = "don't wait for watches", yet with the controller manager's watches open a SIGTERM'd
            # kube-apiserver then hangs until --shutdown-timeout (60 s); with a grace period it ends them
            # and exits in about a second.
            "--shutdown-watch-termination-grace-period=2s",
            f"--audit-policy-file={self.state_dir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
            "--v=1",
            *self.extra_apiserver_args,
        ]
        self._apiserver = _Process("kube-apiserver", argv, self.log_dir / "kube-apiserver.log")
        self._apiserver.start()
        self._wait_apiserver()

    def _start_controller_manager(self) -> None:
        pki = self.state_dir / "pki"
        kubeconfig = self.write_kubeconfig(self.state_dir / "controller-manager.kubeconfig")
        argv = [
            str(self.controller_manager_bin),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(self.controllers)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--bind-address={self.local}",
            f"--secure-port={self.controller_manager_port}",
            f"--cert-dir={pki / 'controller-manager'}",
            "--leader-elect=false",
            "--v=1",
        ]
        self._controller_manager = _Process(
            "kube-controller-manager", argv, self.log_dir / "kube-controller-manager.log"
        )
        self._controller_manager.start()
        self._wait_controller_manager()

    def _get(self, url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _etcd_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.etcd_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def _wait(self, process: _Process | None, what: str, check: Any) -> None:
        assert process is not None
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if process.exited() is not None:
                raise process.failure(f"exited before it was {what}")
            try:
                ok, last = check()
                if ok:
                    return
            except (OSError, ValueError, KeyError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise process.failure(f"was not {what} after {self.start_timeout:.0f} s (last: {last[:300]})")

    def _wait_etcd(self) -> None:
        def check() -> tuple[bool, str]:
            code, body = self._get(self.etcd_url + "/health")
            return code == 200 and json.loads(body).get("health") == "true", body.decode(errors="replace")

        self._wait(self._etcd, "healthy", check)

    def _wait_apiserver(self) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)

        def check() -> tuple[bool, str]:
            code, body = self._get(self.url + "/readyz", context, self.admin_token)
            return code == 200, body.decode(errors="replace")

        self._wait(self._apiserver, "ready (/readyz)", check)

    def _wait_controller_manager(self) -> None:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        context = ssl.create_default_context(cafile=self.ca_file)

        def check() -> tuple[bool, str]:
            code, body = self._get(f"https://{self.local}:{self.controller_manager_port}/healthz", insecure)
            if code != 200:
                return False, f"healthz {code}: {body.decode(errors='replace')}"
            # The serviceaccount controller has run once the default namespace has its account.
            path = "/api/v1/namespaces/default/serviceaccounts/default"
            code, body = self._get(self.url + path, context, self.admin_token)
            return code == 200, f"{path}: {code}"

        self._wait(self._controller_manager, "ready (healthz and the default ServiceAccount)", check)


class RequestCounter:
    """Counts requests in kube-apiserver's audit log from the moment it was made (or last ``reset()``).

    Keys are (verb, resource) as Kubernetes names them, with the subresource after a slash:
    ``("update", "leases")``, ``("patch", "services/status")``, ``("watch", "services")``. A watch counts
    once, when it starts (its ResponseStarted stage); every other request when it completes. ``user``
    filters by the authenticated user name (``admin``, a test user, ``system:serviceaccount:ns:name``).
    """

    def __init__(self, audit_log: Path, user: str | None = None) -> None:
        self.audit_log, self.user = audit_log, user
        self._offset = 0
        self.reset()

    def reset(self) -> None:
        """Count from now on."""
        try:
            self._offset = self.audit_log.stat().st_size
        except FileNotFoundError:
            self._offset = 0

    def events(self) -> list[dict[str, Any]]:
        """The audit events (one per counted request) since the last reset, of this counter's user."""
        return self._parse(self._read()[0])

    def take(self) -> dict[tuple[str, str], int]:
        """Counts since the previous ``take()`` (or reset), then count from there: consecutive slices in
        which nothing logged between two calls is lost or counted twice (``counts()`` then ``reset()`` could)."""
        data, end = self._read()
        self._offset = end
        return _count(self._parse(data))

    def _read(self) -> tuple[bytes, int]:
        """The complete lines logged since the offset (a line being written waits for the next call)."""
        try:
            with self.audit_log.open("rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return b"", self._offset
        data = data[: data.rfind(b"\n") + 1]
        return data, self._offset + len(data)

    def _parse(self, data: bytes) -> list[dict[str, Any]]:
        events = []
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            verb, stage = event.get("verb"), event.get("stage")
            if stage != ("ResponseStarted" if verb == "watch" else "ResponseComplete"):
                continue
            if self.user is not None and (event.get("user") or {}).get("username") != self.user:
                continue
            events.append(event)
        return events

    def counts(self) -> dict[tuple[str, str], int]:
        """(verb, resource) -> requests since the last reset."""
        return _count(self.events())

    def total(self) -> int:
        return sum(self.counts().values())


def _count(events: Iterable[dict[str, Any]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for event in events:
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        key = (str(event["verb"]), resource)
        counts[key] = counts.get(key, 0) + 1
    return counts


def register_node(
    api_client: Any, name: str, labels: dict[str, str] | None = None, addresses: Iterable[str] = ()
) -> dict[str, Any]:
    """Register a Node as a kubelet would (there is none): labels, addresses and Ready in status.

    Idempotent: an existing Node gets the labels and status again. Returns the Node as stored.
    """
    from kubernetes import client

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {
        "name": name,
        "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(labels or {}),
        },
    }
    status = {
        "addresses": [
            *({"type": "InternalIP", "address": a} for a in addresses),
            {"type": "Hostname", "address": name},
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "registered by the l2lb test control plane (no kubelet)",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
    }
    core = client.CoreV1Api(api_client)
    body: Any = {"metadata": metadata}  # the typed client takes plain dicts too
    try:
        core.create_node(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        core.patch_node(name, {"metadata": {"labels": metadata["labels"]}})
    stored = core.patch_node_status(name, {"status": status})
    result: dict[str, Any] = api_client.sanitize_for_serialization(stored)
    return result
