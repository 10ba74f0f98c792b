#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: who answers ARP or NDP for each IP from this host, from which MAC, how fast, and whether twice."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: arp_probe
short_description: Ask the L2 segment who answers ARP or NDP for LoadBalancer IPs (split brain, latency)
version_added: "0.1.0"
description:
  - Sends ARP who-has requests (IPv6, since 0.2.0, Neighbor Solicitations to the address's solicited-node group) for
    each of I(ips) from the target host and reports every MAC that answers, how often and how fast. More than one
    answering MAC means more than one node announces the IP (split brain); no answer means nothing announces it on
    this segment. For IPv6 only solicited Neighbor Advertisements count as answers (an unsolicited one is an
    announcement, not an answer), and the MAC is the advertisement's Target Link-Layer Address.
  - Run it on a host on the same L2 segment as the nodes (a client of the Services). ARP and NDP do not cross routers,
    so an IP outside every directly attached subnet of the host is not probed; its result explains why.
  - Packets are built and dissected with scapy and carried by raw C(AF_PACKET) sockets bound to ARP or IPv6 (no
    libpcap). Only questions for the requested IPs are sent, only on the chosen interface; the kernel's neighbour
    table is neither read nor changed.
  - Each round sends one who-has per IP and then listens I(timeout) seconds for every answer, so a second, slower
    responder is still seen; the whole probe takes I(count) x I(timeout) seconds however many IPs are asked.
  - Needs root or C(CAP_NET_RAW) (C(become=true)) on the target host.
author:
  - baremetal.l2lb contributors
requirements:
  - scapy and pyroute2 on the target host
options:
  ips:
    description: IPv4 and IPv6 addresses to ask for (each is probed once, repeats are ignored).
    type: list
    elements: str
    required: true
  interface:
    description:
      - Interface to send the who-has on, for every IP.
      - By default each IP is probed on the interface whose directly attached subnet contains it, as the kernel
        would route it; an IP in no such subnet fails with a diagnosis instead of being probed.
    type: str
  count:
    description: Who-has requests per IP (rounds).
    type: int
    default: 3
  timeout:
    description: Seconds to listen for answers after each round of requests.
    type: float
    default: 0.5
  source_ip:
    description:
      - Sender IP of the who-has or solicitation, for the probed IPs of its family. By default the interface's own
        address in the subnet of the probed IP.
      - The hosts that answer may cache this address at this host's MAC, so use one of this host's addresses.
    type: str
attributes:
  check_mode:
    support: full
    description: Only sends ARP requests and Neighbor Solicitations, changes nothing; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
  idempotent:
    support: full
    description: Always C(changed=false).
notes:
  - A per-IP problem (no attached subnet, interface down, nobody answering) is reported in that IP's result, not
    as a task failure; assert on C(answered), C(split_brain) or C(failed) in the playbook.
  - Answers later than I(timeout) are counted for the next round; raise I(timeout) on slow or busy segments.
"""

EXAMPLES = r"""
- name: Who answers for the Service IPs?
  baremetal.l2lb.arp_probe:
    ips: [198.18.0.241, 198.18.0.242, "2001:2:0:1::241"]
  become: true
  register: arp

- name: Every IP answered by exactly one node
  ansible.builtin.assert:
    that:
      - arp.unanswered | length == 0
      - arp.split_brain | length == 0
      - arp.unprobed | length == 0
    fail_msg: "{{ arp.probes.values() | selectattr('diagnosis') | map(attribute='diagnosis') | list }}"

- name: Probe on a given interface with more requests
  baremetal.l2lb.arp_probe:
    ips: [198.18.0.241]
    interface: eth1
    count: 10
    timeout: 0.2
  become: true
"""

RETURN = r"""
probes:
  description:
    - Result per probed IP (canonical form).
    - C(interface) and C(source_ip)/C(source_mac) used; C(requests) sent and C(answered_requests) answered.
    - C(responders), one per answering MAC in order of first answer, with C(replies) (how many answers it sent)
      and C(first_latency_ms) (time from its first answered request to the kernel's receive timestamp).
    - C(answered) whether anyone answered; C(split_brain) whether more than one MAC answered;
      C(split_brain_requests) how many single requests got answers from more than one MAC.
    - C(latency_ms) C(min) and C(median) of the first answer to each answered request (null when none).
    - C(error) why the IP could not be probed (null if it was); C(diagnosis) what the result means and what to do
      (null when exactly one MAC answered).
    - "C(longest_gap_ms) the longest time between two answered rounds and C(mac_timeline) (C(at_ms), C(macs),
      C(gap_before_ms)) when the answering MAC changed. With many short rounds (for example I(count=750) and
      I(timeout=0.02), run async while a node fails) they measure the client-side outage of a failover."
  returned: always
  type: dict
  sample:
    198.18.0.241: {ip: 198.18.0.241, interface: eth0, source_ip: 198.18.0.2, source_mac: "52:54:00:00:00:02",
      requests: 3, answered_requests: 3, answered: true,
      responders: [{mac: "52:54:00:00:00:11", replies: 3, first_latency_ms: 0.081}],
      split_brain: false, split_brain_requests: 0, latency_ms: {min: 0.062, median: 0.07}, error: null,
      diagnosis: null, longest_gap_ms: 0.5, mac_timeline: [{at_ms: 0.0, macs: ["52:54:00:00:00:11"]}]}
answered:
  description: The IPs that got at least one answer.
  returned: always
  type: list
  elements: str
unanswered:
  description: The IPs that were probed and got no answer.
  returned: always
  type: list
  elements: str
split_brain:
  description: The IPs answered by more than one MAC.
  returned: always
  type: list
  elements: str
unprobed:
  description: The IPs that could not be probed (see their C(error) and C(diagnosis)), e.g. outside every attached
    subnet.
  returned: always
  type: list
  elements: str
warnings_list:
  description: Warnings (also emitted as Ansible warnings), such as a I(source_ip) that is not this host's.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.baremetal.l2lb.plugins.module_utils.arp_probe import (
    HAS_SCAPY,
    SCAPY_IMPORT_ERROR,
    ArpProbeError,
    probe,
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
            "ips": {"type": "list", "elements": "str", "required": True},
            "interface": {"type": "str"},
            "count": {"type": "int", "default": 3},
            "timeout": {"type": "float", "default": 0.5},
            "source_ip": {"type": "str"},
        },
        supports_check_mode=True,
    )
    if not HAS_SCAPY:
        module.fail_json(msg=missing_required_lib("scapy"), exception=SCAPY_IMPORT_ERROR)
    if not HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib("pyroute2"))
    params = module.params
    try:
        interfaces = list_interfaces()
    except OSError as exc:
        module.fail_json(msg=f"cannot read the interfaces of this host through netlink: {exc}")
        return
    try:
        report = probe(
            params["ips"],
            interfaces,
            interface=params["interface"],
            source_ip=params["source_ip"],
            count=params["count"],
            timeout=params["timeout"],
        )
    except ArpProbeError as exc:
        module.fail_json(msg=str(exc))
        return
    warnings = report.pop("warnings")
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, warnings_list=warnings, **report)


if __name__ == "__main__":
    main()
