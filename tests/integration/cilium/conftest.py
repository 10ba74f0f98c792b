"""Fixtures for the Cilium backend tests: a real control plane of this module's own with Cilium's CRDs,
and real ansible-playbook runs with a kubeconfig of the playbook user's (``PLAYBOOK_USER``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cilium_harness import FIXTURES, PlaybookRun, cluster, run_playbook, write_kubeconfig

from controlplane import ControlPlane


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One control plane per module: the Cilium CRDs and the objects a module creates stay in it."""
    with cluster(FIXTURES / "crds.yaml", tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def workdir(api: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cilium")
    write_kubeconfig(api, path / "playbook.kubeconfig")
    return path


@pytest.fixture
def playbook(workdir: Path) -> Callable[..., PlaybookRun]:
    """``playbook("playbooks/cilium.yml", {vars}, "--check")``, with l2lb_kubeconfig set to the control plane."""

    def run(
        path: str,
        host_vars: dict[str, Any],
        *extra: str,
        env: dict[str, str] | None = None,
        groups: tuple[str, ...] = (),
    ) -> PlaybookRun:
        kubeconfig = {"l2lb_kubeconfig": str(workdir / "playbook.kubeconfig")}
        return run_playbook(workdir, path, {**kubeconfig, **host_vars}, *extra, env=env, groups=groups)

    return run
