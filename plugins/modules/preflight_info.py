#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: what the Kubernetes API says about kube-proxy, k3s ServiceLB, other LB implementations, Cilium."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight_info
short_description: Read what on a cluster would fight or break l2lb, before site.yml changes anything
version_added: "0.2.0"
description:
  - Reads kube-proxy's ConfigMap (C(kube-system/kube-proxy), as kubeadm writes it; its mode and C(ipvs.strictARP)),
    whether kube-proxy runs as the C(kube-system/kube-proxy) DaemonSet, k3s's ServiceLB (C(svclb-*) DaemonSets, k3s
    servers whose C(k3s.io/node-args) lack C(--disable servicelb)), other LoadBalancer implementations (MetalLB,
    kube-vip in services mode, the kube-vip cloud provider; their DaemonSets, Deployments and kube-system static
    Pods, and the C(loadBalancerClass) each is limited to), and Cilium's C(kube-system/cilium-config) (L2
    announcements, kube-proxy replacement).
  - Read-only. The P(baremetal.l2lb.preflight_report#filter) filter judges these facts with the nodes' own
    (M(baremetal.l2lb.node_preflight_info)).
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.attributes.read_only
  - baremetal.l2lb.kube_auth
"""

EXAMPLES = r"""
- name: What on the cluster would fight l2lb
  baremetal.l2lb.preflight_info:
    kubeconfig: /etc/l2lb/admin.kubeconfig
  register: preflight_cluster
"""

RETURN = r"""
facts:
  description: >-
    C(kube_proxy) (C({configmap, mode, strict_arp}) or null), C(kube_proxy_daemonset), C(servicelb)
    (what shows k3s ServiceLB), C(implementations) (C({name, objects, lb_class})), C(cilium) (or null).
  returned: always
  type: dict
  sample: {kube_proxy: {configmap: kube-system/kube-proxy, mode: ipvs, strict_arp: false},
           kube_proxy_daemonset: kube-system/kube-proxy, servicelb: [], cilium: null,
           implementations: [{name: MetalLB, objects: [DaemonSet metallb-system/speaker], lb_class: ""}]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import AUTH_ARG_SPEC, KubeClient, KubeError
from ansible_collections.baremetal.l2lb.plugins.module_utils.preflight import (
    CILIUM_CONFIGMAP,
    KUBE_PROXY_CONFIGMAP,
    cluster_facts,
)


def main() -> None:
    module = AnsibleModule(argument_spec={**AUTH_ARG_SPEC}, supports_check_mode=True)
    try:
        client = KubeClient(module.params)
        workloads = [
            {**obj, "kind": kind}
            for kind, objects in (
                ("DaemonSet", client.list_workloads("daemonsets")),
                ("Deployment", client.list_workloads("deployments")),
                ("Pod", client.list_workloads("pods", "kube-system")),
            )
            for obj in objects
        ]
        config_maps = {
            f"{namespace}/{name}": client.read_config_map(namespace, name)
            for namespace, name in (KUBE_PROXY_CONFIGMAP[:2], CILIUM_CONFIGMAP)
        }
        facts = cluster_facts(workloads, client.list_nodes(), config_maps)
    except KubeError as exc:
        module.fail_json(msg=f"preflight: {exc}")
        return
    module.exit_json(changed=False, facts=facts)


if __name__ == "__main__":
    main()
