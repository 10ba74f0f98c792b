#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a node's ARP and reverse-path sysctls, IPv4 addresses per interface, kube-ipvs0, kube-proxy mode."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_preflight_info
short_description: Read the node settings that decide whether layer-2 load balancing works on it
version_added: "0.2.0"
description:
  - On the target node, before the agent is installed (Python standard library and C(ip) only), each interface's
    state and IPv4 addresses, the C(rp_filter), C(arp_ignore) and C(arp_announce) sysctls (C(all), C(default) and
    per interface), whether kube-proxy's IPVS interface C(kube-ipvs0) exists, the mode kube-proxy reports on
    U(http://127.0.0.1:10249/proxyMode) (if it answers), and whether a C(kube-proxy.service) unit is installed.
  - For the agent's install, the system C(python3) the agent's venv is made with (version, CPU, C library,
    whether C(venv) and C(ensurepip) are there), whether systemd runs the node, and the OS family from
    C(/etc/os-release); C(python.key) names the wheelhouse directory this node needs and C(python.problems)
    says why the agent cannot be installed here (empty when it can).
  - Read-only. The P(baremetal.l2lb.preflight_report#filter) filter judges these facts.
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.attributes.read_only
options:
  kube_proxy_metrics_url:
    description: Where kube-proxy's metrics server answers C(/proxyMode) on the node.
    type: str
    default: http://127.0.0.1:10249
"""

EXAMPLES = r"""
- name: The node's ARP-relevant settings
  baremetal.l2lb.node_preflight_info:
  register: preflight_node
"""

RETURN = r"""
node:
  description: >-
    C(interfaces) (C({name, up, ipv4, ipv6}), every link, its addresses as CIDRs), C(sysctls) (scope ->
    C({rp_filter, arp_ignore, arp_announce})),
    C(kube_ipvs0), C(kube_proxy_mode) (empty when kube-proxy did not answer), C(kube_proxy_unit),
    C(systemd) (PID 1 is systemd), C(os_family) (C(Debian), C(RedHat), C(Alpine) or the C(ID) of
    C(/etc/os-release)), C(python) (C({executable, version, implementation, machine, libc, libc_version, venv,
    ensurepip, key, problems, missing_venv}); C(error) instead when C(python3) did not run).
  returned: always
  type: dict
  sample: {interfaces: [{name: eth0, up: true, ipv4: [192.0.2.10/24], ipv6: ["fe80::1/64"]}], kube_ipvs0: false,
           sysctls: {all: {rp_filter: 2, arp_ignore: 0, arp_announce: 0}}, kube_proxy_mode: nftables,
           kube_proxy_unit: false, systemd: true, os_family: Debian,
           python: {version: 3.11.2, machine: x86_64, libc: glibc, libc_version: "2.36", key: cp311-x86_64-glibc2.36,
                    venv: true, ensurepip: false, missing_venv: true, problems: []}}
"""

import json
import os
import urllib.request

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils import agent_platform

SYSCTLS = ("rp_filter", "arp_ignore", "arp_announce")


def read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


OS_FAMILIES = {
    "debian": "Debian", "ubuntu": "Debian", "raspbian": "Debian",
    "rhel": "RedHat", "centos": "RedHat", "fedora": "RedHat", "rocky": "RedHat", "almalinux": "RedHat",
    "alpine": "Alpine",
}  # fmt: skip


def os_family(path: str = "/etc/os-release") -> str:
    """Debian, RedHat or Alpine from ID and ID_LIKE; the plain ID when it is none of them."""
    fields = {}
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.strip().partition("=")
                fields[name] = value.strip().strip('"')
    except OSError:
        return ""
    for word in [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]:
        if word in OS_FAMILIES:
            return OS_FAMILIES[word]
    return fields.get("ID", "")


def python_facts(module: AnsibleModule) -> dict:
    """What the node's system python3 (the one the agent's venv is made with) is, and what it lacks."""
    python3 = module.get_bin_path("python3")
    if not python3:
        facts: dict = {"error": "no python3 on PATH"}
    else:
        rc, out, err = module.run_command([python3, "-I", "-c", agent_platform.PYTHON_FACTS_SCRIPT])
        try:
            facts = json.loads(out) if rc == 0 else {"error": (err or out).strip()[-300:] or f"exit status {rc}"}
        except ValueError:
            facts = {"error": f"unexpected output {out.strip()[:200]!r}"}
        if not isinstance(facts, dict):
            facts = {"error": f"unexpected output {out.strip()[:200]!r}"}
    if "error" not in facts:
        facts["key"] = agent_platform.key(facts)
        facts["missing_venv"] = agent_platform.missing_venv(facts)
    facts["problems"] = agent_platform.problems(facts)
    return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec={"kube_proxy_metrics_url": {"type": "str", "default": "http://127.0.0.1:10249"}},
        supports_check_mode=True,
    )
    ip = module.get_bin_path("ip", required=True)
    rc, out, err = module.run_command([ip, "-j", "addr", "show"])
    if rc != 0:
        module.fail_json(msg=f"`ip -j addr show` failed: {err.strip()}")
        return
    interfaces = []
    for link in json.loads(out or "[]"):
        flags = link.get("flags") or []
        addresses = {
            family: [
                f"{a['local']}/{a['prefixlen']}"
                for a in link.get("addr_info") or []
                if a.get("local") and a.get("family") == family
            ]
            for family in ("inet", "inet6")
        }
        interfaces.append(
            {
                "name": link.get("ifname", ""),
                "up": "UP" in flags and "LOWER_UP" in flags,
                "ipv4": addresses["inet"],
                "ipv6": addresses["inet6"],
            }
        )
    base = "/proc/sys/net/ipv4/conf"
    scopes = ["all", "default", *(i["name"] for i in interfaces)]
    sysctls = {scope: {key: read_int(os.path.join(base, scope, key)) for key in SYSCTLS} for scope in scopes}
    mode = ""
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy
        with direct.open(module.params["kube_proxy_metrics_url"] + "/proxyMode", timeout=2) as answer:
            mode = answer.read(64).decode("ascii", "replace").strip()
    except (OSError, ValueError):
        pass  # not kube-proxy, not listening there, or Cilium's replacement: the report says "unknown"
    systemctl = module.get_bin_path("systemctl")
    unit = False
    if systemctl:
        rc, out, _ = module.run_command([systemctl, "show", "-P", "LoadState", "kube-proxy.service"])
        unit = rc == 0 and out.strip() == "loaded"
    module.exit_json(
        changed=False,
        node={
            "interfaces": interfaces,
            "sysctls": sysctls,
            "kube_ipvs0": os.path.exists("/sys/class/net/kube-ipvs0"),
            "kube_proxy_mode": mode,
            "kube_proxy_unit": unit,
            "systemd": os.path.isdir("/run/systemd/system"),
            "os_family": os_family(),
            "python": python_facts(module),
        },
    )


if __name__ == "__main__":
    main()
