#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: this host's interfaces from netlink, which match policy regexes, which hold an IP's subnet."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: interface_info
short_description: Report this host's network interfaces as an l2lb announcement policy sees them
version_added: "0.1.0"
description:
  - Lists the network interfaces of the target host through netlink (pyroute2) with their MAC, administrative and
    operational state, carrier, addresses and directly attached subnets - the same facts the l2lb agent publishes
    in its heartbeat.
  - Tells which interfaces match an announcement policy's I(patterns). Patterns are regular expressions matched
    B(unanchored), as in Cilium's C(CiliumL2AnnouncementPolicy) C(interfaces), so C(eth0) also matches C(veth0a1b);
    write C(^eth[0-9]+$) to mean "eth followed by digits". An empty list matches every interface.
  - For each address in I(ips), tells whether it lies in a subnet directly attached to one of the interfaces,
    that is whether an ARP announcement for it from this host can reach the clients of that subnet.
  - Warns when the patterns match no interface, naming the interfaces that do exist.
  - Read-only; needs no privileges.
author:
  - baremetal.l2lb contributors
requirements:
  - pyroute2 on the target host
extends_documentation_fragment:
  - baremetal.l2lb.attributes.read_only
options:
  patterns:
    description:
      - Interface name regular expressions (unanchored, Python C(re.search)); an interface matches if any pattern
        is found in its name. Empty matches every interface.
    type: list
    elements: str
    default: []
  ips:
    description: Addresses to look up; for each, the interfaces whose directly attached subnet contains it.
    type: list
    elements: str
    default: []
  include_loopback:
    description: Also list the loopback interface.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Which interfaces does the policy "lan" select on this node, and is the pool's subnet attached?
  baremetal.l2lb.interface_info:
    patterns: ["^eth[0-9]+$", "^bond0$"]
    ips: [198.18.0.241]
  register: nics

- name: Fail when nothing would announce the pool IP
  ansible.builtin.assert:
    that:
      - nics.matching | length > 0
      - nics.ips['198.18.0.241'].matching_interfaces | length > 0
    fail_msg: "{{ nics.warnings_list | join('; ') }}"
"""

RETURN = r"""
interfaces:
  description:
    - One entry per interface (loopback only with I(include_loopback)), sorted by interface index.
    - C(usable) is admin up with carrier and an operational state of UP (or UNKNOWN for drivers that do not
      report one); C(can_announce) is usable and ARP-capable.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: eth0, index: 2, mac: "52:54:00:12:34:56", kind: null, admin_up: true, oper_state: UP, carrier: true,
       mtu: 1500, arp: true, usable: true, can_announce: true,
       addresses: [{address: 198.18.0.11, prefixlen: 24, family: 4, network: 198.18.0.0/24}],
       subnets: [198.18.0.0/24], matches: true}
matching:
  description: Names of the interfaces that match I(patterns) (all interfaces when I(patterns) is empty).
  returned: always
  type: list
  elements: str
  sample: [eth0]
ips:
  description:
    - For each address of I(ips) (canonical form), C(attached) tells whether a directly attached subnet contains it,
      C(interfaces) the interfaces with such a subnet, C(matching_interfaces) those of them that match
      I(patterns), and C(subnets) the attached subnets containing it.
  returned: always
  type: dict
  sample: {198.18.0.241: {attached: true, interfaces: [eth0], matching_interfaces: [eth0], subnets: [198.18.0.0/24]}}
warnings_list:
  description: Warnings (also emitted as Ansible warnings), such as patterns that match no interface.
  returned: always
  type: list
  elements: str
  sample: ["no interface on this host matches ^eth[0-9]+; interfaces here: host0 (patterns are unanchored ...)"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.baremetal.l2lb.plugins.module_utils.interface_facts import (
    InterfaceFactsError,
    interface_report,
)
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.netinfo import list_interfaces

try:
    import pyroute2  # noqa: F401  (netinfo imports it when listing; checked here for a clear message)
except ImportError:
    HAS_PYROUTE2 = False
else:
    HAS_PYROUTE2 = True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "patterns": {"type": "list", "elements": "str", "default": []},
            "ips": {"type": "list", "elements": "str", "default": []},
            "include_loopback": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    if not HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib("pyroute2"))
    params = module.params
    try:
        interfaces = list_interfaces(include_loopback=params["include_loopback"])
    except OSError as exc:
        module.fail_json(msg=f"cannot read the interfaces of this host through netlink: {exc}")
        return
    try:
        report = interface_report(interfaces, params["patterns"], params["ips"])
    except InterfaceFactsError as exc:
        module.fail_json(msg=str(exc))
        return
    warnings = report.pop("warnings")
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, warnings_list=warnings, **report)


if __name__ == "__main__":
    main()
