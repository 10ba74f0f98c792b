"""Fixtures of the lab tests: one converged lab for the modules that break and mend it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from converged_lab import Converged
from lab_harness import lab_up


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_lab_infra.py brings up and takes down a lab of its own, and the lab's names are global: it must run
    before any module that uses the package's converged lab (which stays up until the package ends)."""
    here = Path(__file__).parent
    mine = [index for index, item in enumerate(items) if item.path.parent == here]
    if not mine:
        return
    start, end = mine[0], mine[-1] + 1  # this package's items are contiguous in the session
    block = items[start:end]
    # test_arm64_node.py last: it joins an emulated node (CPU-heavy on 2 cores) and nothing after it should meet
    # what it leaves in the API. Stable sort: the rest keep their order.
    order = {"test_lab_infra.py": 0, "test_arm64_node.py": 2}
    block.sort(key=lambda item: order.get(item.path.name, 1))
    items[start:end] = block


@pytest.fixture(scope="package")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converged]:
    """The lab as `make lab` leaves it: site.yml and the demo Services applied, every Service served."""
    base = tmp_path_factory.mktemp("converged")
    with lab_up(base) as running:
        for playbook in ("site.yml", "tests/lab/demo_services.yml"):
            started = time.monotonic()
            proc = running.playbook(playbook)
            assert proc.returncode == 0, f"{playbook} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
            print(f"{playbook} took {time.monotonic() - started:.1f}s")
        lab_ = Converged(running, base)
        try:
            lab_.wait_serving()
            yield lab_
        finally:
            lab_.api.close()


@pytest.fixture
def lab_(converged: Converged) -> Iterator[Converged]:
    """Every scenario starts from a serving lab and must leave one behind."""
    converged.wait_serving()
    yield converged
    converged.wait_serving()
