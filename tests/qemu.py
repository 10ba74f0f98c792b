"""aarch64 programs on this x86_64 host: Debian's qemu-user-static, registered with binfmt_misc for as long as needed.

``aarch64_binfmt()`` mounts binfmt_misc if it is not mounted, registers the handler ``l2lb-qemu-aarch64`` (flag F:
the interpreter is opened now, so it also serves inside chroots and containers that do not have it) and removes
what it added on exit, also on failure. A handler of that name that was already there is left as found.
``arm64_rootfs()`` is a minimal Debian bookworm arm64 tree (python3, python3-venv) built with debootstrap and
cached with the lab's images.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lab"))
import lab

BINFMT = Path("/proc/sys/fs/binfmt_misc")
HANDLER = "l2lb-qemu-aarch64"
QEMU = Path("/usr/bin/qemu-aarch64-static")
# ELF64, little endian, executable or shared object (type 2 or 3), machine 0xb7 (AArch64).
MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
ROOTFS_PACKAGES = ("python3", "python3-venv")


@contextlib.contextmanager
def aarch64_binfmt() -> Iterator[None]:
    if not QEMU.exists():
        raise RuntimeError(f"{QEMU} is missing: apt-get install qemu-user-static (make setup installs it)")
    mounted = False
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
        mounted = True
    registered = False
    try:
        if not (BINFMT / HANDLER).exists():
            (BINFMT / "register").write_text(f":{HANDLER}:M::{MAGIC}:{MASK}:{QEMU}:F")
            registered = True
        yield
    finally:
        if registered:
            (BINFMT / HANDLER).write_text("-1")
        if mounted:
            subprocess.run(["umount", str(BINFMT)], check=False)


def arm64_rootfs() -> Path:
    """Debian bookworm for arm64 (needs ``aarch64_binfmt()``: debootstrap's second stage runs arm64 programs)."""
    digest = lab._digest([b"arm64", lab.SUITE.encode(), *(p.encode() for p in ROOTFS_PACKAGES)])
    final = lab.IMAGE_CACHE / f"{lab.SUITE}-arm64-{digest}"

    def build(rootfs: Path, workdir: Path) -> None:
        lab.log(f"building a {lab.SUITE} arm64 rootfs with debootstrap under qemu (about 5 minutes) ...")
        cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}",
               lab.SUITE, str(rootfs), lab.apt_mirror()]  # fmt: skip
        with open(workdir / "debootstrap.log", "w") as out:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                raise lab.LabError(f"arm64 debootstrap failed:\n    {lab.tail(workdir / 'debootstrap.log')}")
        subprocess.run(["chroot", str(rootfs), "apt-get", "clean"], check=True)

    with lab.cache_lock():
        if not final.exists():
            lab.build_into(final, f"{lab.SUITE} arm64 rootfs", build)
    return final
