#!/usr/bin/env python3
"""The l2lb lab: three systemd-nspawn nodes, a client network namespace and a real Kubernetes control plane
(etcd, kube-apiserver, kube-controller-manager from `make components`), joined by one bridge on
198.18.0.0/24, plus the Ansible inventory that drives them.

    python tests/lab/lab.py image [--rebuild] [--prune]   build (or reuse) the cached node image
    python tests/lab/lab.py up [--recreate]               bring the lab up, write inventory/lab/
    python tests/lab/lab.py status [--json]               what is running; exit 0 up, 1 broken, 2 down
    python tests/lab/lab.py down                          stop and remove everything the lab created
    python tests/lab/lab.py fault restart-apiserver|restart-etcd|compact-etcd   control-plane faults

Runs as root on a host without systemd as PID 1. Everything it creates is named ``l2lb-lab*`` /
``l2lb-node*`` and uses 198.18.0.0/24 only; the nodes and the client have no default route, so nothing
leaves the lab. ``up`` is idempotent: a healthy lab is left alone (the inventory is rewritten), a broken
one is torn down and brought up again. Every process the lab starts is recorded (PID and start time) in
the state directory, and ``down`` stops exactly those. See tests/lab/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NODE_PAYLOAD = Path(__file__).resolve().parent / "node"
DEFAULT_STATE_DIR = REPO / "lab-state"
DEFAULT_INVENTORY_DIR = REPO / "inventory" / "lab"
IMAGE_CACHE = Path(os.environ.get("L2LB_LAB_CACHE", "/var/cache/l2lb-lab"))

SUITE = "bookworm"
# The recipe's package set plus two debugging aids for people poking around a node (ps, ping).
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2", "iptables", "procps", "iputils-ping",
)  # fmt: skip
FALLBACK_MIRROR = "http://deb.debian.org/debian"

LAB_NET = ipaddress.ip_network("198.18.0.0/24")
BRIDGE = "l2lb-lab0"
BRIDGE_IP = "198.18.0.1"
BRIDGE_MAC = "02:00:c6:12:00:01"  # locally administered; c6:12 = 198.18, last byte = host part of the IP
CLIENT_NS = "l2lb-lab-client"
CLIENT_VETH = "l2lb-lab-cli"  # host end, on the bridge
CLIENT_IF = "l2lb0"  # inside the client namespace
CLIENT_IP = "198.18.0.2"
CLIENT_MAC = "02:00:c6:12:00:02"
POOL = "198.18.0.240/28"
ECHO_PORT = 8080
API_PORT = 6443
CGROUP = "l2lb-lab"
NSPAWN_RUN = Path("/run/systemd/nspawn")

# Timeouts (seconds).
BOOT_TIMEOUT = 120.0
API_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    veth: str  # host end of the node's veth, on the bridge; the container end is host0
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def mac(self) -> str:
        return f"02:00:c6:12:00:{int(self.ip.rsplit('.', 1)[1]):02x}"


NODES = (
    Node("l2lb-node1", "198.18.0.11", "l2lb-lab-n1", {"node-role.kubernetes.io/control-plane": ""}),
    Node("l2lb-node2", "198.18.0.12", "l2lb-lab-n2", {"node-role.kubernetes.io/worker": "true"}),
    Node("l2lb-node3", "198.18.0.13", "l2lb-lab-n3", {"node-role.kubernetes.io/worker": "true"}),
)

# The lab must never use addresses outside 198.18.0.0/15 (RFC 2544 benchmarking space).
for _addr in (BRIDGE_IP, CLIENT_IP, *(n.ip for n in NODES)):
    assert ipaddress.ip_address(_addr) in LAB_NET, _addr
assert ipaddress.ip_network(POOL).subnet_of(LAB_NET)  # type: ignore[arg-type]
assert all(len(name) <= 15 for name in (BRIDGE, CLIENT_VETH, CLIENT_IF, *(n.veth for n in NODES)))


class LabError(Exception):
    """A failure the user can act on; printed without a traceback."""


def log(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# small process / system helpers


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 60.0, input_text: str | None = None) -> str:
    """Run a command, return its stdout; raise LabError with its stderr when it fails."""
    try:
        proc = subprocess.run(list(cmd), input=input_text, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def in_node(init_pid: int, cmd: Sequence[str]) -> list[str]:
    """The command line that runs ``cmd`` inside a node, entering the same namespaces Ansible's nsenter does."""
    return ["nsenter", f"--target={init_pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--", *cmd]


def in_client(cmd: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", CLIENT_NS, *cmd]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def write_sysctl(path: str, value: str, netns: str | None = None) -> None:
    """Write /proc/sys/<path>; inside ``netns`` if given (net sysctls are per namespace)."""
    if netns is None:
        Path("/proc/sys", path).write_text(value)
    else:
        run(in_client(["sh", "-c", f"echo {value} > /proc/sys/{path}"]))


def lab_python() -> str:
    """The Python with the project's dependencies (Ansible, kubernetes, scapy): the checkout's venv."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# ---------------------------------------------------------------------------------------------------------
# state: every process the lab started, so that `down` stops exactly those


@dataclass
class Proc:
    pid: int
    start: int  # start time in ticks since boot: guards against a recycled PID

    @classmethod
    def of(cls, pid: int) -> Proc:
        stat = proc_stat(pid)
        if stat is None:
            raise LabError(f"process {pid} vanished right after it was started")
        return cls(pid, stat[1])

    def alive(self) -> bool:
        stat = proc_stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[0] not in ("Z", "X")

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def reap(self) -> None:
        """Collect the exit status if the process is our child (only during `up`); harmless otherwise."""
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)


class State:
    """state.json in the state directory, saved after every change."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "state.json"
        self.data: dict[str, Any] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    @property
    def exists(self) -> bool:
        return bool(self.data)

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    def proc(self, key: str) -> Proc | None:
        rec = self.data.get("procs", {}).get(key)
        return Proc(rec["pid"], rec["start"]) if rec else None

    def set_proc(self, key: str, proc: Proc) -> None:
        self.data.setdefault("procs", {})[key] = {"pid": proc.pid, "start": proc.start}
        self.save()


# ---------------------------------------------------------------------------------------------------------
# the node image: debootstrap once, cached outside the checkout, then the lab payload on a copy


def apt_mirror() -> str:
    """The Debian mirror apt on this host uses for the suite (the lab builds from the same one)."""
    if os.environ.get("L2LB_LAB_MIRROR"):
        return os.environ["L2LB_LAB_MIRROR"]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            entry: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith((" ", "#")):
                    entry[key.strip().lower()] = value.strip()
            if SUITE in entry.get("suites", "").split() and "deb" in entry.get("types", "").split():
                return entry["uris"].split()[0]
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", line + " ")
            if match and match.group(2) == SUITE:
                return match.group(1)
    return FALLBACK_MIRROR


def customize_image(root: Path) -> None:
    """Turn the debootstrapped tree into a lab node image (runs on a copy; its source is part of the hash)."""
    # Hostname comes from `systemd-nspawn -M`; debootstrap copied the build host's /etc/hostname.
    (root / "etc/hostname").unlink(missing_ok=True)
    # No DNS in the lab (and no route out of it); an empty machine-id makes every boot generate its own.
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("# l2lb lab node: no DNS, the lab has no way out of 198.18.0.0/24\n")
    (root / "etc/machine-id").write_text("")
    # Per-node settings (address, pool, echo port) are bind-mounted read-only at /etc/l2lb-lab at boot.
    (root / "etc/l2lb-lab").mkdir(exist_ok=True)
    (root / "etc/systemd/network/10-l2lb-host0.network").symlink_to("/etc/l2lb-lab/host0.network")
    echo = root / "usr/local/bin/l2lb-echo"
    shutil.copyfile(NODE_PAYLOAD / "l2lb_echo.py", echo)
    echo.chmod(0o755)
    for unit in ("l2lb-echo.service", "l2lb-kube-proxy.service"):
        shutil.copyfile(NODE_PAYLOAD / unit, root / "etc/systemd/system" / unit)
    run(["chroot", str(root), "systemctl", "enable", "systemd-networkd.service", "l2lb-echo.service",
         "l2lb-kube-proxy.service"])  # fmt: skip
    run(["chroot", str(root), "apt-get", "clean"])
    (root / "etc/l2lb-lab-image").write_text(f"{image_name()}\n")


def _digest(parts: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:12]


def base_image_name() -> str:
    return f"{SUITE}-{_digest([SUITE.encode(), b'minbase', *(p.encode() for p in sorted(PACKAGES))])}"


def image_name() -> str:
    payload = [inspect.getsource(customize_image).encode()]
    for path in sorted(NODE_PAYLOAD.iterdir()):
        if path.is_file():
            payload += [path.name.encode(), path.read_bytes()]
    return f"{base_image_name()}-lab-{_digest(payload)}"


def unmount_below(path: Path) -> None:
    """Unmount whatever a failed build left mounted under ``path`` (debootstrap mounts /proc, /sys)."""
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mountpoint in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], check=False)


def remove_tree(path: Path) -> None:
    if path.exists():
        unmount_below(path)
        run(["rm", "-rf", "--one-file-system", str(path)], timeout=300)


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    with open(IMAGE_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_into(final: Path, what: str, build: Any) -> None:
    """Build a tree in a temporary directory next to ``final`` and rename it into place (atomic)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=IMAGE_CACHE))
    try:
        started = time.monotonic()
        build(tmp / "rootfs", tmp)
        (tmp / "rootfs").rename(final)
        log(f"{what} ready in {time.monotonic() - started:.0f}s: {final}")
    finally:
        remove_tree(tmp)


def debootstrap(rootfs: Path, workdir: Path) -> None:
    mirror = apt_mirror()
    log(f"building the base image with debootstrap from {mirror} (about a minute) ...")
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), mirror]
    with open(workdir / "debootstrap.log", "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise LabError(f"debootstrap failed:\n    {tail(workdir / 'debootstrap.log')}")


def ensure_image(rebuild: bool = False) -> Path:
    """The lab image's root directory, built if missing. Base and lab layers are cached separately."""
    if os.geteuid() != 0:
        raise LabError("building the image needs root (debootstrap, chroot)")
    base = IMAGE_CACHE / base_image_name()
    image = IMAGE_CACHE / image_name()
    with cache_lock():
        if rebuild:
            for path in (image, base):
                remove_tree(path)
        if not base.exists():
            build_into(base, "base image", debootstrap)
        if not image.exists():

            def layer(rootfs: Path, _workdir: Path) -> None:
                run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)], timeout=300)
                customize_image(rootfs)

            build_into(image, "lab image", layer)
    return image


def prune_images(keep: Path) -> None:
    """Remove cached images other than ``keep`` and its base, except those a running node boots from."""
    keep_names = {keep.name, base_image_name()}
    with cache_lock():
        for path in sorted(IMAGE_CACHE.iterdir()):
            if not path.is_dir() or path.name in keep_names:
                continue
            if image_in_use(path):
                log(f"keeping cached image {path}: a running systemd-nspawn uses it")
                continue
            log(f"removing cached image {path}")
            remove_tree(path)


def image_in_use(path: Path) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(path).encode() in cmdline.read_bytes().split(b"\0"):
                return True
    return False


# ---------------------------------------------------------------------------------------------------------
# cgroups: each node's systemd-nspawn runs in its own cgroup. With no systemd on the host there is nobody to
# create a scope per container, and `--keep-unit` would put all three containers' "payload" cgroups at the
# same path, where their systemd instances would manage (and kill) each other's services.


def cgroup_roots() -> list[Path]:
    """The mounted hierarchies nspawn uses for the container: name=systemd (v1) and/or cgroup2."""
    roots = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _source, target, fstype, options, *_ = line.split()
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            roots.append(Path(target))
    return roots


def node_cgroups(node: Node) -> list[Path]:
    paths = [root / CGROUP / node.name for root in cgroup_roots()]
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    return paths


def remove_cgroups() -> list[str]:
    """rmdir the lab's cgroup trees (what nspawn and the containers' systemd created below them)."""
    problems = []
    for root in cgroup_roots():
        top = root / CGROUP
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            try:
                os.rmdir(dirpath)
            except OSError as exc:
                pids = Path(dirpath, "cgroup.procs").read_text().split()
                problems.append(f"cgroup {dirpath} not removed ({exc.strerror}); processes in it: {pids or 'none'}")
    return problems


# ---------------------------------------------------------------------------------------------------------
# network: the bridge (API side) and the client namespace


def create_network(state_dir: Path) -> None:
    run(["ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    write_sysctl(f"net/ipv6/conf/{BRIDGE}/disable_ipv6", "1")  # IPv4-only lab: no link-local chatter
    run(["ip", "addr", "add", f"{BRIDGE_IP}/{LAB_NET.prefixlen}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "alias", f"l2lb lab, state {state_dir}"])
    run(["ip", "link", "set", BRIDGE, "up"])
    run(["ip", "netns", "add", CLIENT_NS])
    run(["ip", "link", "add", CLIENT_VETH, "type", "veth", "peer", "name", CLIENT_IF, "netns", CLIENT_NS])
    write_sysctl(f"net/ipv6/conf/{CLIENT_VETH}/disable_ipv6", "1")
    run(["ip", "link", "set", CLIENT_VETH, "master", BRIDGE, "up"])
    write_sysctl(f"net/ipv6/conf/{CLIENT_IF}/disable_ipv6", "1", netns=CLIENT_NS)
    # The client learns from gratuitous ARP (a takeover must update its neighbour entry at once).
    write_sysctl("net/ipv4/conf/all/arp_accept", "1", netns=CLIENT_NS)
    write_sysctl(f"net/ipv4/conf/{CLIENT_IF}/arp_accept", "1", netns=CLIENT_NS)
    run(["ip", "-n", CLIENT_NS, "link", "set", "lo", "up"])
    run(["ip", "-n", CLIENT_NS, "link", "set", CLIENT_IF, "address", CLIENT_MAC])
    run(["ip", "-n", CLIENT_NS, "addr", "add", f"{CLIENT_IP}/{LAB_NET.prefixlen}", "dev", CLIENT_IF])
    run(["ip", "-n", CLIENT_NS, "link", "set", CLIENT_IF, "up"])


# ---------------------------------------------------------------------------------------------------------
# nodes


def write_node_config(node: Node, config_dir: Path) -> None:
    """What the node sees at /etc/l2lb-lab: its host0 address (systemd-networkd) and the lab settings."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "host0.network").write_text(
        "# l2lb lab: the node's interface on the lab bridge (written by tests/lab/lab.py)\n"
        "[Match]\nName=host0\n\n"
        f"[Link]\nMACAddress={node.mac}\n\n"
        # No Gateway: the lab has no route out. IPv4 only.
        f"[Network]\nAddress={node.ip}/{LAB_NET.prefixlen}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    (config_dir / "node.env").write_text(
        f"L2LB_LAB_NODE={node.name}\nL2LB_LAB_POOL={POOL}\nL2LB_LAB_ECHO_PORT={ECHO_PORT}\nL2LB_LAB_API=https://{BRIDGE_IP}:{API_PORT}\n"
    )


def start_node(node: Node, image: Path, state: State) -> Proc:
    config_dir = state.dir / "nodes" / node.name
    write_node_config(node, config_dir)
    cgroups = node_cgroups(node)
    cmd = [
        "systemd-nspawn", "--directory", str(image), "--machine", node.name,
        "--register=no", "--keep-unit", "--boot", "--volatile=overlay",
        "--private-network", f"--network-veth-extra={node.veth}:host0",
        f"--bind-ro={config_dir}:/etc/l2lb-lab",
        "--console=read-only", "--link-journal=no", "--resolv-conf=off",
    ]  # fmt: skip

    def enter_cgroups() -> None:
        for cgroup in cgroups:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    with open(state.dir / f"{node.name}.console.log", "ab") as console:
        popen = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=enter_cgroups,
        )  # fmt: skip
    proc = Proc.of(popen.pid)
    state.set_proc(f"nspawn/{node.name}", proc)
    return proc


def find_init(nspawn: Proc) -> int | None:
    """The container's init: the child of systemd-nspawn that is PID 1 of its own PID namespace."""
    for children in Path(f"/proc/{nspawn.pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if len(nspid) >= 2 and nspid[-1] == "1" and Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return int(pid)
    return None


def tail(path: Path, lines: int = 15) -> str:
    """The last non-empty lines of a log, without the console's colour escapes."""
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace"))
    except FileNotFoundError:
        return "(no log)"
    return "\n    ".join([line.rstrip() for line in text.splitlines() if line.strip()][-lines:]) or "(empty)"


def wait_node(node: Node, state: State, deadline: float) -> None:
    """Find the init PID, put the veth on the bridge, and wait until systemd inside reports it is up."""
    nspawn = state.proc(f"nspawn/{node.name}")
    assert nspawn is not None
    console = state.dir / f"{node.name}.console.log"
    init_pid = None
    while init_pid is None or not link_exists(node.veth):
        nspawn.reap()
        if not nspawn.alive():
            raise LabError(f"{node.name}: systemd-nspawn exited during boot; {console}:\n    {tail(console)}")
        if time.monotonic() > deadline:
            raise LabError(f"{node.name}: no container init / veth {node.veth} after boot timeout")
        init_pid = init_pid or find_init(nspawn)
        time.sleep(0.05)
    state.set_proc(f"init/{node.name}", Proc.of(init_pid))
    write_sysctl(f"net/ipv6/conf/{node.veth}/disable_ipv6", "1")
    run(["ip", "link", "set", node.veth, "master", BRIDGE, "up"])

    system_state = ""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LabError(f"{node.name}: systemd did not finish booting (last state {system_state!r})")
        proc = subprocess.run(
            in_node(init_pid, ["systemctl", "is-system-running", "--wait"]),
            capture_output=True, text=True, timeout=remaining, check=False,
        )  # fmt: skip
        system_state = proc.stdout.strip()
        if system_state in ("running", "degraded"):
            break
        if system_state in ("maintenance", "stopping"):
            raise LabError(f"{node.name}: systemd is {system_state}")
        time.sleep(0.2)  # systemd is not answering on its private socket yet
    if system_state == "degraded":
        failed = run(in_node(init_pid, ["systemctl", "--failed", "--no-legend", "--plain"]), check=False)
        log(f"{node.name}: systemd is degraded; failed units:\n    " + failed.strip().replace("\n", "\n    "))
    node_state = state.data.setdefault("nodes", {}).setdefault(node.name, {})
    node_state.update({"ip": node.ip, "mac": node.mac, "init_pid": init_pid, "systemd": system_state})
    state.save()


# ---------------------------------------------------------------------------------------------------------
# the Kubernetes control plane: real etcd, kube-apiserver (HTTPS on the bridge address, port 6443) and
# kube-controller-manager, built by `make components` (tests/controlplane.py starts them)

# Started in this order, stopped in the reverse one (etcd last, so kube-apiserver shuts down cleanly).
API_PROCS = ("api/etcd", "api/kube-apiserver", "api/kube-controller-manager")


def start_api(state: State) -> None:
    """Bring the control plane up (each component waited for), register the nodes as kubelets would."""
    sys.path.insert(0, str(REPO / "tests"))
    from controlplane import ControlPlane, ControlPlaneError

    api_dir = state.dir / "api"
    plane = ControlPlane(state_dir=api_dir, host=BRIDGE_IP, port=API_PORT, start_timeout=API_TIMEOUT)
    try:
        plane.start()
    except ControlPlaneError as exc:
        raise LabError(f"the control plane did not start: {exc}") from None
    finally:
        for name, pid in plane.pids().items():
            if pid is not None:
                state.set_proc(f"api/{name}", Proc.of(pid))
    for node in NODES:
        plane.add_node(node.name, addresses=[node.ip])
    state.data["api"] = {
        "url": plane.url,
        "ca": plane.ca_file,
        "token_file": str(api_dir / "admin-token"),
        "kubeconfig": str(api_dir / "admin.kubeconfig"),
        "logs": str(plane.log_dir),
    }
    state.save()


FAULTS = ("restart-apiserver", "restart-etcd", "compact-etcd")


def api_fault(state_dir: Path, fault: str) -> None:
    """Restart kube-apiserver or etcd of a running lab (same ports, certificates, data), or compact etcd."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root")
    state = State(state_dir)
    refuse_foreign_lab(state)
    if health(state)[0] != "up":
        raise LabError(f"the lab is not up (state {state_dir}); run `lab.py up` first")
    sys.path.insert(0, str(REPO / "tests"))
    from controlplane import ControlPlane, ControlPlaneError

    started = time.monotonic()
    try:
        plane = ControlPlane.attach(state.dir / "api", start_timeout=API_TIMEOUT)
    except ControlPlaneError as exc:
        raise LabError(str(exc)) from None
    try:
        if fault == "restart-apiserver":
            plane.restart_apiserver()
        elif fault == "restart-etcd":
            plane.restart_etcd()
        else:
            revision = plane.compact_etcd()
            log(f"etcd compacted to revision {revision}")
    except ControlPlaneError as exc:
        raise LabError(f"{fault} failed: {exc}") from None
    finally:
        for name, pid in plane.pids().items():  # a restarted component has a new PID
            if pid is not None and (proc := state.proc(f"api/{name}")) and proc.pid != pid:
                state.set_proc(f"api/{name}", Proc.of(pid))
    log(f"{fault}: done in {time.monotonic() - started:.1f}s; the API is ready")


# ---------------------------------------------------------------------------------------------------------
# checks run at the end of `up` (cheap, and they catch a broken lab before Ansible does)

ECHO_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as conn:
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
print(data.decode().strip())
"""

API_CLIENT = """
import json, ssl, sys, urllib.request
ca, token = sys.stdin.read().split("\\0")
request = urllib.request.Request(sys.argv[1] + "/version", headers={"Authorization": "Bearer " + token.strip()})
context = ssl.create_default_context(cadata=ca)
print(json.load(urllib.request.urlopen(request, context=context, timeout=3)).get("gitVersion", "?"))
"""


def echo_from_client(address: str, port: int = ECHO_PORT) -> str:
    """What the echo server answers a TCP connection from the client namespace (the node name)."""
    return run(in_client(["python3", "-c", ECHO_CLIENT, address, str(port)]), timeout=10).strip()


def api_from_node(init_pid: int, state: State) -> str:
    api = state.data["api"]
    secret = Path(api["ca"]).read_text() + "\0" + Path(api["token_file"]).read_text()
    return run(in_node(init_pid, ["python3", "-c", API_CLIENT, api["url"]]), input_text=secret, timeout=10).strip()


def check_lab(state: State) -> None:
    deadline = time.monotonic() + 15
    for node in NODES:
        while True:
            try:
                answer = echo_from_client(node.ip)
            except LabError as exc:
                answer = str(exc)
            if answer == node.name:
                break
            if time.monotonic() > deadline:
                raise LabError(f"client -> {node.ip}:{ECHO_PORT} answered {answer!r}, expected {node.name!r}")
            time.sleep(0.2)
    first = state.data["nodes"][NODES[0].name]["init_pid"]
    version = api_from_node(first, state)
    log(f"checks passed: client reaches every node's echo server; {NODES[0].name} reaches the API ({version})")


# ---------------------------------------------------------------------------------------------------------
# inventory


def write_inventory(state: State, inventory_dir: Path) -> None:
    api = state.data["api"]
    nodes = state.data["nodes"]
    probe_python = state.dir / "probe-python"
    probe_python.write_text(
        "#!/bin/sh\n# Ansible's interpreter for the l2lb_probe host: the checkout's Python, inside the client netns.\n"
        f'exec ip netns exec {CLIENT_NS} {lab_python()} "$@"\n'
    )
    probe_python.chmod(0o755)
    header = (
        f"# Generated by `python tests/lab/lab.py up` for the lab in {state.dir}.\n"
        "# Rewritten by every `lab up`, removed by `lab down`; do not edit (copy group_vars/all.yml instead).\n"
    )
    hosts = [header, "all:", "  hosts:", "    localhost:  # API tasks (kubernetes.core, the l2lb modules) run here"]
    hosts += ["      ansible_connection: local", f"      ansible_python_interpreter: {lab_python()}"]
    hosts += ["  children:", "    l2lb_nodes:", "      vars:", "        # No SSH: enter the node's namespaces."]
    hosts += ["        ansible_connection: community.docker.nsenter"]
    hosts += ["        ansible_python_interpreter: /usr/bin/python3"]
    hosts += ["      hosts:"]
    for node in NODES:
        hosts += [f"        {node.name}:", f"          ansible_nsenter_pid: {nodes[node.name]['init_pid']}"]
        hosts += [f"          l2lb_lab_address: {node.ip}", f'          l2lb_lab_mac: "{node.mac}"']
    hosts += ["    l2lb_probe:", "      hosts:", f"        {CLIENT_NS}:  # a host on the nodes' L2 segment"]
    hosts += ["          ansible_connection: local", f"          ansible_python_interpreter: {probe_python}"]
    hosts += [f"          l2lb_probe_interface: {CLIENT_IF}", f"          l2lb_lab_address: {CLIENT_IP}"]
    all_yml = GROUP_VARS_TEMPLATE.format(
        header=header, kubeconfig=api["kubeconfig"], url=api["url"], ca=api["ca"], pool=POOL
    )
    files = {"hosts.yml": "\n".join(hosts) + "\n", "group_vars/all.yml": all_yml}
    for node in NODES:
        labels = "".join(f'  {key}: "{value}"\n' for key, value in node.labels.items())
        files[f"host_vars/{node.name}.yml"] = (
            f"{header}# Labels of this Node (the cluster role sets them on the Node).\nl2lb_node_labels:\n{labels}"
        )
    for name, text in files.items():
        path = inventory_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\n" + text)
    state.data["inventory"] = {"dir": str(inventory_dir), "files": sorted(files)}
    state.save()


GROUP_VARS_TEMPLATE = """{header}
# This is the whole l2lb model of the lab: what you write in group_vars for your own cluster. Copy it,
# point the API settings at your cluster, and change the addresses, selectors and interfaces.

# --- where the Kubernetes API is (here: the lab's kube-apiserver on the lab bridge) ---
l2lb_kubeconfig: {kubeconfig}  # admin credentials for the controller-side tasks
l2lb_api_url: {url}  # what the agents on the nodes talk to
l2lb_api_ca_file: {ca}  # CA that signed the API server certificate

# --- IP pools: where LoadBalancer IPs come from ---
# The pool must lie in a subnet the announcing interfaces are directly attached to (ARP only reaches the
# local segment): the lab nodes' host0 is in 198.18.0.0/24. A /28 CIDR gives .241-.254 (network and
# broadcast addresses are skipped unless allowFirstLastIPs: true).
l2lb_pools:
  - name: lab
    blocks:
      - cidr: {pool}

# --- announcement policies: which nodes may announce which services, on which interfaces ---
# Only the workers announce (l2lb-node1 carries the control-plane label, see host_vars/); interfaces are
# regexes matched against each node's interface names.
l2lb_policies:
  - name: workers
    nodeSelector:
      matchLabels:
        node-role.kubernetes.io/worker: "true"
    interfaces: ["^host0$"]
    loadBalancerIPs: true
    externalIPs: false

# --- failover timing ---
# Each agent renews its node's heartbeat Lease every renew interval; a node whose Lease has not changed
# for the lease duration is considered gone and its IPs move (failover within about lease_duration + 1 s).
l2lb_heartbeat_renew_interval: 0.5
l2lb_heartbeat_lease_duration: 2.0
"""


def remove_inventory(state: State, inventory_dir: Path) -> None:
    recorded = state.data.get("inventory", {})
    base = Path(recorded.get("dir", inventory_dir))
    names = recorded.get("files") or ["hosts.yml", "group_vars/all.yml", *(f"host_vars/{n.name}.yml" for n in NODES)]
    for name in names:
        (base / name).unlink(missing_ok=True)
    for sub in ("group_vars", "host_vars"):
        with contextlib.suppress(OSError):
            (base / sub).rmdir()  # only when empty: a user's own files stay


# ---------------------------------------------------------------------------------------------------------
# up / down / status


def health(state: State) -> tuple[str, list[str]]:
    """("up" | "broken" | "down", problems)."""
    if not state.exists:
        owner = bridge_owner()
        if owner and Path(owner) != state.dir and (Path(owner) / "state.json").exists():
            return "down", [f"not here, but a lab is up with state dir {owner}"]
        leftovers = lab_leftovers()
        if leftovers:
            return "broken", [f"no lab state in {state.dir}, but found {', '.join(leftovers)}"]
        return "down", []
    problems = []
    for key in (*API_PROCS, *(f"{kind}/{n.name}" for kind in ("nspawn", "init") for n in NODES)):
        proc = state.proc(key)
        if proc is None or not proc.alive():
            problems.append(f"{key}: " + ("never started" if proc is None else f"process {proc.pid} is gone"))
    for link in (BRIDGE, CLIENT_VETH, *(n.veth for n in NODES)):
        if not link_exists(link):
            problems.append(f"link {link} is missing")
    if not netns_exists(CLIENT_NS):
        problems.append(f"netns {CLIENT_NS} is missing")
    if state.data.get("phase") != "up":
        problems.append(f"lab is in phase {state.data.get('phase')!r} (an interrupted up/down?)")
    return ("up" if not problems else "broken", problems)


def lab_leftovers() -> list[str]:
    found = [f"link {name}" for name in (BRIDGE, CLIENT_VETH, *(n.veth for n in NODES)) if link_exists(name)]
    found += [f"netns {CLIENT_NS}"] if netns_exists(CLIENT_NS) else []
    found += [f"cgroup {root / CGROUP}" for root in cgroup_roots() if (root / CGROUP).exists()]
    return found


def bridge_owner() -> str | None:
    try:
        alias = Path(f"/sys/class/net/{BRIDGE}/ifalias").read_text().strip()
    except FileNotFoundError:
        return None
    return alias.split("state ", 1)[1] if "state " in alias else None


def refuse_foreign_lab(state: State) -> None:
    """The lab's names are global: never touch a lab that another state directory runs."""
    owner = bridge_owner()
    if not state.exists and owner and Path(owner) != state.dir and (Path(owner) / "state.json").exists():
        raise LabError(f"the lab is up with state dir {owner}; use `lab.py --state-dir {owner} ...`")


def up(state_dir: Path, inventory_dir: Path, recreate: bool) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bridge, systemd-nspawn)")
    for tool in ("systemd-nspawn", "nsenter", "ip", "iptables", "debootstrap"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found; run `make apt` (Debian packages systemd-container, iproute2, ...)")
    state = State(state_dir)
    refuse_foreign_lab(state)
    status, problems = health(state)
    if status == "up" and not recreate:
        write_inventory(state, inventory_dir)
        log(f"the lab is already up (state {state_dir}); inventory rewritten: {inventory_dir / 'hosts.yml'}")
        return
    if status != "down":
        log("tearing down the existing lab first: " + ("--recreate" if status == "up" else "; ".join(problems)))
        down(state_dir, inventory_dir)
        state = State(state_dir)

    image = ensure_image()
    started = time.monotonic()
    state.dir.mkdir(parents=True, exist_ok=True)
    state.data = {"phase": "starting", "image": str(image), "created": time.time(), "procs": {}}
    state.data["nspawn_run_dir_existed"] = NSPAWN_RUN.exists()  # nspawn creates it; down removes it if so
    state.save()
    try:
        create_network(state_dir)
        for node in NODES:
            start_node(node, image, state)
        start_api(state)
        deadline = time.monotonic() + BOOT_TIMEOUT
        for node in NODES:
            wait_node(node, state, deadline)
        check_lab(state)
        write_inventory(state, inventory_dir)
        state.data["phase"] = "up"
        state.save()
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            for path in sorted(state_dir.glob("*.log")):  # the state dir goes away with the cleanup
                log(f"last lines of {path.name}:\n    {tail(path)}")
        log(f"bringing the lab up failed ({exc.__class__.__name__}); cleaning up")
        try:
            down(state_dir, inventory_dir)
        except Exception as cleanup_error:
            log(f"cleanup after the failed up did not finish: {cleanup_error}")
        raise
    log(f"the lab is up in {time.monotonic() - started:.1f}s")
    print_status(state)


def stop_procs(procs: list[tuple[str, Proc]], sig: int, timeout: float) -> list[tuple[str, Proc]]:
    """Signal the live ones, wait up to ``timeout`` for them to go; return the survivors."""
    for _key, proc in procs:
        proc.signal(sig)
    deadline = time.monotonic() + timeout
    while True:
        for _key, proc in procs:
            proc.reap()
        survivors = [(key, proc) for key, proc in procs if proc.alive()]
        if not survivors or time.monotonic() > deadline:
            return survivors
        time.sleep(0.05)


def down(state_dir: Path, inventory_dir: Path) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root")
    state = State(state_dir)
    refuse_foreign_lab(state)
    if state.exists:
        state.data["phase"] = "stopping"
        state.save()
    problems: list[str] = []
    # SIGTERM to systemd-nspawn powers the container off cleanly (it forwards it as SIGRTMIN+3 to init).
    nspawns = [(f"nspawn/{n.name}", p) for n in NODES if (p := state.proc(f"nspawn/{n.name}"))]
    api = [(key, p) for key in reversed(API_PROCS[1:]) if (p := state.proc(key))]
    survivors = stop_procs(nspawns + api, signal.SIGTERM, STOP_TIMEOUT)
    etcd = [(key, p) for key in API_PROCS[:1] if (p := state.proc(key))]
    survivors += stop_procs(etcd, signal.SIGTERM, STOP_TIMEOUT)
    if survivors:
        log(f"still running after {STOP_TIMEOUT:.0f}s, killing: {', '.join(key for key, _ in survivors)}")
        inits = [(f"init/{n.name}", p) for n in NODES if (p := state.proc(f"init/{n.name}"))]
        # Killing a container's init kills its whole PID namespace.
        for key, proc in stop_procs(inits + survivors, signal.SIGKILL, 5.0):
            problems.append(f"{key} (pid {proc.pid}) survived SIGKILL")
    for link in (*(n.veth for n in NODES), CLIENT_VETH, BRIDGE):
        if link_exists(link):
            run(["ip", "link", "del", link], check=False)
    if netns_exists(CLIENT_NS):
        run(["ip", "netns", "del", CLIENT_NS], check=False)
    problems += remove_cgroups()
    # systemd-nspawn leaves per-machine directories (and, if it created them, its run dirs) behind.
    for node in NODES:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(NSPAWN_RUN / "propagate" / node.name)
    if state.exists and not state.data.get("nspawn_run_dir_existed", True):
        for path in (NSPAWN_RUN / "propagate", NSPAWN_RUN / "locks", NSPAWN_RUN):
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty: another nspawn user may have files there now
    remove_inventory(state, inventory_dir)
    problems += [f"{what} is still there" for what in lab_leftovers()]
    if problems:
        raise LabError(f"the lab was not removed completely (state kept in {state_dir}):\n  " + "\n  ".join(problems))
    if state_dir.exists():
        remove_tree(state_dir)
    log("the lab is down")


def print_status(state: State, as_json: bool = False) -> int:
    status, problems = health(state)
    if as_json:
        print(json.dumps({"status": status, "problems": problems, "state_dir": str(state.dir), **state.data}, indent=2))
        return {"up": 0, "broken": 1}.get(status, 2)
    print(f"lab: {status} (state {state.dir})")
    for problem in problems:
        print(f"  problem: {problem}")
    if not state.exists:
        return {"up": 0, "broken": 1}.get(status, 2)
    print(f"  bridge    {BRIDGE} {BRIDGE_IP}/{LAB_NET.prefixlen} (API side, root namespace)")
    print(f"  client    netns {CLIENT_NS}, {CLIENT_IF} {CLIENT_IP} {CLIENT_MAC}")
    for node in NODES:
        info = state.data.get("nodes", {}).get(node.name, {})
        init = state.proc(f"init/{node.name}")
        systemd = "?"
        if init and init.alive():
            systemd = run(in_node(init.pid, ["systemctl", "is-system-running"]), check=False, timeout=10).strip()
        nspawn = state.proc(f"nspawn/{node.name}")
        print(
            f"  node      {node.name} {node.ip} {node.mac} nspawn pid {nspawn.pid if nspawn else '-'}, "
            f"init pid {info.get('init_pid', '-')}, systemd {systemd}, console {node.name}.console.log"
        )
    api = state.data.get("api", {})
    pids = ", ".join(f"{key[4:]} {p.pid}" for key in API_PROCS if (p := state.proc(key)))
    print(f"  api       {api.get('url', '-')} (pids: {pids or '-'}), logs {api.get('logs', '-')}")
    print(f"  kubeconfig {api.get('kubeconfig', '-')}")
    inventory = state.data.get("inventory", {})
    if inventory:
        print(f"  inventory {Path(inventory['dir']) / 'hosts.yml'}")
    print(f"  image     {state.data.get('image', '-')}")
    return {"up": 0, "broken": 1}.get(status, 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("L2LB_LAB_STATE", DEFAULT_STATE_DIR)))
    parser.add_argument("--inventory-dir", type=Path, default=DEFAULT_INVENTORY_DIR)
    sub = parser.add_subparsers(dest="command", required=True)
    image_cmd = sub.add_parser("image", help="build or reuse the cached node image, print its path")
    image_cmd.add_argument("--rebuild", action="store_true", help="rebuild the base and lab image from scratch")
    image_cmd.add_argument("--prune", action="store_true", help="remove other cached images")
    up_cmd = sub.add_parser("up", help="bring the lab up (no-op if it is up and healthy)")
    up_cmd.add_argument("--recreate", action="store_true", help="tear a healthy lab down and bring it up again")
    status_cmd = sub.add_parser("status", help="show the lab; exit 0 up, 1 broken, 2 down")
    status_cmd.add_argument("--json", action="store_true")
    sub.add_parser("down", help="stop and remove everything the lab created")
    fault_cmd = sub.add_parser("fault", help="restart kube-apiserver or etcd of the running lab, or compact etcd")
    fault_cmd.add_argument("fault", choices=FAULTS)
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    inventory_dir = args.inventory_dir.resolve()

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)  # so that `up` cleans up when it is killed
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `lab.py status | head` ends quietly
    try:
        if args.command == "image":
            image = ensure_image(rebuild=args.rebuild)
            if args.prune:
                prune_images(image)
            print(image)
        elif args.command == "up":
            up(state_dir, inventory_dir, args.recreate)
        elif args.command == "down":
            down(state_dir, inventory_dir)
        elif args.command == "fault":
            api_fault(state_dir, args.fault)
        else:
            return print_status(State(state_dir), as_json=args.json)
    except LabError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
