#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: heartbeat, controller and Cilium announcement leases, with liveness by observation."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lease_info
short_description: Report l2lb heartbeat and controller Leases (and Cilium's L2 announcement Leases)
version_added: "0.1.0"
description:
  - Reads the Leases of the l2lb agents - C(l2lb-node-<node>) heartbeats and C(l2lb-controller) - and, when
    I(cilium_namespace) is set, Cilium's C(cilium-l2announce-<namespace>-<service>) Leases.
  - With I(observe_seconds) > 0 it reads them twice that far apart; a Lease is C(alive) when it changed in
    between. Liveness is judged by seeing a Lease change, never by comparing another host's clock with
    this one (the agents follow the same rule), so clock skew cannot fake a dead node.
  - Read-only.
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.attributes.read_only
  - baremetal.l2lb.kube_auth
options:
  namespace:
    description: Namespace of the l2lb Leases.
    type: str
    default: l2lb-system
  cilium_namespace:
    description: Also read Cilium's announcement Leases from this namespace (usually C(kube-system)).
    type: str
  observe_seconds:
    description: Seconds between the two reads that decide liveness; 0 reads once and reports no C(alive).
    type: float
    default: 2.5
"""

EXAMPLES = r"""
- name: Which nodes are alive and who is the controller?
  baremetal.l2lb.lease_info:
    kubeconfig: /etc/l2lb/admin.kubeconfig
  register: leases

- name: Show dead nodes
  ansible.builtin.debug:
    msg: "{{ leases.heartbeats | dict2items | rejectattr('value.alive') | map(attribute='key') }}"
"""

RETURN = r"""
heartbeats:
  description: Node name to its heartbeat Lease (holder, renew_time, renew_age_seconds, lease_duration_seconds,
    draining, interfaces, alive).
  returned: always
  type: dict
  sample: {node1: {holder: node1, renew_age_seconds: 0.2, alive: true, draining: false, interfaces: []}}
controller:
  description: The controller Lease (holder is the controller's node), or null.
  returned: always
  type: dict
cilium:
  description: Cilium announcement Leases keyed by C(<namespace>-<service>); the holder announces the Service.
  returned: always
  type: dict
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils.facts import classify_leases
from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import AUTH_ARG_SPEC, KubeClient, KubeError


def _read(client: KubeClient, namespace: str, cilium_namespace: str | None) -> list[dict[str, Any]]:
    leases = client.list_leases(namespace)
    if cilium_namespace:
        leases += client.list_leases(cilium_namespace)
    return leases


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "namespace": {"type": "str", "default": "l2lb-system"},
            "cilium_namespace": {"type": "str"},
            "observe_seconds": {"type": "float", "default": 2.5},
            **AUTH_ARG_SPEC,
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        client = KubeClient(params)
        first = _read(client, params["namespace"], params["cilium_namespace"])
        second = None
        if params["observe_seconds"] > 0:
            time.sleep(params["observe_seconds"])
            second = _read(client, params["namespace"], params["cilium_namespace"])
    except KubeError as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=False, **classify_leases(first, second))


if __name__ == "__main__":
    main()
