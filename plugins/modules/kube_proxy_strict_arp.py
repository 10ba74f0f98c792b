#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: set ipvs.strictARP: true in kube-proxy's ConfigMap and roll kube-proxy's DaemonSet."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kube_proxy_strict_arp
short_description: Turn on kube-proxy's ipvs.strictARP, as MetalLB's and kube-vip's docs ask, idempotently
version_added: "0.2.0"
description:
  - Edits the C(config.conf) key of kube-proxy's ConfigMap (C(kube-system/kube-proxy), as kubeadm writes it) so
    that C(ipvs.strictARP) is C(true), changing that one line (or adding it under C(ipvs:)) and nothing else, then
    restarts the C(kube-system/kube-proxy) DaemonSet's pods the way C(kubectl rollout restart) does.
  - A kube-proxy not run by that DaemonSet (a systemd unit on the nodes) must be restarted on the nodes; the result
    says so (C(restarted=none)). Nothing changes when strictARP is already true, unless I(restart) asks to
    restart kube-proxy anyway (the ConfigMap was fixed by hand, but the running kube-proxy never read it).
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.kube_auth
options:
  namespace:
    description: Namespace of the ConfigMap and DaemonSet.
    type: str
    default: kube-system
  name:
    description: Name of the ConfigMap and of the DaemonSet.
    type: str
    default: kube-proxy
  restart:
    description: Restart kube-proxy's DaemonSet even when the ConfigMap already says strictARP true.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what would change (and the diff) without writing.
  diff_mode:
    support: full
    description: The C(config.conf) text before and after.
  idempotent:
    support: full
    description: C(changed=false) when strictARP is already true.
"""

EXAMPLES = r"""
- name: kube-proxy in IPVS mode must not let every node answer ARP for Service IPs
  baremetal.l2lb.kube_proxy_strict_arp:
    kubeconfig: /etc/l2lb/admin.kubeconfig
"""

RETURN = r"""
restarted:
  description: C(daemonset) when the DaemonSet's pods were rolled, C(none) when kube-proxy runs otherwise (restart
    it on the nodes), C(no) when nothing changed.
  returned: always
  type: str
"""

import datetime
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import AUTH_ARG_SPEC, KubeClient, KubeError

KEY = "config.conf"


def with_strict_arp(text: str) -> str:
    """``text`` with ipvs.strictARP: true; the only line touched is strictARP's (or a new one under ``ipvs:``)."""
    block = re.search(r"(?m)^ipvs:[ \t]*$((?:\n(?:[ \t]+.*|[ \t]*))*)", text)
    if block is None:
        return text.rstrip("\n") + "\nipvs:\n  strictARP: true\n"
    body = block.group(1)
    if re.search(r"(?m)^[ \t]+strictARP:", body):
        body = re.sub(r"(?m)^([ \t]+strictARP:)[ \t]*\S+", r"\1 true", body, count=1)
    else:
        indent = re.search(r"(?m)^([ \t]+)\S", body)
        body = f"\n{indent.group(1) if indent else '  '}strictARP: true" + body
    return text[: block.start(1)] + body + text[block.end(1) :]


def restart_patch(now: datetime.datetime) -> dict:
    """What ``kubectl rollout restart`` patches into a DaemonSet: a restartedAt annotation on its pod template."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "namespace": {"type": "str", "default": "kube-system"},
            "name": {"type": "str", "default": "kube-proxy"},
            "restart": {"type": "bool", "default": False},
            **AUTH_ARG_SPEC,
        },
        supports_check_mode=True,
    )
    namespace, name = module.params["namespace"], module.params["name"]
    try:
        client = KubeClient(module.params)
        config_map = client.read_config_map(namespace, name)
        if config_map is None or KEY not in (config_map.get("data") or {}):
            module.fail_json(
                msg=f"ConfigMap {namespace}/{name} with a {KEY} key not found: this cluster does not configure "
                "kube-proxy the kubeadm way; start kube-proxy with --ipvs-strict-arp=true instead (k3s: "
                "kube-proxy-arg: [ipvs-strict-arp=true] in /etc/rancher/k3s/config.yaml)"
            )
            return
        before = config_map["data"][KEY]
        after = with_strict_arp(before)
        if after == before and not module.params["restart"]:
            module.exit_json(changed=False, restarted="no")
            return
        diff = {"before": before, "after": after, "before_header": f"{namespace}/{name} {KEY}"}
        daemonset = client.get_daemonset(namespace, name)
        restarted = "daemonset" if daemonset is not None else "none"
        if not module.check_mode:
            if after != before:
                client.patch_config_map(namespace, name, {"data": {KEY: after}})
            if daemonset is not None:
                now = datetime.datetime.now(datetime.timezone.utc)
                client.patch_daemonset(namespace, name, restart_patch(now))
    except KubeError as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=True, restarted=restarted, diff=diff)


if __name__ == "__main__":
    main()
