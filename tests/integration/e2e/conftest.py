"""Fixtures for the end-to-end tests: one lab per module (3 agent processes), reset between tests.

``e2e`` (module scope) builds the lab, the real control plane (etcd, kube-apiserver v1.37.2 and
kube-controller-manager from ``tests/controlplane.py``, in the lab's bridge namespace) and the agents
(see ``e2e_harness``); the autouse ``fresh`` fixture resets after every test (API serving, links up, no
iptables rules, test namespaces deleted and waited for until the namespace controller has removed them,
pools deleted, killed or reconfigured agents restarted, all healthy); ``ns`` gives each test its own,
never reused, Kubernetes namespace, so deleting it removes the test's Services and EndpointSlices.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The agent tests' helpers (Kube, eventually, ...) are reused, not copied.
_AGENT_TESTS = Path(__file__).resolve().parent.parent / "agent"
if str(_AGENT_TESTS) not in sys.path:
    sys.path.insert(0, str(_AGENT_TESTS))

from e2e_harness import E2E  # noqa: E402
from netns import require_netns  # noqa: E402


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    require_netns()
    workdir: Path = tmp_path_factory.mktemp("e2e")
    lab = E2E(workdir)
    try:
        lab.start()
        yield lab
    finally:
        lab.close()
        print(f"[e2e] agent logs kept in {workdir}")


@pytest.fixture(autouse=True)
def fresh(e2e: E2E) -> Iterator[None]:
    yield
    e2e.reset()


@pytest.fixture
def ns(e2e: E2E) -> str:
    return e2e.namespace()
