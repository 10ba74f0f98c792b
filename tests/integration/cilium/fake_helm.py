"""A stand-in for the ``helm`` binary, for the cilium role's tests only (no helm is installed here).

It answers what kubernetes.core.helm and helm_info send - ``version``, ``list``, ``get values`` (and an
empty ``get manifest|notes|hooks``), ``show chart``, ``plugin list``, ``upgrade`` - from a JSON state file
(``FAKE_HELM_STATE``): one installed release with its user-supplied values. ``upgrade --reuse-values=True
-f=FILE`` merges FILE into them, as helm does. Every call is appended to the state's ``calls`` with its
namespace, so tests can assert what the role asked helm to do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["FAKE_HELM_STATE"])
    state = json.loads(state_path.read_text())
    state.setdefault("calls", []).append({"argv": argv, "namespace": os.environ.get("HELM_NAMESPACE", "")})
    release = state.get("release")
    words = [a for a in argv if not a.startswith("-")]
    out = ""
    if words[:1] == ["version"]:
        out = 'version.BuildInfo{Version:"v3.16.2", GitCommit:"fake", GitTreeState:"clean", GoVersion:"go1.22"}\n'
    elif words[:1] == ["list"]:
        out = json.dumps([{k: v for k, v in release.items() if k != "values"}] if release else []) + "\n"
    elif words[:2] == ["get", "values"]:
        out = json.dumps(release["values"]) + "\n" if release and release["values"] else "null\n"
    elif words[:2] in (["get", "manifest"], ["get", "notes"], ["get", "hooks"]):
        out = ""  # the release's rendered objects: none here, nothing the role reads
    elif words[:2] == ["show", "chart"]:
        version = next(a.split("=", 1)[1] for a in argv if a.startswith("--version="))
        out = json.dumps({"name": "cilium", "version": version, "appVersion": version}) + "\n"
    elif words[:2] == ["plugin", "list"]:
        out = "NAME\tVERSION\tDESCRIPTION\n"
    elif words[:1] == ["upgrade"]:
        values: dict[str, Any] = {}
        for arg in argv:
            if arg.startswith("-f="):
                values = yaml.safe_load(Path(arg[3:]).read_text()) or {}
        if "--reuse-values=True" in argv and release:
            values = _merge(release["values"], values)
        version = next(a.split("=", 1)[1] for a in argv if a.startswith("--version="))
        state["release"] = {
            **(release or {"name": words[1], "namespace": os.environ.get("HELM_NAMESPACE", "")}),
            "revision": str(int((release or {}).get("revision", "0")) + 1),
            "status": "deployed",
            "chart": f"cilium-{version}",
            "app_version": version,
            "values": values,
        }
        out = "Release has been upgraded. Happy Helming!\n"
    else:
        state_path.write_text(json.dumps(state))
        print(f"fake helm: unexpected command {argv}", file=sys.stderr)
        return 1
    state_path.write_text(json.dumps(state))
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
