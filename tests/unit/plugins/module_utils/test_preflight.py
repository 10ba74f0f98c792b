"""Preflight: each field breaker found from the objects its installers create, worded with its fix; and what
must not be flagged (kube-vip for the control plane only, a MetalLB limited to its own class, one NIC per subnet)."""

from __future__ import annotations

import json
from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.preflight import (
    ERROR,
    INFO,
    WARNING,
    cluster_facts,
    findings,
    parse_kube_proxy_config,
    report,
)

KUBEADM_IPVS = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nipvs:\n  scheduler: ''\n  strictARP: false\nmode: ipvs\n"


def _workload(kind: str, ns: str, name: str, labels: dict[str, str] | None = None, **container: Any) -> dict:
    spec = {"containers": [{"name": "c", "image": "example/img", **container}]}
    body: dict[str, Any] = {"metadata": {"namespace": ns, "name": name, "labels": labels or {}}, "kind": kind}
    body["spec"] = spec if kind == "Pod" else {"template": {"spec": spec}}
    return body


def _node(*ifaces: tuple[str, list[str]], mode: str = "nftables", ipvs: bool = False, **sysctls: Any) -> dict:
    names = [name for name, _ in ifaces]
    values = {"all": {"rp_filter": 2, "arp_ignore": 0, "arp_announce": 0}}
    values.update({name: {"rp_filter": 0, "arp_ignore": 0, "arp_announce": 0} for name in names})
    for key, value in sysctls.items():
        scope, _, field = key.partition("__")
        values.setdefault(scope, {})[field] = value
    interfaces = [{"name": name, "up": True, "ipv4": cidrs} for name, cidrs in ifaces]
    return {"interfaces": interfaces, "sysctls": values, "kube_ipvs0": ipvs, "kube_proxy_mode": mode}


def _ids(found: list[dict[str, Any]], severity: str = ERROR) -> list[str]:
    return [f["id"] for f in found if f["severity"] == severity]


def test_kube_proxy_config_mode_and_strict_arp() -> None:
    assert parse_kube_proxy_config(KUBEADM_IPVS) == {"mode": "ipvs", "strict_arp": False}
    assert parse_kube_proxy_config(KUBEADM_IPVS.replace("false", "true")) == {"mode": "ipvs", "strict_arp": True}
    assert parse_kube_proxy_config('mode: ""\n') == {"mode": "iptables", "strict_arp": False}


def test_ipvs_without_strict_arp_is_an_error_with_the_fix() -> None:
    cluster = cluster_facts([], [], {"kube-system/kube-proxy": {"data": {"config.conf": KUBEADM_IPVS}}})
    nodes = {"n1": _node(("eth0", ["192.0.2.11/24"]), mode="ipvs", ipvs=True)}
    found = findings(cluster, nodes)
    assert _ids(found) == ["kube-proxy-ipvs-strict-arp"]
    item = found[0]
    assert "on n1" in item["message"] and "kube-ipvs0" in item["message"]
    assert "l2lb_fix_kube_proxy_strict_arp=true" in item["fix"] and "kube-system/kube-proxy" in item["fix"]
    # strictARP applied on the node (kube-proxy set arp_ignore=1, arp_announce=2): nothing to report.
    strict = {"n1": _node(("eth0", ["192.0.2.11/24"]), mode="ipvs", ipvs=True, all__arp_ignore=1, all__arp_announce=2)}
    assert _ids(findings(cluster, strict)) == []
    # k3s: no ConfigMap to patch, the fix says which flag.
    assert "ipvs-strict-arp=true" in findings(cluster_facts([], [], {}), nodes)[0]["fix"]


def _k3s_node(*args: str) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "annotations": {"k3s.io/node-args": json.dumps(list(args))}}}


def test_k3s_servicelb_from_its_daemonsets_or_the_servers_flags() -> None:
    svclb = _workload("DaemonSet", "kube-system", "svclb-web-1a2b3c4d", {"svccontroller.k3s.cattle.io/svcname": "web"})
    # A fresh k3s server has no svclb-* DaemonSet yet (they come with the first LoadBalancer Service): its flags tell.
    fresh = _k3s_node("server", "--write-kubeconfig-mode", "644", "--disable", "traefik")
    for cluster in (cluster_facts([svclb], [], {}), cluster_facts([], [fresh], {})):
        found = findings(cluster, {})
        assert _ids(found) == ["k3s-servicelb"]
        assert "--disable=servicelb" in found[0]["fix"]
    for disabled in (("server", "--disable", "traefik,servicelb"), ("server", "--disable=servicelb"),
                     ("server", "--disable-servicelb"), ("server", "--no-deploy", "servicelb")):  # fmt: skip
        assert _ids(findings(cluster_facts([], [_k3s_node(*disabled)], {}), {})) == [], disabled
    agent = _k3s_node("agent", "--server", "https://192.0.2.1:6443")
    assert _ids(findings(cluster_facts([], [agent], {}), {})) == []


def test_other_implementations_and_their_class_separation() -> None:
    speaker = _workload("DaemonSet", "metallb-system", "speaker", {"app.kubernetes.io/name": "metallb"})
    controller = _workload("Deployment", "metallb-system", "controller", {"app": "metallb"})
    found = findings(cluster_facts([speaker, controller], [], {}), {})
    assert _ids(found) == ["other-load-balancer"]
    assert "MetalLB (DaemonSet metallb-system/speaker, Deployment metallb-system/controller)" in found[0]["message"]
    assert "migrate_metallb.yml" in found[0]["fix"] and "--lb-class" in found[0]["fix"]
    for args in (["--lb-class=metallb"], ["--port=7472", "--lb-class", "metallb"]):
        separated = _workload("Deployment", "metallb-system", "controller", {"app": "metallb"}, args=args)
        found = findings(cluster_facts([separated], [], {}), {})
        assert _ids(found) == [] and _ids(found, INFO) == ["other-load-balancer"], args
    vip = [{"name": "svc_enable", "value": "true"}]
    kube_vip = _workload("Pod", "kube-system", "kube-vip-n1", image="ghcr.io/kube-vip/kube-vip:v1.2.0", env=vip)
    assert _ids(findings(cluster_facts([kube_vip], [], {}), {})) == ["other-load-balancer"]
    # As the API shows a static Pod (kubeadm HA: /etc/kubernetes/manifests/kube-vip.yaml): owned by its Node.
    static = {**kube_vip, "metadata": {**kube_vip["metadata"], "ownerReferences": [{"kind": "Node", "name": "n1"}]}}
    assert _ids(findings(cluster_facts([static], [], {}), {})) == ["other-load-balancer"]
    owned = {**kube_vip, "metadata": {**kube_vip["metadata"], "ownerReferences": [{"kind": "DaemonSet", "name": "x"}]}}
    assert _ids(findings(cluster_facts([owned], [], {}), {})) == []  # judged by its DaemonSet instead
    control_plane_only = _workload("Pod", "kube-system", "kube-vip-n1", image="ghcr.io/kube-vip/kube-vip:v1.2.0")
    assert _ids(findings(cluster_facts([control_plane_only], [], {}), {})) == []
    vip_only = [*vip, {"name": "lb_class_only", "value": "true"}]
    only = _workload("DaemonSet", "kube-system", "kube-vip-ds", image="ghcr.io/kube-vip/kube-vip:v1.2.0", env=vip_only)
    assert _ids(findings(cluster_facts([only], [], {}), {})) == []


def test_cilium_l2_announcements_conflict_only_when_l2lb_announces() -> None:
    cilium = {"data": {"enable-l2-announcements": "true", "kube-proxy-replacement": "true"}}
    cluster = cluster_facts([], [], {"kube-system/cilium-config": cilium})
    assert _ids(findings(cluster, {})) == ["other-load-balancer"]
    found = findings(cluster, {}, backend="cilium")
    assert _ids(found) == []
    assert next(f["message"] for f in found if f["id"] == "dataplane").startswith("Cilium's kube-proxy")


def test_several_nics_in_one_subnet_warn_about_rp_filter_and_arp() -> None:
    two = _node(("eth0", ["192.0.2.11/24"]), ("eth1", ["192.0.2.21/24"]), all__rp_filter=1)
    found = findings(cluster_facts([], [], {}), {"n1": two})
    assert _ids(found, WARNING) == ["multi-nic-sysctls"]
    message = found[0]["message"]
    assert "192.0.2.0/24: eth0, eth1" in message and "rp_filter=1" in message and "arp_ignore<1" in message
    assert "l2lb_fix_node_sysctls=true" in found[0]["fix"]
    fixed = _node(("eth0", ["192.0.2.11/24"]), ("eth1", ["192.0.2.21/24"]), all__arp_ignore=1, all__arp_announce=2)
    assert _ids(findings(cluster_facts([], [], {}), {"n1": fixed}), WARNING) == []
    # One NIC per subnet (a pod bridge beside the LAN NIC) is the normal case.
    normal = _node(("eth0", ["192.0.2.11/24"]), ("cni0", ["10.42.0.1/24"]), ("eth1", ["198.51.100.5/24"]))
    assert _ids(findings(cluster_facts([], [], {}), {"n1": normal}), WARNING) == []


def test_report_blocks_on_errors_unless_ignored() -> None:
    speaker = _workload("DaemonSet", "metallb-system", "speaker", {"app.kubernetes.io/name": "metallb"})
    found = findings(cluster_facts([speaker], [], {}), {"n1": _node(("eth0", ["192.0.2.11/24"]))})
    blocking = report(found)
    assert len(blocking["errors"]) == 1 and blocking["errors"][0].startswith("other-load-balancer: MetalLB")
    assert any(line.startswith("ERROR    other-load-balancer") for line in blocking["lines"])
    assert any(line.startswith("INFO     dataplane: kube-proxy in nftables mode") for line in blocking["lines"])
    ignored = report(found, ["other-load-balancer"])
    assert ignored["errors"] == [] and any(line.startswith("IGNORED") for line in ignored["lines"])


def test_an_ipv6_pool_that_no_node_answers_is_a_warning_in_site_yml() -> None:
    from ansible_collections.baremetal.l2lb.plugins.filter.preflight import preflight_report

    pools = [{"name": "v6", "blocks": [{"cidr": "2001:2:0:10::/120"}]}]
    policies = [{"name": "lan", "interfaces": ["^eth0$"]}]
    nodes = {"n1": _node(("eth0", ["198.18.0.11/24"])), "n2": _node(("eth0", ["198.18.0.12/24"]))}
    report_ = preflight_report({}, nodes, pools=pools, policies=policies)
    [finding] = [f for f in report_["findings"] if f["id"] == "ipv6-unanswered"]
    assert finding["severity"] == WARNING and finding["subjects"] == ["n1", "n2"]
    assert "no node a policy selects (n1, n2) has IPv6" in finding["message"]
    assert report_["errors"] == [], "a warning: the run goes on"
    nodes["n2"]["interfaces"][0]["ipv6"] = ["2001:2:0:10::12/64"]
    assert not [
        f
        for f in preflight_report({}, nodes, pools=pools, policies=policies)["findings"]
        if f["id"] == "ipv6-unanswered"
    ]
    # The nodeSelector sees the inventory's labels (and kubernetes.io/hostname): n2 unselected, the warning is back.
    policies = [{"name": "lan", "interfaces": ["^eth0$"], "nodeSelector": {"matchLabels": {"zone": "a"}}}]
    found = preflight_report({}, nodes, pools=pools, policies=policies, labels={"n1": {"zone": "a"}})["findings"]
    assert [f["subjects"] for f in found if f["id"] == "ipv6-unanswered"] == [["n1"]]
    assert "no node a policy selects (n1) has IPv6" in next(f["message"] for f in found if f["id"] == "ipv6-unanswered")
