"""Fixtures for the Cilium backend tests: the API stand-in with Cilium's CRDs, and real ansible-playbook runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cilium_harness import FIXTURES, NODES, PlaybookRun, install_crds, run_playbook

from k8s_standin import ApiServer


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    with ApiServer(nodes=NODES) as server:
        install_crds(server, FIXTURES / "crds.yaml")
        yield server


@pytest.fixture(scope="module")
def workdir(api: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cilium")
    api.write_kubeconfig(path / "admin.kubeconfig")
    return path


@pytest.fixture
def playbook(workdir: Path) -> Callable[..., PlaybookRun]:
    """``playbook("playbooks/cilium.yml", {vars}, "--check")``, with l2lb_kubeconfig set to the stand-in."""

    def run(
        path: str,
        host_vars: dict[str, Any],
        *extra: str,
        env: dict[str, str] | None = None,
        groups: tuple[str, ...] = (),
    ) -> PlaybookRun:
        kubeconfig = {"l2lb_kubeconfig": str(workdir / "admin.kubeconfig")}
        return run_playbook(workdir, path, {**kubeconfig, **host_vars}, *extra, env=env, groups=groups)

    return run
