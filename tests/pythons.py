#!/usr/bin/env python3
"""The agent's unit tests under every node Python it supports: each OS's own system python3, in its own rootfs.

    python tests/pythons.py [--only 3.9,3.12]        (make unit-pythons; part of make test)

Each interpreter is the real ``python3`` of a release our users run, in a minimal root filesystem built with
debootstrap and cached in /var/cache/l2lb-lab (as the lab's images are):

    3.9   Debian 11 bullseye   the lab's base image        3.12  Ubuntu 24.04 noble   archive.ubuntu.com
    3.10  Ubuntu 22.04 jammy   archive.ubuntu.com          3.13  Debian 13 trixie     the lab's base image
    3.11  Debian 12 bookworm   the lab's base image

Ubuntu's archive is checked with Ubuntu's keyring, taken from Debian's ``ubuntu-keyring`` package (pinned by
checksum below). The wheels are downloaded on this host for each interpreter as the agent role does for a
node (``agent_platform.pip_download_args``: that interpreter's version, CPU and glibc), then installed in a
venv made by that python3 inside ``systemd-nspawn --volatile=overlay`` (the cached rootfs stays clean), where
pytest runs the agent's unit tests and those of the model it shares. Any failure, or a rootfs that cannot be
built, fails the run: nothing is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lab"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / ".build" / "collections"))
import lab  # the lab's image cache and debootstrap
from ansible_collections.baremetal.l2lb.plugins.module_utils import agent_platform

REPO = Path(__file__).resolve().parent.parent
AGENT_REQUIREMENTS = REPO / "files" / "l2lb_agent" / "requirements.txt"
TEST_REQUIREMENTS = REPO / "tests" / "pythons-requirements.txt"
TESTS = [
    "tests/unit/agent",
    "tests/unit/test_leases_microtime.py",
    "tests/unit/plugins/module_utils/test_ipranges.py",
    "tests/unit/plugins/module_utils/test_model_validation.py",
    "tests/unit/plugins/module_utils/test_selectors.py",
]
TARGETS = {  # python -> (distribution, suite)
    "3.9": ("debian", "bullseye"),
    "3.10": ("ubuntu", "jammy"),
    "3.11": ("debian", "bookworm"),
    "3.12": ("ubuntu", "noble"),
    "3.13": ("debian", "trixie"),
}
UBUNTU_MIRROR = "http://archive.ubuntu.com/ubuntu"
UBUNTU_KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1-0.2_all.deb"
UBUNTU_KEYRING_SHA256 = "b2e7ed48431bf9e7978ae810bbdaf253093570d6e3f864e575b7c13554b81174"
NSPAWN = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--timezone=off", "--volatile=overlay"]


def log(message: str) -> None:
    print(f"pythons: {message}", file=sys.stderr, flush=True)


def ubuntu_keyring(workdir: Path) -> Path:
    """Ubuntu's archive keyring from Debian's ubuntu-keyring package (downloaded, checked, extracted)."""
    deb = workdir / "ubuntu-keyring.deb"
    with urllib.request.urlopen(f"{lab.apt_mirror()}/{UBUNTU_KEYRING_DEB}", timeout=120) as answer:
        deb.write_bytes(answer.read())
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    if digest != UBUNTU_KEYRING_SHA256:
        raise lab.LabError(f"{UBUNTU_KEYRING_DEB}: sha256 {digest}, expected {UBUNTU_KEYRING_SHA256}")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "keyring")], check=True)
    return workdir / "keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg"


def ubuntu_rootfs(suite: str) -> Path:
    """A minimal Ubuntu ``suite`` with python3 and python3-venv (in universe), cached like the lab's images."""
    packages = ("python3", "python3-venv")
    name = f"ubuntu-{suite}-{hashlib.sha256(' '.join((suite, *packages)).encode()).hexdigest()[:12]}"
    final = lab.IMAGE_CACHE / name

    def build(rootfs: Path, workdir: Path) -> None:
        keyring = ubuntu_keyring(workdir)
        log(f"building Ubuntu {suite} with debootstrap from {UBUNTU_MIRROR} (about a minute) ...")
        cmd = [
            "debootstrap", "--variant=minbase", f"--keyring={keyring}", "--components=main,universe",
            f"--include={','.join(packages)}", suite, str(rootfs), UBUNTU_MIRROR,
            "/usr/share/debootstrap/scripts/gutsy",  # bookworm's debootstrap knows no noble; gutsy covers both
        ]  # fmt: skip
        with open(workdir / "debootstrap.log", "w") as out:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                raise lab.LabError(
                    f"debootstrap of Ubuntu {suite} failed:\n    {lab.tail(workdir / 'debootstrap.log')}"
                )
        subprocess.run(["chroot", str(rootfs), "apt-get", "clean"], check=True)

    with lab.cache_lock():
        if not final.exists():
            lab.build_into(final, f"Ubuntu {suite} rootfs", build)
    return final


def rootfs(python: str) -> Path:
    distribution, suite = TARGETS[python]
    return ubuntu_rootfs(suite) if distribution == "ubuntu" else lab.ensure_base_image(suite)


def nspawn(root: Path, *argv: str, binds: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    cmd = [*NSPAWN, "--directory", str(root), *(f"--bind-ro={b}" for b in binds), "--pipe", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, timeout=1200)


def run_one(python: str, scratch: Path) -> tuple[bool, str]:
    root = rootfs(python)
    probe = nspawn(root, "python3", "-I", "-c", agent_platform.PYTHON_FACTS_SCRIPT)
    if probe.returncode != 0:
        return False, f"python3 did not run in {root}: {probe.stderr.strip()[-500:]}"
    facts = json.loads(probe.stdout)
    if not facts["version"].startswith(python + "."):
        return False, f"{root} has python3 {facts['version']}, not {python}"
    wheels = scratch / agent_platform.key(facts)
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    download += [*agent_platform.pip_download_args(facts), "--dest", str(wheels)]
    download += ["-r", str(AGENT_REQUIREMENTS), "-r", str(TEST_REQUIREMENTS)]
    fetched = subprocess.run(download, capture_output=True, text=True, check=False, timeout=600)
    if fetched.returncode != 0:
        return False, f"pip download for {agent_platform.key(facts)} failed: {fetched.stderr.strip()[-1500:]}"
    script = (
        "set -e; python3 -m venv /tmp/venv; "
        "/tmp/venv/bin/pip install --quiet --disable-pip-version-check --no-index --find-links /wheels "
        "-r /src/files/l2lb_agent/requirements.txt -r /src/tests/pythons-requirements.txt; "
        # /src is read-only: bytecode and Hypothesis's example database go elsewhere (else a warning per test).
        "cd /src && PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis "
        f"/tmp/venv/bin/python -m pytest -q -p no:cacheprovider {' '.join(TESTS)}"
    )
    done = nspawn(root, "sh", "-c", script, binds=(f"{REPO}:/src", f"{wheels}:/wheels"))
    output = (done.stdout + done.stderr).strip()
    # nspawn on a host whose /run is not a tmpfs says "Attempted to remove disk file system ..." on exit.
    verdicts = [line for line in output.splitlines() if " passed" in line or " failed" in line or "error" in line]
    summary = verdicts[-1].strip("= ") if verdicts else "(no pytest summary)"
    if done.returncode != 0:
        return False, f"{facts['version']} ({TARGETS[python][1]}): {summary}\n{output[-4000:]}"
    return True, f"{facts['version']} ({TARGETS[python][1]}, {facts['libc']} {facts['libc_version']}): {summary}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated versions (default: all of 3.9 to 3.13)")
    args = parser.parse_args()
    wanted = [v for v in args.only.split(",") if v] or list(TARGETS)
    unknown = sorted(set(wanted) - set(TARGETS))
    if unknown:
        parser.error(f"no interpreter for {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="l2lb-pythons-") as scratch:
        for python in wanted:
            started = time.monotonic()
            try:
                ok, text = run_one(python, Path(scratch))
            except (lab.LabError, OSError, subprocess.SubprocessError, ValueError) as exc:
                ok, text = False, f"{type(exc).__name__}: {exc}"
            results.append((python, ok, text, time.monotonic() - started))
            log(f"{python}: {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.0f}s")
    print(f"\n{'PYTHON':<8}{'RESULT':<8}{'TIME':>6}  DETAIL")
    for python, ok, text, seconds in results:
        first, _, rest = text.partition("\n")
        print(f"{python:<8}{'ok' if ok else 'FAILED':<8}{seconds:>5.0f}s  {first}")
        if rest:
            print(rest)
    return 0 if all(ok for _, ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
