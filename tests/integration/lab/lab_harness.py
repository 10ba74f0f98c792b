"""The nspawn lab for tests: `tests/lab/lab.py` loaded as a module, and a handle on one running lab with its
own state and inventory directories (under the test's tmp path, never the developer's `lab-state/`)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible_runs import ansible_env, run_playbook

REPO = Path(__file__).resolve().parents[3]
LAB_PY = REPO / "tests" / "lab" / "lab.py"
VENV_BIN = Path(sys.executable).parent


def _load_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("l2lb_lab", LAB_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


lab = _load_lab()


# The collection as `make` links it (ansible.cfg names the same path relative to the checkout).
COLLECTIONS = {"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".build" / "collections")}


@dataclass
class Lab:
    state_dir: Path
    inventory_dir: Path

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        dirs = ["--state-dir", str(self.state_dir), "--inventory-dir", str(self.inventory_dir)]
        cmd = [sys.executable, str(LAB_PY), *dirs, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "state.json").read_text())

    def init_pid(self, node: str) -> int:
        return int(self.state["nodes"][node]["init_pid"])

    def in_node(self, node: str, *cmd: str, input_text: str | None = None) -> str:
        return lab.run(lab.in_node(self.init_pid(node), cmd), input_text=input_text, timeout=30)

    def ansible(self, pattern: str, module: str, args: str = "") -> dict[str, Any]:
        """Run an ad-hoc module against the generated inventory; the per-host results."""
        env = ansible_env({**COLLECTIONS, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"})
        cmd = [str(VENV_BIN / "ansible"), "-i", str(self.inventory_dir), pattern, "-m", module]
        proc = subprocess.run(
            [*cmd, *(["-a", args] if args else [])], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]

    def playbook(self, playbook: str, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """ansible-playbook against the lab's inventory, from the checkout (as `make lab` runs it)."""
        return run_playbook(self.inventory_dir, playbook, *extra, env=COLLECTIONS, timeout=timeout)


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [tool for tool in ("systemd-nspawn", "debootstrap", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (make apt)"
    if lab.link_exists(lab.BRIDGE):
        return f"a lab is already up (bridge {lab.BRIDGE}); the test needs the lab names to itself"
    return None


@contextmanager
def lab_up(base: Path) -> Iterator[Lab]:
    """Bring a lab up in ``base`` and always take it down again (unless a test already did)."""
    reason = skip_reason()
    if reason:
        pytest.fail(f"cannot run here: {reason}")
    running = Lab(base / "state", base / "inventory")
    started = time.monotonic()
    proc = running.cli("up")
    assert proc.returncode == 0, f"lab up failed:\n{proc.stderr}\n{proc.stdout}"
    print(f"lab up took {time.monotonic() - started:.1f}s")
    try:
        yield running
    finally:
        if (running.state_dir / "state.json").exists():
            down = running.cli("down")
            assert down.returncode == 0, f"lab down failed:\n{down.stderr}"
