#!/usr/bin/python3
"""Lab node: fetch kube-proxy's configuration from the ConfigMap kube-system/kube-proxy (key ``config.conf``),
as kubeadm's kube-proxy DaemonSet mounts it, into /run/kube-proxy/config.conf. Run before every start of
kube-proxy.service, so editing the ConfigMap and restarting kube-proxy is how the mode or strictARP change.

IPVS stand-in: this kernel has no IPVS (no ``ip_vs`` module, no /proc/net/ip_vs), so kube-proxy cannot run in
``mode: ipvs`` here. When the ConfigMap asks for it, kube-proxy forwards with nftables instead, and
l2lb-lab-ipvs.service reproduces what IPVS mode does to a node's ARP behaviour (every Service IP bound to
``kube-ipvs0``; with ``strictARP: true`` the arp_ignore/arp_announce sysctls kube-proxy sets).
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

KUBECONFIG = Path("/etc/l2lb-lab/kube-proxy.kubeconfig")  # JSON (a kubeconfig may be JSON): no YAML parser here
RUN = Path("/run/kube-proxy")
URL_PATH = "/api/v1/namespaces/kube-system/configmaps/kube-proxy"


def nft_version() -> tuple[int, ...]:
    """nft's version, () when there is no nft."""
    try:
        out = subprocess.run(["nft", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ()
    found = re.search(r"v(\d+)\.(\d+)\.?(\d*)", out)
    return tuple(int(x or 0) for x in found.groups()) if found else ()


def main() -> int:
    kubeconfig = json.loads(KUBECONFIG.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    token = kubeconfig["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    request = urllib.request.Request(cluster["server"] + URL_PATH, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            config = json.load(response)["data"]["config.conf"]
    except (OSError, KeyError, ValueError) as exc:
        print(f"cannot read ConfigMap kube-system/kube-proxy (config.conf): {exc}", file=sys.stderr)
        return 1
    RUN.mkdir(mode=0o755, exist_ok=True)
    mode = re.search(r"(?m)^mode:\s*\"?(\w*)\"?\s*$", config)
    strict = re.search(r"(?m)^\s+strictARP:\s*(\w+)\s*$", config)
    standin = RUN / "ipvs-standin.env"
    if mode and mode.group(1) == "ipvs" and not os.path.exists("/proc/net/ip_vs"):
        config = (
            config[: mode.start()]
            + "mode: nftables  # l2lb lab: ipvs requested, no IPVS in this kernel"
            + config[mode.end() :]
        )
        standin.write_text(f"L2LB_STRICT_ARP={(strict.group(1) if strict else 'false').lower()}\n")
        print("mode ipvs requested: this kernel has no IPVS; nftables forwards, l2lb-lab-ipvs.service stands in")
    else:
        standin.unlink(missing_ok=True)
    mode = re.search(r"(?m)^mode:\s*\"?(\w*)\"?.*$", config)
    nft = nft_version()
    if mode and mode.group(1) == "nftables" and nft < (1, 0, 1):
        # kube-proxy's nftables mode needs nft 1.0.1 or later; Debian 11's is 0.9.8, so such a node of a mixed
        # cluster runs kube-proxy in iptables mode (kube-proxy itself would refuse to start in nftables mode).
        found = ".".join(map(str, nft)) if nft else "none"
        config = config[: mode.start()] + f"mode: iptables  # l2lb lab: nft {found} < 1.0.1" + config[mode.end() :]
        print(f"nftables mode needs nft 1.0.1 or later (this node has {found}): kube-proxy runs in iptables mode")
    (RUN / "config.conf").write_text(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
