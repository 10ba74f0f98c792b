"""Which wheels a node's agent needs: the node's python3, CPU and C library, as pip and wheel tags name them.

The agent runs in a venv made by the node's system ``python3``, so the wheelhouse must hold wheels for that
interpreter (CPython 3.9 to 3.13), that CPU (x86_64 or aarch64) and that C library (glibc 2.17 or later:
manylinux; musl 1.1 or later: musllinux), never for the controller's. ``PYTHON_FACTS_SCRIPT`` runs on the
node (under any Python 3) and prints what is needed; the rest runs on the controller.

Runs on the nodes (inside node_preflight_info) as well as on the controller: Python 3.9 syntax only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MIN_PYTHON = (3, 9)
MAX_PYTHON = (3, 13)
MACHINES = ("x86_64", "aarch64")
# Other spellings of the same CPUs (uname -m on some systems, Ansible's facts, macOS).
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "x64": "x86_64"}
MIN_GLIBC = (2, 17)  # manylinux2014, the oldest tag the pinned wheels are built for
MIN_MUSL = (1, 1)

# Printed by the node's python3 (any 3.x: no f-strings, no walrus) as one JSON line.
PYTHON_FACTS_SCRIPT = r"""
import glob, json, platform, re, subprocess, sys
from importlib import util
libc, version = platform.libc_ver()
if not libc:
    loaders = glob.glob("/lib/ld-musl-*.so.1")
    if loaders:
        libc = "musl"
        try:
            out = subprocess.run([loaders[0]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
            found = re.search(r"Version ([0-9.]+)", out)
            version = found.group(1) if found else ""
        except OSError:
            version = ""
print(json.dumps({
    "executable": sys.executable,
    "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
    "implementation": platform.python_implementation(),
    "machine": platform.machine(),
    "libc": libc,
    "libc_version": version,
    "venv": util.find_spec("venv") is not None,
    "ensurepip": util.find_spec("ensurepip") is not None,
}))
"""


def _version(text: Any, parts: int) -> tuple[int, ...] | None:
    match = re.match(r"^(\d+)\.(\d+)", str(text or ""))
    return tuple(int(x) for x in match.groups()[:parts]) if match else None


def machine(facts: Mapping[str, Any]) -> str:
    raw = str(facts.get("machine") or "").lower()
    return MACHINE_ALIASES.get(raw, raw)


def problems(facts: Mapping[str, Any]) -> list[str]:
    """Why the agent cannot be installed with this python3 (empty when it can), each naming the fix.

    A missing venv/ensurepip is not listed: the agent role installs the OS package for it (see
    ``venv_package``); ``missing_venv`` says whether it is needed.
    """
    found: list[str] = []
    if facts.get("error"):
        return [f"python3 did not run: {facts['error']} (install python3, 3.9 or later)"]
    implementation = facts.get("implementation") or "CPython"
    if implementation != "CPython":
        found.append(f"python3 is {implementation}; the agent's wheels are built for CPython (install CPython 3.9+)")
    python = _version(facts.get("version"), 2)
    if python is None:
        found.append(f"python3 reported no version ({facts.get('version')!r})")
    elif python < MIN_PYTHON:
        found.append(
            f"python3 is {facts.get('version')}; the agent needs 3.9 or later "
            "(CentOS/RHEL 8: move to RHEL 9, or dnf install python39 and alternatives --set python3 /usr/bin/python3.9)"
        )
    elif python > MAX_PYTHON:
        found.append(
            f"python3 is {facts.get('version')}; the agent is tested on 3.9 to 3.13 and its pinned wheels may "
            "not exist for a newer CPython yet"
        )
    cpu = machine(facts)
    if cpu not in MACHINES:
        hint = " (32-bit Raspberry Pi OS: install the 64-bit OS)" if cpu.startswith("arm") else ""
        found.append(f"CPU architecture {cpu or 'unknown'} has no agent wheels; supported: x86_64, aarch64{hint}")
    libc = facts.get("libc") or ""
    libc_version = _version(facts.get("libc_version"), 2)
    if libc == "glibc":
        if libc_version is None or libc_version < MIN_GLIBC:
            found.append(f"glibc {facts.get('libc_version') or '?'} is older than 2.17 (manylinux2014): no wheels")
    elif libc == "musl":
        if libc_version is None or libc_version < MIN_MUSL:
            found.append(f"musl {facts.get('libc_version') or '?'} is older than 1.1 (musllinux_1_1): no wheels")
    else:
        found.append("the C library is neither glibc nor musl (platform.libc_ver() found none): no wheels")
    if not facts.get("venv"):
        found.append("python3 has no venv module (rebuild or reinstall python3 with its standard library)")
    return found


def missing_venv(facts: Mapping[str, Any]) -> bool:
    """Debian and Ubuntu ship ensurepip (which ``python3 -m venv`` needs) in a separate package."""
    return not facts.get("ensurepip")


def venv_package(os_family: str) -> str | None:
    """The OS package that provides ensurepip for the system python3, where the family is known."""
    return {"Debian": "python3-venv", "RedHat": "python3-pip-wheel"}.get(os_family)


def key(facts: Mapping[str, Any]) -> str:
    """The wheelhouse directory of this platform: ``cp311-x86_64-glibc2.36``."""
    python = _version(facts.get("version"), 2) or (0, 0)
    libc_version = _version(facts.get("libc_version"), 2) or (0, 0)
    libc = facts.get("libc") or "unknown"
    return f"cp{python[0]}{python[1]}-{machine(facts)}-{libc}{libc_version[0]}.{libc_version[1]}"


def pip_platforms(facts: Mapping[str, Any]) -> list[str]:
    """Every platform tag the node's pip accepts, newest first.

    pip's ``--platform`` takes a tag literally (``manylinux_2_36_x86_64`` does not also admit a wheel built
    for glibc 2.17), so each compatible tag is listed, as pip lists them for its own host.
    """
    cpu = machine(facts)
    major, minor = _version(facts.get("libc_version"), 2) or (0, 0)
    if facts.get("libc") == "musl":
        return [f"musllinux_{major}_{m}_{cpu}" for m in range(minor, 0, -1)]
    oldest = 5 if cpu == "x86_64" else 17
    tags = [f"manylinux_2_{m}_{cpu}" for m in range(minor, oldest - 1, -1)] if major == 2 else []
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    for glibc_minor, name in legacy.items():
        if major == 2 and minor >= glibc_minor >= oldest:
            tags.insert(tags.index(f"manylinux_2_{glibc_minor}_{cpu}") + 1, f"{name}_{cpu}")
    return tags


def pip_download_args(facts: Mapping[str, Any]) -> list[str]:
    """The ``pip download`` options that select this node's wheels, whatever the controller runs."""
    python = _version(facts.get("version"), 2) or (0, 0)
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", f"{python[0]}.{python[1]}"]
    for abi in (f"cp{python[0]}{python[1]}", "abi3", "none"):
        args += ["--abi", abi]
    for tag in pip_platforms(facts):
        args += ["--platform", tag]
    return args


def supported_tags(facts: Mapping[str, Any]) -> set[str]:
    """Every ``python-abi-platform`` tag the node's CPython accepts (as ``packaging.tags`` orders them)."""
    from packaging import tags  # the controller has it: ansible-core depends on it

    python = _version(facts.get("version"), 2) or (0, 0)
    platforms = pip_platforms(facts)
    interpreter = f"cp{python[0]}{python[1]}"
    found = tags.cpython_tags(python_version=python, abis=[interpreter, "abi3", "none"], platforms=platforms)
    compatible = tags.compatible_tags(python_version=python, interpreter=interpreter, platforms=platforms)
    return {str(tag) for tag in [*found, *compatible]}


def foreign_wheels(filenames: Iterable[str], facts: Mapping[str, Any]) -> list[str]:
    """The wheel files of ``filenames`` that the node's python3 could not install (none, when all is well)."""
    from packaging.utils import parse_wheel_filename

    accepted = supported_tags(facts)
    foreign = []
    for name in filenames:
        _, _, _, wheel_tags = parse_wheel_filename(name)
        if not {str(tag) for tag in wheel_tags} & accepted:
            foreign.append(name)
    return foreign


def compiled(filename: str) -> bool:
    """A wheel with machine code (its platform tag is not ``any``)."""
    return not filename.endswith("-any.whl")
