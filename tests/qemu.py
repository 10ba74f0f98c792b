"""aarch64 programs on this x86_64 host, for tests: Debian's qemu-user-static registered with binfmt_misc.

``aarch64_binfmt()`` registers the lab's handler ``l2lb-qemu-aarch64`` (tests/lab/lab.py ``register_binfmt``:
flag F, so it serves inside chroots and containers too) for the duration of a ``with`` and removes what it added,
also on failure; a handler that was there before stays. ``arm64_rootfs()`` is the lab's cached Debian bookworm
arm64 base image (the one the lab's arm64 node boots), built with debootstrap under qemu on first use.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lab"))
import lab


@contextlib.contextmanager
def aarch64_binfmt() -> Iterator[None]:
    done = lab.register_binfmt()
    try:
        yield
    finally:
        lab.unregister_binfmt(done)


def arm64_rootfs() -> Path:
    """Debian bookworm for arm64 (call inside ``aarch64_binfmt()``: debootstrap runs arm64 programs)."""
    return lab.ensure_base_image(lab.ARM64_NODE.suite, arch="arm64")
