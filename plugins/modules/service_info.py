#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: LoadBalancer Services with their IPs, pool, sharing key, ports, assignment, conditions."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service_info
short_description: Report LoadBalancer Services as l2lb sees them
version_added: "0.1.0"
description:
  - Lists C(type=LoadBalancer) Services that l2lb handles (no C(loadBalancerClass), or C(l2lb.io/l2-announcer))
    with their IPs, pool, sharing key, ports, announcing node and interfaces, the C(l2lb.io/*) conditions
    that explain a refusal (pool exhausted, requested IP taken, sharing refused, no eligible node), and how many
    ready endpoints their EndpointSlices list, on which nodes (C(null) when the credentials may not list
    EndpointSlices).
  - When I(cilium_namespace) is set, the announcing node of a Service without an l2lb assignment is taken from
    the holder of Cilium's C(cilium-l2announce-<namespace>-<service>) Lease.
  - Read-only.
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.attributes.read_only
  - baremetal.l2lb.kube_auth
options:
  namespace:
    description: Only Services in this namespace; all namespaces when omitted.
    type: str
  cilium_namespace:
    description: Namespace of Cilium's announcement Leases (usually C(kube-system)).
    type: str
  agents_namespace:
    description:
      - Namespace of the l2lb agents' C(L2Assignment) objects. The announcing node and interfaces are read
        from them (they are what the speakers answer); on a cluster without them (version 0.1, or Cilium)
        from the Service's informational C(l2lb.io/announcing-node) annotation.
    type: str
    default: l2lb-system
"""

EXAMPLES = r"""
- name: List the LoadBalancer Services and where they are announced
  baremetal.l2lb.service_info:
    kubeconfig: /etc/l2lb/admin.kubeconfig
  register: services
"""

RETURN = r"""
services:
  description:
    - One entry per LoadBalancer Service.
    - C(announcing_node) and C(announcing_interfaces) are the Service's (joined when its IPs sit on different nodes);
      C(announcements) has the node and interfaces per IP, and lacks an IP nobody announces (since 0.2.0).
  returned: always
  type: list
  elements: dict
  sample:
    - {namespace: default, name: web, ips: [198.18.0.241], pool: lan, sharing_key: "", ports: [{port: 80,
       protocol: TCP, name: http}], external_traffic_policy: Cluster, announcing_node: node2, annotated_node: node2,
       announcing_interfaces: [host0], announcements: {198.18.0.241: {node: node2, interfaces: [host0]}},
       ready_endpoints: 2, endpoint_nodes: {node1: 1, node3: 1},
       conditions: [{type: l2lb.io/IPAllocated, status: "True", reason: Allocated,
       message: ""}]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils.facts import (
    assignments_by_ip,
    classify_leases,
    is_our_load_balancer,
    service_view,
)
from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import AUTH_ARG_SPEC, KubeClient, KubeError
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.contract import (
    ASSIGNMENT_PLURAL,
    DEFAULT_NAMESPACE,
    GROUP,
    VERSION,
    ready_endpoints,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "namespace": {"type": "str"},
            "cilium_namespace": {"type": "str"},
            "agents_namespace": {"type": "str", "default": DEFAULT_NAMESPACE},
            **AUTH_ARG_SPEC,
        },
        supports_check_mode=True,
    )
    try:
        client = KubeClient(module.params)
        assigned = None
        if not module.params["cilium_namespace"]:
            try:
                objects = client.list_namespaced_objects(
                    GROUP, VERSION, ASSIGNMENT_PLURAL, module.params["agents_namespace"]
                )
                assigned = assignments_by_ip(objects) if objects else None
            except KubeError as exc:
                if exc.status != 404:  # 404: no L2Assignment CRD (a 0.1 cluster): the annotations tell
                    raise
        try:
            endpoints: dict[str, dict[str, int]] | None = ready_endpoints(
                client.list_endpoint_slices(module.params["namespace"])
            )
        except KubeError as exc:
            if exc.status != 403:
                raise
            endpoints = None  # not allowed to read EndpointSlices: the report says nothing about endpoints
        services = [
            service_view(s, assigned, endpoints)
            for s in client.list_services(module.params["namespace"])
            if is_our_load_balancer(s, cilium=bool(module.params["cilium_namespace"]))
        ]
        if module.params["cilium_namespace"]:
            cilium = classify_leases(client.list_leases(module.params["cilium_namespace"]), None)["cilium"]
            for view in services:
                lease = cilium.get(f"{view['namespace']}-{view['name']}")
                if not view["announcing_node"] and lease:
                    view["announcing_node"] = lease["holder"]
    except KubeError as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=False, services=sorted(services, key=lambda v: (v["namespace"], v["name"])))


if __name__ == "__main__":
    main()
