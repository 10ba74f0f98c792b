#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: apply the l2lb pools and policies to the cluster as one validated set."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apply_model
short_description: Apply L2 load-balancer pools and announcement policies as one validated set
version_added: "0.1.0"
description:
  - Validates the pools and policies (exactly like M(baremetal.l2lb.validate_model)); on any problem it fails
    listing all of them and changes nothing.
  - Then computes what differs from the cluster - C(LoadBalancerIPPool) and C(L2AnnouncementPolicy) objects
    of group C(l2lb.io) - and creates, replaces and (with I(prune)) deletes objects so the cluster holds
    exactly the inventory's set.
  - Every write is first sent as a server-side dry run; only when all of them pass are they applied, so an
    object the API would refuse stops the run before anything changed.
  - Only objects labelled C(app.kubernetes.io/managed-by=baremetal.l2lb) are pruned or replaced; an
    unmanaged object with a desired name is an error unless I(adopt=true).
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.kube_auth
options:
  pools:
    description: IP pools, as for M(baremetal.l2lb.validate_model).
    type: list
    elements: raw
    default: []
  policies:
    description: L2 announcement policies, as for M(baremetal.l2lb.validate_model).
    type: list
    elements: raw
    default: []
  prune:
    description: Delete managed pools and policies that the inventory no longer lists.
    type: bool
    default: true
  adopt:
    description: Take over existing objects with a desired name that carry no managed-by label.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what would change (and dry-runs it against the API), changes nothing.
  diff_mode:
    support: full
    description: Shows the specs before and after, keyed by kind/name.
  idempotent:
    support: full
    description: A second run with the same input reports C(changed=false).
"""

EXAMPLES = r"""
- name: Apply pools and policies from group_vars
  baremetal.l2lb.apply_model:
    kubeconfig: /etc/l2lb/admin.kubeconfig
    pools: "{{ l2lb_pools }}"
    policies: "{{ l2lb_policies }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
changes:
  description: What was (or in check mode would be) done, in order.
  returned: always
  type: list
  elements: dict
  sample: [{action: create, kind: LoadBalancerIPPool, name: lan}]
created:
  description: kind/name of created objects.
  returned: always
  type: list
  elements: str
updated:
  description: kind/name of replaced objects.
  returned: always
  type: list
  elements: str
deleted:
  description: kind/name of pruned objects.
  returned: always
  type: list
  elements: str
problems:
  description: Validation problems (object, field, kind, message, fix) when the model is invalid.
  returned: failure
  type: list
  elements: dict
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import AUTH_ARG_SPEC, KubeClient, KubeError
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import ModelError, build_model
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.render import (
    GROUP,
    POLICY_KIND,
    POLICY_PLURAL,
    POOL_KIND,
    POOL_PLURAL,
    VERSION,
    render_policy,
    render_pool,
)
from ansible_collections.baremetal.l2lb.plugins.module_utils.managed_objects import (
    ManagedObjects,
    ObjectKind,
    diff_of,
)

POOLS = ObjectKind(GROUP, VERSION, POOL_PLURAL, POOL_KIND)
POLICIES = ObjectKind(GROUP, VERSION, POLICY_PLURAL, POLICY_KIND)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pools": {"type": "list", "elements": "raw", "default": []},
            "policies": {"type": "list", "elements": "raw", "default": []},
            "prune": {"type": "bool", "default": True},
            "adopt": {"type": "bool", "default": False},
            **AUTH_ARG_SPEC,
        },
        supports_check_mode=True,
    )
    try:
        model = build_model(module.params["pools"], module.params["policies"])
    except ModelError as exc:
        module.fail_json(msg=str(exc), problems=[p.to_dict() for p in exc.problems])
        return
    for warning in model.warnings:
        module.warn(warning)
    desired = [(POOLS, render_pool(p)) for p in model.pools] + [(POLICIES, render_policy(p)) for p in model.policies]
    try:
        objects = ManagedObjects(
            KubeClient(module.params), desired, [POOLS, POLICIES], module.params["prune"], module.params["adopt"]
        )
        missing = objects.missing_crds()
        if missing:
            raise KubeError(f"CRDs not installed: {', '.join(missing)}; run the baremetal.l2lb.cluster role first")
        changes = objects.plan()
        objects.apply(changes, dry_run=True)  # all writes pass the API's own validation first
        if not module.check_mode:
            objects.apply(changes, dry_run=False)
    except KubeError as exc:
        module.fail_json(msg=str(exc))
        return
    result: dict[str, Any] = {
        "changed": bool(changes),
        "changes": [c.summary() for c in changes],
        "created": [c.ref for c in changes if c.action == "create"],
        "updated": [c.ref for c in changes if c.action == "update"],
        "deleted": [c.ref for c in changes if c.action == "delete"],
    }
    if module._diff:
        result["diff"] = diff_of(changes)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
