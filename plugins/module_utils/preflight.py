# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight: what on a cluster and its nodes breaks a layer-2 load balancer, found before site.yml changes anything.

Pure functions. :func:`cluster_facts` reads the API objects ``preflight_info`` lists; node facts come from
``node_preflight_info`` (sysctls, addresses, kube-ipvs0, kube-proxy's /proxyMode); :func:`findings` judges
both and words each finding with its fix. Field breakers it knows:

* kube-proxy in IPVS mode without ``strictARP``: every Service IP is bound to ``kube-ipvs0`` on every node and
  each node's kernel answers ARP for it beside the announcing agent;
* k3s's built-in ServiceLB (klipper-lb, ``svclb-*`` DaemonSets): it also serves LoadBalancer Services, with
  the nodes' own IPs in their status;
* another LoadBalancer implementation (MetalLB, kube-vip, Cilium's L2 announcements) handling the same
  Services, i.e. without a ``loadBalancerClass`` of its own;
* nodes with several NICs in one subnet whose reverse-path filter drops traffic arriving on the "other" NIC,
  or whose ARP settings let every NIC answer for every address of the node.

Cilium's kube-proxy replacement is a dataplane l2lb works with; it is reported as such.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import agent_platform
from .l2lb.model import Model, ipv6_reach_warnings

ERROR, WARNING, INFO = "error", "warning", "info"

IPVS_STRICT_ARP = "kube-proxy-ipvs-strict-arp"
K3S_SERVICELB = "k3s-servicelb"
OTHER_LOAD_BALANCER = "other-load-balancer"
MULTI_NIC_SYSCTLS = "multi-nic-sysctls"
DATAPLANE = "dataplane"
AGENT_PLATFORM = "agent-platform"
AGENT_VENV = "agent-venv"
IPV6_UNANSWERED = "ipv6-unanswered"
SUPPORTED = (
    "see each reason; supported are Debian 11-13, Ubuntu 22.04/24.04, RHEL-family 9/10 and Raspberry Pi OS "
    "(64-bit), x86_64 or aarch64, with systemd and the system python3 (3.9 to 3.13)"
)
FINDING_IDS = (
    IPVS_STRICT_ARP, K3S_SERVICELB, OTHER_LOAD_BALANCER, MULTI_NIC_SYSCTLS, DATAPLANE, AGENT_PLATFORM, AGENT_VENV,
    IPV6_UNANSWERED,
)  # fmt: skip

KUBE_PROXY_CONFIGMAP = ("kube-system", "kube-proxy", "config.conf")
CILIUM_CONFIGMAP = ("kube-system", "cilium-config")
K3S_SVCLB_LABEL = "svccontroller.k3s.cattle.io/svcname"
# Interfaces that are not NICs on the LAN: never counted as "several NICs in one subnet".
_VIRTUAL = re.compile(r"^(lo|kube-ipvs0|cni\d*|flannel\..*|cilium_.*|lxc.*|vxlan.*|veth.*|docker\d*|cali.*|tunl\d*)$")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _ref(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}".lstrip("/")


def _containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers of a Pod, or of a DaemonSet's/Deployment's pod template."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    template = spec.get("template") if isinstance(spec.get("template"), Mapping) else None  # type: ignore[union-attr]
    pod_spec = (template.get("spec") if template else spec) or {}
    containers = pod_spec.get("containers") if isinstance(pod_spec, Mapping) else None
    return [c for c in containers or [] if isinstance(c, Mapping)]


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {str(e.get("name")): str(e.get("value") or "") for e in container.get("env") or [] if isinstance(e, Mapping)}


def _args(container: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def parse_kube_proxy_config(text: str) -> dict[str, Any]:
    """mode and ipvs.strictARP from a KubeProxyConfiguration (the ConfigMap's ``config.conf``), by its lines."""
    mode = re.search(r"(?m)^mode:\s*[\"']?([A-Za-z]*)[\"']?\s*(#.*)?$", text)
    strict = re.search(r"(?m)^ipvs:\s*$(?:\n[ \t]+.*$)*?\n[ \t]+strictARP:\s*(\w+)", text)
    return {
        "mode": (mode.group(1) if mode else "") or "iptables",  # empty means the platform default: iptables
        "strict_arp": bool(strict and strict.group(1).lower() == "true"),
    }


def cluster_facts(
    workloads: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
    config_maps: Mapping[str, Mapping[str, Any] | None],
) -> dict[str, Any]:
    """What the API says about kube-proxy, ServiceLB, other implementations and Cilium.

    ``workloads``: DaemonSets, Deployments and (kube-system) Pods as the API returns them, each with ``kind``;
    ``config_maps``: ``"namespace/name"`` -> the ConfigMap or None, for kube-proxy's and Cilium's.
    """
    facts: dict[str, Any] = {"kube_proxy": None, "kube_proxy_daemonset": "", "servicelb": [], "implementations": []}
    namespace, name, key = KUBE_PROXY_CONFIGMAP
    kube_proxy = config_maps.get(f"{namespace}/{name}")
    if kube_proxy:
        text = str((kube_proxy.get("data") or {}).get(key) or "")
        facts["kube_proxy"] = {"configmap": f"{namespace}/{name}", **parse_kube_proxy_config(text)}
    cilium = config_maps.get("/".join(CILIUM_CONFIGMAP))
    data = (cilium or {}).get("data") or {}
    facts["cilium"] = (
        {
            "configmap": "/".join(CILIUM_CONFIGMAP),
            "l2_announcements": str(data.get("enable-l2-announcements", "")).lower() == "true",
            "kube_proxy_replacement": str(data.get("kube-proxy-replacement", "")).lower() in ("true", "strict"),
        }
        if cilium
        else None
    )
    found: dict[str, dict[str, Any]] = {}
    for obj in workloads:
        ref, kind, labels = _ref(obj), str(obj.get("kind") or ""), _labels(obj)
        meta_name = str(_meta(obj).get("name") or "")
        images = " ".join(str(c.get("image") or "") for c in _containers(obj))
        if kind == "DaemonSet" and ref == "kube-system/kube-proxy":
            facts["kube_proxy_daemonset"] = ref
        if kind == "DaemonSet" and (
            K3S_SVCLB_LABEL in labels or (meta_name.startswith("svclb-") and "klipper" in images)
        ):
            facts["servicelb"].append(ref)
            continue
        owners = _meta(obj).get("ownerReferences") or []
        if kind == "Pod" and any(isinstance(o, Mapping) and o.get("kind") != "Node" for o in owners):
            continue  # a DaemonSet's or Deployment's pod: judged by its owner (a static Pod's owner is its Node)
        impl = _implementation(obj, labels, meta_name, images)
        if impl is None:
            continue
        entry = found.setdefault(impl["name"], {"name": impl["name"], "objects": [], "lb_class": ""})
        entry["objects"].append(f"{kind} {ref}")
        entry["lb_class"] = entry["lb_class"] or impl["lb_class"]
    for node in nodes:
        servers_args = k3s_server_args(node)
        if servers_args is not None and not servicelb_disabled(servers_args):
            facts["servicelb"].append(f"k3s server {_meta(node).get('name')} (started without --disable=servicelb)")
    facts["implementations"] = sorted(found.values(), key=lambda e: e["name"])
    return facts


def _implementation(obj: Mapping[str, Any], labels: Mapping[str, Any], name: str, images: str) -> dict[str, str] | None:
    """{name, lb_class} when ``obj`` runs another LoadBalancer implementation that handles Services."""
    containers = _containers(obj)
    if labels.get("app.kubernetes.io/name") == "metallb" or labels.get("app") == "metallb" or "metallb/" in images:
        return {
            "name": "MetalLB",
            "lb_class": next(filter(None, (_flag(_args(c), "--lb-class") for c in containers)), ""),
        }
    if "kube-vip-cloud-provider" in images or name.startswith("kube-vip-cloud-provider"):
        return {"name": "kube-vip cloud provider", "lb_class": ""}
    if "kube-vip/kube-vip" in images or name.startswith("kube-vip"):
        env = {k: v for c in containers for k, v in _env(c).items()}
        if env.get("svc_enable", "").lower() != "true":
            return None  # control-plane VIP only: no Services
        only = env.get("lb_class_only", "").lower() == "true"
        return {
            "name": "kube-vip",
            "lb_class": (env.get("lb_class_name") or "kube-vip.io/kube-vip-class") if only else "",
        }
    return None


def _flag(args: Sequence[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in an argument list ("" when absent)."""
    for index, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and index + 1 < len(args):
            return args[index + 1]
    return ""


def k3s_server_args(node: Mapping[str, Any]) -> list[str] | None:
    """A k3s server's command line, from the ``k3s.io/node-args`` annotation k3s puts on its Node (flags from
    /etc/rancher/k3s/config.yaml included); None for other nodes (agents, other distributions)."""
    annotations = _meta(node).get("annotations")
    raw = annotations.get("k3s.io/node-args") if isinstance(annotations, Mapping) else None
    if not isinstance(raw, str):
        return None
    try:
        args = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(args, list) or not args or args[0] != "server":
        return None
    return [str(a) for a in args]


def servicelb_disabled(args: Sequence[str]) -> bool:
    """k3s server flags that turn ServiceLB off: --disable servicelb (repeatable, comma lists), --disable-servicelb,
    or the old --no-deploy servicelb."""
    if "--disable-servicelb" in args:
        return True
    for index, arg in enumerate(args):
        for flag in ("--disable", "--no-deploy"):
            value = arg.split("=", 1)[1] if arg.startswith(flag + "=") else None
            if arg == flag and index + 1 < len(args):
                value = args[index + 1]
            if value is not None and "servicelb" in (v.strip() for v in value.split(",")):
                return True
    return False


def _effective(sysctls: Mapping[str, Any], iface: str, key: str) -> int | None:
    """The value the kernel applies on ``iface``: max(all, iface) for rp_filter, arp_ignore and arp_announce."""
    values = []
    for scope in ("all", iface):
        value = (sysctls.get(scope) or {}).get(key)
        if isinstance(value, int):
            values.append(value)
    return max(values) if values else None


def _lan_interfaces(node: Mapping[str, Any]) -> dict[str, list[str]]:
    """Subnet -> interfaces with an IPv4 address in it, for subnets that two or more NICs share."""
    by_subnet: dict[str, list[str]] = {}
    for iface in node.get("interfaces") or []:
        name = str(iface.get("name") or "")
        if _VIRTUAL.match(name) or not iface.get("up"):
            continue
        for cidr in iface.get("ipv4") or []:
            try:
                subnet = str(ipaddress.ip_interface(cidr).network)
            except ValueError:
                continue
            if name not in by_subnet.setdefault(subnet, []):
                by_subnet[subnet].append(name)
    return {subnet: names for subnet, names in by_subnet.items() if len(names) > 1}


def _strict_arp_nodes(nodes: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(nodes in IPVS mode, those of them whose kernel answers ARP for addresses on kube-ipvs0)."""
    ipvs, loose = [], []
    for name, node in sorted(nodes.items()):
        if not (node.get("kube_ipvs0") or node.get("kube_proxy_mode") == "ipvs"):
            continue
        ipvs.append(name)
        sysctls = node.get("sysctls") or {}
        for iface in node.get("interfaces") or []:
            iname = str(iface.get("name") or "")
            if iname in ("lo", "kube-ipvs0") or not iface.get("ipv4"):
                continue
            ignore, announce = _effective(sysctls, iname, "arp_ignore"), _effective(sysctls, iname, "arp_announce")
            if (ignore is not None and ignore < 1) or (announce is not None and announce < 2):
                loose.append(name)
                break
    return ipvs, loose


def findings(
    cluster: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]],
    backend: str = "l2lb",
    lb_class: str = "l2lb.io/l2-announcer",
    model: Model | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Every finding: ``{id, severity, message, fix, subjects}``; errors stop site.yml (unless ignored).

    ``model`` (the validated pools and policies) and ``labels`` (node -> the labels it gets) add the checks of the
    model against the nodes."""
    result: list[dict[str, Any]] = []

    def add(fid: str, severity: str, message: str, fix: str = "", subjects: Sequence[str] = ()) -> None:
        result.append({"id": fid, "severity": severity, "message": message, "fix": fix, "subjects": list(subjects)})

    kube_proxy = cluster.get("kube_proxy") or None
    ipvs_nodes, loose = _strict_arp_nodes(nodes)
    config_loose = bool(kube_proxy and kube_proxy.get("mode") == "ipvs" and not kube_proxy.get("strict_arp"))
    if backend == "l2lb" and (loose or (config_loose and not nodes)):
        where = f"on {', '.join(loose)}" if loose else f"per ConfigMap {kube_proxy['configmap']}"  # type: ignore[index]
        if kube_proxy:
            fix = (
                f"set ipvs.strictARP: true in ConfigMap {kube_proxy['configmap']} (key config.conf) and restart "
                "kube-proxy, or re-run site.yml with -e l2lb_fix_kube_proxy_strict_arp=true to have it do both"
            )
        else:
            fix = (
                "start kube-proxy with --ipvs-strict-arp=true (k3s: kube-proxy-arg: [ipvs-strict-arp=true] in "
                "/etc/rancher/k3s/config.yaml on every node, then restart k3s); no kube-proxy ConfigMap to patch here"
            )
        add(
            IPVS_STRICT_ARP,
            ERROR,
            f"kube-proxy runs in IPVS mode without strictARP {where}: every Service IP is bound to kube-ipvs0 on "
            "every node, so each node's kernel answers ARP for every LoadBalancer IP beside the announcing agent",
            fix,
            loose,
        )
    servicelb = list(cluster.get("servicelb") or [])
    if servicelb:
        add(
            K3S_SERVICELB,
            ERROR,
            "k3s's built-in ServiceLB (klipper-lb) is enabled ("
            + ", ".join(servicelb[:5])
            + (", ..." if len(servicelb) > 5 else "")
            + "): it also serves LoadBalancer Services, writing the nodes' own IPs into their status",
            "start every k3s server with --disable=servicelb (or disable: [servicelb] in "
            "/etc/rancher/k3s/config.yaml) and restart k3s; its svclb-* DaemonSets then go away",
            servicelb,
        )
    for impl in cluster.get("implementations") or []:
        objects = ", ".join(impl.get("objects") or [])
        theirs = str(impl.get("lb_class") or "")
        if theirs and theirs != lb_class:
            add(OTHER_LOAD_BALANCER, INFO, f"{impl['name']} ({objects}) only handles loadBalancerClass {theirs}: "
                "separated from l2lb, which handles Services without a class or with " + lb_class)  # fmt: skip
            continue
        add(
            OTHER_LOAD_BALANCER,
            ERROR,
            f"{impl['name']} ({objects}) also handles LoadBalancer Services without a loadBalancerClass, as l2lb "
            "does: both would allocate and announce the same Services",
            "remove it (for MetalLB, import its pools first with playbooks/migrate_metallb.yml), or separate the two "
            "by loadBalancerClass: MetalLB --lb-class=<class>, kube-vip lb_class_only=true, and set "
            f"spec.loadBalancerClass: <class> on the Services it should keep (l2lb's own class is {lb_class})",
            [impl["name"]],
        )
    cilium = cluster.get("cilium") or None
    if cilium and cilium.get("l2_announcements") and backend == "l2lb":
        add(
            OTHER_LOAD_BALANCER,
            ERROR,
            f"Cilium's L2 announcements are enabled (enable-l2-announcements in {cilium['configmap']}): Cilium "
            "would answer ARP for the same Services as the l2lb agents",
            "set l2announcements.enabled=false in Cilium's Helm values, or let Cilium announce: l2lb_backend: "
            "cilium (the cilium role configures it from the same model)",
            ["Cilium"],
        )
    for name, node in sorted(nodes.items()):
        shared = _lan_interfaces(node)
        if not shared:
            continue
        sysctls = node.get("sysctls") or {}
        problems = []
        for subnet, ifaces in sorted(shared.items()):
            strict = [i for i in ifaces if _effective(sysctls, i, "rp_filter") == 1]
            flux = [i for i in ifaces if (_effective(sysctls, i, "arp_ignore") or 0) < 1
                    or (_effective(sysctls, i, "arp_announce") or 0) < 2]  # fmt: skip
            if strict:
                problems.append(
                    f"strict reverse-path filtering (rp_filter=1) on {', '.join(strict)} drops Service traffic that "
                    f"arrives on one NIC in {subnet} while the route back leaves by another"
                )
            if flux:
                problems.append(
                    f"{', '.join(flux)} in {subnet} answer ARP for each other's addresses (arp_ignore<1 or "
                    "arp_announce<2), so replies and traffic can leave by the wrong NIC"
                )
        if problems:
            nics = "; ".join(f"{subnet}: {', '.join(ifaces)}" for subnet, ifaces in shared.items())
            add(
                MULTI_NIC_SYSCTLS,
                WARNING,
                f"{name} has several NICs in one subnet ({nics}): " + "; ".join(problems),
                "set net.ipv4.conf.all.rp_filter=2, net.ipv4.conf.all.arp_ignore=1 and "
                "net.ipv4.conf.all.arp_announce=2 on that node, or re-run with -e l2lb_fix_node_sysctls=true "
                "to have site.yml write them to /etc/sysctl.d/90-l2lb.conf",
                [name],
            )
    if backend == "l2lb":
        _agent_findings(nodes, add)
    if model is not None and nodes:
        facts = {name: {**node, "labels": (labels or {}).get(name) or {}} for name, node in nodes.items()}
        for warning, selected in ipv6_reach_warnings(model, facts):
            add(IPV6_UNANSWERED, WARNING, warning, subjects=selected)
    modes = sorted({str(n.get("kube_proxy_mode")) for n in nodes.values() if n.get("kube_proxy_mode")})
    if cilium and cilium.get("kube_proxy_replacement"):
        add(DATAPLANE, INFO, "Cilium's kube-proxy replacement (supported: it serves LoadBalancer IPs "
            "that reach a node, as kube-proxy does)")  # fmt: skip
    elif modes:
        ipvs_note = " (IPVS: strictARP checked above)" if ipvs_nodes else ""
        add(DATAPLANE, INFO, f"kube-proxy in {', '.join(modes)} mode{ipvs_note}")
    elif nodes:
        add(DATAPLANE, INFO, "no kube-proxy answered on 127.0.0.1:10249/proxyMode and Cilium's kube-proxy "
            "replacement is not enabled; whatever forwards Service traffic, verify.yml's TCP check tells")  # fmt: skip
    return result


def _agent_findings(nodes: Mapping[str, Mapping[str, Any]], add: Any) -> None:
    """Whether each node can run the agent: its python3, CPU, C library, init system and venv package."""
    platforms: dict[str, list[str]] = {}
    for name, node in sorted(nodes.items()):
        python = node.get("python")
        if python is None:
            continue  # facts from before the agent's checks existed
        problems = list(python.get("problems") or [])
        if not node.get("systemd", True):
            problems.append("PID 1 is not systemd and the agent runs as a systemd service")
        if problems:
            add(AGENT_PLATFORM, ERROR, f"{name} cannot run the agent: " + "; ".join(problems), SUPPORTED, [name])
            continue
        platforms.setdefault(str(python.get("key")), []).append(name)
        if python.get("missing_venv"):
            family = str(node.get("os_family") or "")
            package = agent_platform.venv_package(family)
            if package:
                add(AGENT_VENV, INFO, f"{name}: python3 has no ensurepip (python3 -m venv fails); the agent role "
                    f"installs {package}", subjects=[name])  # fmt: skip
            else:
                add(AGENT_VENV, ERROR, f"{name}: python3 has no ensurepip, so python3 -m venv fails, and the OS "
                    f"({family or 'unknown'}) is not one whose package the agent role knows",
                    "install the package that provides Python's ensurepip/venv on that node", [name])  # fmt: skip
    if platforms:
        listed = ", ".join(f"{key} ({', '.join(names)})" for key, names in sorted(platforms.items()))
        add(AGENT_PLATFORM, INFO, f"agent wheels per node platform: {listed}")


def report(found: Sequence[Mapping[str, Any]], ignore: Iterable[str] = ()) -> dict[str, Any]:
    """The printable lines, the blocking errors (not in ``ignore``), and which fixes apply."""
    ignored = set(ignore)
    lines, errors = [], []
    for item in found:
        tag = item["severity"].upper()
        if item["severity"] == ERROR and item["id"] in ignored:
            tag = "IGNORED"
        lines.append(f"{tag:<8} {item['id']}: {item['message']}")
        if item.get("fix"):
            lines.append(f"         fix: {item['fix']}")
        if item["severity"] == ERROR and item["id"] not in ignored:
            errors.append(f"{item['id']}: {item['message']}. Fix: {item.get('fix') or '-'}")
    ids = {item["id"] for item in found if item["severity"] in (ERROR, WARNING)}
    return {
        "lines": lines or ["no findings"],
        "errors": errors,
        "strict_arp_nodes": next((list(i["subjects"]) for i in found if i["id"] == IPVS_STRICT_ARP), []),
        "sysctl_nodes": [s for i in found if i["id"] == MULTI_NIC_SYSCTLS for s in i["subjects"]],
        "ids": sorted(ids),
    }
