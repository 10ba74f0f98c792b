"""Shared pieces of the benchmarks: import paths, result tables, statistics, processes, the real control plane."""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
AGENT_PATH = REPO / "files" / "l2lb_agent"
TESTS_PATH = REPO / "tests"
COLLECTIONS = REPO / ".build" / "collections"
PYTHON = sys.executable


def setup_paths() -> None:
    """Make the agent package, tests/controlplane.py and the test fixtures importable (as tests/conftest.py does)."""
    for path in (COLLECTIONS, AGENT_PATH, TESTS_PATH):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


setup_paths()

if TYPE_CHECKING:
    from controlplane import ControlPlane


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for our Python subprocesses: the same import paths, unbuffered output."""
    env = dict(os.environ)
    paths = [str(REPO), str(AGENT_PATH), str(TESTS_PATH)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def log(message: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- statistics ----


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


# ---- tables ----


@dataclass
class Table:
    """One result table: rows of text cells, plus the goal, whether it was met, and notes (method, causes)."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    goal: str = ""
    verdict: str = ""  # "met", "missed", "not measured: <why>" ...
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, *cells: Any) -> None:
        self.rows.append([str(c) for c in cells])

    def _numeric(self, column: int) -> bool:
        """Right-align a column whose every cell starts like a number."""
        cells = [row[column] for row in self.rows if column < len(row) and row[column]]
        return bool(cells) and all(re.match(r"^[(\d.,-]", cell) for cell in cells)

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.goal:
            lines.append(f"**Goal:** {self.goal}  ")
        if self.verdict:
            lines.append(f"**Result:** {self.verdict}")
        if self.goal or self.verdict:
            lines.append("")
        if self.rows:
            lines.append("| " + " | ".join(self.columns) + " |")
            lines.append("|" + "|".join("---:" if self._numeric(i) else "---" for i in range(len(self.columns))) + "|")
            lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        else:
            lines.append("_(no rows)_")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        lines.append("")
        lines.append(f"_Table produced in {self.seconds:.0f} s._")
        lines.append("")
        return "\n".join(lines)


# ---- machine facts ----


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    load = "unknown"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "CPU": cpu,
        "cores (online)": str(os.cpu_count()),
        "RAM": ram,
        "kernel": platform.release(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start": load,
    }


# ---- processes ----


_PR_SET_PDEATHSIG = 1
try:  # resolved here, in the parent: the child between fork and exec only makes the call
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
_SIGTERM = int(signal.SIGTERM)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark process dies, so nothing outlives a crash."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


class ProcessSet:
    """Processes a benchmark started; ``close()`` ends exactly those (by PID): SIGTERM, then SIGKILL.

    Children also get SIGTERM from the kernel if the process (thread) that started them dies first.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("preexec_fn", _die_with_parent)
        proc: subprocess.Popen[Any] = subprocess.Popen(list(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], *, kill: bool = False, timeout: float = 10.0) -> int | None:
        from netns import terminate  # tests/ is on sys.path (setup_paths)

        terminate(proc, timeout, kill=kill)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def close(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)


class LineReader:
    """Collects a subprocess's stdout lines on a thread; ``wait_for`` a line matching a predicate."""

    def __init__(self, proc: subprocess.Popen[Any], stream: Any = None) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._stream = stream if stream is not None else proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, *, start: int = 0) -> str:
        return self.lines[self.wait_index(predicate, timeout, start=start)]

    def wait_index(self, predicate: Callable[[str], bool], timeout: float, *, start: int = 0) -> int:
        """Index of the first line from ``start`` matching ``predicate``; TimeoutError with the tail if none."""
        deadline = time.monotonic() + timeout
        position = start
        with self._cond:
            while True:
                while position < len(self.lines):
                    line = self.lines[position]
                    position += 1
                    if predicate(line):
                        return position - 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._thread.is_alive()):
                    tail = "\n".join(self.lines[-15:])
                    raise TimeoutError(f"no matching output within {timeout:.0f}s (exit {self.proc.poll()}):\n{tail}")
                self._cond.wait(min(remaining, 0.2))

    def count(self) -> int:
        with self._cond:
            return len(self.lines)

    def json_events(self) -> list[dict[str, Any]]:
        with self._cond:
            lines = list(self.lines)
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events


class JsonChild:
    """A child speaking JSON lines: commands on stdin, one JSON answer line per command on stdout."""

    def __init__(self, procs: ProcessSet, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.procs = procs
        self.proc = procs.popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or python_env(),
            cwd=str(REPO),
        )
        self.out = LineReader(self.proc)
        self.err = LineReader(self.proc, self.proc.stderr)

    def wait_event(self, name: str, timeout: float, *, start: int = 0) -> dict[str, Any]:
        def matches(line: str) -> bool:
            try:
                event = json.loads(line)
            except ValueError:
                return False
            return isinstance(event, dict) and event.get("event") in (name, "error")

        try:
            line = self.out.wait_for(matches, timeout, start=start)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nstderr:\n" + "\n".join(self.err.lines[-20:])) from None
        event: dict[str, Any] = json.loads(line)
        if event.get("event") == "error":
            raise RuntimeError(f"child reported an error: {event}\nstderr:\n" + "\n".join(self.err.lines[-20:]))
        return event

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def request(self, command: dict[str, Any], answer: str, timeout: float = 30.0) -> dict[str, Any]:
        start = self.out.count()
        self.send(command)
        return self.wait_event(answer, timeout, start=start)

    def stop(self, *, kill: bool = False) -> None:
        self.procs.stop(self.proc, kill=kill)


# ---- the real control plane (tests/controlplane.py) ----

# The agents authenticate as their own static-token user, bound to exactly the RBAC the cluster role gives
# the agents' ServiceAccount (roles/cluster/templates/rbac.yml.j2), so the audit log tells their requests
# from kube-controller-manager's and the benchmark's own (admin) ones.
AGENT_USER = "l2lb-bench-agent"
AGENT_NAMESPACE = "l2lb-system"
RBAC_TEMPLATE = REPO / "roles" / "cluster" / "templates" / "rbac.yml.j2"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def agent_rbac(user: str = AGENT_USER, namespace: str = AGENT_NAMESPACE) -> list[dict[str, Any]]:
    """The agents' ClusterRole, Roles and bindings as the cluster role applies them, bound to ``user``.

    The ServiceAccount and its token Secret are left out: the benchmark's agents use a static token.
    """
    import jinja2
    import yaml

    rendered = jinja2.Template(RBAC_TEMPLATE.read_text()).render(
        cluster_agent_service_account="l2lb-agent", cluster_namespace=namespace
    )
    documents = []
    for doc in yaml.safe_load_all(rendered):
        if not doc or doc.get("kind") in ("ServiceAccount", "Secret"):
            continue
        if "subjects" in doc:
            doc["subjects"] = [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
        documents.append(doc)
    return documents


def prepare_cluster(plane: ControlPlane, agent_user: str = AGENT_USER, timeout: float = 60.0) -> Any:
    """Our CRDs (established, i.e. served), the agents' namespace and their RBAC for ``agent_user``.

    Returns an admin ``kubernetes.client.ApiClient`` for arranging the rest.
    """
    from kubernetes import client, utils

    from l2lb_agent.model.render import crd_manifests

    api = plane.api_client()
    core: Any = client.CoreV1Api(api)  # the typed client takes plain dicts too
    core.create_namespace({"metadata": {"name": AGENT_NAMESPACE}})
    extensions: Any = client.ApiextensionsV1Api(api)
    names = []
    for crd in crd_manifests():
        extensions.create_custom_resource_definition(crd)
        names.append(crd["metadata"]["name"])
    for doc in agent_rbac(agent_user):
        utils.create_from_dict(api, doc)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            conditions = extensions.read_custom_resource_definition(name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not established within {timeout:.0f} s")
            time.sleep(0.1)
    return api


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(plane: ControlPlane) -> float:
    """CPU seconds kube-apiserver and etcd have used so far (not kube-controller-manager)."""
    pids = plane.pids()
    return sum(cpu_seconds(pid) for name in ("kube-apiserver", "etcd") if (pid := pids.get(name)) is not None)


def writes(counts: Mapping[tuple[str, str], int], *, exclude: Sequence[str] = ()) -> int:
    """Write requests (create, update, patch, delete) among ``counts``, leaving out the resources ``exclude``."""
    return sum(n for (verb, resource), n in counts.items() if verb in WRITE_VERBS and resource not in exclude)


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: time.monotonic() - start
