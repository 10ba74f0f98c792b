"""The lab infrastructure: real systemd in the nodes, Ansible through nsenter and the client netns, the
kube-proxy emulation, the API from inside a node, and a `down` that leaves nothing behind.

Brings the lab up once for the module (its own state and inventory directories under tmp), in file order:
the checks, then `up` again (a no-op), then `down` and the assertions that nothing is left.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lab_harness import Lab, lab, lab_up

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module", name="lab_up")
def lab_up_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab_up(tmp_path_factory.mktemp("lab")) as running:
        yield running


def test_nodes_boot_real_systemd(lab_up: Lab) -> None:
    for node in lab.NODES:
        assert lab_up.in_node(node.name, "cat", "/proc/1/comm").strip() == "systemd"
        state = subprocess.run(
            lab.in_node(lab_up.init_pid(node.name), ["systemctl", "is-system-running"]),
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        assert state in ("running", "degraded"), f"{node.name}: systemd is {state!r}"
        assert lab_up.in_node(node.name, "hostname").strip() == node.name
        for unit in ("systemd-networkd", "l2lb-echo", "l2lb-kube-proxy"):
            assert lab_up.in_node(node.name, "systemctl", "is-active", unit).strip() == "active", (node.name, unit)


def test_nodes_have_their_address_and_no_way_out(lab_up: Lab) -> None:
    for node in lab.NODES:
        addresses = lab_up.in_node(node.name, "ip", "-o", "-4", "addr", "show", "dev", "host0")
        assert f"inet {node.ip}/24" in addresses
        link = lab_up.in_node(node.name, "ip", "-o", "link", "show", "dev", "host0")
        assert node.mac in link
        # No default route: anything outside the lab subnet is unreachable (route lookup only, nothing sent).
        route = subprocess.run(
            lab.in_node(lab_up.init_pid(node.name), ["ip", "route", "get", "203.0.113.1"]),
            capture_output=True,
            text=True,
            check=False,
        )
        assert route.returncode != 0 and "unreachable" in route.stderr.lower(), route


def test_nodes_can_open_raw_arp_sockets(lab_up: Lab) -> None:
    """The speaker needs CAP_NET_RAW: an AF_PACKET socket bound to ETH_P_ARP on host0."""
    code = "import socket; s = socket.socket(17, 3, socket.htons(0x0806)); s.bind(('host0', 0x0806)); print('ok')"
    for node in lab.NODES:
        assert lab_up.in_node(node.name, "python3", "-c", code).strip() == "ok"


def test_ansible_reaches_nodes_through_nsenter(lab_up: Lab) -> None:
    hosts = lab_up.ansible("l2lb_nodes", "setup", "filter=ansible_hostname,ansible_service_mgr")
    assert sorted(hosts) == [node.name for node in lab.NODES]
    for name, result in hosts.items():
        assert result["ansible_facts"]["ansible_hostname"] == name
        assert result["ansible_facts"]["ansible_service_mgr"] == "systemd"


def test_ansible_probe_host_runs_in_the_client_netns(lab_up: Lab) -> None:
    assert lab_up.ansible("l2lb_probe", "ping")[lab.CLIENT_NS]["ping"] == "pong"
    addresses = lab_up.ansible("l2lb_probe", "command", "ip -o -4 addr show")[lab.CLIENT_NS]["stdout"]
    assert f"{lab.CLIENT_IF}" in addresses and f"inet {lab.CLIENT_IP}/24" in addresses
    node = lab.NODES[1]
    result = lab_up.ansible("l2lb_probe", "wait_for", f"host={node.ip} port={lab.ECHO_PORT} timeout=5")
    assert not result[lab.CLIENT_NS].get("failed"), result


PING = """
import socket, struct, sys
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
body = struct.pack("!HH", 0x4C32, 1) + b"l2lb-lab"
packet = struct.pack("!BBH", 8, 0, checksum(struct.pack("!BBH", 8, 0, 0) + body)) + body
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
    sock.settimeout(2)
    sock.sendto(packet, (sys.argv[1], 0))
    while True:
        data, (source, _) = sock.recvfrom(2048)
        icmp = data[(data[0] & 0x0F) * 4:]
        if source == sys.argv[1] and icmp[0] == 0 and icmp[4:] == body:
            print("pong")
            break
"""


def test_client_pings_every_node_and_learns_its_mac(lab_up: Lab) -> None:
    for node in lab.NODES:
        assert lab.run(lab.in_client(["python3", "-c", PING, node.ip]), timeout=10).strip() == "pong"
        neighbour = lab.run(["ip", "-n", lab.CLIENT_NS, "neigh", "show", node.ip, "dev", lab.CLIENT_IF])
        assert f"lladdr {node.mac}" in neighbour


def test_client_reaches_every_node_echo_server(lab_up: Lab) -> None:
    for node in lab.NODES:
        assert lab.echo_from_client(node.ip) == node.name


def test_pool_ip_is_served_by_the_node_whose_mac_the_client_uses(lab_up: Lab) -> None:
    """kube-proxy emulation: a pool IP ARP-resolved (statically here) to a node's MAC reaches that node."""
    pool_ip = "198.18.0.241"
    try:
        for node in (lab.NODES[1], lab.NODES[2]):
            lab.run(["ip", "-n", lab.CLIENT_NS, "neigh", "replace", pool_ip, "lladdr", node.mac, "dev", lab.CLIENT_IF,
                     "nud", "permanent"])  # fmt: skip
            for port in (80, 443):
                assert lab.echo_from_client(pool_ip, port) == node.name
    finally:
        lab.run(["ip", "-n", lab.CLIENT_NS, "neigh", "del", pool_ip, "dev", lab.CLIENT_IF], check=False)


def test_api_is_reachable_from_inside_a_node(lab_up: Lab) -> None:
    api = lab_up.state["api"]
    assert api["url"] == f"https://{lab.BRIDGE_IP}:{lab.API_PORT}"
    for node in lab.NODES:
        assert lab.api_from_node(lab_up.init_pid(node.name), lab.State(lab_up.state_dir))


def test_inventory_carries_the_model(lab_up: Lab) -> None:
    hosts = yaml.safe_load((lab_up.inventory_dir / "hosts.yml").read_text())
    nodes = hosts["all"]["children"]["l2lb_nodes"]
    assert nodes["vars"]["ansible_connection"] == "community.docker.nsenter"
    assert {name: vars_["ansible_nsenter_pid"] for name, vars_ in nodes["hosts"].items()} == {
        node.name: lab_up.init_pid(node.name) for node in lab.NODES
    }
    model = yaml.safe_load((lab_up.inventory_dir / "group_vars" / "all.yml").read_text())
    assert model["l2lb_pools"][0]["blocks"] == [{"cidr": lab.POOL}]
    assert model["l2lb_policies"][0]["interfaces"] == ["^host0$"]
    assert Path(model["l2lb_kubeconfig"]).exists() and Path(model["l2lb_api_ca_file"]).exists()
    workers = [
        name
        for name in (node.name for node in lab.NODES)
        if yaml.safe_load((lab_up.inventory_dir / "host_vars" / f"{name}.yml").read_text())["l2lb_node_labels"].get(
            "node-role.kubernetes.io/worker"
        )
        == "true"
    ]
    assert workers == ["l2lb-node2", "l2lb-node3"]


def test_up_again_is_a_no_op(lab_up: Lab) -> None:
    before = lab_up.state["procs"]
    proc = lab_up.cli("up", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "already up" in proc.stderr
    assert lab_up.state["procs"] == before
    assert lab_up.cli("status").returncode == 0


def test_down_leaves_nothing(lab_up: Lab) -> None:
    procs = [lab.Proc(rec["pid"], rec["start"]) for rec in lab_up.state["procs"].values()]
    assert len(procs) == len(lab.API_PROCS) + 2 * len(lab.NODES)
    image = lab_up.state["image"]
    started = time.monotonic()
    proc = lab_up.cli("down", timeout=120)
    assert proc.returncode == 0, proc.stderr
    print(f"lab down took {time.monotonic() - started:.1f}s")

    assert not [p.pid for p in procs if p.alive()]
    for link in (lab.BRIDGE, lab.CLIENT_VETH, *(node.veth for node in lab.NODES)):
        assert not lab.link_exists(link), link
    assert not lab.netns_exists(lab.CLIENT_NS)
    assert lab.lab_leftovers() == []
    for root in lab.cgroup_roots():
        assert not (root / lab.CGROUP).exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert image not in mounts and str(lab_up.state_dir) not in mounts
    assert not lab_up.state_dir.exists()
    assert not list(lab_up.inventory_dir.rglob("*.yml"))
    for node in lab.NODES:
        assert not (lab.NSPAWN_RUN / "propagate" / node.name).exists()
    # No process anywhere still runs a lab node or a part of the lab's control plane.
    for cmdline_path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = cmdline_path.read_bytes().split(b"\0")
        except OSError:
            continue
        assert not any(arg.startswith(b"--network-veth-extra=l2lb-lab") for arg in cmdline), cmdline
        assert not any(str(lab_up.state_dir).encode() in arg for arg in cmdline), cmdline
