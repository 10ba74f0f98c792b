"""The benchmarks run: ``python -m benchmarks.run --size smoke`` produces every table (numbers not judged).

A smoke run of the benchmark machinery, not a performance test: it asserts only that the run finished,
wrote the results file with the machine facts and the tables, and broke nowhere. Goals met or missed
at this token size mean nothing and are not asserted. Without root, the network-namespace tables say
"not measured" and the run still succeeds. The API-load and failover tables run on the real control
plane (tests/controlplane.py; binaries from ``make components``): the API-load table must show that the
agents' requests were counted from kube-apiserver's audit log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.netns


def test_smoke_run_writes_every_table(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--size", "smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    text = output.read_text()
    for fact in ("**CPU:**", "**cores (online):**", "**RAM:**", "**kernel:**", "**Python:**", "**Command:**"):
        assert fact in text, fact
    for title in (
        "## 1. API load",
        "## 2. Failover",
        "## 3. ARP and NDP responder",
        "## 4. IPAM and scheduling",
        "## 5. Ansible",
        "## 6. Endpoint handover",
    ):
        assert title in text, f"{title} missing from {output}:\n{text[:2000]}"
    assert "benchmark failed" not in text, text
    # The tables printed on stdout are the same ones.
    assert "## 1. API load" in proc.stdout and "## 4. IPAM and scheduling" in proc.stdout
    # Every measured table has rows (a header separator line), unless it says why it measured nothing.
    for section in text.split("\n## ")[1:5]:
        assert "|---" in section or "not measured" in section, section[:500]
    # The API-load table ran on kube-apiserver, and its audit log counted the agents' requests.
    api = text.split("\n## 1. API load", 1)[1].split("\n## ", 1)[0]
    assert "kube-apiserver + etcd CPU" in api and "stand-in" not in api, api[:1500]
    row = next(line for line in api.splitlines() if line.startswith("| 10 | 3 |"))
    ours = row.split("|")[3].strip().split()[0]
    assert float(ours.replace(",", "")) > 0, row
