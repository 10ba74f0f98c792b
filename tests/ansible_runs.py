"""ansible-playbook runs for tests: the checkout's ansible.cfg, the venv's ansible, no colours, and the recap."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def ansible_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a test runs Ansible in: this checkout's ansible.cfg, the venv first on PATH."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **(extra or {})}


def run_playbook(
    inventory: Path,
    playbook: Path | str,
    *extra: str,
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i inventory playbook *extra`` (a relative playbook is taken from the checkout)."""
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(REPO / playbook), *extra],
        cwd=cwd,
        env=ansible_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def host_recap(out: str, host: str) -> dict[str, int]:
    """ok/changed/unreachable/failed of ``host`` from the PLAY RECAP ({} when there is none)."""
    recap = re.search(rf"^{re.escape(host)}\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
    if recap is None:
        return {}
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, recap.groups()), strict=True))


def localhost_recap(out: str) -> dict[str, int]:
    """ok/changed/unreachable/failed of localhost from the PLAY RECAP ({} when there is none)."""
    return host_recap(out, "localhost")
