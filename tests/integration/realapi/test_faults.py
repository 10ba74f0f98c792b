"""The fault helpers of :class:`ControlPlane`: restart kube-apiserver, restart etcd, compact etcd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, watch

from controlplane import ControlPlane


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """Its own control plane: these tests restart components."""
    with ControlPlane() as own:
        yield own


def test_restart_apiserver_keeps_state_and_credentials(plane: ControlPlane) -> None:
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        created = core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}})
        before = plane.pids()["kube-apiserver"]
        plane.restart_apiserver()
        assert plane.pids()["kube-apiserver"] != before
        kept = core.read_namespaced_config_map("kept", "default")
        assert kept.metadata.uid == created.metadata.uid


def test_restart_etcd_keeps_data(plane: ControlPlane) -> None:
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map("default", {"metadata": {"name": "durable"}})
        plane.restart_etcd()
        assert core.read_namespaced_config_map("durable", "default").metadata.name == "durable"


def test_compaction_makes_old_watches_410(plane: ControlPlane) -> None:
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        start = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(3):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        revision = plane.compact_etcd()
        assert revision > int(start)
        # The watch cache may still serve the old resourceVersion for a moment; a restart drops it.
        plane.restart_apiserver()
        with pytest.raises(client.ApiException) as caught:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=5
            ):
                pass
        assert caught.value.status == 410
