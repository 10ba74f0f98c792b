"""Run the collection's modules for real inside a lab namespace (tests/netns.py), and ARP speakers to probe.

``run_module(lab, host, name, args)`` runs ``plugins/modules/<name>.py`` with this venv's Python under
``ip netns exec`` (as Ansible would run it on that host, minus the AnsiballZ wrapper) and returns the
module's JSON result. The speaker driver is the speaker tests' own (``speaker_harness``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from netns import PYTHON, REPO, Host, Lab

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "speaker"))
from speaker_harness import FAST, Speaker  # lives with the speaker tests

COLLECTIONS = REPO / ".build" / "collections"
MODULES = REPO / "plugins" / "modules"
NOBODY = 65534

__all__ = ["COLLECTIONS", "FAST", "MODULES", "PYTHON", "REPO", "Speaker", "module_env", "run_module"]


def module_env() -> dict[str, str]:
    """The environment of a module run: the collection importable as ansible_collections.baremetal.l2lb."""
    return {**os.environ, "PYTHONPATH": str(COLLECTIONS), "PYTHONUNBUFFERED": "1"}


def run_module(lab: Lab, host: Host, name: str, args: dict[str, Any], *, unprivileged: bool = False) -> dict[str, Any]:
    """The result of module ``name`` run in ``host``'s namespace (as root, or as nobody without capabilities)."""
    # The arguments go inline (AnsibleModule's debugging entry point), so an unprivileged run needs no file.
    argv = [PYTHON, str(MODULES / f"{name}.py"), json.dumps({"ANSIBLE_MODULE_ARGS": args})]
    if unprivileged:
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all"]
        argv = [*drop, "--bounding-set=-all", *argv]
    out = lab.run(host, argv, check=False, timeout=60.0, env=module_env())
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError:
        raise AssertionError(f"{name} printed no JSON result: {out!r}") from None
    return result
