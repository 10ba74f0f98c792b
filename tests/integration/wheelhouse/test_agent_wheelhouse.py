"""The agent's wheelhouse is built for the nodes, not for the controller (real pip, real PyPI downloads).

This controller is x86_64 with CPython 3.11; the module is asked for other nodes' platforms and every wheel
it keeps must carry tags those nodes accept, checked here from the file names alone (not with the module's
own tag code). A second run downloads nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE = REPO / "plugins" / "modules" / "agent_wheelhouse.py"
REQUIREMENTS = REPO / "files" / "l2lb_agent" / "requirements.txt"

ARM64_PY312 = {"version": "3.12.3", "machine": "aarch64", "libc": "glibc", "libc_version": "2.39",
               "implementation": "CPython", "venv": True, "ensurepip": True}  # fmt: skip
X86_PY39 = {"version": "3.9.2", "machine": "x86_64", "libc": "glibc", "libc_version": "2.31",
            "implementation": "CPython", "venv": True, "ensurepip": True}  # fmt: skip


def run(args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}
    env = {**os.environ, "PYTHONPATH": str(REPO / ".build" / "collections")}
    proc = subprocess.run(
        [sys.executable, str(MODULE), json.dumps(payload)], capture_output=True, text=True, env=env, timeout=600
    )
    return json.loads(proc.stdout)


def tags(filename: str) -> tuple[set[str], set[str], set[str]]:
    """Python tags, ABI tags and platform tags of a wheel file name (PEP 427; compressed tag sets split)."""
    parts = filename[: -len(".whl")].split("-")
    python, abi, platform = parts[-3], parts[-2], parts[-1]
    return set(python.split(".")), set(abi.split(".")), set(platform.split("."))


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    dest = tmp_path / "wheelhouse"
    (dest / "agent").mkdir(parents=True)
    (dest / "agent" / "l2lb_agent-0.1.0-py3-none-any.whl").write_bytes(b"stand-in for the agent wheel")
    shutil.copy(REQUIREMENTS, dest / "requirements.txt")
    return dest


def test_wheels_for_aarch64_py312_and_x86_64_py39_carry_only_their_tags(wheelhouse: Path) -> None:
    args = {
        "dest": str(wheelhouse),
        "requirements": str(REQUIREMENTS),
        "platforms": [ARM64_PY312, X86_PY39, ARM64_PY312],
    }
    dry = run(args, check_mode=True)
    assert dry.get("changed") is True, dry
    assert not (wheelhouse / "deps").exists(), "check mode downloaded"

    result = run(args)
    assert not result.get("failed"), result.get("msg")
    assert sorted(result["platforms"]) == ["cp312-aarch64-glibc2.39", "cp39-x86_64-glibc2.31"]
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in REQUIREMENTS.read_text().splitlines()
              if "==" in line and not line.startswith("#")}  # fmt: skip
    for key, want_python, want_abi, arch in (
        ("cp312-aarch64-glibc2.39", {"py3", "cp312", "py312"}, {"cp312", "abi3", "none"}, "aarch64"),
        ("cp39-x86_64-glibc2.31", {"py3", "cp39", "py39"}, {"cp39", "abi3", "none"}, "x86_64"),
    ):
        deps = wheelhouse / "deps" / key
        files = sorted(p.name for p in deps.iterdir())
        assert files == result["platforms"][key]["wheels"]
        assert len(files) == len(pinned), files
        for name in files:
            python, abi, platform = tags(name)
            assert python & want_python, f"{key}: {name} is for another Python"
            assert abi & want_abi, f"{key}: {name} has another ABI"
            ok = platform == {"any"} or any(p.endswith("_" + arch) and p.startswith("manylinux") for p in platform)
            assert ok, f"{key}: {name} is for another platform"
        compiled = result["platforms"][key]["compiled"]
        assert compiled and all(arch in name for name in compiled), compiled  # PyYAML at least
        manifest = (wheelhouse / "manifests" / f"{key}.sha256").read_text().splitlines()
        listed = sorted(line.split("  ", 1)[1] for line in manifest)
        assert listed == sorted(["agent/l2lb_agent-0.1.0-py3-none-any.whl", "requirements.txt"]
                                + [f"deps/{n}" for n in files])  # fmt: skip
        print(
            f"{key}: {len(files)} wheels, {result['platforms'][key]['size_bytes'] / 1e6:.1f} MB, compiled: {compiled}"
        )

    manifests = {p.name: p.stat().st_mtime_ns for p in (wheelhouse / "manifests").iterdir()}
    again = run(args)
    assert again.get("changed") is False, again
    assert not any(p["downloaded"] for p in again["platforms"].values())
    assert {p.name: p.stat().st_mtime_ns for p in (wheelhouse / "manifests").iterdir()} == manifests


def test_going_back_to_earlier_requirements_downloads_them_again(wheelhouse: Path, tmp_path: Path) -> None:
    """A -> B -> A: the second A must not be taken for done because A's marker is still there."""
    older = tmp_path / "older.txt"
    older.write_text(REQUIREMENTS.read_text().replace("six==1.17.0", "six==1.16.0"))
    for requirements, six in ((REQUIREMENTS, "six-1.17.0"), (older, "six-1.16.0"), (REQUIREMENTS, "six-1.17.0")):
        shutil.copy(requirements, wheelhouse / "requirements.txt")
        result = run({"dest": str(wheelhouse), "requirements": str(requirements), "platforms": [X86_PY39]})
        assert not result.get("failed"), result.get("msg")
        wheels = result["platforms"]["cp39-x86_64-glibc2.31"]["wheels"]
        assert [name for name in wheels if name.startswith("six-")] == [f"{six}-py2.py3-none-any.whl"], wheels


def test_a_node_the_wheels_cannot_serve_fails_before_any_download(wheelhouse: Path) -> None:
    armv7 = {**ARM64_PY312, "machine": "armv7l"}
    old = {**X86_PY39, "version": "3.8.10"}
    result = run({"dest": str(wheelhouse), "requirements": str(REQUIREMENTS), "platforms": [ARM64_PY312, armv7, old]})
    assert result.get("failed"), result
    assert "armv7l has no agent wheels" in result["msg"] and "64-bit" in result["msg"], result["msg"]
    assert "3.8.10; the agent needs 3.9 or later" in result["msg"], result["msg"]
    assert not (wheelhouse / "deps").exists(), "downloaded although a node cannot be served"


def test_an_aarch64_node_installs_its_wheelhouse_and_runs_the_agent(tmp_path: Path) -> None:
    """On an arm64 Debian rootfs run through qemu-user-static (binfmt_misc): read the node's python3 as the
    agent role does, build its wheelhouse here on x86_64, install it offline in a venv there, run the agent."""
    import pythons
    import qemu

    from ansible_collections.baremetal.l2lb.plugins.module_utils import agent_platform

    payload = tmp_path / "payload"
    subprocess.run(["cp", "-RL", str(REPO / "files" / "l2lb_agent"), str(payload)], check=True)
    dest = tmp_path / "wheelhouse"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest / "agent"),
                    str(payload)], check=True, timeout=300)  # fmt: skip
    shutil.copy(REQUIREMENTS, dest / "requirements.txt")
    with qemu.aarch64_binfmt():
        root = qemu.arm64_rootfs()
        probe = pythons.nspawn(root, "python3", "-I", "-c", agent_platform.PYTHON_FACTS_SCRIPT)
        assert probe.returncode == 0, probe.stderr
        facts = json.loads(probe.stdout)
        assert facts["machine"] == "aarch64" and facts["libc"] == "glibc", facts
        key = agent_platform.key(facts)
        built = run({"dest": str(dest), "requirements": str(REQUIREMENTS), "platforms": [facts]})
        assert not built.get("failed"), built.get("msg")
        assert list(built["platforms"]) == [key] and key.startswith("cp311-aarch64-glibc2.")
        check = (
            "import glob, platform, l2lb_agent, kubernetes, pyroute2, yaml\n"
            "so = glob.glob(yaml.__path__[0] + '/_yaml*.so')[0]\n"
            "machine = int.from_bytes(open(so, 'rb').read(20)[18:20], 'little')\n"
            "print(platform.machine(), yaml.__with_libyaml__, hex(machine), kubernetes.__version__)\n"
        )
        pip = "/opt/l2lb/venv/bin/pip install --quiet --disable-pip-version-check --no-index"
        script = (
            "set -e; python3 -m venv /opt/l2lb/venv; "
            f"{pip} --find-links /deps -r /wheelhouse/requirements.txt; {pip} --no-deps /wheelhouse/agent/*.whl; "
            f'/opt/l2lb/venv/bin/python -c "{check}"; /opt/l2lb/venv/bin/l2lb-agent --help | head -1'
        )
        done = pythons.nspawn(root, "sh", "-c", script, binds=(f"{dest}:/wheelhouse", f"{dest / 'deps' / key}:/deps"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "aarch64 True 0xb7 35.0.0", done.stdout  # libyaml's C extension, built for AArch64
    assert lines[1].startswith("usage: l2lb-agent"), done.stdout
    print(f"{key}: {len(built['platforms'][key]['wheels'])} wheels installed and the agent ran under qemu-aarch64")
