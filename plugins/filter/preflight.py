# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugin: judge the preflight facts of the cluster and its nodes."""

from __future__ import annotations

DOCUMENTATION = r"""
name: preflight_report
short_description: Judge preflight facts (IPVS strictARP, k3s ServiceLB, other LB implementations, sysctls)
version_added: "0.2.0"
description:
  - Takes the C(facts) of M(baremetal.l2lb.preflight_info) and a dict node name -> C(node) of
    M(baremetal.l2lb.node_preflight_info), and returns the findings, each with its severity and the fix.
positional: nodes
options:
  _input:
    description: The C(facts) returned by M(baremetal.l2lb.preflight_info).
    type: dict
    required: true
  nodes:
    description: Node name -> the C(node) returned by M(baremetal.l2lb.node_preflight_info) there.
    type: dict
    required: true
  backend:
    description: Who announces (C(l2lb) or C(cilium)); Cilium's own L2 announcements are expected with C(cilium).
    type: str
    default: l2lb
  ignore:
    description: Finding ids whose errors do not block (C(l2lb_preflight_ignore)).
    type: list
    elements: str
    default: []
  pools:
    description: The inventory's pools (C(l2lb_pools)); with I(policies), the model is checked against the nodes.
    type: list
    elements: raw
    default: []
  policies:
    description: The inventory's announcement policies (C(l2lb_policies)).
    type: list
    elements: raw
    default: []
  labels:
    description: Node name -> the labels its Node object gets (C(l2lb_node_labels)), for the policies' nodeSelectors.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Judge
  ansible.builtin.set_fact:
    preflight: "{{ cluster.facts | baremetal.l2lb.preflight_report(nodes, backend='l2lb') }}"
"""

RETURN = r"""
_value:
  description: >-
    C(findings) (C({id, severity, message, fix, subjects})), C(lines) (printable), C(errors) (the
    blocking ones), C(strict_arp_nodes), C(sysctl_nodes), C(ids).
  type: dict
"""

from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import validate
from ansible_collections.baremetal.l2lb.plugins.module_utils.preflight import findings, report


def preflight_report(
    cluster: dict[str, Any],
    nodes: dict[str, Any],
    backend: str = "l2lb",
    ignore: list[str] | None = None,
    pools: list[Any] | None = None,
    policies: list[Any] | None = None,
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    model, _ = validate(pools or [], policies or [])  # an invalid model stops site.yml before this runs
    labels = {name: {"kubernetes.io/hostname": name, **((labels or {}).get(name) or {})} for name in nodes}
    found = findings(cluster, nodes, backend=backend, model=model, labels=labels)
    return {"findings": found, **report(found, ignore or [])}


class FilterModule:
    def filters(self) -> dict:
        return {"preflight_report": preflight_report}
