"""The catalog of served kinds: built-in types, and the types a CustomResourceDefinition defines."""

from __future__ import annotations

from typing import Any

from . import strategies as s
from .resources import ResourceType, Subresource, status_subresource
from .selectors import FieldGetter, dotted_getter

_META_KEYS = {"metadata.ownerReferences": "uid", "metadata.finalizers": ""}


def _keys(**extra: str) -> dict[str, str]:
    keys = dict(_META_KEYS)
    keys.update({k.replace("__", "."): v for k, v in extra.items()})
    return keys


def _getters(*paths: str, **named: str) -> dict[str, FieldGetter]:
    getters = {p: dotted_getter(p) for p in paths}
    getters.update({name: dotted_getter(path) for name, path in named.items()})
    return getters


def builtin_types() -> list[ResourceType]:
    core_event = s.CoreEventStrategy()
    return [
        # core/v1
        ResourceType(
            "", "v1", "namespaces", "Namespace", False, s.NamespaceStrategy(),
            short_names=("ns",), subresources=(status_subresource("Namespace"),
                                               Subresource("finalize", "Namespace", ("update",))),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            model="V1Namespace", name_rule="label", merge_keys=_keys(status__conditions="type"),
            extra_field_getters=_getters("status.phase"), return_deleted_object=True,
        ),
        ResourceType(
            "", "v1", "nodes", "Node", False, s.Strategy(),
            short_names=("no",), subresources=(status_subresource("Node"),), model="V1Node",
            merge_keys=_keys(status__conditions="type", status__addresses="type", spec__podCIDRs=""),
            extra_field_getters=_getters("spec.unschedulable"), status_on_create=True,
            allow_create_on_update=True,
        ),
        ResourceType(
            "", "v1", "services", "Service", True, s.ServiceStrategy(),
            short_names=("svc",), categories=("all",), subresources=(status_subresource("Service"),),
            model="V1Service", name_rule="dns1035",
            merge_keys=_keys(spec__ports="port", status__conditions="type"),
            extra_field_getters=_getters("spec.clusterIP", "spec.type"),
            allow_create_on_update=True, return_deleted_object=True,
        ),
        ResourceType(
            "", "v1", "endpoints", "Endpoints", True, s.Strategy(), singular="endpoints",
            short_names=("ep",), model="V1Endpoints", merge_keys=_keys(), allow_create_on_update=True,
        ),
        ResourceType(
            "", "v1", "events", "Event", True, core_event, short_names=("ev",), model="CoreV1Event",
            name_rule="path", merge_keys=_keys(), allow_create_on_update=True,
            extra_field_getters=_getters(
                "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                "involvedObject.fieldPath", "reason", "reportingComponent", "type", source="source.component",
            ),
        ),
        ResourceType(
            "", "v1", "serviceaccounts", "ServiceAccount", True, s.ServiceAccountStrategy(),
            short_names=("sa",), subresources=(
                Subresource("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),
            ),
            model="V1ServiceAccount", merge_keys=_keys(secrets="name"), return_deleted_object=True,
        ),
        ResourceType(
            "", "v1", "secrets", "Secret", True, s.SecretStrategy(), model="V1Secret", merge_keys=_keys(),
            extra_field_getters=_getters("type"),
        ),
        ResourceType(
            "", "v1", "configmaps", "ConfigMap", True, s.ConfigMapStrategy(), short_names=("cm",),
            model="V1ConfigMap", merge_keys=_keys(),
        ),
        # coordination.k8s.io/v1
        ResourceType(
            "coordination.k8s.io", "v1", "leases", "Lease", True, s.LeaseStrategy(), model="V1Lease",
            merge_keys=_keys(),
        ),
        # discovery.k8s.io/v1
        ResourceType(
            "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, s.EndpointSliceStrategy(),
            model="V1EndpointSlice", merge_keys=_keys(),
        ),
        # events.k8s.io/v1 (the same storage as core/v1 events)
        ResourceType(
            "events.k8s.io", "v1", "events", "Event", True, s.EventsV1Strategy(), short_names=("ev",),
            model="EventsV1Event", storage=("", "events"), name_rule="path", merge_keys=_keys(),
            allow_create_on_update=True,
        ),
        # rbac.authorization.k8s.io/v1
        ResourceType(
            s.RBAC_GROUP, "v1", "clusterroles", "ClusterRole", False, s.RoleStrategy(cluster_scoped=True),
            model="V1ClusterRole", name_rule="path", merge_keys=_keys(),
        ),
        ResourceType(
            s.RBAC_GROUP, "v1", "clusterrolebindings", "ClusterRoleBinding", False,
            s.BindingStrategy(cluster_scoped=True), model="V1ClusterRoleBinding", name_rule="path",
            merge_keys=_keys(),
        ),
        ResourceType(
            s.RBAC_GROUP, "v1", "roles", "Role", True, s.RoleStrategy(cluster_scoped=False),
            model="V1Role", name_rule="path", merge_keys=_keys(),
        ),
        ResourceType(
            s.RBAC_GROUP, "v1", "rolebindings", "RoleBinding", True, s.BindingStrategy(cluster_scoped=False),
            model="V1RoleBinding", name_rule="path", merge_keys=_keys(),
        ),
        # apiextensions.k8s.io/v1
        ResourceType(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
            s.CrdStrategy(), short_names=("crd", "crds"), categories=("api-extensions",),
            subresources=(status_subresource("CustomResourceDefinition"),),
            model="V1CustomResourceDefinition", merge_keys=_keys(), generation=True,
            allow_unconditional_update=True,
        ),
        # authorization.k8s.io/v1 and authentication.k8s.io/v1: create-only, nothing stored
        ResourceType(
            "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, s.Strategy(),
            verbs=("create",), model="V1SubjectAccessReview", virtual=True,
        ),
        ResourceType(
            "authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
            s.Strategy(), verbs=("create",), model="V1SelfSubjectAccessReview", virtual=True,
        ),
        ResourceType(
            "authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, s.Strategy(),
            verbs=("create",), model="V1SelfSubjectReview", virtual=True,
        ),
    ]  # fmt: skip


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CRD as resource types sharing one storage key."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    strategy = s.CustomResourceStrategy()
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served"):
            continue
        subresources = []
        declared = version.get("subresources") or {}
        if "status" in declared:
            subresources.append(status_subresource(kind))
        getters = {}
        for selectable in version.get("selectableFields") or []:
            path = selectable.get("jsonPath", "").lstrip(".")
            if path:
                getters[path] = dotted_getter(path)
        types.append(
            ResourceType(
                group,
                version["name"],
                plural,
                kind,
                spec.get("scope") == "Namespaced",
                strategy,
                singular=names.get("singular", kind.lower()),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(subresources),
                storage=(group, plural),
                generation=True,
                allow_unconditional_update=False,
                custom=True,
                crd_name=crd["metadata"]["name"],
                schema=(version.get("schema") or {}).get("openAPIV3Schema") or {},
                extra_field_getters=getters,
            )
        )
    return types
