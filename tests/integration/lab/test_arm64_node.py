"""An aarch64 node joins the converged lab (Debian bookworm arm64 under qemu-user-static) and site.yml installs
the agent there from its own wheelhouse, built on this x86_64 controller.

``lab.py arm64 up`` registers the binfmt handler, boots l2lb-node4 with systemd under qemu and adds it to the
inventory; site.yml's preflight reads its python3 (aarch64), the agent role downloads the aarch64 wheels and
ships them only there; the agent runs as its hardened systemd service, its heartbeat Lease is renewed, and a
second site.yml changes nothing on it. ``lab.py arm64 down`` removes the node and the handler again.
The node carries no worker label, so it announces nothing: the other scenarios' timings stay its own.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from ansible_runs import host_recap
from converged_lab import Converged
from kubernetes import client
from lab_harness import lab

pytestmark = [pytest.mark.lab]

NODE = lab.ARM64_NODE.name
AGENTS_NS = "l2lb-system"


def _lease_age(lab_: Converged) -> float:
    """Seconds since the arm64 node's heartbeat Lease was last renewed."""
    leases = client.CoordinationV1Api(lab_.api).list_namespaced_lease(AGENTS_NS).items
    renewed = [
        lease.spec.renew_time for lease in leases if lease.spec.holder_identity == NODE and lease.spec.renew_time
    ]
    assert renewed, [(lease.metadata.name, lease.spec.holder_identity) for lease in leases]
    return (datetime.datetime.now(datetime.UTC) - max(renewed)).total_seconds()


def test_an_arm64_node_runs_the_agent_from_its_own_wheelhouse(lab_: Converged) -> None:
    binfmt = Path("/proc/sys/fs/binfmt_misc") / lab.BINFMT_HANDLER
    had_handler = binfmt.exists()
    try:
        started = time.monotonic()
        lab_.lab_cli("arm64", "up")
        print(f"arm64 up took {time.monotonic() - started:.0f}s")
        assert lab_.in_node(NODE, "uname", "-m").strip() == "aarch64"

        started = time.monotonic()
        proc = lab_.lab.playbook("site.yml", timeout=1500)
        print(f"site.yml with the arm64 node took {time.monotonic() - started:.0f}s")
        assert proc.returncode == 0, proc.stdout[-6000:]
        flat = " ".join(proc.stdout.split())
        assert f"cp311-aarch64-glibc2.36 ({NODE})" in flat, "preflight names the node's platform"
        assert host_recap(proc.stdout, NODE)["failed"] == 0

        assert lab_.in_node(NODE, "systemctl", "is-active", "l2lb-agent.service").strip() == "active"
        shipped = lab_.in_node(NODE, "cat", "/opt/l2lb/wheelhouse/SHA256SUMS")
        deps = [line.split("  ", 1)[1] for line in shipped.splitlines() if "  deps/" in line]
        assert deps and all("x86_64" not in name for name in deps), shipped
        assert any(name.startswith("deps/pyyaml-6.0.3-cp311-cp311-") and "aarch64" in name for name in deps), deps
        machine = lab_.in_node(NODE, "/opt/l2lb/venv/bin/python", "-c", "import platform; print(platform.machine())")
        assert machine.strip() == "aarch64"
        lab_.wait_for(f"{NODE}'s heartbeat to be renewed", lambda: _lease_age(lab_) < 5.0, timeout=60)

        # Again, limited to the new node (and the API tasks): nothing changes on it. The other nodes' re-runs are
        # checked by molecule's idempotence step; the limit keeps this emulated node's test within the CI budget.
        again = lab_.lab.playbook("site.yml", "--limit", f"localhost,{NODE}", timeout=1500)
        assert again.returncode == 0, again.stdout[-6000:]
        assert host_recap(again.stdout, NODE)["changed"] == 0, again.stdout[-6000:]
    finally:
        lab_.lab_cli("arm64", "down")
    assert binfmt.exists() == had_handler, "arm64 down leaves binfmt_misc as it found it"
    assert not lab.link_exists(lab.ARM64_NODE.veth)
    assert NODE not in (lab_.lab.inventory_dir / "hosts.yml").read_text()
    lab_.wait_serving()
