"""Write the CRD manifests rendered by the model to roles/cluster/files/crds.yml (run by `make crds`)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "files" / "l2lb_agent"))

from l2lb_agent.model.render import crd_manifests  # noqa: E402

TARGET = REPO / "roles" / "cluster" / "files" / "crds.yml"
HEADER = "# Generated from plugins/module_utils/l2lb/render.py by `make crds`; do not edit.\n"


def render() -> str:
    return HEADER + yaml.safe_dump_all(crd_manifests(), sort_keys=False, explicit_start=True, width=200)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(REPO)}")
