"""Which wheels a node needs, and which nodes cannot run the agent: each worded with its fix.

The tag checks use ``packaging`` (what pip uses) on real wheel names of the pinned closure.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ansible_collections.baremetal.l2lb.plugins.module_utils import agent_platform as ap
from ansible_collections.baremetal.l2lb.plugins.module_utils.preflight import ERROR, INFO, findings

BULLSEYE = {"version": "3.9.2", "implementation": "CPython", "machine": "x86_64", "libc": "glibc",
            "libc_version": "2.31", "venv": True, "ensurepip": True}  # fmt: skip
PI = {**BULLSEYE, "version": "3.11.2", "machine": "aarch64", "libc_version": "2.36"}
ALPINE = {**BULLSEYE, "version": "3.12.8", "libc": "musl", "libc_version": "1.2.5"}
PYYAML = "pyyaml-6.0.3-cp{v}-cp{v}-manylinux2014_{a}.manylinux_2_17_{a}.manylinux_2_28_{a}.whl"


def test_the_host_python_reports_itself_as_the_script_says() -> None:
    facts = json.loads(subprocess.run([sys.executable, "-I", "-c", ap.PYTHON_FACTS_SCRIPT], capture_output=True,
                                      text=True, check=True).stdout)  # fmt: skip
    assert facts["version"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    assert facts["libc"] == "glibc" and facts["venv"] is True
    assert ap.problems(facts) == []
    assert ap.key(facts).startswith(f"cp{sys.version_info[0]}{sys.version_info[1]}-")


def test_keys_and_pip_platforms_list_every_older_manylinux() -> None:
    assert ap.key(BULLSEYE) == "cp39-x86_64-glibc2.31"
    assert ap.key(PI) == "cp311-aarch64-glibc2.36"
    x86 = ap.pip_platforms(BULLSEYE)
    assert x86[0] == "manylinux_2_31_x86_64" and x86[-1] == "manylinux1_x86_64"
    assert {"manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64"} <= set(x86)
    arm = ap.pip_platforms(PI)
    assert arm[0] == "manylinux_2_36_aarch64" and arm[-1] == "manylinux2014_aarch64"
    assert not any("x86_64" in tag or "manylinux1" in tag for tag in arm)
    assert ap.pip_platforms(ALPINE) == ["musllinux_1_2_x86_64", "musllinux_1_1_x86_64"]
    args = ap.pip_download_args(PI)
    assert args[:5] == ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11"]
    assert args[5:7] == ["--abi", "cp311"] and "abi3" in args and "none" in args


def test_foreign_wheels_are_those_of_another_cpu_python_or_newer_glibc() -> None:
    names = [PYYAML.format(v="39", a="x86_64"), PYYAML.format(v="311", a="x86_64"), PYYAML.format(v="39", a="aarch64"),
             "six-1.17.0-py2.py3-none-any.whl", "x-1.0-cp39-cp39-manylinux_2_34_x86_64.whl",
             "y-1.0-cp39-abi3-manylinux_2_17_x86_64.whl"]  # fmt: skip
    assert ap.foreign_wheels(names, BULLSEYE) == [names[1], names[2], names[4]]
    assert ap.foreign_wheels([PYYAML.format(v="311", a="aarch64")], PI) == []
    assert ap.compiled(names[0]) and not ap.compiled(names[3])


def test_unsupported_nodes_are_named_with_the_reason_and_the_fix() -> None:
    assert ap.problems(BULLSEYE) == [] and ap.problems(PI) == [] and ap.problems(ALPINE) == []
    old = ap.problems({**BULLSEYE, "version": "3.6.8"})
    assert old == ["python3 is 3.6.8; the agent needs 3.9 or later (CentOS/RHEL 8: move to RHEL 9, or dnf install "
                   "python39 and alternatives --set python3 /usr/bin/python3.9)"]  # fmt: skip
    armhf = ap.problems({**PI, "machine": "armv7l"})
    assert armhf == ["CPU architecture armv7l has no agent wheels; supported: x86_64, aarch64 (32-bit Raspberry Pi "
                     "OS: install the 64-bit OS)"]  # fmt: skip
    assert "older than 2.17" in ap.problems({**BULLSEYE, "libc_version": "2.12"})[0]
    assert "neither glibc nor musl" in ap.problems({**BULLSEYE, "libc": "", "libc_version": ""})[0]
    assert "PyPy" in ap.problems({**BULLSEYE, "implementation": "PyPy"})[0]
    assert ap.problems({"error": "no python3 on PATH"}) == ["python3 did not run: no python3 on PATH (install "
                                                           "python3, 3.9 or later)"]  # fmt: skip
    assert ap.missing_venv({**BULLSEYE, "ensurepip": False})
    assert ap.venv_package("Debian") == "python3-venv" and ap.venv_package("Alpine") is None


def _node(python: dict, systemd: bool = True, family: str = "Debian") -> dict:
    facts = {**python, "key": ap.key(python), "missing_venv": ap.missing_venv(python), "problems": ap.problems(python)}
    return {"interfaces": [], "sysctls": {}, "systemd": systemd, "os_family": family, "python": facts}


def test_preflight_says_per_node_what_keeps_the_agent_off_it() -> None:
    nodes = {
        "pi": _node(PI),
        "old": _node({**BULLSEYE, "version": "3.8.10"}),
        "alpine": _node(ALPINE, systemd=False, family="Alpine"),
        "bare": _node({**BULLSEYE, "ensurepip": False}),
        "odd": _node({**BULLSEYE, "ensurepip": False}, family="gentoo"),
    }
    found = findings({}, nodes)
    errors = {f["subjects"][0]: f["message"] for f in found if f["severity"] == ERROR}
    assert set(errors) == {"old", "alpine", "odd"}
    assert "old cannot run the agent: python3 is 3.8.10" in errors["old"]
    assert "PID 1 is not systemd" in errors["alpine"]
    assert "(gentoo) is not one whose package the agent role knows" in errors["odd"]
    infos = [f["message"] for f in found if f["severity"] == INFO and f["id"].startswith("agent")]
    assert "bare: python3 has no ensurepip (python3 -m venv fails); the agent role installs python3-venv" in infos
    assert "agent wheels per node platform: cp311-aarch64-glibc2.36 (pi), cp39-x86_64-glibc2.31 (bare, odd)" in infos
    assert not [f for f in findings({}, nodes, backend="cilium") if f["id"].startswith("agent")]
