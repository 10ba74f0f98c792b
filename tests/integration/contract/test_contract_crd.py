"""Contract: CRDs become Established, and kube-apiserver prunes, defaults and validates their objects."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cluster_waits import wait_crd_served
from contract_support import eventually
from kubernetes import client, dynamic, watch

GROUP, VERSION = "contract.l2lb.io", "v1alpha1"
POOLS = "loadbalancerippools"

POOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["blocks"],
            "properties": {
                "blocks": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 4,
                    "items": {
                        "type": "object",
                        "properties": {
                            "cidr": {"type": "string", "format": "cidr", "pattern": r"^[0-9./]+$"},
                            "start": {"type": "string", "format": "ipv4"},
                            "stop": {"type": "string", "format": "ipv4"},
                        },
                        "oneOf": [{"required": ["cidr"]}, {"required": ["start", "stop"]}],
                    },
                },
                "disabled": {"type": "boolean", "default": False},
                "mode": {"type": "string", "enum": ["arp", "ndp"], "default": "arp"},
                "priority": {"type": "integer", "minimum": 0, "maximum": 100},
                "name": {"type": "string", "minLength": 1, "maxLength": 8},
                "serviceSelector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "port": {"x-kubernetes-int-or-string": True},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "note": {"type": "string", "nullable": True},
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "used": {"type": "integer"},
                "conditions": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
        },
    },
}


def crd_body(plural: str, kind: str, scope: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": ["lbp"] if plural == POOLS else [],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def pool(object_name: str, /, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"blocks": [{"cidr": "198.18.100.0/28"}]}
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LoadBalancerIPPool",
        "metadata": {"name": object_name},
        "spec": {k: v for k, v in body.items() if v is not None or k == "note"},
    }


@pytest.fixture(scope="module")
def crds(api: client.ApiClient) -> Iterator[client.CustomObjectsApi]:
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(crd_body(POOLS, "LoadBalancerIPPool", "Cluster", POOL_SCHEMA))
    conditions = wait_crd_served(extensions, f"{POOLS}.{GROUP}", 10.0)
    assert {k: conditions.get(k) for k in ("NamesAccepted", "Established")} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    extensions.create_custom_resource_definition(
        crd_body(
            "l2announcementpolicies",
            "L2AnnouncementPolicy",
            "Namespaced",
            {
                "type": "object",
                "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            },
        )
    )
    wait_crd_served(extensions, f"l2announcementpolicies.{GROUP}", 10.0)
    yield client.CustomObjectsApi(api)
    for plural in (POOLS, "l2announcementpolicies"):
        extensions.delete_custom_resource_definition(f"{plural}.{GROUP}")


def error_of(exc: client.ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status"
    return body


def test_crd_objects_are_served_at_once_with_crud(crds: client.CustomObjectsApi) -> None:
    created = crds.create_cluster_custom_object(GROUP, VERSION, POOLS, pool("crud"))
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"]
    fetched = crds.get_cluster_custom_object(GROUP, VERSION, POOLS, "crud")
    assert fetched["spec"]["blocks"] == [{"cidr": "198.18.100.0/28"}]
    listed = crds.list_cluster_custom_object(GROUP, VERSION, POOLS)
    assert listed["kind"] == "LoadBalancerIPPoolList"
    assert listed["metadata"]["resourceVersion"]
    assert "crud" in [item["metadata"]["name"] for item in listed["items"]]
    assert all(item["kind"] == "LoadBalancerIPPool" for item in listed["items"])

    patched = crds.patch_cluster_custom_object(GROUP, VERSION, POOLS, "crud", {"spec": {"priority": 5}})
    assert patched["spec"]["priority"] == 5
    assert patched["metadata"]["generation"] == 2

    stale = copy.deepcopy(fetched)
    stale["spec"]["priority"] = 7
    with pytest.raises(client.ApiException) as caught:
        crds.replace_cluster_custom_object(GROUP, VERSION, POOLS, "crud", stale)
    assert caught.value.status == 409
    assert error_of(caught.value)["message"].startswith(
        f'Operation cannot be fulfilled on {POOLS}.{GROUP} "crud": the object has been modified'
    )
    # Custom resources refuse unconditional updates.
    stale["metadata"].pop("resourceVersion")
    with pytest.raises(client.ApiException) as caught:
        crds.replace_cluster_custom_object(GROUP, VERSION, POOLS, "crud", stale)
    assert caught.value.status == 422
    assert (
        "metadata.resourceVersion: Invalid value: 0: must be specified for an update"
        in (error_of(caught.value)["message"])
    )

    deleted = crds.delete_cluster_custom_object(GROUP, VERSION, POOLS, "crud")
    assert deleted["status"] == "Success"
    with pytest.raises(client.ApiException) as caught:
        crds.get_cluster_custom_object(GROUP, VERSION, POOLS, "crud")
    assert caught.value.status == 404
    assert error_of(caught.value)["message"] == f'{POOLS}.{GROUP} "crud" not found'


def test_schema_violations_are_422_with_field_paths(crds: client.CustomObjectsApi) -> None:
    cases = {
        "cidr": (
            pool("bad-cidr", blocks=[{"cidr": "10.0.0.0/33"}]),
            'spec.blocks[0].cidr: Invalid value: "10.0.0.0/33": spec.blocks[0].cidr in body must be of type cidr: '
            '"10.0.0.0/33"',
        ),
        "pattern": (
            pool("bad-pattern", blocks=[{"cidr": "fd00::/64"}]),
            "spec.blocks[0].cidr in body should match '^[0-9./]+$'",
        ),
        "required": (pool("bad-required", blocks=None) | {"spec": {"mode": "arp"}}, "spec.blocks: Required value"),
        "enum": (
            pool("bad-enum", mode="bgp"),
            'spec.mode: Unsupported value: "bgp": supported values: "arp", "ndp"',
        ),
        "type": (
            pool("bad-type", priority="high"),
            'spec.priority: Invalid value: "string": spec.priority in body must be of type integer: "string"',
        ),
        "maximum": (
            pool("bad-max", priority=101),
            "spec.priority: Invalid value: 101: spec.priority in body should be less than or equal to 100",
        ),
        "maxLength": (pool("bad-len", name="much-too-long"), "spec.name: Too long: may not be more than 8 bytes"),
        "minItems": (
            pool("bad-items", blocks=[]),
            "spec.blocks: Invalid value: 0: spec.blocks in body should have at least 1 items",
        ),
        "oneOf": (
            pool("bad-oneof", blocks=[{"start": "10.0.0.1"}]),
            '<nil>: Invalid value: "": "spec.blocks[0]" must validate one and only one schema (oneOf). '
            "Found none valid, spec.blocks[0].cidr: Required value",
        ),
        "oneOf-both": (
            pool("bad-oneof-2", blocks=[{"cidr": "10.0.0.0/8", "start": "10.0.0.1", "stop": "10.0.0.2"}]),
            '<nil>: Invalid value: "": "spec.blocks[0]" must validate one and only one schema (oneOf). '
            "Found 2 valid alternatives",
        ),
        "set": (pool("bad-set", tags=["a", "a"]), 'spec.tags[1]: Duplicate value: "a"'),
        "int-or-string": (pool("bad-ios", port=True), "spec.port in body must be of type integer,string"),
    }
    for label, (body, expected) in cases.items():
        with pytest.raises(client.ApiException) as caught:
            crds.create_cluster_custom_object(GROUP, VERSION, POOLS, body)
        status = error_of(caught.value)
        assert caught.value.status == 422, label
        assert status["reason"] == "Invalid", label
        assert status["message"].startswith(f'LoadBalancerIPPool.{GROUP} "{body["metadata"]["name"]}" is invalid'), (
            label
        )
        assert expected in status["message"], (label, status["message"])
        assert status["details"]["causes"], label


def test_unknown_fields_are_pruned_and_defaults_applied(crds: client.CustomObjectsApi) -> None:
    body = pool(
        "pruned",
        bogus="dropped",
        extra={"anything": {"goes": [1, 2]}},
        port="http",
        note=None,
        serviceSelector={"matchLabels": {"app": "web"}, "matchBogus": 1},
    )
    body["metadata"]["bogusMeta"] = "x"
    body["topLevelBogus"] = True
    created = crds.create_cluster_custom_object(GROUP, VERSION, POOLS, body)
    assert "bogus" not in created["spec"]
    assert "topLevelBogus" not in created
    assert "bogusMeta" not in created["metadata"]
    assert created["spec"]["serviceSelector"] == {"matchLabels": {"app": "web"}}
    assert created["spec"]["extra"] == {"anything": {"goes": [1, 2]}}
    assert created["spec"]["port"] == "http"
    assert created["spec"]["note"] is None
    assert created["spec"]["disabled"] is False
    assert created["spec"]["mode"] == "arp"
    crds.delete_cluster_custom_object(GROUP, VERSION, POOLS, "pruned")


def test_status_subresource_and_generation(crds: client.CustomObjectsApi) -> None:
    body = pool("status")
    body["status"] = {"used": 3}
    created = crds.create_cluster_custom_object(GROUP, VERSION, POOLS, body)
    assert "status" not in created
    with_status = crds.patch_cluster_custom_object_status(
        GROUP, VERSION, POOLS, "status", {"status": {"used": 2}, "spec": {"priority": 9}}
    )
    assert with_status["status"] == {"used": 2}
    assert "priority" not in with_status["spec"]
    assert with_status["metadata"]["generation"] == 1
    ignored = crds.patch_cluster_custom_object(GROUP, VERSION, POOLS, "status", {"status": {"used": 99}})
    assert ignored["status"] == {"used": 2}
    assert ignored["metadata"]["generation"] == 1
    labelled = crds.patch_cluster_custom_object(
        GROUP, VERSION, POOLS, "status", {"metadata": {"labels": {"team": "net"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    respec = crds.patch_cluster_custom_object(GROUP, VERSION, POOLS, "status", {"spec": {"disabled": True}})
    assert respec["metadata"]["generation"] == 2
    with pytest.raises(client.ApiException) as caught:
        crds.patch_cluster_custom_object_status(GROUP, VERSION, POOLS, "status", {"status": {"used": "many"}})
    assert caught.value.status == 422
    assert "status.used" in error_of(caught.value)["message"]
    crds.delete_cluster_custom_object(GROUP, VERSION, POOLS, "status")


def test_strategic_merge_patch_is_unsupported_for_custom_resources(
    crds: client.CustomObjectsApi, raw: Callable[..., Any]
) -> None:
    crds.create_cluster_custom_object(GROUP, VERSION, POOLS, pool("smp"))
    status, _, body = raw(
        "PATCH",
        f"/apis/{GROUP}/{VERSION}/{POOLS}/smp",
        {"spec": {"priority": 1}},
        content_type="application/strategic-merge-patch+json",
    )
    assert status == 415
    assert body["reason"] == "UnsupportedMediaType"
    crds.delete_cluster_custom_object(GROUP, VERSION, POOLS, "smp")


def test_namespaced_custom_objects(crds: client.CustomObjectsApi, namespace: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "L2AnnouncementPolicy",
        "metadata": {"name": "workers"},
        "spec": {"interfaces": ["^eth[0-9]+"], "nodeSelector": {"matchLabels": {"role": "worker"}}},
    }
    created = crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "l2announcementpolicies", body)
    assert created["metadata"]["namespace"] == namespace
    assert created["spec"]["interfaces"] == ["^eth[0-9]+"]
    everywhere = crds.list_cluster_custom_object(GROUP, VERSION, "l2announcementpolicies")
    assert (namespace, "workers") in [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]]
    with pytest.raises(client.ApiException) as caught:
        crds.create_namespaced_custom_object(GROUP, VERSION, "missing-ns", "l2announcementpolicies", body)
    assert caught.value.status == 404


def test_watch_custom_objects(crds: client.CustomObjectsApi) -> None:
    start = crds.list_cluster_custom_object(GROUP, VERSION, POOLS)["metadata"]["resourceVersion"]
    events: list[tuple[str, str]] = []
    ready = threading.Event()

    def collect() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            crds.list_cluster_custom_object, GROUP, VERSION, POOLS, resource_version=start, timeout_seconds=5
        ):
            events.append((event["type"], event["object"]["metadata"]["name"]))
            ready.set()
            if event["type"] == "DELETED":
                stream.stop()

    thread = threading.Thread(target=collect)
    thread.start()
    crds.create_cluster_custom_object(GROUP, VERSION, POOLS, pool("watched"))
    crds.patch_cluster_custom_object(GROUP, VERSION, POOLS, "watched", {"spec": {"priority": 1}})
    crds.delete_cluster_custom_object(GROUP, VERSION, POOLS, "watched")
    thread.join(10)
    assert events == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]


def test_dynamic_client_discovers_crd_kinds(api: client.ApiClient, crds: client.CustomObjectsApi) -> None:
    crds.create_cluster_custom_object(GROUP, VERSION, POOLS, pool("dynamic"))
    dyn = dynamic.DynamicClient(api)
    pools = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="LoadBalancerIPPool")
    assert pools.namespaced is False
    assert "status" in pools.subresources
    assert pools.short_names == ["lbp"]
    names = [item.metadata.name for item in pools.get().items]
    assert "dynamic" in names
    assert pools.get(name="dynamic").spec.blocks[0].cidr == "198.18.100.0/28"
    services = dyn.resources.get(api_version="v1", kind="Service")
    assert services.namespaced is True
    assert "status" in services.subresources
    leases = dyn.resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    assert leases.name == "leases"
    crds.delete_cluster_custom_object(GROUP, VERSION, POOLS, "dynamic")


def test_deleting_a_crd_removes_its_objects_and_endpoints(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    objects = client.CustomObjectsApi(api)
    extensions.create_custom_resource_definition(
        crd_body("ephemerals", "Ephemeral", "Cluster", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    )
    wait_crd_served(extensions, f"ephemerals.{GROUP}", 10.0)
    objects.create_cluster_custom_object(
        GROUP,
        VERSION,
        "ephemerals",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Ephemeral", "metadata": {"name": "e"}},
    )
    extensions.delete_custom_resource_definition(f"ephemerals.{GROUP}")

    # Asynchronous: the CRD's finalizer removes its objects, then the CRD and its endpoints go (404, as
    # text "404 page not found").
    def endpoint_gone() -> bool:
        try:
            objects.list_cluster_custom_object(GROUP, VERSION, "ephemerals")
        except client.ApiException as exc:
            assert exc.status == 404
            return True
        return False

    eventually(endpoint_gone, "the ephemerals endpoint removed", timeout=60)
    with pytest.raises(client.ApiException) as caught:
        extensions.read_custom_resource_definition(f"ephemerals.{GROUP}")
    assert caught.value.status == 404


def test_invalid_crd_is_rejected(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    body = crd_body("wrongs", "Wrong", "Cluster", {"type": "object"})
    body["metadata"]["name"] = "wrong-name.contract.l2lb.io"
    with pytest.raises(client.ApiException) as caught:
        extensions.create_custom_resource_definition(body)
    assert caught.value.status == 422
    assert 'metadata.name: Invalid value: "wrong-name.contract.l2lb.io"' in error_of(caught.value)["message"]
