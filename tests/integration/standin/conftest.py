"""Fixtures for the API stand-in's contract tests: a server per module and clients for it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from k8s_standin import ApiServer


def make_client(server: ApiServer, token: str | None = None) -> client.ApiClient:
    """An ApiClient for ``server`` authenticating with ``token`` (the admin token by default)."""
    configuration = client.Configuration(host=server.url)
    configuration.ssl_ca_cert = server.ca_file
    configuration.api_key = {"authorization": "Bearer " + (token or server.admin_token)}
    return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def standin() -> Iterator[ApiServer]:
    with ApiServer(nodes=["node-a", "node-b"], bookmark_interval=0.5) as server:
        yield server


@pytest.fixture(scope="module")
def api(standin: ApiServer) -> Iterator[client.ApiClient]:
    with make_client(standin) as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    core = client.CoreV1Api(api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def connect() -> Iterator[Callable[..., client.ApiClient]]:
    """``connect(server, token=None)``: a client for any server and token, closed after the test."""
    made: list[client.ApiClient] = []

    def build(server: ApiServer, token: str | None = None) -> client.ApiClient:
        made.append(make_client(server, token))
        return made[-1]

    yield build
    for api_client in made:
        api_client.close()


@pytest.fixture
def client_for(standin: ApiServer, connect: Callable[..., client.ApiClient]) -> Callable[[str], client.ApiClient]:
    """A client for the module's server with another token."""
    return lambda token: connect(standin, token)


RawResponse = tuple[int, dict[str, str], Any]


def raw_request(
    api_client: client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
    token: str | None = None,
) -> RawResponse:
    """Send a request the typed client would refuse to build; return (status, headers, parsed body)."""
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = api_client.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=[] if token else ["BearerToken"],
    )
    response = api_client.call_api(*request)
    response.read()
    text = response.data.decode()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return response.status, dict(response.getheaders()), parsed


@pytest.fixture
def raw(api: client.ApiClient) -> Callable[..., RawResponse]:
    """``raw(method, path, body=None, query=None, content_type=..., token=None)`` against the module server."""
    return lambda *args, **kwargs: raw_request(api, *args, **kwargs)
