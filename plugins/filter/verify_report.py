# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugin: build the verify report from the facts modules' results."""

from __future__ import annotations

DOCUMENTATION = r"""
name: verify_report
short_description: Build the l2lb verify report (service, IP, node, MAC, TCP, diagnosis)
version_added: "0.1.0"
description:
  - Joins C(service_info), C(lease_info), C(arp_probe) and TCP results into one row per service IP, with
    a diagnosis for every failure mode (no IP and why, no eligible node, stale heartbeat, no ARP answer,
    split brain, MAC of another node, ARP fine but TCP failing, prober in the wrong subnet).
positional: leases, probes, tcp
options:
  _input:
    description: The C(services) list returned by M(baremetal.l2lb.service_info).
    type: list
    elements: dict
    required: true
  leases:
    description: The result of M(baremetal.l2lb.lease_info) (C(heartbeats), C(controller)).
    type: dict
    required: true
  probes:
    description: The C(probes) dict returned by M(baremetal.l2lb.arp_probe).
    type: dict
    required: true
  tcp:
    description: TCP check results, C({ip, port, ok, error}) or the registered results of a
      M(ansible.builtin.wait_for) loop over C(verify_tcp_targets).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Build the report
  ansible.builtin.set_fact:
    report: "{{ services.services | baremetal.l2lb.verify_report(leases, arp.probes, tcp_results) }}"
"""

RETURN = r"""
_value:
  description: C(rows), C(problems), C(healthy) and C(lines) (the printable table).
  type: dict
"""

from ansible_collections.baremetal.l2lb.plugins.module_utils.verify_report import build_report, tcp_targets


class FilterModule:
    def filters(self) -> dict:
        return {"verify_report": build_report, "verify_tcp_targets": tcp_targets}
