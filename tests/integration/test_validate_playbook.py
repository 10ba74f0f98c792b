"""A real ansible-playbook run of playbooks/validate.yml: the README's bad-inventory demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = Path(__file__).parent / "inventories"


def _playbook(inventory: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(binary), "-i", str(INVENTORIES / inventory), str(REPO / "playbooks" / "validate.yml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_inventory_fails_naming_every_problem() -> None:
    run = _playbook("bad_model")
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    expected = [
        "7 problems in the l2lb model:",
        "pool \"lan\": blocks[0].cidr: '198.18.10.0/33' is not a valid CIDR: prefix length /33 is not in 0-32",
        'pool "lan": blocks[1]: start 198.18.11.20 is after stop 198.18.11.10 (fix: swap them',
        'pool "dmz": allowFirstLastIP: unknown key (fix: did you mean "allowFirstLastIPs"?)',
        'pool "dmz": serviceSelector.matchLabels.expose: label value must be a string, got boolean True (fix: quote it',
        'policy "workers": nodeSelector.matchExpressions[0].values: values must be empty with operator DoesNotExist',
        "policy \"workers\": interfaces[0]: '^eth[0-9+' is not a valid regex",
        'pool "dmz": blocks[0]: 198.18.10.0/24 overlaps pool "iot" blocks[0] (198.18.10.128/25)',
    ]
    missing = [line for line in expected if line not in out]
    assert not missing, f"missing from the output: {missing}\n{out}"
    assert "Traceback" not in out


def test_good_inventory_passes_and_warns_on_deprecated_cidrs() -> None:
    run = _playbook("good_model")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "ok=1" in out and "failed=0" in out
    assert 'pool "legacy": cidrs is deprecated' in out
