"""Fixtures shared by the integration tests: one real control plane per pytest session.

``control_plane`` lives here (not in ``realapi/``) so that ``realapi/`` and the API contract tests in
``contract/`` share the same session instance. Namespace helpers (settle, delete) are in
``cluster_waits.py`` next to this file.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane import ControlPlane

# Test users with static tokens; RBAC gives them nothing until a test binds a role. carol and dave are
# the contract tests' (their requests are counted in the audit log: no other test acts as them).
TEST_USERS = [
    ("alice", ["l2lb-testers"]),
    ("bob", ["l2lb-testers"]),
    ("carol", ["l2lb-testers"]),
    ("dave", ["l2lb-testers"]),
]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver v1.37.2 + kube-controller-manager, built by ``make components``."""
    with ControlPlane(users=TEST_USERS) as plane:
        yield plane
