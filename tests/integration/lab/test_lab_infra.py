"""The lab infrastructure: real systemd in the nodes, Ansible through nsenter and the client netns, the
real kube-proxy in every node (its modes, the IPVS stand-in), the backend pods and their EndpointSlices, the API
from inside a node, and a `down` that leaves nothing behind.

Brings the lab up once for the module (its own state and inventory directories under tmp), in file order:
the checks, then `up` again (a no-op), then `down` and the assertions that nothing is left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
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
        for unit in ("systemd-networkd", "kube-proxy"):
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
    result = lab_up.ansible("l2lb_probe", "wait_for", f"host={node.ip} port={lab.KUBE_PROXY_HEALTHZ_PORT} timeout=5")
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


def test_kube_proxy_runs_in_every_node(lab_up: Lab) -> None:
    """The real kube-proxy, as user system:kube-proxy, named after its node, in nftables mode (the default;
    iptables on the Debian 11 node, whose nft is too old for nftables mode)."""
    for node in lab.NODES:
        pid = lab_up.in_node(node.name, "systemctl", "show", "-P", "MainPID", "kube-proxy.service").strip()
        cmdline = lab_up.in_node(node.name, "cat", f"/proc/{pid}/cmdline").split("\0")
        assert cmdline[0] == "/usr/local/bin/kube-proxy" and f"--hostname-override={node.name}" in cmdline, cmdline
        mode = _proxy_mode(lab_up, node.name)
        assert mode == lab.proxy_mode(node, "nftables"), (node.name, node.suite, mode)
        if mode == "nftables":
            assert "chain service-" in lab_up.in_node(node.name, "nft", "list", "table", "ip", "kube-proxy")
        else:
            assert "-A KUBE-SERVICES" in lab_up.in_node(node.name, "iptables-save", "-t", "nat"), node.name
        assert lab.http_status_from_client(node.ip, lab.KUBE_PROXY_HEALTHZ_PORT, "/healthz") == 200
    kubeconfig = json.loads((lab_up.state_dir / "nodes" / lab.NODES[0].name / "kube-proxy.kubeconfig").read_text())
    assert kubeconfig["users"][0]["name"] == "system:kube-proxy"
    assert (lab_up.state_dir / "nodes" / lab.NODES[0].name / "kube-proxy.kubeconfig").stat().st_mode & 0o077 == 0


def _proxy_mode(lab_up: Lab, node: str) -> str:
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:10249/proxyMode').read().decode())"
    return lab_up.in_node(node, "python3", "-c", script).strip()


@pytest.fixture(scope="module")
def core(lab_up: Lab) -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config(config_file=lab_up.state["api"]["kubeconfig"])
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture(scope="module")
def lb_services(lab_up: Lab, core: client.CoreV1Api) -> Iterator[dict[str, str]]:
    """lab-echo (Cluster) and lab-local (Local) with LoadBalancer IPs written into their status by hand: there is
    no agent in this module, so the client reaches a node by a static neighbour entry instead of ARP."""
    ips = {"lab-echo": "198.18.0.250", "lab-local": "198.18.0.251"}
    for name, ip in ips.items():
        spec = {"type": "LoadBalancer", "selector": {"app": name}, "loadBalancerClass": "lab.l2lb.io/by-hand",
                "externalTrafficPolicy": "Local" if name == "lab-local" else "Cluster",
                "ports": [{"name": "http", "port": 80, "targetPort": lab.BACKEND_PORT, "protocol": "TCP"}]}  # fmt: skip
        core.create_namespaced_service("default", {"metadata": {"name": name}, "spec": spec})
        core.patch_namespaced_service_status(name, "default", {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
    try:
        yield ips
    finally:
        if (lab_up.state_dir / "state.json").exists():  # test_down_leaves_nothing may have removed the lab
            for name in ips:
                core.delete_namespaced_service(name, "default")


def _via(node: lab.Node, ip: str) -> None:
    lab.run(["ip", "-n", lab.CLIENT_NS, "neigh", "replace", ip, "lladdr", node.mac, "dev", lab.CLIENT_IF,
             "nud", "permanent"])  # fmt: skip


def _answer(ip: str) -> tuple[str, str] | None:
    try:
        return lab.backend_from_client(ip, 80)
    except lab.LabError:
        return None


def _eventually(what: str, check: Callable[[], object], timeout: float = 20) -> object:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
    return result


def _check_forwarding(lb_services: dict[str, str]) -> None:
    """Cluster: any node forwards to lab-echo's backends (l2lb-node1, l2lb-node3), masquerading the client;
    Local: only l2lb-node3, lab-local's backend node, serves it, and keeps the client's address."""
    echo, local = lb_services["lab-echo"], lb_services["lab-local"]
    node2, node3 = lab.NODES[1], lab.NODES[2]
    try:
        _via(node2, echo)
        label, source = _eventually("lab-echo through l2lb-node2", lambda: _answer(echo))  # type: ignore[misc]
        assert label.startswith("lab-echo-") and label.split("@")[1] in ("l2lb-node1", "l2lb-node3"), label
        assert source == node2.ip, source
        _via(node3, local)
        label, source = _eventually("lab-local through l2lb-node3", lambda: _answer(local))  # type: ignore[misc]
        assert label.startswith("lab-local-") and label.endswith("@l2lb-node3") and source == lab.CLIENT_IP
        _via(node2, local)
        assert _answer(local) is None, "l2lb-node2 has no local lab-local endpoint: its kube-proxy must drop"
    finally:
        for ip in (echo, local):
            lab.run(["ip", "-n", lab.CLIENT_NS, "neigh", "del", ip, "dev", lab.CLIENT_IF], check=False)


def test_kube_proxy_forwards_load_balancer_ips_to_backends(lab_up: Lab, lb_services: dict[str, str]) -> None:
    _check_forwarding(lb_services)


def _slice_endpoints(core: client.CoreV1Api, lab_up: Lab, service: str) -> dict[str, dict[str, object]]:
    api = config.new_client_from_config(config_file=lab_up.state["api"]["kubeconfig"])
    try:
        slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            "default", label_selector=f"kubernetes.io/service-name={service}"
        )
    finally:
        api.close()
    return {
        (e.target_ref.name if e.target_ref else e.addresses[0]): {
            "node": e.node_name,
            "ready": e.conditions.ready,
            "serving": e.conditions.serving,
            "terminating": e.conditions.terminating,
        }
        for s in slices.items
        for e in s.endpoints or []
    }


def test_backend_commands_change_what_endpointslices_say(
    lab_up: Lab, core: client.CoreV1Api, lb_services: dict[str, str]
) -> None:
    """`lab.py backend ...`: kube-controller-manager's EndpointSlice controller reflects each change."""

    def cli(*args: str) -> str:
        proc = lab_up.cli("backend", *args, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def endpoints() -> dict[str, dict[str, object]]:
        return _slice_endpoints(core, lab_up, "lab-echo")

    def settled(expected: dict[str, dict[str, object]]) -> Callable[[], bool]:
        def check() -> bool:
            found = endpoints()
            return found.keys() == expected.keys() and all(
                {f: found[k][f] for f in fields} == fields for k, fields in expected.items()
            )

        return check

    _eventually("lab-echo's endpoints", settled({"lab-echo-1": {"node": "l2lb-node1", "ready": True},
                                                "lab-echo-2": {"node": "l2lb-node3", "ready": True}}))  # fmt: skip
    name = cli("add", "lab-echo", "l2lb-node2")
    assert name == "lab-echo-3"
    _eventually("the new backend", settled({"lab-echo-1": {"ready": True}, "lab-echo-2": {"ready": True},
                                            "lab-echo-3": {"node": "l2lb-node2", "ready": True}}))  # fmt: skip
    cli("unready", name)
    _eventually("it to be unready", settled({"lab-echo-1": {"ready": True}, "lab-echo-2": {"ready": True},
                                             "lab-echo-3": {"ready": False, "serving": False}}))  # fmt: skip
    cli("ready", name)
    cli("move", name, "l2lb-node1")
    _eventually("it to move", settled({"lab-echo-1": {"ready": True}, "lab-echo-2": {"ready": True},
                                       "lab-echo-3": {"node": "l2lb-node1", "ready": True}}))  # fmt: skip
    moved = {row["name"]: row for row in json.loads(cli("list", "--json"))}[name]
    assert moved["node"] == "l2lb-node1" and moved["ip"].startswith("198.18.11."), moved
    # Terminating: deleted with a grace period it stays listed, not ready but still serving, until it is gone.
    removal = subprocess.Popen(
        [sys.executable, str(lab.REPO / "tests/lab/lab.py"), "--state-dir", str(lab_up.state_dir),
         "--inventory-dir", str(lab_up.inventory_dir), "backend", "remove", name, "--grace", "10"],
    )  # fmt: skip
    try:
        _eventually("it to be terminating", lambda: endpoints().get(name, {}).get("terminating") is True, timeout=10)
        assert endpoints()[name]["serving"] is True
    finally:
        assert removal.wait(60) == 0
    _eventually("it to be gone", lambda: name not in endpoints())
    assert cli("scale", "lab-echo", "l2lb-node3", "2").split() == ["lab-echo-2", "lab-echo-3"]
    assert cli("scale", "lab-echo", "l2lb-node3", "1").split() == ["lab-echo-2"]
    _eventually("lab-echo back to two", settled({"lab-echo-1": {"ready": True}, "lab-echo-2": {"ready": True}}))
    bad = lab_up.cli("backend", "move", "no-such-backend", "l2lb-node1")
    assert bad.returncode == 1 and "no backend 'no-such-backend'" in bad.stderr, bad.stderr


ARP_WHO = """
import sys
from scapy.all import ARP, Ether, conf, srp
conf.verb = 0
answered, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=sys.argv[1], psrc=sys.argv[2]), iface=sys.argv[3],
                  timeout=1, multi=True)
print(" ".join(sorted({reply.hwsrc for _, reply in answered})))
"""


def _arp_answers(ip: str) -> set[str]:
    out = lab.run(lab.in_client([lab.lab_python(), "-c", ARP_WHO, ip, lab.CLIENT_IP, lab.CLIENT_IF]), timeout=30)
    return set(out.split())


def test_kube_proxy_modes_iptables_and_the_ipvs_stand_in(lab_up: Lab, lb_services: dict[str, str]) -> None:
    """iptables mode forwards the same way. IPVS (a stand-in here: no IPVS in this kernel) binds every Service
    IP to kube-ipvs0, so without strictARP every node's kernel answers ARP for a LoadBalancer IP: the field
    failure the preflight catches. With strictARP the kernels stay silent."""
    every_mac = {node.mac for node in lab.NODES}
    try:
        assert lab_up.cli("kube-proxy", "iptables", timeout=180).returncode == 0
        assert {_proxy_mode(lab_up, node.name) for node in lab.NODES} == {"iptables"}
        _check_forwarding(lb_services)

        proc = lab_up.cli("kube-proxy", "ipvs", timeout=180)
        assert proc.returncode == 0, proc.stderr
        ip = lb_services["lab-echo"]
        _eventually("kube-ipvs0 to hold the LoadBalancer IP on every node", lambda: all(
            f"inet {ip}/32" in lab_up.in_node(n.name, "ip", "-4", "addr", "show", "dev", "kube-ipvs0")
            for n in lab.NODES))  # fmt: skip
        assert _arp_answers(ip) == every_mac, "without strictARP every node answers ARP for the IP"
        _check_forwarding(lb_services)

        proc = lab_up.cli("kube-proxy", "ipvs", "--strict-arp", timeout=180)
        assert proc.returncode == 0, proc.stderr
        for node in lab.NODES:
            assert lab_up.in_node(node.name, "sysctl", "-n", "net.ipv4.conf.all.arp_ignore").strip() == "1"
        assert _arp_answers(ip) == set(), "with strictARP no kernel answers for a Service IP"
    finally:
        proc = lab_up.cli("kube-proxy", "nftables", timeout=180)
        assert proc.returncode == 0, proc.stderr
        for node in lab.NODES:  # strictARP's sysctls stay after kube-proxy leaves IPVS mode, as on a real node
            lab_up.in_node(node.name, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=0",
                           "net.ipv4.conf.all.arp_announce=0")  # fmt: skip
    assert [_proxy_mode(lab_up, node.name) for node in lab.NODES] == [lab.proxy_mode(n, "nftables") for n in lab.NODES]
    for node in lab.NODES:
        links = lab_up.in_node(node.name, "ip", "-o", "link")
        assert "kube-ipvs0" not in links, node.name
    _check_forwarding(lb_services)


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
    images = list(lab_up.state["images"].values())
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
    assert not [image for image in images if image in mounts] and str(lab_up.state_dir) not in mounts
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
