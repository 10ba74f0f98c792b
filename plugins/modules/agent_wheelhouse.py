#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the agent's dependency wheels for each node platform, downloaded on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent_wheelhouse
short_description: Download the agent's pinned dependency wheels for each node platform, not the controller's
version_added: "0.2.0"
description:
  - Runs on the controller (C(delegate_to: localhost)). For each distinct node platform (CPython version, CPU,
    C library; as M(baremetal.l2lb.node_preflight_info) reports it in C(node.python)) downloads the wheels of
    O(requirements) with the controller's pip, selected for that platform (C(--platform), C(--python-version),
    C(--implementation cp), C(--abi), C(--only-binary=:all:)), into C(deps/<key>) under O(dest).
  - Every downloaded wheel's tags are checked against the platform; a wheel the node could not install, or a
    project that is not pinned in O(requirements), fails the task and leaves the previous download in place.
  - A platform is downloaded once per content of O(requirements) (a marker file records it), so re-runs download
    nothing. For each platform a manifest C(manifests/<key>.sha256) lists the checksums of what a node of that
    platform receives (the agent wheels in C(agent/), C(requirements.txt), its C(deps/<key>/) wheels); it is
    rewritten only when a checksum changes.
author:
  - baremetal.l2lb contributors
attributes:
  check_mode:
    support: full
    description: Reports which platforms would be downloaded; downloads and writes nothing.
  diff_mode:
    support: none
options:
  dest:
    description: The wheelhouse on the controller. C(agent/) and C(requirements.txt) in it are shipped as they are.
    type: path
    required: true
  requirements:
    description: The pinned requirements (the whole closure, one C(name==version) per line).
    type: path
    required: true
  platforms:
    description: The node platforms, as C(node.python) of M(baremetal.l2lb.node_preflight_info); duplicates are fine.
    type: list
    elements: dict
    required: true
  python:
    description: The Python whose pip downloads (any version; it only fetches).
    type: str
    default: the Python running this module
  index_url:
    description: A package index to use instead of pip's configured one.
    type: str
"""

EXAMPLES = r"""
- name: Wheels for every node's python3, CPU and libc
  baremetal.l2lb.agent_wheelhouse:
    dest: ~/.cache/baremetal.l2lb/wheelhouse
    requirements: "{{ role_path }}/../../files/l2lb_agent/requirements.txt"
    platforms: "{{ ansible_play_hosts | map('extract', hostvars, ['agent_node', 'python']) | list }}"
    python: "{{ ansible_playbook_python }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
platforms:
  description: Per platform key, its directory, manifest, wheels, size and which wheels carry machine code.
  returned: always
  type: dict
  sample: {cp311-x86_64-glibc2.36: {deps_dir: /root/.cache/baremetal.l2lb/wheelhouse/deps/cp311-x86_64-glibc2.36,
           manifest: /root/.cache/baremetal.l2lb/wheelhouse/manifests/cp311-x86_64-glibc2.36.sha256,
           wheels: [PyYAML-6.0.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl],
           compiled: [PyYAML-6.0.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl],
           size_bytes: 4700000, downloaded: false}}
"""

import glob
import hashlib
import os
import re
import shutil
import sys
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils import agent_platform

_REQUIREMENT_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(requirements: str) -> dict[str, str]:
    """name -> version of every ``name==version`` line."""
    found = {}
    for line in requirements.splitlines():
        match = _REQUIREMENT_RE.match(line)
        if match:
            found[normalize(match.group(1))] = match.group(2)
    return found


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wheels(directory: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".whl")) if os.path.isdir(directory) else []


def check_download(directory: str, facts: dict, pins: dict[str, str]) -> list[str]:
    """What is wrong with a download for ``facts`` (empty when every wheel fits and every project is pinned)."""
    from packaging.utils import parse_wheel_filename

    problems = [
        f"{name} does not install on {agent_platform.key(facts)}"
        for name in agent_platform.foreign_wheels(wheels(directory), facts)
    ]
    for name in wheels(directory):
        project, version, _, _ = parse_wheel_filename(name)
        wanted = pins.get(normalize(str(project)))
        if wanted is None:
            problems.append(f"{name}: {project} is not pinned in the requirements (add {project}=={version})")
        elif str(version) != wanted:
            problems.append(f"{name}: the requirements pin {project}=={wanted}")
    missing = sorted(set(pins) - {normalize(str(parse_wheel_filename(n)[0])) for n in wheels(directory)})
    problems += [f"no wheel of {name}=={pins[name]} was downloaded" for name in missing]
    return problems


def write_manifest(dest: str, key: str, deps_dir: str) -> bool:
    """Write manifests/<key>.sha256 (paths as on the node); True when its content changed."""
    lines = []
    for name in wheels(os.path.join(dest, "agent")):
        lines.append(f"{sha256(os.path.join(dest, 'agent', name))}  agent/{name}")
    lines.append(f"{sha256(os.path.join(dest, 'requirements.txt'))}  requirements.txt")
    for name in wheels(deps_dir):
        lines.append(f"{sha256(os.path.join(deps_dir, name))}  deps/{name}")
    text = "\n".join(lines) + "\n"
    path = os.path.join(dest, "manifests", f"{key}.sha256")
    try:
        with open(path) as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".new", "w") as handle:
        handle.write(text)
    os.replace(path + ".new", path)
    return True


def download(module: AnsibleModule, python: str, facts: dict, deps_dir: str, pins: dict[str, str]) -> str:
    """Download into a scratch directory, check it, then put it in place of ``deps_dir``; an error or ''."""
    parent = os.path.dirname(deps_dir)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".download-", dir=parent)
    try:
        cmd = [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        cmd += [*agent_platform.pip_download_args(facts), "--dest", scratch, "-r", module.params["requirements"]]
        if module.params["index_url"]:
            cmd += ["--index-url", module.params["index_url"]]
        rc, _, err = module.run_command(cmd)
        if rc != 0:
            shown = " ".join(re.sub(r"//[^/@\s]+@", "//***@", part) for part in cmd)  # no index credentials
            return f"pip could not download the wheels ({shown}): {err.strip()[-2000:]}"
        problems = check_download(scratch, facts, pins)
        if problems:
            return "the download is wrong: " + "; ".join(problems)
        shutil.rmtree(deps_dir, ignore_errors=True)
        os.replace(scratch, deps_dir)
        return ""
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "requirements": {"type": "path", "required": True},
            "platforms": {"type": "list", "elements": "dict", "required": True},
            "python": {"type": "str"},
            "index_url": {"type": "str"},
        },
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    python = module.params["python"] or sys.executable
    try:
        with open(module.params["requirements"]) as handle:
            requirements = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"agent_wheelhouse: cannot read requirements {module.params['requirements']}: {exc}")
        return
    pins = pinned(requirements)
    # Validate every platform first: nothing is downloaded while another node cannot be served at all.
    chosen: dict[str, dict] = {}
    refused = []
    for facts in module.params["platforms"]:
        problems = agent_platform.problems(facts)
        if problems:
            refused.append(f"python3 {facts.get('version', '?')}: " + "; ".join(problems))
        else:
            chosen.setdefault(agent_platform.key(facts), facts)
    if refused:
        module.fail_json(msg="agent_wheelhouse: no wheels can serve these node platforms: " + " | ".join(refused))
        return
    marker = ".complete-" + hashlib.sha1(requirements.encode()).hexdigest()
    result: dict[str, dict] = {}
    changed = False
    for key, facts in sorted(chosen.items()):
        deps_dir = os.path.join(dest, "deps", key)
        done = os.path.join(dest, "deps", f".{key}{marker}")  # beside the directory: never shipped
        downloaded = not (os.path.exists(done) and os.path.isdir(deps_dir))
        if downloaded:
            changed = True
            if not module.check_mode:
                # Markers of other requirements (A -> B -> A) no longer describe deps_dir once it is replaced.
                for stale in glob.glob(os.path.join(dest, "deps", f".{key}.complete-*")):
                    os.unlink(stale)
                error = download(module, python, facts, deps_dir, pins)
                if error:
                    module.fail_json(msg=f"agent_wheelhouse: {key}: {error}")
                    return
                open(done, "w").close()
        names = wheels(deps_dir)
        if not module.check_mode:
            write_manifest(dest, key, deps_dir)
        result[key] = {
            "deps_dir": deps_dir,
            "manifest": os.path.join(dest, "manifests", f"{key}.sha256"),
            "wheels": names,
            "compiled": [name for name in names if agent_platform.compiled(name)],
            "size_bytes": sum(os.path.getsize(os.path.join(deps_dir, name)) for name in names),
            "downloaded": downloaded,
        }
    module.exit_json(changed=changed, platforms=result)


if __name__ == "__main__":
    main()
