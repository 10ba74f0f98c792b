"""Contract: what kube-apiserver's watches do, as ``kubernetes.watch.Watch().stream`` and informers see them."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, informer, watch

from controlplane import ControlPlane
from stallproxy import StallProxy


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

    # Selected by label: kube-root-ca.crt is in every namespace's ConfigMaps.
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
    """A watch cache begins at the resourceVersion of its first list: after a kube-apiserver restart a watch
    from any older resourceVersion gets 410 Gone, whether or not etcd compacted it. (On a cluster whose
    caches started with etcd, ``"1"`` is not too old: the cache still holds every event since.)"""
    with ControlPlane() as plane:  # its own: this test restarts kube-apiserver
        core = client.CoreV1Api(connect(plane))
        start = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", {"metadata": {"name": "before-restart"}})
        plane.restart_apiserver()
        # With timeout_seconds the client does not retry: the ERROR event becomes ApiException(410).
        with pytest.raises(client.ApiException) as caught:
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=2
                )
            )
        assert caught.value.status == 410
        assert caught.value.reason.startswith(f"Expired: too old resource version: {start} (")
        # Without it the client retries once from the same resourceVersion, then gives up the same way.
        with pytest.raises(client.ApiException) as caught:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=start):
                pass
        assert caught.value.status == 410
        # A fresh list gives a resourceVersion that can be watched from.
        fresh = core.list_namespaced_config_map("default").metadata.resource_version
        assert int(fresh) > int(start)
        events = watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=fresh, timeout_seconds=1
        )
        assert list(events) == []


def test_bookmarks_carry_the_current_resource_version(api: client.ApiClient, namespace: str) -> None:
    """A watch with allowWatchBookmarks gets BOOKMARKs carrying the current resourceVersion.

    kube-apiserver's watch cache sends one about once a minute and 2 s before the watch's timeoutSeconds,
    provided the resource's resourceVersion has moved past the last event the watcher got: here another
    namespace's ConfigMap changes while the watch is idle, so one must arrive within a 5 s watch.
    """
    core = client.CoreV1Api(api)
    elsewhere = f"elsewhere-{namespace}"
    core.create_namespaced_config_map("default", {"metadata": {"name": elsewhere}})
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    done = threading.Event()
    versions: list[int] = []

    def change_elsewhere() -> None:
        while not done.wait(0.5):
            patched = core.patch_namespaced_config_map(elsewhere, "default", {"data": {"at": str(time.monotonic())}})
            versions.append(int(patched.metadata.resource_version))

    changer = threading.Thread(target=change_elsewhere)
    changer.start()
    stream = watch.Watch()
    bookmarks = []
    began = time.monotonic()
    try:
        for event in stream.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=start,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
        ):
            assert event["type"] == "BOOKMARK", event  # nothing changes in the namespace itself
            bookmarks.append(event["raw_object"])
            stream.stop()
    finally:
        done.set()
        changer.join(10)
        core.delete_namespaced_config_map(elsewhere, "default")
    assert bookmarks, "no BOOKMARK within a 5 s watch"
    assert time.monotonic() - began < 5
    bookmark = bookmarks[0]
    assert (bookmark["kind"], bookmark["apiVersion"]) == ("ConfigMap", "v1")
    # Past the watch's start (the changes elsewhere) and not past now.
    now = core.list_namespaced_config_map(namespace).metadata.resource_version
    assert int(start) < int(bookmark["metadata"]["resourceVersion"]) <= int(now)
    assert versions, "the ConfigMap elsewhere never changed"
    # The client resumes from a bookmark's resourceVersion.
    assert stream.resource_version == bookmark["metadata"]["resourceVersion"]


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
    server: ControlPlane, connect: Callable[..., client.ApiClient], namespace: str
) -> None:
    clients = [client.CoreV1Api(connect(server)) for _ in range(30)]
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
    labelled = {"labels": {"set": "informer"}}  # kube-root-ca.crt stays out of the cache
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


def test_stall_proxy_keeps_a_watch_open_and_silent(
    server: ControlPlane, core: client.CoreV1Api, namespace: str
) -> None:
    """Failure injection, not kube-apiserver behaviour: what a half-open watch connection looks like to a
    client, made by :class:`StallProxy` (tests/stallproxy.py) in front of kube-apiserver."""
    labelled = {"labels": {"set": "stall"}}  # kube-root-ca.crt stays out of the watches
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before", **labelled}})
    proxy = StallProxy((server.host, server.port), server.state_dir / "pki")
    configuration = client.Configuration(host=proxy.url)
    configuration.ssl_ca_cert = server.ca_file  # the proxy's certificate is issued by the cluster's CA
    configuration.api_key = {"authorization": "Bearer " + server.admin_token}
    configuration.retries = 0  # a request the proxy silences must fail, not be retried on a new connection
    proxied_api = client.ApiClient(configuration)
    proxied = client.CoreV1Api(proxied_api)
    chunks: list[str] = []
    arrived = threading.Event()

    def read(response: Any) -> None:
        with contextlib.suppress(Exception):  # the proxy's close() at the end breaks the stream
            for chunk in response.stream(amt=None, decode_content=False):
                chunks.append(chunk.decode())
                arrived.set()

    reader: threading.Thread | None = None
    try:
        response = proxied.list_namespaced_config_map(
            namespace, label_selector="set=stall", watch=True, _preload_content=False, timeout_seconds=60
        )
        reader = threading.Thread(target=read, args=(response,), daemon=True)
        reader.start()
        assert arrived.wait(10), "the watch through the proxy delivered nothing before the stall"
        assert '"name":"before"' in "".join(chunks)
        assert proxy.stall_watches("services") == 0
        assert proxy.stall_watches("configmaps") == 1
        assert proxy.stall_watches("configmaps") == 0, "an already stalled watch is not stalled again"
        delivered = len(chunks)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "unsent", **labelled}})
        time.sleep(1)
        assert reader.is_alive(), "the stalled watch's connection must stay open"
        assert len(chunks) == delivered, chunks[delivered:]
        # A new watch through the proxy is served normally (its connection returns to the pool at the end).
        fresh = watch.Watch().stream(
            proxied.list_namespaced_config_map, namespace, label_selector="set=stall", timeout_seconds=1
        )
        assert [(e["type"], e["object"].metadata.name) for e in fresh] == [("ADDED", "before"), ("ADDED", "unsent")]
        # An ended watch is not stalled (its connection, back in the pool, carries the next request)...
        assert proxy.stall_watches() == 0
        # ...which is relayed, with or without a body.
        assert proxied.read_namespaced_config_map("unsent", namespace, _request_timeout=5).metadata.name == "unsent"
        created = proxied.create_namespaced_config_map(
            namespace, {"metadata": {"name": "via-proxy", **labelled}, "data": {"a": "1"}}, _request_timeout=5
        )
        assert created.data == {"a": "1"}
        assert core.read_namespaced_config_map("via-proxy", namespace).metadata.uid == created.metadata.uid
        assert reader.is_alive() and len(chunks) == delivered
    finally:
        proxy.close()
        proxied_api.close()
    assert reader is not None
    reader.join(5)
    assert not reader.is_alive(), "close() ends the stalled connection"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=5).close()
