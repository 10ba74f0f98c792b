"""Fixtures for the tests against the real control plane (``control_plane`` is in the parent conftest)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from cluster_waits import delete_namespace
from kubernetes import client

from controlplane import ControlPlane


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def _fresh_namespace(core: client.CoreV1Api) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace, deleted (the namespace controller empties it) after the test."""
    name = _fresh_namespace(core)
    yield name
    delete_namespace(core, name)


@pytest.fixture
def other_namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = _fresh_namespace(core)
    yield name
    delete_namespace(core, name)


@pytest.fixture
def client_for(control_plane: ControlPlane) -> Iterator[Callable[[str], client.ApiClient]]:
    """``client_for(user)``: a client with that test user's token, closed after the test."""
    made: list[client.ApiClient] = []

    def build(user: str) -> client.ApiClient:
        made.append(control_plane.api_client(control_plane.token(user)))
        return made[-1]

    yield build
    for api_client in made:
        api_client.close()
