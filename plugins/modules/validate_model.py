#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: validate the l2lb inventory model and render its resources."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate_model
short_description: Validate L2 load-balancer pools and announcement policies as one set
version_added: "0.1.0"
description:
  - Validates the inventory model of C(baremetal.l2lb) - IP pools and L2 announcement policies - as one
    set and reports B(every) problem at once, each naming the object, the field and the fix.
  - Accepts the inventory shape (C(name), C(blocks), ...) and whole manifests (C(apiVersion), C(kind),
    C(metadata), C(spec)) of our own CRs or of Cilium's C(CiliumLoadBalancerIPPool) and
    C(CiliumL2AnnouncementPolicy), so existing manifests move one to one.
  - Returns the normalized model and the C(l2lb.io/v1alpha1) resources it renders to. Changes nothing.
author:
  - baremetal.l2lb contributors
options:
  pools:
    description:
      - IP pools. Each has C(name) and C(blocks) (each a C(cidr), or a C(start) with optional C(stop));
        optional C(serviceSelector), C(disabled), C(allowFirstLastIPs). The deprecated C(cidrs) is accepted
        with a warning.
    type: list
    elements: raw
    default: []
  policies:
    description:
      - L2 announcement policies. Each has C(name); optional C(nodeSelector), C(serviceSelector),
        C(interfaces) (regexes, unanchored search), C(externalIPs) (default false), C(loadBalancerIPs)
        (default true).
    type: list
    elements: raw
    default: []
  include_crds:
    description: Also return the CustomResourceDefinition manifests of group C(l2lb.io).
    type: bool
    default: false
  nodes:
    description:
      - Optional facts about the nodes, by name, to check the model against them (since 0.2.0). Each has
        C(labels) (the Node's labels) and C(interfaces), a list of C({name, up, ipv6}) with C(ipv6) the interface's
        IPv6 addresses (the C(interfaces) of M(baremetal.l2lb.node_preflight_info) have that shape).
      - With them, a pool with IPv6 blocks warns when no node a policy selects has IPv6 on an up interface the policy
        announces on (its IPv6 addresses would never be answered). C(site.yml) runs the same check in its preflight.
    type: dict
attributes:
  check_mode:
    support: full
    description: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
  idempotent:
    support: full
    description: Always returns C(changed=false).
notes:
  - The same validation code runs inside the node agent, so what passes here is what the agent accepts.
"""

EXAMPLES = r"""
- name: Validate the pools and policies from group_vars
  baremetal.l2lb.validate_model:
    pools: "{{ l2lb_pools }}"
    policies: "{{ l2lb_policies }}"
  delegate_to: localhost
  run_once: true

- name: Validate a Cilium manifest as written
  baremetal.l2lb.validate_model:
    pools:
      - apiVersion: cilium.io/v2alpha1
        kind: CiliumLoadBalancerIPPool
        metadata:
          name: default-pool
        spec:
          blocks:
            - cidr: 198.18.10.0/28
"""

RETURN = r"""
pools:
  description: The normalized pools (inventory shape).
  returned: success
  type: list
  elements: dict
  sample: [{name: lan, blocks: [{cidr: 198.18.10.0/28}], disabled: false, allowFirstLastIPs: false}]
policies:
  description: The normalized policies (inventory shape).
  returned: success
  type: list
  elements: dict
resources:
  description: The C(LoadBalancerIPPool) and C(L2AnnouncementPolicy) objects the model renders to.
  returned: success
  type: list
  elements: dict
crds:
  description: The CRD manifests, when I(include_crds=true).
  returned: when include_crds
  type: list
  elements: dict
warnings_list:
  description: Warnings (also emitted as Ansible warnings), such as the deprecated C(cidrs), or an IPv6 pool no node
    would answer (with I(nodes)).
  returned: always
  type: list
  elements: str
problems:
  description: Every problem found, each with object, field, kind, message, fix and text.
  returned: failure
  type: list
  elements: dict
  sample:
    - object: pool "lan"
      field: blocks[0].cidr
      kind: invalid_cidr
      message: "'10.0.0.0/33' is not a valid CIDR"
      fix: write an address/prefix such as 198.18.10.0/24
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import (
    Model,
    ModelError,
    build_model,
    ipv6_reach_warnings,
)
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.render import crd_manifests, render_model


def _normalized(model: Model) -> dict[str, list[dict[str, Any]]]:
    return {
        "pools": [{"name": p.name, **p.to_spec()} for p in model.pools],
        "policies": [{"name": p.name, **p.to_spec()} for p in model.policies],
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pools": {"type": "list", "elements": "raw", "default": []},
            "policies": {"type": "list", "elements": "raw", "default": []},
            "include_crds": {"type": "bool", "default": False},
            "nodes": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    try:
        model = build_model(module.params["pools"], module.params["policies"])
    except ModelError as exc:
        module.fail_json(msg=str(exc), problems=[p.to_dict() for p in exc.problems], warnings_list=[])
        return
    warnings = list(model.warnings)
    if module.params["nodes"]:
        warnings += [text for text, _ in ipv6_reach_warnings(model, module.params["nodes"])]
    for warning in warnings:
        module.warn(warning)
    result: dict[str, Any] = {
        "changed": False,
        "resources": render_model(model),
        "warnings_list": warnings,
        **_normalized(model),
    }
    if module.params["include_crds"]:
        result["crds"] = crd_manifests()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
