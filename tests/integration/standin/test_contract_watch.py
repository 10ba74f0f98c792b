"""Contract: watches through ``kubernetes.watch.Watch().stream`` behave as against kube-apiserver."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from contract_support import STANDIN_ONLY
from kubernetes import client, informer, watch

from k8s_standin import ApiServer


def test_live_events_added_modified_deleted(core: client.CoreV1Api, namespace: str) -> None:
    events: list[tuple[str, str, str]] = []
    started = threading.Event()

    def run() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            core.list_namespaced_config_map, namespace, label_selector="set=live", timeout_seconds=30
        ):
            started.set()
            events.append((event["type"], event["object"].metadata.name, event["object"].metadata.resource_version))
            if event["type"] == "DELETED":
                stream.stop()

    # Selected by label: a real server's kube-root-ca.crt is in every namespace's ConfigMaps.
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "pre", "labels": {"set": "live"}}})
    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(15), "the synthetic ADDED for the existing object never came"
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "live", "labels": {"set": "live"}}})
    patched = core.patch_namespaced_config_map("live", namespace, {"data": {"a": "1"}})
    core.delete_namespaced_config_map("live", namespace)
    thread.join(30)
    assert not thread.is_alive()
    assert [(kind, name) for kind, name, _ in events] == [
        ("ADDED", "pre"),
        ("ADDED", "live"),
        ("MODIFIED", "live"),
        ("DELETED", "live"),
    ]
    assert events[1][2] == created.metadata.resource_version
    assert events[2][2] == patched.metadata.resource_version
    assert int(events[3][2]) > int(patched.metadata.resource_version)


def test_watch_resumes_from_a_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}})
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})
    core.patch_namespaced_config_map("after", namespace, {"data": {"x": "y"}})
    core.delete_namespaced_config_map("before", namespace)
    stream = watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=1)
    assert list((e["type"], e["object"].metadata.name) for e in stream) == [
        ("ADDED", "after"),
        ("MODIFIED", "after"),
        ("DELETED", "before"),
    ]


def test_label_selector_watch_sees_objects_enter_and_leave(core: client.CoreV1Api, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm", "labels": {"app": "other"}}})
    core.patch_namespaced_config_map("cm", namespace, {"metadata": {"labels": {"app": "web"}}})
    core.patch_namespaced_config_map("cm", namespace, {"data": {"a": "1"}})
    core.patch_namespaced_config_map("cm", namespace, {"metadata": {"labels": {"app": "gone"}}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        label_selector="app=web",
        resource_version=start,
        timeout_seconds=1,
    )
    assert [e["type"] for e in stream] == ["ADDED", "MODIFIED", "DELETED"]


def test_field_selector_watch_on_one_object(api: client.ApiClient, namespace: str) -> None:
    leases = client.CoordinationV1Api(api)
    start = leases.list_namespaced_lease(namespace).metadata.resource_version
    for name in ("a", "b"):
        leases.create_namespaced_lease(namespace, {"metadata": {"name": name}, "spec": {"holderIdentity": name}})
    stream = watch.Watch().stream(
        leases.list_namespaced_lease,
        namespace,
        field_selector="metadata.name=b",
        resource_version=start,
        timeout_seconds=1,
    )
    assert [(e["type"], e["object"].metadata.name) for e in stream] == [("ADDED", "b")]


def test_too_old_resource_version_surfaces_as_410(connect: Callable[..., client.ApiClient]) -> None:
    with ApiServer(history_size=5) as small:
        core = client.CoreV1Api(connect(small))
        start = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(10):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
        # With timeout_seconds the client does not retry: the ERROR event becomes ApiException(410).
        with pytest.raises(client.ApiException) as caught:
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=2
                )
            )
        assert caught.value.status == 410
        assert "Expired: too old resource version" in caught.value.reason
        # Without it the client retries once from the same resourceVersion, then gives up the same way.
        with pytest.raises(client.ApiException) as caught:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=start):
                pass
        assert caught.value.status == 410
        # A fresh list gives a resourceVersion that can be watched from.
        fresh = core.list_namespaced_config_map("default").metadata.resource_version
        events = watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=fresh, timeout_seconds=1
        )
        assert list(events) == []


def test_bookmarks_carry_the_current_resource_version(
    standin: ApiServer, api: client.ApiClient, namespace: str
) -> None:
    """A watch with allowWatchBookmarks may get BOOKMARKs; each carries the current resourceVersion.

    When they come is the server's choice: the stand-in sends one every ``bookmark_interval`` (0.5 s for
    the module server), so one must arrive; kube-apiserver's watch cache sends them about once a minute
    and "shortly before" timeoutSeconds, and in practice often not at all within a short watch, so on it
    only the content of any that arrives is checked.
    """
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": f"elsewhere-{namespace}"}})
    stream = watch.Watch()
    bookmarks = []
    for event in stream.stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    ):
        if event["type"] == "BOOKMARK":
            bookmarks.append(event["raw_object"])
            stream.stop()
    core.delete_namespaced_config_map(f"elsewhere-{namespace}", "default")
    if isinstance(standin, ApiServer):
        assert bookmarks, "no BOOKMARK within 3 s (the module server sends one every 0.5 s)"
    for bookmark in bookmarks:
        assert bookmark["kind"] == "ConfigMap"
        assert int(bookmark["metadata"]["resourceVersion"]) > int(start)
    if bookmarks:
        assert stream.resource_version == bookmarks[0]["metadata"]["resourceVersion"]


def test_watch_ends_at_timeout_seconds(core: client.CoreV1Api, namespace: str) -> None:
    began = time.monotonic()
    assert list(watch.Watch().stream(core.list_namespaced_secret, namespace, timeout_seconds=1)) == []
    assert 0.9 <= time.monotonic() - began < 3


def test_watch_every_resource_kind(api: client.ApiClient, namespace: str) -> None:
    """Each kind the project watches streams typed objects through Watch().stream."""
    core = client.CoreV1Api(api)
    leases = client.CoordinationV1Api(api)
    slices = client.DiscoveryV1Api(api)
    listers: list[tuple[Callable[..., Any], tuple[Any, ...], str]] = [
        (core.list_service_for_all_namespaces, (), "V1Service"),
        (core.list_node, (), "V1Node"),
        (leases.list_namespaced_lease, (namespace,), "V1Lease"),
        (slices.list_namespaced_endpoint_slice, (namespace,), "V1EndpointSlice"),
        (core.list_namespaced_event, (namespace,), "CoreV1Event"),
    ]
    core.create_namespaced_service(namespace, {"metadata": {"name": "w"}, "spec": {"ports": [{"port": 80}]}})
    leases.create_namespaced_lease(namespace, {"metadata": {"name": "w"}, "spec": {"holderIdentity": "x"}})
    slices.create_namespaced_endpoint_slice(
        namespace, {"metadata": {"name": "w"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.1.1"]}]}
    )
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "w.1"},
            "involvedObject": {"kind": "Service", "name": "w", "namespace": namespace},
            "reason": "R",
        },
    )
    for lister, args, model in listers:
        first = next(iter(watch.Watch().stream(lister, *args, timeout_seconds=10)))
        assert first["type"] == "ADDED"
        assert type(first["object"]).__name__ == model


def test_many_clients_with_many_watches_do_not_stall(
    standin: ApiServer, connect: Callable[..., client.ApiClient], namespace: str
) -> None:
    clients = [client.CoreV1Api(connect(standin)) for _ in range(30)]
    start = clients[0].list_namespaced_config_map(namespace).metadata.resource_version
    received: list[str] = []
    lock = threading.Lock()

    def watch_one(core: client.CoreV1Api) -> None:
        stream = watch.Watch()
        for event in stream.stream(
            core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=15
        ):
            with lock:
                received.append(event["object"].metadata.name)
            stream.stop()

    threads = [threading.Thread(target=watch_one, args=(core,)) for core in clients for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    began = time.monotonic()
    clients[0].create_namespaced_config_map(namespace, {"metadata": {"name": "fanout"}})
    for thread in threads:
        thread.join(15)
    assert len(received) == 150
    assert set(received) == {"fanout"}
    assert time.monotonic() - began < 10


def test_shared_informer_keeps_a_cache(core: client.CoreV1Api, namespace: str) -> None:
    labelled = {"labels": {"set": "informer"}}  # a real server's kube-root-ca.crt stays out of the cache
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before", **labelled}})
    seen: list[tuple[str, str]] = []
    changed = threading.Event()

    def record(kind: str) -> Callable[[Any], None]:
        def handler(obj: Any) -> None:
            seen.append((kind, obj.metadata.name))
            changed.set()

        return handler

    shared = informer.SharedInformer(
        core.list_namespaced_config_map, namespace=namespace, label_selector="set=informer"
    )
    for kind in (informer.ADDED, informer.MODIFIED, informer.DELETED):
        shared.add_event_handler(kind, record(kind))
    shared.start()
    try:
        deadline = time.monotonic() + 15
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "during", **labelled}})
        core.patch_namespaced_config_map("during", namespace, {"data": {"a": "1"}})
        core.delete_namespaced_config_map("before", namespace)
        while len(seen) < 4 and time.monotonic() < deadline:
            changed.wait(0.1)
            changed.clear()
        assert seen == [("ADDED", "before"), ("ADDED", "during"), ("MODIFIED", "during"), ("DELETED", "before")]
        assert [obj.metadata.name for obj in shared.cache.list()] == ["during"]
    finally:
        shared.stop()


@STANDIN_ONLY
def test_stall_watches_keeps_the_connection_but_sends_nothing(
    standin: ApiServer, api: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    """Failure injection, not kube-apiserver behaviour: what a half-open connection looks like to a client."""
    seen: list[str] = []
    opened = threading.Event()
    response = core.list_namespaced_config_map(namespace, watch=True, _preload_content=False, timeout_seconds=30)

    def read() -> None:
        opened.set()
        with contextlib.suppress(Exception):  # the shutdown at the end breaks the stream
            for chunk in response.stream(amt=None, decode_content=False):
                seen.append(chunk.decode())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(2)
    time.sleep(0.2)
    # Over HTTP with the admin token, as a test outside the process would ask.
    answer = api.call_api(
        "POST",
        f"{standin.url}/_standin/stall-watches?resource=configmaps",
        header_params={"Authorization": f"Bearer {standin.admin_token}"},
    )
    answer.read()
    assert answer.status == 200 and b'"stalled": 1' in answer.data.replace(b'":1', b'": 1'), answer.data
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "unsent"}})
    time.sleep(0.5)
    assert reader.is_alive() and not any("unsent" in chunk for chunk in seen), seen
    fresh = watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=1)
    assert [e["object"].metadata.name for e in fresh] == ["unsent"], "a new watch is served normally"
    # close() would block on the TLS lock the reader holds: shut the socket down to end the read.
    socket.socket.shutdown(response.connection.sock, socket.SHUT_RDWR)
    reader.join(2)
    assert not reader.is_alive()
    response.close()
