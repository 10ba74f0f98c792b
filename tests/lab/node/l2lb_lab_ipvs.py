#!/usr/bin/python3
"""Lab node, IPVS stand-in: what kube-proxy's IPVS mode does to a node's ARP behaviour, on a kernel without IPVS.

IPVS mode binds every Service IP (ClusterIPs, external IPs, LoadBalancer ingress IPs) to the ``kube-ipvs0``
interface; the kernel then answers ARP for those IPs on every interface unless ``strictARP: true`` made
kube-proxy set ``net.ipv4.conf.all.arp_ignore=1`` and ``arp_announce=2``. That is the field failure the
preflight check catches: every node answers ARP for a LoadBalancer IP beside the announcing speaker.

Here ``kube-ipvs0`` is a bridge-type interface left down (kube-proxy makes it a dummy device; this kernel has no
``dummy``): addresses on it are local all the same, which is all that matters for ARP. The addresses follow the
Services every second. The forwarding itself is kube-proxy's nftables mode (see l2lb-kube-proxy-config).
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

KUBECONFIG = Path("/etc/l2lb-lab/kube-proxy.kubeconfig")
DEVICE = "kube-ipvs0"


def service_ips(cluster: dict[str, str], token: str) -> set[str]:
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    request = urllib.request.Request(
        cluster["server"] + "/api/v1/services", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        items = json.load(response)["items"]
    ips: set[str] = set()
    for service in items:
        spec, status = service.get("spec") or {}, service.get("status") or {}
        ips.update(spec.get("clusterIPs") or [])
        ips.update(spec.get("externalIPs") or [])
        ips.update(i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip"))
    return {ip for ip in ips if ip != "None" and ipaddress.ip_address(ip).version == 4}


def bound() -> set[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", DEVICE], capture_output=True, text=True, check=True)
    return {a["local"] for link in json.loads(out.stdout) for a in link.get("addr_info", [])}


def main() -> int:
    if os.environ.get("L2LB_STRICT_ARP") == "true":
        Path("/proc/sys/net/ipv4/conf/all/arp_ignore").write_text("1")
        Path("/proc/sys/net/ipv4/conf/all/arp_announce").write_text("2")
    if subprocess.run(["ip", "link", "show", DEVICE], capture_output=True, check=False).returncode != 0:
        subprocess.run(["ip", "link", "add", DEVICE, "type", "bridge"], check=True)
    kubeconfig = json.loads(KUBECONFIG.read_text())
    cluster, token = kubeconfig["clusters"][0]["cluster"], kubeconfig["users"][0]["user"]["token"]
    while True:
        try:
            want, have = service_ips(cluster, token), bound()
            for ip in sorted(want - have):
                subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", DEVICE], check=False)
            for ip in sorted(have - want):
                subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", DEVICE], check=False)
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            print(f"sync failed, retrying: {exc}", file=sys.stderr, flush=True)
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
