"""interface_info and arp_probe run for real inside the client namespace of a lab, against our ARP speaker.

The lab (tests/netns.py) is a bridge with two node namespaces and a client namespace on 198.18.100.0/24;
speakers in the node namespaces answer ARP for service IPs (lab.vip(i) = .100 + i).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from module_harness import COLLECTIONS, PYTHON, REPO, Speaker
from netns import Lab

pytestmark = pytest.mark.netns

StartSpeaker = Callable[..., Speaker]
ModuleRunner = Callable[..., dict[str, Any]]
OUTSIDE = "198.18.0.241"  # in no subnet of the lab client


def test_interface_info_lists_the_client_interface(lab: Lab, module_runner: ModuleRunner) -> None:
    client = lab.client
    result = module_runner(client, "interface_info", {"patterns": ["^l2lb"], "ips": [lab.vip(0), OUTSIDE]})

    assert result.get("failed") is not True, result
    assert result["changed"] is False
    [entry] = result["interfaces"]  # loopback is left out by default
    assert entry["name"] == client.ifname
    assert entry["mac"] == client.mac
    assert (entry["admin_up"], entry["oper_state"], entry["carrier"], entry["usable"]) == (True, "UP", True, True)
    assert entry["subnets"] == [str(lab.network)]
    assert [(a["address"], a["prefixlen"]) for a in entry["addresses"]] == [(client.ip, 24)]
    assert entry["matches"] is True
    assert result["matching"] == [client.ifname]
    assert result["ips"][lab.vip(0)] == {
        "attached": True,
        "interfaces": [client.ifname],
        "matching_interfaces": [client.ifname],
        "subnets": [str(lab.network)],
    }
    assert result["ips"][OUTSIDE]["attached"] is False
    assert result["warnings_list"] == []


def test_interface_info_warns_when_no_interface_matches(lab: Lab, module_runner: ModuleRunner) -> None:
    result = module_runner(lab.client, "interface_info", {"patterns": ["^eth[0-9]+"], "include_loopback": True})

    assert result["matching"] == []
    assert {e["name"] for e in result["interfaces"]} == {"lo", lab.client.ifname}
    assert result["warnings_list"][0].startswith(
        f"no interface on this host matches ^eth[0-9]+; interfaces here: lo, {lab.client.ifname}"
    )


def test_one_speaker_is_one_responder_and_the_neighbour_table_is_untouched(
    lab: Lab, module_runner: ModuleRunner, start_speaker: StartSpeaker
) -> None:
    client, node1 = lab.client, lab.node(1)
    speaker = start_speaker(node1, [lab.vip(0)])
    # Without arp_accept the client's kernel learns nothing from the speaker's own gratuitous ARPs.
    lab.sysctl(client, "net.ipv4.conf.all.arp_accept", "0")
    lab.sysctl(client, f"net.ipv4.conf.{client.ifname}.arp_accept", "0")
    lab.flush_neighbours(client)
    before = speaker.totals()

    result = module_runner(client, "arp_probe", {"ips": [lab.vip(0)]})

    assert result.get("failed") is not True, result
    assert result["changed"] is False
    probe = result["probes"][lab.vip(0)]
    assert probe["answered"] is True
    assert probe["split_brain"] is False
    assert [r["mac"] for r in probe["responders"]] == [node1.mac]
    assert probe["responders"][0]["replies"] == 3
    assert (probe["interface"], probe["source_ip"], probe["source_mac"]) == (client.ifname, client.ip, client.mac)
    assert (probe["requests"], probe["answered_requests"]) == (3, 3)
    assert 0 < probe["latency_ms"]["min"] <= probe["latency_ms"]["median"] < 500
    assert probe["error"] is None and probe["diagnosis"] is None
    assert result["answered"] == [lab.vip(0)]
    # Exactly our three who-has reached the speaker, and the raw socket left no neighbour entry behind.
    assert speaker.totals()["replies_sent"] - before["replies_sent"] == 3
    assert lab.vip(0) not in lab.neighbours(client)


def test_two_speakers_for_one_ip_are_split_brain(
    lab: Lab, module_runner: ModuleRunner, start_speaker: StartSpeaker
) -> None:
    node1, node2 = lab.node(1), lab.node(2)
    start_speaker(node1, [lab.vip(0)])
    start_speaker(node2, [lab.vip(0), lab.vip(1)])

    result = module_runner(lab.client, "arp_probe", {"ips": [lab.vip(0), lab.vip(1)], "count": 4, "timeout": 0.3})

    probe = result["probes"][lab.vip(0)]
    assert probe["split_brain"] is True
    assert {r["mac"] for r in probe["responders"]} == {node1.mac, node2.mac}
    assert all(r["replies"] == 4 for r in probe["responders"])
    assert probe["split_brain_requests"] == 4
    assert probe["diagnosis"].startswith(f"2 hosts answer ARP for {lab.vip(0)}")
    assert result["split_brain"] == [lab.vip(0)]
    single = result["probes"][lab.vip(1)]
    assert (single["split_brain"], [r["mac"] for r in single["responders"]]) == (False, [node2.mac])


def test_nobody_answering_is_reported_not_failed(
    lab: Lab, module_runner: ModuleRunner, start_speaker: StartSpeaker
) -> None:
    start_speaker(lab.node(1), [lab.vip(0)])

    result = module_runner(lab.client, "arp_probe", {"ips": [lab.vip(5)], "count": 2, "timeout": 0.2})

    assert result.get("failed") is not True, result
    probe = result["probes"][lab.vip(5)]
    assert (probe["answered"], probe["requests"], probe["responders"], probe["error"]) == (False, 2, [], None)
    assert probe["diagnosis"].startswith(f"no host answered 2 who-has for {lab.vip(5)} on {lab.client.ifname}")
    assert result["unanswered"] == [lab.vip(5)]


@pytest.mark.parametrize("lab", ["dual"], indirect=True)
def test_ipv6_is_probed_with_ndp_beside_ipv4_and_split_brain_is_seen(
    lab: Lab, module_runner: ModuleRunner, start_speaker: StartSpeaker
) -> None:
    client, node1, node2 = lab.client, lab.node(1), lab.node(2)
    start_speaker(node1, [lab.vip(0), lab.vip6(0)])
    start_speaker(node2, [lab.vip6(1), lab.vip6(0)])  # vip6(0) twice: split brain

    ips = [lab.vip(0), lab.vip6(0), lab.vip6(1), lab.vip6(2)]
    result = module_runner(client, "arp_probe", {"ips": ips, "count": 3, "timeout": 0.3})

    assert result.get("failed") is not True, result
    v4, both, single, nobody = (result["probes"][ip] for ip in ips)
    assert [r["mac"] for r in v4["responders"]] == [node1.mac]
    assert (single["source_ip"], single["source_mac"], single["interface"]) == (client.ip6, client.mac, client.ifname)
    assert [r["mac"] for r in single["responders"]] == [node2.mac] and single["answered_requests"] == 3
    assert both["split_brain"] and {r["mac"] for r in both["responders"]} == {node1.mac, node2.mac}
    assert both["diagnosis"].startswith(f"2 hosts answer NDP for {lab.vip6(0)}")
    assert nobody["diagnosis"].startswith(f"no host answered 3 neighbor solicitation for {lab.vip6(2)}")
    assert result["answered"] == ips[:3] and result["split_brain"] == [lab.vip6(0)]
    # The raw sockets left no neighbour entry behind in the client's kernel.
    assert not set(ips) & set(lab.neighbours(client, "-6"))


def test_ip_outside_every_attached_subnet_is_diagnosed(lab: Lab, module_runner: ModuleRunner) -> None:
    result = module_runner(lab.client, "arp_probe", {"ips": [OUTSIDE]})

    assert result.get("failed") is not True, result
    probe = result["probes"][OUTSIDE]
    assert probe["requests"] == 0
    assert probe["answered"] is False
    assert probe["error"] == f"no directly attached subnet contains {OUTSIDE}"
    assert probe["diagnosis"] == (
        f"this host has no interface in a subnet containing {OUTSIDE} — ARP only works on the same L2 segment "
        "(arping would silently get no answer); run the probe from a host in that subnet"
    )
    assert result["unprobed"] == [OUTSIDE]


def test_without_privilege_the_probe_says_what_it_needs(lab: Lab, module_runner: ModuleRunner) -> None:
    result = module_runner(lab.client, "arp_probe", {"ips": [lab.vip(0)]}, unprivileged=True)

    assert result["failed"] is True
    assert result["msg"] == (
        f"cannot open a raw ARP socket on {lab.client.ifname}: Operation not permitted — arp_probe needs root or "
        "CAP_NET_RAW; run the task with become: true"
    )
    # Reading the interfaces needs no privilege.
    facts = module_runner(lab.client, "interface_info", {}, unprivileged=True)
    assert facts["matching"] == [lab.client.ifname]


PLAYBOOK = """\
- name: Probe from the lab client
  hosts: probe
  gather_facts: false
  tasks:
    - name: Interface facts
      baremetal.l2lb.interface_info:
        patterns: ["^l2lb"]
        ips: ["{vip}"]
      register: nics
    - name: Who answers (check mode changes nothing either)
      baremetal.l2lb.arp_probe:
        ips: ["{vip}"]
        count: 2
        timeout: 0.3
      check_mode: true
      register: arp
    - name: Keep the results for the test
      ansible.builtin.copy:
        content: "{{{{ {{'nics': nics, 'arp': arp}} | to_json }}}}"
        dest: "{out}"
        mode: "0600"
"""


def test_modules_run_through_ansible_playbook_in_the_client_namespace(
    lab: Lab, start_speaker: StartSpeaker, tmp_path: Path
) -> None:
    start_speaker(lab.node(2), [lab.vip(0)])
    interpreter = tmp_path / "probe-python"
    interpreter.write_text(f'#!/bin/sh\nexec ip netns exec {lab.client.netns} {PYTHON} "$@"\n')
    interpreter.chmod(0o755)
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    probe:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {interpreter}\n"
    )
    out = tmp_path / "results.json"
    (tmp_path / "probe.yml").write_text(PLAYBOOK.format(vip=lab.vip(0), out=out))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "remote-tmp"),
    }
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), "probe.yml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    results = json.loads(out.read_text())
    nics, arp = results["nics"], results["arp"]
    assert nics["matching"] == [lab.client.ifname]
    assert nics["interfaces"][0]["mac"] == lab.client.mac
    assert nics["ips"][lab.vip(0)]["attached"] is True
    assert arp["changed"] is False
    assert [r["mac"] for r in arp["probes"][lab.vip(0)]["responders"]] == [lab.node(2).mac]
