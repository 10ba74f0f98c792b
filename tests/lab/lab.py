#!/usr/bin/env python3
"""The l2lb lab: three systemd-nspawn nodes, a client network namespace and a real Kubernetes control plane
(etcd, kube-apiserver, kube-controller-manager from `make components`), joined by one bridge on
198.18.0.0/24 and 2001:2::/64 (dual stack), plus the Ansible inventory that drives them. Every node runs the
real kube-proxy (systemd, config from its ConfigMap as kubeadm has it); the demo Services' backends are real
processes in the nodes whose Pods kube-controller-manager's EndpointSlice controller lists.

    python tests/lab/lab.py image [--rebuild] [--prune]   build (or reuse) the cached node images
    python tests/lab/lab.py up [--recreate]               bring the lab up, write inventory/lab/
    python tests/lab/lab.py status [--json]               what is running; exit 0 up, 1 broken, 2 down
    python tests/lab/lab.py down                          stop and remove everything the lab created
    python tests/lab/lab.py fault restart-apiserver|restart-etcd|compact-etcd   control-plane faults
    python tests/lab/lab.py kube-proxy nftables|iptables|ipvs [--strict-arp]     kube-proxy's mode, every node
    python tests/lab/lab.py backend list|add|remove|ready|unready|move|scale ...  the demo backend pods
    python tests/lab/lab.py arm64 up|down                 an aarch64 node (l2lb-node4, qemu-user) joins or leaves

Runs as root on a host without systemd as PID 1. Everything it creates is named ``l2lb-lab*`` /
``l2lb-node*`` and uses 198.18.0.0/15 and 2001:2::/48 only (RFC 2544's and RFC 5180's benchmarking ranges);
the nodes and the client have no default route, so nothing leaves the lab. The host itself has no IPv6 on the
bridge: IPv6 runs between the nodes and the client only. ``up`` is idempotent: a healthy lab is left alone (the
inventory is rewritten), a broken one is torn down and brought up again. Every process the lab starts is
recorded (PID and start time) in the state directory, and ``down`` stops exactly those. See tests/lab/README.md.
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NODE_PAYLOAD = Path(__file__).resolve().parent / "node"
DEFAULT_STATE_DIR = REPO / "lab-state"
DEFAULT_INVENTORY_DIR = REPO / "inventory" / "lab"
IMAGE_CACHE = Path(os.environ.get("L2LB_LAB_CACHE", "/var/cache/l2lb-lab"))

# The nodes run three Debian releases, as a real mixed cluster does: 11 (Python 3.9, nft 0.9.8), 12 (3.11),
# 13 (3.13). The host's apt sources name bookworm; the other suites come from the same archive.
SUITE = "bookworm"
SUITES = ("bullseye", "bookworm", "trixie")
# The recipe's package set plus two debugging aids for people poking around a node (ps, ping).
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2", "iptables", "nftables", "procps",
    "iputils-ping",
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
# IPv6, the twin of the above in RFC 5180's benchmarking prefix: hosts ::2 (client), ::11, ::12, ... (nodes).
LAB_NET6 = ipaddress.ip_network("2001:2::/64")
CLIENT_IP6 = "2001:2::2"
POOL6 = "2001:2::240/124"
API_PORT = 6443
# Debian 11's nft is 0.9.8 and kube-proxy's nftables mode needs 1.0.1: on such a node the lab's kube-proxy
# runs in iptables mode (node/l2lb_kube_proxy_config.py), as an admin of a mixed cluster would have to.
OLD_NFT_SUITES = ("bullseye",)


def proxy_mode(node: Node, requested: str) -> str:
    """The mode kube-proxy really runs in on ``node`` when the ConfigMap asks for ``requested``."""
    forwarding = "nftables" if requested == "ipvs" else requested  # the IPVS stand-in forwards with nftables
    return "iptables" if forwarding == "nftables" and node.suite in OLD_NFT_SUITES else forwarding


# The pod network: each node's backends get /32s from 198.18.<node host part>.0/24 (on its lo), and every node
# routes the other nodes' ranges to them over the lab bridge, as a host-gw CNI would. kube-proxy's clusterCIDR.
CLUSTER_CIDR = "198.18.8.0/21"
# IPv6 pods: 2001:2:0:1<host part>::/64 per node (2001:2:0:111::/64 on l2lb-node1), outside LAB_NET6 (the client
# must not look like a pod to kube-proxy) and outside the control plane's IPv6 Service range 2001:2:0:ff::/108.
CLUSTER_CIDR6 = "2001:2:0:100::/56"
BACKEND_PORT = 8080  # every backend listens here (TCP and UDP); the demo Services' targetPort
KUBE_PROXY_USER = "system:kube-proxy"  # bound to ClusterRole system:node-proxier by kube-apiserver's defaults
KUBE_PROXY_MODES = ("nftables", "iptables", "ipvs")
KUBE_PROXY_HEALTHZ_PORT = 10256
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
    suite: str = SUITE  # the Debian release the node boots
    arch: str = "amd64"  # arm64: booted through qemu-user-static (binfmt_misc), see `lab.py arm64`

    @property
    def mac(self) -> str:
        return f"02:00:c6:12:00:{int(self.ip.rsplit('.', 1)[1]):02x}"

    @property
    def pod_cidr(self) -> str:
        return f"198.18.{int(self.ip.rsplit('.', 1)[1])}.0/24"

    @property
    def ip6(self) -> str:
        """The node's IPv6 address: its IPv4 host part written as the last group (198.18.0.11 -> 2001:2::11)."""
        return f"2001:2::{int(self.ip.rsplit('.', 1)[1])}"

    @property
    def pod_cidr6(self) -> str:
        return f"2001:2:0:1{int(self.ip.rsplit('.', 1)[1]):02d}::/64"

    def pod_ip6(self, pod_ip: str) -> str:
        """A backend's IPv6 address, paired with its IPv4 one: the same offset in the node's IPv6 pod range."""
        offset = int(ipaddress.ip_address(pod_ip)) - int(ipaddress.ip_network(self.pod_cidr).network_address)
        return str(ipaddress.ip_network(self.pod_cidr6).network_address + offset)


NODES = (
    # The workers, which announce, run the oldest and the newest release; the control-plane node the middle one.
    Node("l2lb-node1", "198.18.0.11", "l2lb-lab-n1", {"node-role.kubernetes.io/control-plane": ""}, "bookworm"),
    Node("l2lb-node2", "198.18.0.12", "l2lb-lab-n2", {"node-role.kubernetes.io/worker": "true"}, "bullseye"),
    Node("l2lb-node3", "198.18.0.13", "l2lb-lab-n3", {"node-role.kubernetes.io/worker": "true"}, "trixie"),
)

# An aarch64 node that joins a running lab on demand (`lab.py arm64 up`, `lab.py arm64 down`): Debian bookworm
# for arm64, booted by systemd-nspawn through qemu-user-static. It carries no worker label: it runs the agent
# (heartbeat, watches, the controller election) but announces nothing, so the emulation's CPU cost (2 cores
# here) stays out of the failover timings of the other nodes.
ARM64_NODE = Node("l2lb-node4", "198.18.0.14", "l2lb-lab-n4", {"kubernetes.io/arch": "arm64"}, "bookworm", "arm64")
ARM64_BOOT_TIMEOUT = 180.0

# The lab must never use addresses outside 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180).
for _addr in (BRIDGE_IP, CLIENT_IP, *(n.ip for n in (*NODES, ARM64_NODE))):
    assert ipaddress.ip_address(_addr) in LAB_NET, _addr
for _addr in (CLIENT_IP6, *(n.ip6 for n in (*NODES, ARM64_NODE))):
    assert ipaddress.ip_address(_addr) in LAB_NET6, _addr
_BENCHMARKING6 = ipaddress.ip_network("2001:2::/48")
for _net in (LAB_NET6, POOL6, CLUSTER_CIDR6, *(n.pod_cidr6 for n in (*NODES, ARM64_NODE))):
    assert ipaddress.ip_network(_net).subnet_of(_BENCHMARKING6), _net  # type: ignore[arg-type]
assert all(ipaddress.ip_network(n.pod_cidr6).subnet_of(ipaddress.ip_network(CLUSTER_CIDR6)) for n in NODES)  # type: ignore[arg-type]
assert ipaddress.ip_network(POOL).subnet_of(LAB_NET)  # type: ignore[arg-type]
assert all(ipaddress.ip_network(n.pod_cidr).subnet_of(ipaddress.ip_network(CLUSTER_CIDR)) for n in NODES)  # type: ignore[arg-type]
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
    """The Debian mirror apt on this host uses for bookworm (the lab builds every suite from the same one)."""
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


def customize_image(root: Path, suite: str, arch: str = "amd64") -> None:
    """Turn the debootstrapped tree into a lab node image (runs on a copy; its source is part of the hash)."""
    # Hostname comes from `systemd-nspawn -M`; debootstrap copied the build host's /etc/hostname.
    (root / "etc/hostname").unlink(missing_ok=True)
    # No DNS in the lab (and no route out of it); an empty machine-id makes every boot generate its own.
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("# l2lb lab node: no DNS, the lab has no way out of 198.18.0.0/24\n")
    (root / "etc/machine-id").write_text("")
    # Per-node settings (address, routes, kube-proxy credentials) are bind-mounted read-only at /etc/l2lb-lab.
    (root / "etc/l2lb-lab").mkdir(exist_ok=True)
    (root / "etc/systemd/network/10-l2lb-host0.network").symlink_to("/etc/l2lb-lab/host0.network")
    for script in ("l2lb_backend.py", "l2lb_kube_proxy_config.py", "l2lb_lab_ipvs.py"):
        target = root / "usr/local/bin" / script.removesuffix(".py").replace("_", "-")
        shutil.copyfile(NODE_PAYLOAD / script, target)
        target.chmod(0o755)
    (root / "usr/local/bin/kube-proxy").write_bytes(b"")  # mount point: the real binary is bind-mounted at boot
    for unit in ("kube-proxy.service", "l2lb-backend@.service", "l2lb-lab-ipvs.service"):
        shutil.copyfile(NODE_PAYLOAD / unit, root / "etc/systemd/system" / unit)
    shutil.copyfile(NODE_PAYLOAD / "90-l2lb-lab.conf", root / "etc/sysctl.d/90-l2lb-lab.conf")
    # Under qemu-user systemd-networkd fails ("Could not setup manager: Protocol not supported") and so do nft
    # and iptables ("Failed to initialize nft"), hence kube-proxy: qemu does not translate those netlink
    # families. The arm64 node's host0 is configured from the host (arm64_up), and it runs no kube-proxy (it
    # announces nothing and has no backends).
    units = ["systemd-networkd.service", "kube-proxy.service"] if arch == "amd64" else []
    if units:
        run(["chroot", str(root), "systemctl", "enable", *units])
    run(["chroot", str(root), "apt-get", "clean"])
    if arch != "amd64":
        # qemu-user refuses clone() with namespace flags, which systemd's LoadCredential= needs (systemd-sysctl,
        # -sysusers, -tmpfiles fail with status 243/CREDENTIALS); none of the lab's units need credentials.
        dropin = root / "etc/systemd/system/service.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "10-l2lb-qemu-user.conf").write_text(
            "# l2lb lab: this arm64 node runs under qemu-user, which cannot set up LoadCredential=\n"
            "[Service]\nLoadCredential=\n"
        )
    (root / "etc/l2lb-lab-image").write_text(f"{image_name(suite, arch)}\n")


def _digest(parts: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:12]


def base_image_name(suite: str, arch: str = "amd64") -> str:
    digest = _digest([suite.encode(), b"minbase", *(p.encode() for p in sorted(PACKAGES))])
    return f"{suite}-{digest}" if arch == "amd64" else f"{suite}-{arch}-{digest}"


def image_name(suite: str, arch: str = "amd64") -> str:
    payload = [inspect.getsource(customize_image).encode()]
    for path in sorted(NODE_PAYLOAD.iterdir()):
        if path.is_file():
            payload += [path.name.encode(), path.read_bytes()]
    return f"{base_image_name(suite, arch)}-lab-{_digest(payload)}"


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


def debootstrap(suite: str, rootfs: Path, workdir: Path, arch: str = "amd64") -> None:
    mirror = apt_mirror()
    slow = "about a minute" if arch == "amd64" else "about 4 minutes: its second stage runs under qemu"
    log(f"building the {suite} {arch} base image with debootstrap from {mirror} ({slow}) ...")
    cmd = ["debootstrap", f"--arch={arch}", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite]
    cmd += [str(rootfs), mirror]
    with open(workdir / "debootstrap.log", "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise LabError(f"debootstrap failed:\n    {tail(workdir / 'debootstrap.log')}")


def ensure_base_image(suite: str, rebuild: bool = False, arch: str = "amd64") -> Path:
    """The debootstrapped tree of ``suite`` (systemd, python3 and python3-venv, the network tools), cached.

    arm64 needs the aarch64 binfmt handler registered (``register_binfmt``): debootstrap's second stage runs
    the arm64 programs it installed."""
    if os.geteuid() != 0:
        raise LabError("building the image needs root (debootstrap, chroot)")
    base = IMAGE_CACHE / base_image_name(suite, arch)
    with cache_lock():
        if rebuild:
            remove_tree(base)
        if not base.exists():
            build_into(base, f"{suite} {arch} base image", lambda root, work: debootstrap(suite, root, work, arch))
    return base


def ensure_image(suite: str = SUITE, rebuild: bool = False, arch: str = "amd64") -> Path:
    """The lab image of ``suite``, built if missing. Base and lab layers are cached separately."""
    if rebuild:
        with cache_lock():
            remove_tree(IMAGE_CACHE / image_name(suite, arch))
    base = ensure_base_image(suite, rebuild, arch)
    image = IMAGE_CACHE / image_name(suite, arch)
    with cache_lock():
        if not image.exists():

            def layer(rootfs: Path, _workdir: Path) -> None:
                run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)], timeout=300)
                customize_image(rootfs, suite, arch)

            build_into(image, f"{suite} {arch} lab image", layer)
    return image


def ensure_images(rebuild: bool = False) -> dict[str, Path]:
    """Every suite's lab image (one per Debian release the nodes run)."""
    return {suite: ensure_image(suite, rebuild) for suite in sorted({node.suite for node in NODES})}


def prune_images(keep: Iterable[Path]) -> None:
    """Remove cached images other than ``keep`` and their bases, except those a running node boots from."""
    keep_names = {path.name for path in keep} | {base_image_name(suite) for suite in SUITES}
    keep_names |= {base_image_name(ARM64_NODE.suite, ARM64_NODE.arch), image_name(ARM64_NODE.suite, ARM64_NODE.arch)}
    with cache_lock():
        lab_image = re.compile(rf"^({'|'.join(SUITES)})-(arm64-)?[0-9a-f]{{12}}(-lab-[0-9a-f]{{12}})?$")
        for path in sorted(IMAGE_CACHE.iterdir()):
            # Only the lab's own images: the rootfs of tests/pythons.py and tests/qemu.py stay.
            if not path.is_dir() or path.name in keep_names or not lab_image.match(path.name):
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
    # IPv6 with only the address we give: no router solicitations, autoconfiguration or DAD.
    for conf in ("all", "default", CLIENT_IF):
        for key, value in (("accept_ra", "0"), ("autoconf", "0"), ("router_solicitations", "0"), ("accept_dad", "0")):
            write_sysctl(f"net/ipv6/conf/{conf}/{key}", value, netns=CLIENT_NS)
    # The client learns from gratuitous ARP (a takeover must update its neighbour entry at once).
    write_sysctl("net/ipv4/conf/all/arp_accept", "1", netns=CLIENT_NS)
    write_sysctl(f"net/ipv4/conf/{CLIENT_IF}/arp_accept", "1", netns=CLIENT_NS)
    run(["ip", "-n", CLIENT_NS, "link", "set", "lo", "up"])
    run(["ip", "-n", CLIENT_NS, "link", "set", CLIENT_IF, "address", CLIENT_MAC])
    run(["ip", "-n", CLIENT_NS, "addr", "add", f"{CLIENT_IP}/{LAB_NET.prefixlen}", "dev", CLIENT_IF])
    run(["ip", "-n", CLIENT_NS, "addr", "add", f"{CLIENT_IP6}/{LAB_NET6.prefixlen}", "dev", CLIENT_IF, "nodad"])
    run(["ip", "-n", CLIENT_NS, "link", "set", CLIENT_IF, "up"])


# ---------------------------------------------------------------------------------------------------------
# nodes


def write_node_config(node: Node, config_dir: Path, api: dict[str, str]) -> None:
    """What the node sees at /etc/l2lb-lab: its host0 address and pod routes (systemd-networkd), the lab
    settings, and kube-proxy's credentials (user system:kube-proxy, a JSON kubeconfig, mode 0600)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    # No Gateway: the lab has no route out. The other nodes' pod ranges (both families) go to those nodes.
    routes = "".join(
        f"\n[Route]\nDestination={cidr}\nGateway={gateway}\n"
        for other in NODES
        if other != node
        for cidr, gateway in ((other.pod_cidr, other.ip), (other.pod_cidr6, other.ip6))
    )
    (config_dir / "host0.network").write_text(
        "# l2lb lab: the node's interface on the lab bridge (written by tests/lab/lab.py)\n"
        "[Match]\nName=host0\n\n"
        f"[Link]\nMACAddress={node.mac}\n\n"
        f"[Network]\nAddress={node.ip}/{LAB_NET.prefixlen}\nAddress={node.ip6}/{LAB_NET6.prefixlen}\n"
        # A link-local address: the kernel solicits neighbours from it for forwarded packets (kube-proxy's
        # replies to the client); with none it cannot resolve the client and IPv6 Services time out.
        "LinkLocalAddressing=ipv6\nIPv6AcceptRA=no\nIPv6DuplicateAddressDetection=0\n" + routes
    )
    (config_dir / "node.env").write_text(f"L2LB_LAB_NODE={node.name}\nL2LB_LAB_API={api['url']}\n")
    shutil.copyfile(api["ca"], config_dir / "ca.crt")
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lab", "cluster": {"server": api["url"], "certificate-authority": "/etc/l2lb-lab/ca.crt"}}
        ],
        "users": [{"name": KUBE_PROXY_USER, "user": {"token": Path(api["kube_proxy_token_file"]).read_text().strip()}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": KUBE_PROXY_USER}}],
        "current-context": "lab",
    }
    path = config_dir / "kube-proxy.kubeconfig"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(kubeconfig, indent=2) + "\n")


def start_node(node: Node, image: Path, state: State) -> Proc:
    config_dir = state.dir / "nodes" / node.name
    write_node_config(node, config_dir, state.data["api"])
    cgroups = node_cgroups(node)
    sys.path.insert(0, str(REPO / "tests"))
    from controlplane import binary

    kube_proxy = binary("kube-proxy")
    cmd = [
        "systemd-nspawn", "--directory", str(image), "--machine", node.name,
        "--register=no", "--keep-unit", "--boot", "--volatile=overlay",
        "--private-network", f"--network-veth-extra={node.veth}:host0",
        f"--bind-ro={config_dir}:/etc/l2lb-lab", f"--bind-ro={kube_proxy}:/usr/local/bin/kube-proxy",
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
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            # Under qemu-user (the arm64 node) init's comm may be the emulator's.
            if len(nspid) >= 2 and nspid[-1] == "1" and comm in ("systemd", "qemu-aarch64-sta"):
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


def start_api(state: State, proxy_mode: str = "nftables") -> None:
    """Bring the control plane up (each component waited for), register the nodes as kubelets would, and
    write kube-proxy's ConfigMap and its RBAC as kubeadm does."""
    sys.path.insert(0, str(REPO / "tests"))
    from controlplane import ControlPlane, ControlPlaneError
    from pki import write_private

    api_dir = state.dir / "api"
    plane = ControlPlane(
        state_dir=api_dir, host=BRIDGE_IP, port=API_PORT, start_timeout=API_TIMEOUT, users=[(KUBE_PROXY_USER, [])]
    )
    try:
        plane.start()
    except ControlPlaneError as exc:
        raise LabError(f"the control plane did not start: {exc}") from None
    finally:
        for name, pid in plane.pids().items():
            if pid is not None:
                state.set_proc(f"api/{name}", Proc.of(pid))
    for node in NODES:
        plane.add_node(node.name, addresses=[node.ip, node.ip6])
    state.data["api"] = {
        "url": plane.url,
        "ca": plane.ca_file,
        "token_file": str(api_dir / "admin-token"),
        "kubeconfig": str(api_dir / "admin.kubeconfig"),
        "logs": str(plane.log_dir),
        "kube_proxy_token_file": str(api_dir / "kube-proxy-token"),
    }
    write_private(api_dir / "kube-proxy-token", (plane.token(KUBE_PROXY_USER) + "\n").encode())
    state.save()
    write_kube_proxy_setup(state, proxy_mode)


FAULTS = ("restart-apiserver", "restart-etcd", "compact-etcd")


def api_fault(state_dir: Path, fault: str) -> None:
    """Restart kube-apiserver or etcd of a running lab (same ports, certificates, data), or compact etcd."""
    state = running_state(state_dir)
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
# kube-proxy: the real one in every node (kube-proxy.service), configured through its ConfigMap as kubeadm does

KUBE_PROXY_CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: {mode}
clusterCIDR: {cluster_cidr},{cluster_cidr6}
clientConnection:
  kubeconfig: /etc/l2lb-lab/kube-proxy.kubeconfig
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
ipvs:
  strictARP: {strict_arp}
healthzBindAddress: 0.0.0.0:{healthz}
metricsBindAddress: 0.0.0.0:10249
"""


def admin_api(state: State) -> Any:
    """A kubernetes ApiClient with the lab's admin credentials."""
    from kubernetes import config

    return config.new_client_from_config(config_file=state.data["api"]["kubeconfig"])


def write_kube_proxy_setup(state: State, mode: str, strict_arp: bool = False) -> None:
    """ConfigMap kube-system/kube-proxy (``config.conf``) and the Role that lets system:kube-proxy read it."""
    from kubernetes import client

    if mode not in KUBE_PROXY_MODES:
        raise LabError(f"kube-proxy mode {mode!r}: use one of {', '.join(KUBE_PROXY_MODES)}")
    text = KUBE_PROXY_CONFIG.format(
        mode=mode,
        cluster_cidr=CLUSTER_CIDR,
        cluster_cidr6=CLUSTER_CIDR6,
        strict_arp=str(strict_arp).lower(),
        healthz=KUBE_PROXY_HEALTHZ_PORT,
    )
    meta = {"name": "kube-proxy", "namespace": "kube-system", "labels": {"app": "kube-proxy"}}
    role = {"metadata": meta, "rules": [{"apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["kube-proxy"], "verbs": ["get"]}]}  # fmt: skip
    binding = {
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kube-proxy"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUBE_PROXY_USER}],
    }
    with admin_api(state) as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        calls: Any = (
            (core.create_namespaced_config_map, core.replace_namespaced_config_map,
             {"metadata": meta, "data": {"config.conf": text}}),
            (rbac.create_namespaced_role, rbac.replace_namespaced_role, role),
            (rbac.create_namespaced_role_binding, rbac.replace_namespaced_role_binding, binding),
        )  # fmt: skip
        for create, replace, body in calls:
            try:
                create("kube-system", body)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                replace("kube-proxy", "kube-system", body)
    state.data["kube_proxy"] = {"mode": mode, "strict_arp": strict_arp}
    state.save()


def wait_kube_proxy(timeout: float = 60.0) -> None:
    """Until kube-proxy on every node answers its healthz with 200 (it has synced its rules)."""
    deadline = time.monotonic() + timeout
    for node in NODES:
        while (status := http_status_from_client(node.ip, KUBE_PROXY_HEALTHZ_PORT, "/healthz")) != 200:
            if time.monotonic() > deadline:
                raise LabError(f"kube-proxy on {node.name}: healthz {node.ip}:{KUBE_PROXY_HEALTHZ_PORT} says {status}")
            time.sleep(0.3)


def set_kube_proxy(state_dir: Path, mode: str, strict_arp: bool) -> None:
    """Rewrite kube-proxy's ConfigMap and restart it on every node (``--cleanup`` first when the mode changes,
    as the kube-proxy docs say to switch modes), then wait until each is healthy."""
    state = running_state(state_dir)
    previous = state.data.get("kube_proxy", {}).get("mode", "nftables")
    write_kube_proxy_setup(state, mode, strict_arp)
    for node in NODES:
        pid = state.data["nodes"][node.name]["init_pid"]
        if mode != previous:
            run(in_node(pid, ["systemctl", "stop", "kube-proxy.service"]))
            run(in_node(pid, ["/usr/local/bin/kube-proxy", "--cleanup", "--v=0"]), check=False)
        run(in_node(pid, ["systemctl", "restart", "kube-proxy.service"]))
    wait_kube_proxy()
    log(f"kube-proxy: mode {mode}, strictARP {str(strict_arp).lower()} on every node")


# ---------------------------------------------------------------------------------------------------------
# backends: real server processes in the nodes (l2lb-backend@<name>.service), each with a Pod object that
# says where it runs and whether it is ready, so kube-controller-manager's EndpointSlice controller lists it
# for the Services that select it, exactly as it would list a kubelet's pods.

BACKEND_LABEL = "lab.l2lb.io/backend"
DEMO_NAMESPACE = "default"
# (app label the demo Services select, node): lab-echo spans a worker and the control-plane node, so an
# externalTrafficPolicy: Cluster connection often lands on another node than the announcing one; lab-local
# (externalTrafficPolicy: Local) has its only backend on l2lb-node3, so only l2lb-node3 may announce it.
DEMO_BACKENDS = (
    ("lab-echo", "l2lb-node1"), ("lab-echo", "l2lb-node3"), ("lab-dns", "l2lb-node2"), ("lab-local", "l2lb-node3"),
)  # fmt: skip
NODE_NAMES = tuple(node.name for node in NODES)


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Backends:
    """The lab's backend pods: Pod objects in the API and their processes in the nodes, kept in step."""

    def __init__(self, state: State) -> None:
        from kubernetes import client

        self.state = state
        self.api = admin_api(state)
        self.core = client.CoreV1Api(self.api)
        self.errors = client.ApiException

    def close(self) -> None:
        self.api.close()

    def pods(self) -> list[Any]:
        return list(self.core.list_namespaced_pod(DEMO_NAMESPACE, label_selector=BACKEND_LABEL).items)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for pod in self.pods():
            ready = next((c.status for c in pod.status.conditions or [] if c.type == "Ready"), "Unknown")
            rows.append({
                "name": pod.metadata.name, "app": pod.metadata.labels.get("app", ""), "node": pod.spec.node_name,
                "ip": pod.status.pod_ip or "", "ready": ready == "True",
                "terminating": pod.metadata.deletion_timestamp is not None,
            })  # fmt: skip
        return sorted(rows, key=lambda r: r["name"])

    def _pod(self, name: str) -> Any:
        try:
            return self.core.read_namespaced_pod(name, DEMO_NAMESPACE)
        except self.errors as exc:
            if exc.status == 404:
                raise LabError(f"no backend {name!r}; `lab.py backend list` shows them") from None
            raise

    def _node_pid(self, node: str) -> int:
        if node not in NODE_NAMES:
            raise LabError(f"no node {node!r}: the lab's nodes are {', '.join(NODE_NAMES)}")
        return int(self.state.data["nodes"][node]["init_pid"])

    def _free_ip(self, node: str) -> str:
        used = {p.status.pod_ip for p in self.pods()}
        network = ipaddress.ip_network(next(n.pod_cidr for n in NODES if n.name == node))
        for host in list(network.hosts())[9:]:  # .10 and up
            if str(host) not in used:
                return str(host)
        raise LabError(f"no free backend address left in {network} on {node}")

    def _next_name(self, app: str) -> str:
        names = {p.metadata.name for p in self.pods()}
        return next(f"{app}-{k}" for k in range(1, 1000) if f"{app}-{k}" not in names)

    def add(self, app: str, node: str, name: str | None = None, ready: bool = True) -> str:
        """Start a backend process on ``node`` and create its Pod (Running; Ready unless ``ready`` is false)."""
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", app) or len(app) > 50:
            raise LabError(f"app {app!r}: use a DNS label (lowercase letters, digits, '-'), at most 50 characters")
        pid = self._node_pid(node)
        name = name or self._next_name(app)
        address = self._free_ip(node)
        lab_node = next(n for n in NODES if n.name == node)
        address6 = lab_node.pod_ip6(address)
        env = f"L2LB_BACKEND_ADDRESS={address}\nL2LB_BACKEND_ADDRESS6={address6}\nL2LB_BACKEND_PORT={BACKEND_PORT}\n"
        run(in_node(pid, ["sh", "-c", f"mkdir -p /run/l2lb-lab/backends && cat > /run/l2lb-lab/backends/{name}.env"]),
            input_text=env)  # fmt: skip
        run(in_node(pid, ["systemctl", "start", f"l2lb-backend@{name}.service"]))
        body: Any = {
            "metadata": {"name": name, "namespace": DEMO_NAMESPACE, "labels": {"app": app, BACKEND_LABEL: "true"}},
            "spec": {
                "nodeName": node, "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "backend", "image": "l2lb-lab/backend", "ports": [
                    {"containerPort": BACKEND_PORT, "protocol": proto} for proto in ("TCP", "UDP")
                ]}],
            },
        }  # fmt: skip
        try:
            self._create_pod(name, body)
        except BaseException:
            run(in_node(pid, ["systemctl", "stop", f"l2lb-backend@{name}.service"]), check=False)  # no orphan
            raise
        started = now_rfc3339()
        status = {
            "phase": "Running", "hostIP": lab_node.ip, "hostIPs": [{"ip": lab_node.ip}, {"ip": lab_node.ip6}],
            "podIP": address, "podIPs": [{"ip": address}, {"ip": address6}], "startTime": started,
            "containerStatuses": [{"name": "backend", "image": "l2lb-lab/backend", "imageID": "", "restartCount": 0,
                                   "ready": ready, "started": True, "state": {"running": {"startedAt": started}}}],
        }  # fmt: skip
        self.core.patch_namespaced_pod_status(name, DEMO_NAMESPACE, {"status": status})
        self.set_ready(name, ready)
        return name

    def _create_pod(self, name: str, body: Any) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.core.create_namespaced_pod(DEMO_NAMESPACE, body)
                return
            except self.errors as exc:
                # Right after `up` the service account controller may not have created "default" yet.
                if exc.status != 403 or "serviceaccount" not in str(exc.body) or time.monotonic() > deadline:
                    raise LabError(f"creating Pod {name}: {exc.status} {exc.reason}: {exc.body}") from None
                time.sleep(0.3)

    def set_ready(self, name: str, ready: bool) -> None:
        """The Pod's Ready condition, as a kubelet sets it from a readiness probe (the process keeps running)."""
        self._pod(name)
        value = "True" if ready else "False"
        conditions = [{"type": kind, "status": "True" if kind in ("PodScheduled", "Initialized") else value,
                       "lastTransitionTime": now_rfc3339()}
                      for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]  # fmt: skip
        self.core.patch_namespaced_pod_status(name, DEMO_NAMESPACE, {"status": {"conditions": conditions}})

    def remove(self, name: str, grace: float = 0.0) -> None:
        """Delete like a kubelet-run pod: terminating for ``grace`` seconds (still serving), then gone."""
        pod = self._pod(name)
        if grace > 0:
            self.core.delete_namespaced_pod(name, DEMO_NAMESPACE, grace_period_seconds=max(1, int(grace)))
            time.sleep(grace)
        run(in_node(self._node_pid(pod.spec.node_name), ["systemctl", "stop", f"l2lb-backend@{name}.service"]))
        with contextlib.suppress(self.errors):  # already gone is fine
            self.core.delete_namespaced_pod(name, DEMO_NAMESPACE, grace_period_seconds=0)
        deadline = time.monotonic() + 30
        while any(p.metadata.name == name for p in self.pods()):
            if time.monotonic() > deadline:
                raise LabError(f"Pod {name} is still there 30s after its deletion")
            time.sleep(0.1)

    def move(self, name: str, node: str) -> None:
        """The same backend on another node: its Pod and process go, then come back there (new address)."""
        pod = self._pod(name)
        self._node_pid(node)
        app = pod.metadata.labels["app"]
        self.remove(name)
        self.add(app, node, name=name)

    def scale(self, app: str, node: str, count: int) -> list[str]:
        """Exactly ``count`` backends of ``app`` on ``node``: add or remove (newest first) to get there."""
        if count < 0:
            raise LabError("count must be 0 or more")
        mine = [r for r in self.rows() if r["app"] == app and r["node"] == node]
        while len(mine) > count:
            self.remove(mine.pop()["name"])
        while len(mine) < count:
            mine.append({"name": self.add(app, node)})
        return [r["name"] for r in mine]


def start_demo_backends(state: State) -> None:
    backends = Backends(state)
    try:
        for app, node in DEMO_BACKENDS:
            backends.add(app, node)
    finally:
        backends.close()
    log("demo backends: " + ", ".join(f"{app} on {node}" for app, node in DEMO_BACKENDS))


def backend_command(state_dir: Path, args: argparse.Namespace) -> int:
    backends = Backends(running_state(state_dir))
    try:
        if args.action == "add":
            print(backends.add(args.app, args.node, ready=not args.not_ready))
        elif args.action == "remove":
            backends.remove(args.name, grace=args.grace)
        elif args.action in ("ready", "unready"):
            backends.set_ready(args.name, args.action == "ready")
        elif args.action == "move":
            backends.move(args.name, args.node)
        elif args.action == "scale":
            print(" ".join(backends.scale(args.app, args.node, args.count)))
        else:
            rows = backends.rows()
            if args.json:
                print(json.dumps(rows, indent=2))
            for row in [] if args.json else rows:
                flags = ("ready" if row["ready"] else "NOT READY") + (", terminating" if row["terminating"] else "")
                print(f"{row['name']:<16} app={row['app']:<12} {row['node']:<11} {row['ip']:<15} {flags}")
    finally:
        backends.close()
    return 0


def running_state(state_dir: Path) -> State:
    if os.geteuid() != 0:
        raise LabError("the lab needs root")
    state = State(state_dir)
    refuse_foreign_lab(state)
    if health(state)[0] != "up":
        raise LabError(f"the lab is not up (state {state_dir}); run `lab.py up` first")
    return state


# ---------------------------------------------------------------------------------------------------------
# checks run at the end of `up` (cheap, and they catch a broken lab before Ansible does), and the client's
# view of TCP and HTTP that tests use

TCP_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as conn:
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
print(data.decode().strip())
"""

HTTP_CLIENT = """
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError as exc:
    print(0)
"""

API_CLIENT = """
import json, ssl, sys, urllib.request
ca, token = sys.stdin.read().split("\\0")
request = urllib.request.Request(sys.argv[1] + "/version", headers={"Authorization": "Bearer " + token.strip()})
context = ssl.create_default_context(cadata=ca)
print(json.load(urllib.request.urlopen(request, context=context, timeout=3)).get("gitVersion", "?"))
"""


def tcp_from_client(address: str, port: int, timeout: float = 2.0) -> str:
    """All a TCP connection from the client namespace reads, stripped (a lab backend says two lines)."""
    return run(in_client(["python3", "-c", TCP_CLIENT, address, str(port), str(timeout)]), timeout=timeout + 8).strip()


def backend_from_client(address: str, port: int) -> tuple[str, str]:
    """(``<backend>@<node>``, the client address the backend saw) for one TCP connection from the client."""
    lines = tcp_from_client(address, port).splitlines()
    if len(lines) != 2 or not lines[1].startswith("client "):
        raise LabError(f"{address}:{port} did not answer like a lab backend: {lines!r}")
    return lines[0], lines[1].removeprefix("client ").rsplit(":", 1)[0]


def http_status_from_client(address: str, port: int, path: str = "/") -> int:
    """The HTTP status a GET from the client namespace gets (0: no connection)."""
    url = f"http://{address}:{port}{path}"
    return int(run(in_client(["python3", "-c", HTTP_CLIENT, url]), timeout=10).strip() or 0)


def api_from_node(init_pid: int, state: State) -> str:
    api = state.data["api"]
    secret = Path(api["ca"]).read_text() + "\0" + Path(api["token_file"]).read_text()
    return run(in_node(init_pid, ["python3", "-c", API_CLIENT, api["url"]]), input_text=secret, timeout=10).strip()


def check_lab(state: State) -> None:
    wait_kube_proxy()
    first = state.data["nodes"][NODES[0].name]["init_pid"]
    version = api_from_node(first, state)
    log(f"checks passed: kube-proxy is healthy on every node; {NODES[0].name} reaches the API ({version})")


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
    for node in lab_nodes(state):
        hosts += [f"        {node.name}:", f"          ansible_nsenter_pid: {nodes[node.name]['init_pid']}"]
        hosts += [f"          l2lb_lab_address: {node.ip}", f'          l2lb_lab_address6: "{node.ip6}"']
        hosts += [f'          l2lb_lab_mac: "{node.mac}"']
    hosts += ["    l2lb_probe:", "      hosts:", f"        {CLIENT_NS}:  # a host on the nodes' L2 segment"]
    hosts += ["          ansible_connection: local", f"          ansible_python_interpreter: {probe_python}"]
    hosts += [f"          l2lb_probe_interface: {CLIENT_IF}", f"          l2lb_lab_address: {CLIENT_IP}"]
    hosts += [f'          l2lb_lab_address6: "{CLIENT_IP6}"']
    all_yml = GROUP_VARS_TEMPLATE.format(
        header=header, kubeconfig=api["kubeconfig"], url=api["url"], ca=api["ca"], pool=POOL, pool6=POOL6
    )
    files = {"hosts.yml": "\n".join(hosts) + "\n", "group_vars/all.yml": all_yml}
    for node in lab_nodes(state):
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
# A pool must lie in a subnet the announcing interfaces are directly attached to (ARP and NDP only reach the
# local segment): the lab nodes' host0 is in 198.18.0.0/24 and 2001:2::/64. A /28 CIDR gives .241-.254 (network
# and broadcast addresses are skipped unless allowFirstLastIPs: true); the IPv6 /124 gives ::241 to ::24e. A
# Service gets an address of each family it asks for (spec.ipFamilies; PreferDualStack asks for both), each from
# the first pool of that family that selects it. One pool may hold blocks of both families; here there is one per
# family.
l2lb_pools:
  - name: lab
    blocks:
      - cidr: {pool}
  - name: lab-v6
    blocks:
      - cidr: "{pool6}"

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
# the aarch64 node: arm64 programs run through Debian's qemu-user-static, registered with binfmt_misc
# (flag F: the emulator is opened at registration, so it serves inside the container too)

BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_HANDLER = "l2lb-qemu-aarch64"
QEMU_AARCH64 = Path("/usr/bin/qemu-aarch64-static")
# ELF64, little endian, executable or shared object (e_type 2 or 3), e_machine 0xb7 (AArch64).
AARCH64_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


def lab_nodes(state: State) -> tuple[Node, ...]:
    """The nodes of this lab: the three, and the arm64 node while it has joined."""
    return (*NODES, ARM64_NODE) if state.data.get("arm64") else NODES


def register_binfmt() -> dict[str, bool]:
    """Mount binfmt_misc and register the aarch64 handler where missing; what was done (for unregister_binfmt)."""
    if not QEMU_AARCH64.exists():
        raise LabError(f"{QEMU_AARCH64} is missing: apt-get install qemu-user-static (make setup installs it)")
    done = {"mounted": False, "registered": False}
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
        done["mounted"] = True
    if not (BINFMT / BINFMT_HANDLER).exists():
        (BINFMT / "register").write_text(f":{BINFMT_HANDLER}:M::{AARCH64_MAGIC}:{AARCH64_MASK}:{QEMU_AARCH64}:F")
        done["registered"] = True
    return done


def unregister_binfmt(done: dict[str, bool]) -> None:
    """Undo what register_binfmt did (a handler or mount that was there before stays)."""
    if done.get("registered") and (BINFMT / BINFMT_HANDLER).exists():
        (BINFMT / BINFMT_HANDLER).write_text("-1")
    if done.get("mounted"):
        run(["umount", str(BINFMT)], check=False)


def arm64_up(state_dir: Path, inventory_dir: Path) -> None:
    """Join the arm64 node to the running lab: binfmt handler, image, Node object, boot, inventory.

    Whatever fails on the way is undone by arm64_down, the binfmt handler included (only if this lab added it).
    """
    state = running_state(state_dir)
    if state.data.get("arm64"):
        log(f"{ARM64_NODE.name} (arm64) is already up")
        return
    done = register_binfmt()
    earlier = state.data.get("binfmt") or {}
    state.data["binfmt"] = {what: bool(earlier.get(what)) or added for what, added in done.items()}
    state.data["arm64"] = True  # from here on arm64_down undoes whatever was done
    state.save()
    started = time.monotonic()
    try:
        image = ensure_image(ARM64_NODE.suite, arch=ARM64_NODE.arch)
        state.data.setdefault("images", {})[f"{ARM64_NODE.suite}-{ARM64_NODE.arch}"] = str(image)
        state.save()
        sys.path.insert(0, str(REPO / "tests"))
        from controlplane import register_node

        with admin_api(state) as api_client:
            register_node(api_client, ARM64_NODE.name, ARM64_NODE.labels, [ARM64_NODE.ip])
        start_node(ARM64_NODE, image, state)
        wait_node(ARM64_NODE, state, time.monotonic() + ARM64_BOOT_TIMEOUT)
        configure_host0(ARM64_NODE, state.data["nodes"][ARM64_NODE.name]["init_pid"])
    except BaseException:
        console = state.dir / f"{ARM64_NODE.name}.console.log"
        log(f"{ARM64_NODE.name} did not come up; {console}:\n    {tail(console)}")
        arm64_down(state_dir, inventory_dir)
        raise
    write_inventory(state, inventory_dir)
    log(f"{ARM64_NODE.name} (arm64, under qemu-user) is up in {time.monotonic() - started:.1f}s")


def configure_host0(node: Node, init_pid: int) -> None:
    """What host0.network says, done from the host with its own (native) ip in the node's network namespace."""
    net = ["nsenter", "-t", str(init_pid), "-n", "ip"]
    run([*net, "link", "set", "host0", "address", node.mac])
    run([*net, "addr", "replace", f"{node.ip}/{LAB_NET.prefixlen}", "dev", "host0"])
    run([*net, "-6", "addr", "replace", f"{node.ip6}/{LAB_NET6.prefixlen}", "dev", "host0", "nodad"])
    run([*net, "link", "set", "host0", "up"])
    for other in NODES:
        run([*net, "route", "replace", other.pod_cidr, "via", other.ip, "dev", "host0"])
        run([*net, "-6", "route", "replace", other.pod_cidr6, "via", other.ip6, "dev", "host0"])


def arm64_down(state_dir: Path, inventory_dir: Path) -> None:
    """Stop the arm64 node, delete its Node object, unregister the binfmt handler, rewrite the inventory."""
    state = State(state_dir)
    if not state.data.get("arm64"):
        log(f"{ARM64_NODE.name} is not up")
        return
    node = ARM64_NODE
    init = state.proc(f"init/{node.name}")
    if init and init.alive():
        run(in_node(init.pid, ["systemctl", "poweroff", "--no-block"]), check=False, timeout=30)
    nspawn = state.proc(f"nspawn/{node.name}")
    survivors = stop_procs([(f"nspawn/{node.name}", nspawn)] if nspawn else [], signal.SIGTERM, STOP_TIMEOUT)
    if survivors and init:
        stop_procs([(f"init/{node.name}", init)], signal.SIGKILL, 5.0)  # kills its whole PID namespace
    if link_exists(node.veth):
        run(["ip", "link", "del", node.veth], check=False)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(NSPAWN_RUN / "propagate" / node.name)
    from kubernetes import client

    with admin_api(state) as api_client, contextlib.suppress(client.ApiException):
        client.CoreV1Api(api_client).delete_node(node.name)
    unregister_binfmt(state.data.pop("binfmt", {}))
    state.data["arm64"] = False
    for key in (f"nspawn/{node.name}", f"init/{node.name}"):
        state.data.get("procs", {}).pop(key, None)
    state.data.get("nodes", {}).pop(node.name, None)
    state.save()
    (inventory_dir / "host_vars" / f"{node.name}.yml").unlink(missing_ok=True)
    if state.data.get("phase") == "up":
        write_inventory(state, inventory_dir)
    log(f"{node.name} is down")


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
    for key in (*API_PROCS, *(f"{kind}/{n.name}" for kind in ("nspawn", "init") for n in lab_nodes(state))):
        proc = state.proc(key)
        if proc is None or not proc.alive():
            problems.append(f"{key}: " + ("never started" if proc is None else f"process {proc.pid} is gone"))
    for link in (BRIDGE, CLIENT_VETH, *(n.veth for n in lab_nodes(state))):
        if not link_exists(link):
            problems.append(f"link {link} is missing")
    if not netns_exists(CLIENT_NS):
        problems.append(f"netns {CLIENT_NS} is missing")
    if state.data.get("phase") != "up":
        problems.append(f"lab is in phase {state.data.get('phase')!r} (an interrupted up/down?)")
    return ("up" if not problems else "broken", problems)


def lab_leftovers() -> list[str]:
    links = (BRIDGE, CLIENT_VETH, *(n.veth for n in (*NODES, ARM64_NODE)))
    found = [f"link {name}" for name in links if link_exists(name)]
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


def up(state_dir: Path, inventory_dir: Path, recreate: bool, proxy_mode: str = "nftables") -> None:
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

    images = ensure_images()
    started = time.monotonic()
    state.dir.mkdir(parents=True, exist_ok=True)
    state.data = {
        "phase": "starting", "images": {suite: str(path) for suite, path in images.items()}, "created": time.time(),
        "procs": {},
    }  # fmt: skip
    state.data["nspawn_run_dir_existed"] = NSPAWN_RUN.exists()  # nspawn creates it; down removes it if so
    state.save()
    try:
        create_network(state_dir)
        start_api(state, proxy_mode)  # first: the nodes' kube-proxy needs its credentials and ConfigMap at boot
        for node in NODES:
            start_node(node, images[node.suite], state)
        deadline = time.monotonic() + BOOT_TIMEOUT
        for node in NODES:
            wait_node(node, state, deadline)
        check_lab(state)
        start_demo_backends(state)
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
    nodes = lab_nodes(state) if state.exists else NODES
    # SIGTERM to systemd-nspawn powers the container off cleanly (it forwards it as SIGRTMIN+3 to init); under
    # qemu-user that signal arrives shifted (as SIGRTMIN+1: rescue mode), so an arm64 node is told directly.
    for node in nodes:
        init = state.proc(f"init/{node.name}")
        if node.arch != "amd64" and init and init.alive():
            run(in_node(init.pid, ["systemctl", "poweroff", "--no-block"]), check=False, timeout=30)
    nspawns = [(f"nspawn/{n.name}", p) for n in nodes if (p := state.proc(f"nspawn/{n.name}"))]
    api = [(key, p) for key in reversed(API_PROCS[1:]) if (p := state.proc(key))]
    survivors = stop_procs(nspawns + api, signal.SIGTERM, STOP_TIMEOUT)
    etcd = [(key, p) for key in API_PROCS[:1] if (p := state.proc(key))]
    survivors += stop_procs(etcd, signal.SIGTERM, STOP_TIMEOUT)
    if survivors:
        log(f"still running after {STOP_TIMEOUT:.0f}s, killing: {', '.join(key for key, _ in survivors)}")
        inits = [(f"init/{n.name}", p) for n in nodes if (p := state.proc(f"init/{n.name}"))]
        # Killing a container's init kills its whole PID namespace.
        for key, proc in stop_procs(inits + survivors, signal.SIGKILL, 5.0):
            problems.append(f"{key} (pid {proc.pid}) survived SIGKILL")
    for link in (*(n.veth for n in nodes), CLIENT_VETH, BRIDGE):
        if link_exists(link):
            run(["ip", "link", "del", link], check=False)
    if netns_exists(CLIENT_NS):
        run(["ip", "netns", "del", CLIENT_NS], check=False)
    problems += remove_cgroups()
    # systemd-nspawn leaves per-machine directories (and, if it created them, its run dirs) behind.
    for node in nodes:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(NSPAWN_RUN / "propagate" / node.name)
    if state.exists and state.data.get("binfmt"):
        unregister_binfmt(state.data["binfmt"])
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
    for node in lab_nodes(state):
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
    proxy = state.data.get("kube_proxy", {})
    if proxy:
        strict = str(proxy["strict_arp"]).lower()
        print(f"  kube-proxy mode {proxy['mode']}, strictARP {strict} (ConfigMap kube-system/kube-proxy)")
    inventory = state.data.get("inventory", {})
    if inventory:
        print(f"  inventory {Path(inventory['dir']) / 'hosts.yml'}")
    for suite, image in sorted((state.data.get("images") or {}).items()):
        print(f"  image     {suite}: {image}")
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
    up_cmd.add_argument("--proxy-mode", choices=KUBE_PROXY_MODES, default="nftables", help="kube-proxy's mode")
    status_cmd = sub.add_parser("status", help="show the lab; exit 0 up, 1 broken, 2 down")
    status_cmd.add_argument("--json", action="store_true")
    sub.add_parser("down", help="stop and remove everything the lab created")
    fault_cmd = sub.add_parser("fault", help="restart kube-apiserver or etcd of the running lab, or compact etcd")
    fault_cmd.add_argument("fault", choices=FAULTS)
    proxy_cmd = sub.add_parser("kube-proxy", help="set kube-proxy's mode (and strictARP) and restart it on every node")
    proxy_cmd.add_argument("mode", choices=KUBE_PROXY_MODES)
    proxy_cmd.add_argument("--strict-arp", action="store_true", help="ipvs.strictARP: true in its ConfigMap")
    arm64_cmd = sub.add_parser("arm64", help="join an aarch64 node (qemu-user) to the running lab, or remove it")
    arm64_cmd.add_argument("action", choices=("up", "down"))
    backend_cmd = sub.add_parser("backend", help="the demo Services' backend pods: list, add, remove, move, ...")
    actions = backend_cmd.add_subparsers(dest="action", required=True)
    list_cmd = actions.add_parser("list", help="every backend: app, node, address, ready")
    list_cmd.add_argument("--json", action="store_true")
    add_cmd = actions.add_parser("add", help="start one more backend of APP on NODE (its Pod: Running, Ready)")
    add_cmd.add_argument("app", help="the app label the Service selects (lab-echo, lab-dns, lab-local, ...)")
    add_cmd.add_argument("node", choices=NODE_NAMES)
    add_cmd.add_argument("--not-ready", action="store_true", help="start it with Ready=False")
    remove_cmd = actions.add_parser("remove", help="stop a backend and delete its Pod")
    remove_cmd.add_argument("name")
    remove_cmd.add_argument("--grace", type=float, default=0.0, help="seconds it stays terminating (serving)")
    for action in ("ready", "unready"):
        actions.add_parser(action, help=f"mark a backend {action} (its Pod's Ready condition)").add_argument("name")
    move_cmd = actions.add_parser("move", help="move a backend to another node")
    move_cmd.add_argument("name")
    move_cmd.add_argument("node", choices=NODE_NAMES)
    scale_cmd = actions.add_parser("scale", help="run exactly COUNT backends of APP on NODE")
    scale_cmd.add_argument("app")
    scale_cmd.add_argument("node", choices=NODE_NAMES)
    scale_cmd.add_argument("count", type=int)
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    inventory_dir = args.inventory_dir.resolve()

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)  # so that `up` cleans up when it is killed
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `lab.py status | head` ends quietly
    try:
        if args.command == "image":
            images = ensure_images(rebuild=args.rebuild)
            if args.prune:
                prune_images(images.values())
            print("\n".join(str(path) for path in images.values()))
        elif args.command == "up":
            up(state_dir, inventory_dir, args.recreate, args.proxy_mode)
        elif args.command == "down":
            down(state_dir, inventory_dir)
        elif args.command == "fault":
            api_fault(state_dir, args.fault)
        elif args.command == "kube-proxy":
            set_kube_proxy(state_dir, args.mode, args.strict_arp)
        elif args.command == "backend":
            return backend_command(state_dir, args)
        elif args.command == "arm64":
            (arm64_up if args.action == "up" else arm64_down)(state_dir, inventory_dir)
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
