"""Fixtures for the API stand-in's contract tests: a server per module and clients for it.

Each contract test that uses the ``standin`` fixture runs twice: against the stand-in (``[standin]``) and
against the real kube-apiserver of the session's ``control_plane`` (``[kube-apiserver]``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from contract_support import eventually
from kubernetes import client

from controlplane import ControlPlane
from k8s_standin import ApiServer

Server = ApiServer | ControlPlane


def make_client(server: Server, token: str | None = None) -> client.ApiClient:
    """An ApiClient for ``server`` authenticating with ``token`` (the admin token by default)."""
    configuration = client.Configuration(host=server.url)
    configuration.ssl_ca_cert = server.ca_file
    configuration.api_key = {"authorization": "Bearer " + (token or server.admin_token)}
    return client.ApiClient(configuration)


@pytest.fixture(scope="module", params=["standin", "kube-apiserver"])
def standin(request: pytest.FixtureRequest) -> Iterator[Server]:
    if request.param == "standin":
        with ApiServer(nodes=["node-a", "node-b"], bookmark_interval=0.5) as server:
            yield server
    else:
        plane: ControlPlane = request.getfixturevalue("control_plane")
        for node in ("node-a", "node-b"):  # the stand-in's pre-created nodes
            plane.add_node(node)
        yield plane


@pytest.fixture(scope="module")
def api(standin: Server) -> Iterator[client.ApiClient]:
    with make_client(standin) as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def namespace(standin: Server, api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    core = client.CoreV1Api(api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    # As the namespace's controllers leave it: a "default" ServiceAccount, and on kube-apiserver the
    # root-ca-cert-publisher's ConfigMap kube-root-ca.crt (tests filter ConfigMaps by their own labels).
    eventually(lambda: _service_accounts(core, name), f"the default ServiceAccount in {name}")
    if isinstance(standin, ControlPlane):
        eventually(lambda: _root_ca(core, name), f"ConfigMap kube-root-ca.crt in {name}")
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def _service_accounts(core: client.CoreV1Api, namespace: str) -> bool:
    return "default" in [sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items]


def _root_ca(core: client.CoreV1Api, namespace: str) -> bool:
    names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    return "kube-root-ca.crt" in names


@pytest.fixture
def connect() -> Iterator[Callable[..., client.ApiClient]]:
    """``connect(server, token=None)``: a client for any server and token, closed after the test."""
    made: list[client.ApiClient] = []

    def build(server: Server, token: str | None = None) -> client.ApiClient:
        made.append(make_client(server, token))
        return made[-1]

    yield build
    for api_client in made:
        api_client.close()


@pytest.fixture
def client_for(standin: Server, connect: Callable[..., client.ApiClient]) -> Callable[[str], client.ApiClient]:
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
