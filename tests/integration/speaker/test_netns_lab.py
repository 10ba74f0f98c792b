"""The lab fixture library itself (tests/netns.py): topology, isolation, teardown, stale-lab cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from netns import AGENT_PATH, OWNER_DIR, TESTS_PATH, Lab, cleanup_stale_labs, list_netns, python_env

pytestmark = pytest.mark.netns


def test_lab_topology_and_kernel_arp(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(nodes=2, subnet="198.18.102.0/24")
    names = set(list_netns())
    assert {lab.bridge_netns, lab.client.netns, lab.node(1).netns, lab.node(2).netns} <= names
    assert all(len(h.port) <= 15 and h.port.startswith("l2lb-") for h in lab.hosts)
    assert [h.ip for h in lab.hosts] == ["198.18.102.2", "198.18.102.11", "198.18.102.12"]
    assert lab.link_mac(lab.node(2)) == lab.node(2).mac
    # The node's own kernel answers for its own address: the bridge works end to end.
    result = lab.arp_probe(lab.node(2).ip, count=3)
    assert result.unanswered == 0
    assert result.macs == {lab.node(2).mac}
    # IPv6 is off everywhere, so nothing but our IPv4/ARP leaves the interfaces.
    assert "inet6" not in lab.ip(lab.client, "addr", "show")
    assert "inet6" not in lab.ip(lab.bridge_netns, "addr", "show")


def test_subnets_outside_the_test_range_are_refused() -> None:
    for subnet in ("10.0.0.0/24", "198.20.0.0/24", "2001:db8::/64"):
        with pytest.raises(ValueError, match=r"198\.18\.0\.0/15"):
            Lab(subnet=subnet)
    with pytest.raises(ValueError, match="/24 or larger"):
        Lab(subnet="198.18.0.0/25")


def test_close_kills_our_processes_and_removes_everything(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(nodes=1, subnet="198.18.103.0/24")
    proc = lab.popen(lab.node(1), ["sleep", "300"])
    namespaces = [h.netns for h in lab.hosts] + [lab.bridge_netns]
    owner = OWNER_DIR / f"{lab.tag}.json"
    assert owner.exists()

    lab.close()

    assert proc.poll() is not None, "the process started in the lab was stopped"
    assert not set(namespaces) & set(list_netns())
    assert not owner.exists()


def test_stale_labs_of_dead_owners_are_cleaned_up() -> None:
    # A lab whose owner dies without tearing down (SIGKILL): its namespaces stay behind...
    code = (
        "import sys, time; from netns import Lab; lab = Lab(nodes=1, subnet='198.18.104.0/24').start(); "
        "print(lab.tag, flush=True); time.sleep(300)"
    )
    env = python_env()
    assert str(AGENT_PATH) in env["PYTHONPATH"] and str(TESTS_PATH) in env["PYTHONPATH"]
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout is not None
        tag = owner.stdout.readline().strip()
        stale = {f"l2lb-t{tag}-br", f"l2lb-t{tag}-c", f"l2lb-t{tag}-n1"}
        assert stale <= set(list_netns())
        assert not set(cleanup_stale_labs()) & stale, "a live owner's lab is left alone"
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
    # ...until the next cleanup (ours, or a concurrent run's), which sees the owner is gone.
    deadline = time.monotonic() + 5
    cleanup_stale_labs()
    while stale & set(list_netns()) and time.monotonic() < deadline:
        cleanup_stale_labs()
        time.sleep(0.1)
    assert not stale & set(list_netns())
    assert not (OWNER_DIR / f"{tag}.json").exists()
