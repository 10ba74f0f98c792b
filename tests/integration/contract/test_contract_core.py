"""Contract: what the project relies on kube-apiserver's core/v1, discovery.k8s.io and events APIs doing."""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from contract_support import eventually
from kubernetes import client

from controlplane import ControlPlane


def status_of(exc: client.ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def raw_get(server: ControlPlane, path: str, token: str | None) -> tuple[int, dict[str, Any] | str]:
    context = ssl.create_default_context(cafile=server.ca_file)
    request = urllib.request.Request(server.url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            text = response.read().decode()
            code = response.status
    except urllib.error.HTTPError as exc:
        text, code = exc.read().decode(), exc.code
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def lb_service(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]}
    body.update(spec)
    return {"metadata": {"name": name}, "spec": body}


# --- authentication ---------------------------------------------------------------------------------


def test_no_token_is_anonymous_and_forbidden_a_wrong_token_is_401(
    server: ControlPlane, client_for: Callable[[str], client.ApiClient]
) -> None:
    # Without a token a request is system:anonymous (--anonymous-auth=true, the default), which RBAC
    # allows only the public-info paths (see test_health_and_version_need_no_token).
    code, body = raw_get(server, "/api/v1/namespaces", None)
    assert code == 403
    assert isinstance(body, dict)
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Forbidden", 403)
    assert body["message"] == (
        'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" '
        "at the cluster scope"
    )
    code, body = raw_get(server, "/apis", None)
    assert code == 403
    assert isinstance(body, dict)
    assert body["message"] == 'forbidden: User "system:anonymous" cannot get path "/apis"'

    # A token that is sent and not valid is 401.
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(client_for("not-a-token")).list_namespace()
    assert caught.value.status == 401
    assert status_of(caught.value)["reason"] == "Unauthorized"


def test_health_and_version_need_no_token(server: ControlPlane) -> None:
    assert raw_get(server, "/healthz", None) == (200, "ok")
    code, version = raw_get(server, "/version", None)
    assert code == 200
    assert isinstance(version, dict)
    assert version["major"] == "1"
    assert version["gitVersion"].startswith("v1.")


# --- namespaces -------------------------------------------------------------------------------------


def _status_of_call(call: Callable[[], Any]) -> int:
    try:
        call()
    except client.ApiException as exc:
        return int(exc.status)
    return 200


def test_namespace_lifecycle(core: client.CoreV1Api) -> None:
    name = f"lifecycle-{uuid.uuid4().hex[:6]}"
    created = core.create_namespace({"metadata": {"name": name}})
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == name
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert name in [ns.metadata.name for ns in core.list_namespace().items]
    # The serviceaccount controller's "default" account appears with the namespace (asynchronously).
    eventually(
        lambda: _status_of_call(lambda: core.read_namespaced_service_account("default", name)) == 200,
        "the default ServiceAccount",
    )

    core.create_namespaced_config_map(name, {"metadata": {"name": "inside"}})
    deleted = core.delete_namespace(name)
    assert deleted["status"]["phase"] == "Terminating"

    # The namespace controller empties the namespace, then removes it: that takes seconds, and until
    # then the namespace reads as Terminating.
    def gone_or_terminating() -> bool | None:
        try:
            phase = core.read_namespace(name).status.phase
        except client.ApiException as exc:
            assert exc.status == 404
            return True
        assert phase == "Terminating"
        return None

    eventually(gone_or_terminating, f"namespace {name} deleted", timeout=60)
    assert _status_of_call(lambda: core.read_namespaced_config_map("inside", name)) == 404


def test_create_in_missing_namespace_is_404_naming_the_namespace(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    body = status_of(caught.value)
    assert caught.value.status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'namespaces "no-such-ns" not found'


# --- errors: 404, 409 -------------------------------------------------------------------------------


def test_get_missing_object_is_404_with_the_real_message(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_service("web", namespace)
    body = status_of(caught.value)
    assert caught.value.status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'services "web" not found'
    assert body["details"] == {"name": "web", "kind": "services"}


def test_create_existing_name_is_409_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_service(namespace, lb_service("web"))
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_service(namespace, lb_service("web"))
    body = status_of(caught.value)
    assert caught.value.status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'services "web" already exists'


def test_replace_with_stale_resource_version_is_409_conflict(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    first = core.read_namespaced_config_map("cfg", namespace)
    second = core.read_namespaced_config_map("cfg", namespace)
    first.data = {"a": "2"}
    updated = core.replace_namespaced_config_map("cfg", namespace, first)
    assert int(updated.metadata.resource_version) > int(second.metadata.resource_version)

    second.data = {"a": "3"}
    with pytest.raises(client.ApiException) as caught:
        core.replace_namespaced_config_map("cfg", namespace, second)
    body = status_of(caught.value)
    assert caught.value.status == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "cfg": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    # Without a resourceVersion the update is unconditional, as for most built-in kinds.
    second.metadata.resource_version = None
    assert core.replace_namespaced_config_map("cfg", namespace, second).data == {"a": "3"}


def test_update_without_changes_keeps_the_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "same"}, "data": {"a": "1"}})
    again = core.replace_namespaced_config_map("same", namespace, created)
    assert again.metadata.resource_version == created.metadata.resource_version
    patched = core.patch_namespaced_config_map("same", namespace, {"data": {"a": "1"}})
    assert patched.metadata.resource_version == created.metadata.resource_version


# --- services ---------------------------------------------------------------------------------------


def test_service_gets_defaults_and_allocations(core: client.CoreV1Api, namespace: str) -> None:
    first = core.create_namespaced_service(namespace, lb_service("one"))
    second = core.create_namespaced_service(namespace, lb_service("two"))
    for svc in (first, second):
        assert ipaddress.ip_address(svc.spec.cluster_ip) in ipaddress.ip_network("198.18.240.0/20")
        assert svc.spec.cluster_ips == [svc.spec.cluster_ip]
        assert svc.spec.external_traffic_policy == "Cluster"
        assert svc.spec.ports[0].protocol == "TCP"
        assert svc.spec.ports[0].target_port == 80
        assert 30000 <= svc.spec.ports[0].node_port <= 32767
        assert svc.status.load_balancer.ingress is None
    assert first.spec.cluster_ip != second.spec.cluster_ip
    assert first.spec.ports[0].node_port != second.spec.ports[0].node_port
    # Replacing with a spec that omits the allocated values keeps them (patchAllocatedValues).
    body = lb_service("one")
    body["metadata"]["resourceVersion"] = first.metadata.resource_version
    replaced = core.replace_namespaced_service("one", namespace, body)
    assert replaced.spec.cluster_ip == first.spec.cluster_ip
    assert replaced.spec.ports[0].node_port == first.spec.ports[0].node_port


def test_service_validation_reports_field_paths(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_service(
            namespace, {"metadata": {"name": "bad"}, "spec": {"ports": [{"port": 0, "targetPort": 80}]}}
        )
    body = status_of(caught.value)
    assert caught.value.status == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Service "bad" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive'
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: must be between 1 and 65535, inclusive",
            "field": "spec.ports[0].port",
        }
    ]
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": "cls"},
                "spec": {"type": "ClusterIP", "loadBalancerClass": "l2lb.io/l2-announcer", "ports": [{"port": 80}]},
            },
        )
    assert caught.value.status == 422
    assert (
        "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"
        in (status_of(caught.value)["message"])
    )


def test_status_subresource_semantics(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_service(namespace, lb_service("web", loadBalancerClass="l2lb.io/l2-announcer"))
    # The main endpoint ignores status changes...
    ignored = core.patch_namespaced_service(
        "web", namespace, {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}}
    )
    assert ignored.status.load_balancer.ingress is None
    # ...the status endpoint changes status (ipMode is defaulted for LoadBalancer services)...
    updated = core.patch_namespaced_service_status(
        "web", namespace, {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}}
    )
    assert [(i.ip, i.ip_mode) for i in updated.status.load_balancer.ingress] == [("198.18.100.1", "VIP")]
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    # ...and only status.
    unchanged = core.patch_namespaced_service_status("web", namespace, {"spec": {"type": "ClusterIP"}})
    assert unchanged.spec.type == "LoadBalancer"
    assert unchanged.metadata.resource_version == updated.metadata.resource_version
    # Read-modify-write of the whole object through /status, as controllers do.
    current = core.read_namespaced_service_status("web", namespace)
    current.status.load_balancer.ingress = []
    cleared = core.replace_namespaced_service_status("web", namespace, current)
    assert not cleared.status.load_balancer.ingress
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_service_status(
            "web", namespace, {"status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}}
        )
    assert caught.value.status == 422
    assert 'status.loadBalancer.ingress[0].ip: Invalid value: "not-an-ip"' in status_of(caught.value)["message"]
    # Spec changes leave status alone; the class cannot change once set.
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_service("web", namespace, {"spec": {"loadBalancerClass": "other.io/x"}})
    assert (
        'spec.loadBalancerClass: Invalid value: "other.io/x": may not change once set'
        in (status_of(caught.value)["message"])
    )


def test_merge_and_strategic_merge_patch(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web", "annotations": {"keep": "1", "drop": "1"}},
            "spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
        },
    )
    # Strategic merge: ports merge by "port", so this adds one and changes another in place.
    patched = core.patch_namespaced_service(
        "web",
        namespace,
        {"spec": {"ports": [{"name": "alt", "port": 8080}, {"port": 443, "targetPort": 8443}]}},
    )
    assert sorted((p.port, p.target_port) for p in patched.spec.ports) == [(80, 80), (443, 8443), (8080, 8080)]
    # $patch: delete removes one element by its merge key.
    patched = core.patch_namespaced_service("web", namespace, {"spec": {"ports": [{"$patch": "delete", "port": 80}]}})
    assert sorted(p.port for p in patched.spec.ports) == [443, 8080]
    # JSON merge patch replaces lists and deletes keys set to null.
    merged = core.patch_namespaced_service(
        "web",
        namespace,
        {"metadata": {"annotations": {"drop": None}}, "spec": {"ports": [{"name": "only", "port": 9090}]}},
        _content_type="application/merge-patch+json",
    )
    assert [p.port for p in merged.spec.ports] == [9090]
    assert merged.metadata.annotations == {"keep": "1"}
    # Conditions in status merge by "type".
    core.patch_namespaced_service_status(
        "web",
        namespace,
        {"status": {"conditions": [_condition("A", "True"), _condition("B", "False")]}},
    )
    after = core.patch_namespaced_service_status(
        "web", namespace, {"status": {"conditions": [_condition("B", "True")]}}
    )
    assert sorted((c.type, c.status) for c in after.status.conditions) == [("A", "True"), ("B", "True")]


def _condition(kind: str, status: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": "Testing",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def test_json_patch(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cfg", "labels": {"a": "1"}}, "data": {"k": "v"}}
    )
    patched = core.patch_namespaced_config_map(
        "cfg",
        namespace,
        [
            {"op": "test", "path": "/data/k", "value": "v"},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"},
        ],
    )
    assert patched.metadata.labels == {"b": "2"}
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_config_map("cfg", namespace, [{"op": "test", "path": "/data/k", "value": "other"}])
    assert caught.value.status == 422


# --- selectors --------------------------------------------------------------------------------------


def test_label_selectors(core: client.CoreV1Api, namespace: str) -> None:
    # Every ConfigMap here carries "set=selectors": kube-root-ca.crt is in every namespace as well.
    labels = {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "web", "env": "dev"}, "c": {"tier": "db"}, "d": {}}
    for name, label_set in labels.items():
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"set": "selectors", **label_set}}}
        )

    def names(selector: str) -> list[str]:
        selected = core.list_namespaced_config_map(namespace, label_selector=f"set=selectors,{selector}")
        return [cm.metadata.name for cm in selected.items]

    assert names("tier=web") == ["a", "b"]
    assert names("tier==web,env=prod") == ["a"]
    assert names("tier!=web") == ["c", "d"]
    assert names("env in (dev, prod)") == ["a", "b"]
    assert names("env notin (dev)") == ["a", "c", "d"]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c", "d"]
    with pytest.raises(client.ApiException) as caught:
        names("tier in (web")
    assert caught.value.status == 400


def test_field_selectors_and_cross_namespace_lists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_service(namespace, lb_service("lb"))
    core.create_namespaced_service(namespace, {"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}})
    everywhere = core.list_service_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")
    assert sorted(s.metadata.name for s in everywhere.items) == ["lb", "plain"]
    assert everywhere.metadata.resource_version
    by_type = core.list_service_for_all_namespaces(field_selector="spec.type=LoadBalancer")
    assert (namespace, "lb") in [(s.metadata.namespace, s.metadata.name) for s in by_type.items]
    assert (namespace, "plain") not in [(s.metadata.namespace, s.metadata.name) for s in by_type.items]
    only = core.list_namespaced_service(namespace, field_selector="metadata.name=plain")
    assert [s.metadata.name for s in only.items] == ["plain"]
    with pytest.raises(client.ApiException) as caught:
        core.list_namespaced_service(namespace, field_selector="spec.bogus=1")
    assert caught.value.status == 400


def test_list_pagination(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(5):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"cm-{i}", "labels": {"set": "pages"}}})
    # Without a selector: every ConfigMap of the namespace (kube-root-ca.crt as well, which the namespace
    # fixture waited for), with the count of those not yet returned.
    everything = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
    assert set(everything) - {"kube-root-ca.crt"} == {f"cm-{i}" for i in range(5)}
    page = core.list_namespaced_config_map(namespace, limit=2)
    seen = [c.metadata.name for c in page.items]
    assert page.metadata.remaining_item_count == len(everything) - 2
    while page.metadata._continue:
        page = core.list_namespaced_config_map(namespace, limit=2, _continue=page.metadata._continue)
        seen += [c.metadata.name for c in page.items]
    assert seen == everything
    # With a selector there is no remainingItemCount (the server would have to count non-matching objects).
    page = core.list_namespaced_config_map(namespace, limit=2, label_selector="set=pages")
    seen = [c.metadata.name for c in page.items]
    assert page.metadata.remaining_item_count is None
    while page.metadata._continue:
        page = core.list_namespaced_config_map(
            namespace, limit=2, label_selector="set=pages", _continue=page.metadata._continue
        )
        seen += [c.metadata.name for c in page.items]
    assert seen == [f"cm-{i}" for i in range(5)]


# --- nodes, secrets, service accounts ---------------------------------------------------------------


def test_registered_nodes_and_node_status(core: client.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert {"node-a", "node-b"} <= set(nodes)
    ready = {c.type: c.status for c in nodes["node-a"].status.conditions}
    assert ready["Ready"] == "True"
    assert nodes["node-a"].metadata.labels["kubernetes.io/hostname"] == "node-a"
    labelled = core.patch_node("node-b", {"metadata": {"labels": {"l2lb.io/announce": "true"}}})
    assert labelled.metadata.labels["l2lb.io/announce"] == "true"
    drained = core.patch_node_status(
        "node-b",
        {"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "Testing"}]}},
    )
    types = {c.type: c.status for c in drained.status.conditions}
    assert types == {"Ready": "True", "NetworkUnavailable": "False"}
    listed = core.list_node(label_selector="l2lb.io/announce=true")
    assert [n.metadata.name for n in listed.items] == ["node-b"]


def test_secret_string_data_and_defaults(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"user": "admin"}})
    assert created.type == "Opaque"
    assert base64.b64decode(created.data["user"]) == b"admin"
    assert created.string_data is None
    by_type = core.list_namespaced_secret(namespace, field_selector="type=Opaque")
    assert [s.metadata.name for s in by_type.items] == ["s"]
    core.delete_namespaced_secret("s", namespace)
    assert core.list_namespaced_secret(namespace).items == []


def test_unknown_fields_are_dropped_with_a_warning_or_refused_when_strict(
    raw: Callable[..., Any], namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {"metadata": {"name": "cfg"}, "data": {"a": "1"}, "bogus": {"x": 1}}
    status, headers, created = raw("POST", path, body)
    assert status == 201
    assert headers["Warning"] == '299 - "unknown field \\"bogus\\""'
    assert "bogus" not in created
    status, _, stored = raw("GET", f"{path}/cfg")
    assert status == 200
    assert stored["data"] == {"a": "1"}
    assert "bogus" not in stored
    status, _, refused = raw("POST", path, dict(body, metadata={"name": "cfg2"}), [("fieldValidation", "Strict")])
    assert status == 400
    assert refused["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus"'
    )
    status, _, wrong_type = raw("POST", path, {"metadata": {"name": "cfg3"}, "data": {"a": 1}})
    assert status == 400
    assert wrong_type["reason"] == "BadRequest"


def test_dry_run_and_generate_name(core: client.CoreV1Api, namespace: str) -> None:
    preview = core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="All")
    assert preview.metadata.name == "dry"
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("dry", namespace)
    generated = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}})
    assert generated.metadata.name.startswith("gen-")
    assert len(generated.metadata.name) == len("gen-") + 5


def test_finalizers_hold_deletion_until_removed(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "held", "finalizers": ["l2lb.io/cleanup"]}})
    pending = core.delete_namespaced_config_map("held", namespace)
    assert pending["metadata"]["deletionTimestamp"]
    still = core.read_namespaced_config_map("held", namespace)
    assert still.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_config_map("held", namespace)
    assert caught.value.status == 404


def test_dependents_are_garbage_collected_with_their_owner(api: client.ApiClient, namespace: str) -> None:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    owner = core.create_namespaced_service(namespace, lb_service("web"))
    discovery.create_namespaced_endpoint_slice(
        namespace,
        {
            "metadata": {
                "name": "web-abcde",
                "labels": {"kubernetes.io/service-name": "web"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": owner.metadata.uid}],
            },
            "addressType": "IPv4",
            "endpoints": [],
        },
    )
    core.delete_namespaced_service("web", namespace)
    # The garbage collector is asynchronous (about a second).
    eventually(lambda: discovery.list_namespaced_endpoint_slice(namespace).items == [], "the EndpointSlice collected")


# --- endpointslices and events ----------------------------------------------------------------------


def test_endpoint_slices(api: client.ApiClient, namespace: str) -> None:
    discovery = client.DiscoveryV1Api(api)
    created = discovery.create_namespaced_endpoint_slice(
        namespace,
        {
            "metadata": {"generateName": "web-", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "node-a", "conditions": {"ready": True}},
                {"addresses": ["10.0.0.2"], "nodeName": "node-b", "conditions": {"ready": False}},
            ],
            "ports": [{"port": 8080}],
        },
    )
    assert created.metadata.name.startswith("web-")
    assert created.ports[0].protocol == "TCP"
    listed = discovery.list_namespaced_endpoint_slice(namespace, label_selector="kubernetes.io/service-name=web")
    endpoints = listed.items[0].endpoints
    assert [(e.node_name, e.conditions.ready) for e in endpoints] == [("node-a", True), ("node-b", False)]
    with pytest.raises(client.ApiException) as caught:
        discovery.create_namespaced_endpoint_slice(
            namespace,
            {"metadata": {"name": "bad"}, "addressType": "IPv4", "endpoints": [{"addresses": ["nope"]}]},
        )
    assert caught.value.status == 422
    assert 'endpoints[0].addresses[0]: Invalid value: "nope"' in status_of(caught.value)["message"]


def test_events_core_and_events_v1_share_storage(
    api: client.ApiClient, raw: Callable[..., Any], namespace: str
) -> None:
    core, events = client.CoreV1Api(api), client.EventsV1Api(api)
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "web.1"},
            "involvedObject": {"kind": "Service", "name": "web", "namespace": namespace},
            "reason": "IPAllocated",
            "message": "allocated 198.18.100.1",
            "type": "Normal",
            "source": {"component": "l2lb-controller"},
        },
    )
    # Read raw: a legacy event has "eventTime": null, which the typed EventsV1Event model refuses.
    status, _, seen = raw("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/web.1")
    assert status == 200
    assert seen["note"] == "allocated 198.18.100.1"
    assert seen["regarding"]["name"] == "web"
    assert seen["deprecatedSource"] == {"component": "l2lb-controller"}
    assert seen["eventTime"] is None
    events.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "web.2"},
            "eventTime": "2026-01-01T00:00:00.123456Z",
            "reportingController": "l2lb.io/controller",
            "reportingInstance": "node-a",
            "action": "Allocate",
            "reason": "PoolExhausted",
            "note": "no free IP",
            "type": "Warning",
            "regarding": {"kind": "Service", "name": "web", "namespace": namespace},
        },
    )
    listed = core.list_namespaced_event(namespace, field_selector="involvedObject.name=web,type=Warning")
    assert [(e.metadata.name, e.message, e.reporting_component) for e in listed.items] == [
        ("web.2", "no free IP", "l2lb.io/controller")
    ]
    # Every Event passes the legacy rules first: without eventTime, the regarded object's namespace must
    # be the Event's own; then events.k8s.io/v1 requires eventTime and a type.
    status, _, refused = raw(
        "POST",
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        {"metadata": {"name": "web.3"}, "reason": "X"},
    )
    assert status == 422
    assert refused["message"] == (
        'Event "web.3" is invalid: [involvedObject.namespace: Invalid value: "": does not match event.namespace, '
        'eventTime: Required value, type: Invalid value: "": has invalid value: ]'
    )
    # With eventTime, the reporting fields, action and reason are required (core/v1 says reportingComponent).
    status, _, refused = raw(
        "POST",
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        {
            "metadata": {"name": "web.4"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "type": "Normal",
            "regarding": {"kind": "Service", "name": "web", "namespace": namespace},
        },
    )
    assert status == 422
    assert refused["message"].startswith('Event "web.4" is invalid: [reportingController: Required value, ')
    assert refused["message"].endswith(
        "reportingInstance: Required value, action: Required value, reason: Required value]"
    )
    # A core/v1 Event must name its object's namespace (unless it is in "default").
    status, _, refused = raw(
        "POST",
        f"/api/v1/namespaces/{namespace}/events",
        {"metadata": {"name": "web.5"}, "involvedObject": {"kind": "Service", "name": "web"}, "reason": "X"},
    )
    assert status == 422
    assert refused["message"] == (
        'Event "web.5" is invalid: involvedObject.namespace: Invalid value: "": does not match event.namespace'
    )


# --- discovery and server-side apply ---------------------------------------------------------------


def test_discovery_documents(raw: Callable[..., Any]) -> None:
    status, _, core = raw("GET", "/api/v1")
    assert status == 200
    assert (core["kind"], core["groupVersion"]) == ("APIResourceList", "v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["services"]["namespaced"] is True
    assert by_name["services"]["shortNames"] == ["svc"]
    assert set(by_name["services"]["verbs"]) >= {"create", "get", "list", "watch", "patch", "update", "delete"}
    assert by_name["services/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["nodes"]["namespaced"] is False
    assert by_name["serviceaccounts/token"]["kind"] == "TokenRequest"
    status, _, groups = raw("GET", "/apis")
    names = {g["name"]: g for g in groups["groups"]}
    assert {"coordination.k8s.io", "discovery.k8s.io", "rbac.authorization.k8s.io", "apiextensions.k8s.io"} <= set(
        names
    )
    assert names["coordination.k8s.io"]["preferredVersion"] == {
        "groupVersion": "coordination.k8s.io/v1",
        "version": "v1",
    }
    status, _, group = raw("GET", "/apis/discovery.k8s.io")
    assert (status, group["kind"], group["name"]) == (200, "APIGroup", "discovery.k8s.io")
    status, _, leases = raw("GET", "/apis/coordination.k8s.io/v1")
    assert [r["kind"] for r in leases["resources"]] == ["Lease"]
    status, _, missing = raw("GET", "/apis/coordination.k8s.io/v1/nothings")
    assert (status, missing["reason"]) == (404, "NotFound")


def test_server_side_apply_creates_then_merges(raw: Callable[..., Any], namespace: str) -> None:
    """A field manager owns what it applied: its next apply sets exactly its new configuration."""
    path = f"/api/v1/namespaces/{namespace}/configmaps/applied"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    status, _, refused = raw("PATCH", path, body, content_type="application/apply-patch+yaml")
    assert status == 422
    assert "fieldManager: Required value" in refused["message"]
    manager = [("fieldManager", "contract")]
    status, _, created = raw("PATCH", path, body, manager, content_type="application/apply-patch+yaml")
    assert (status, created["data"]) == (201, {"a": "1"})
    # Another manager's apply merges with what "contract" applied...
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"o": "9"}}
    status, _, merged = raw(
        "PATCH", path, other, [("fieldManager", "other")], content_type="application/apply-patch+yaml"
    )
    assert (status, merged["data"]) == (200, {"a": "1", "o": "9"})
    # ...while re-applying without "a" removes it: "contract" owned it and no longer sends it.
    body["data"] = {"b": "2"}
    status, _, merged = raw("PATCH", path, body, manager, content_type="application/apply-patch+yaml")
    assert status == 200
    assert merged["data"] == {"b": "2", "o": "9"}
    status, _, preview = raw(
        "PATCH", path, {"data": {"c": "3"}}, [("dryRun", "All")], content_type="application/merge-patch+json"
    )
    assert (status, preview["data"]["c"]) == (200, "3")
    status, _, stored = raw("GET", path)
    assert "c" not in stored["data"]
