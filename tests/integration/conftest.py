"""Fixtures shared by the integration tests: one real control plane per pytest session.

``control_plane`` lives here (not in ``realapi/``) so that ``realapi/`` and the stand-in's contract tests
in ``standin/`` share the same session instance.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane import ControlPlane

# Test users with static tokens; RBAC gives them nothing until a test binds a role.
TEST_USERS = [("alice", ["l2lb-testers"]), ("bob", ["l2lb-testers"])]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver v1.37.2 + kube-controller-manager, built by ``make components``."""
    with ControlPlane(users=TEST_USERS) as plane:
        yield plane
