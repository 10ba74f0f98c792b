"""Shared pytest setup: make the collection, the agent package and the API stand-in importable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_COLLECTIONS = REPO / ".build" / "collections"
_LINK = _COLLECTIONS / "ansible_collections" / "baremetal" / "l2lb"

# Ansible imports collection code as ansible_collections.baremetal.l2lb.*; the same path serves the tests.
if not _LINK.exists():
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("../../../..", _LINK)

for path in (_COLLECTIONS, REPO / "files" / "l2lb_agent", REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
