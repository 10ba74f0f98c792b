"""The resource types the stand-in serves: built-in kinds, and kinds defined by registered CRDs.

A :class:`ResourceType` is one (group, version, resource) as discovery lists it, plus what the REST layer
needs to serve it like kube-apiserver does: scope, storage key (two versions of one resource share
storage), status subresource, whether ``metadata.generation`` is kept, update/delete policies of the
Go strategy, strategic-merge keys, field selectors and the client model used to decode it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .patch import MergeKeys
from .selectors import FieldGetter, dotted_getter

if TYPE_CHECKING:
    from .strategies import Strategy

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
StorageKey = tuple[str, str]


@dataclass(frozen=True)
class Subresource:
    """A subresource as discovery shows it (``services/status``, ``serviceaccounts/token``)."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = ""


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    strategy: Strategy
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    model: str | None = None
    storage: StorageKey | None = None
    name_rule: str = "subdomain"
    merge_keys: MergeKeys | None = None
    extra_field_getters: dict[str, FieldGetter] = field(default_factory=dict)
    generation: bool = False
    status_on_create: bool = False
    allow_create_on_update: bool = False
    allow_unconditional_update: bool = True
    return_deleted_object: bool = False
    custom: bool = False
    virtual: bool = False
    crd_name: str = ""
    schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if self.storage is None:
            self.storage = (self.group, self.plural)

    @property
    def key(self) -> StorageKey:
        assert self.storage is not None
        return self.storage

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return any(s.name == "status" for s in self.subresources)

    def subresource(self, name: str) -> Subresource | None:
        return next((s for s in self.subresources if s.name == name), None)

    @property
    def field_getters(self) -> dict[str, FieldGetter]:
        getters: dict[str, FieldGetter] = {"metadata.name": dotted_getter("metadata.name")}
        if self.namespaced:
            getters["metadata.namespace"] = dotted_getter("metadata.namespace")
        getters.update(self.extra_field_getters)
        return getters

    def discovery(self) -> list[dict[str, Any]]:
        """APIResource entries for ``/api/v1`` or ``/apis/<group>/<version>``."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        entries = [entry]
        for sub in self.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{self.plural}/{sub.name}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group or sub.version:
                sub_entry["group"] = sub.group
                sub_entry["version"] = sub.version
            entries.append(sub_entry)
        return entries


def status_subresource(kind: str) -> Subresource:
    return Subresource("status", kind, ("get", "patch", "update"))


class Registry:
    """All served resource types; CRDs add and remove theirs at runtime."""

    def __init__(self, builtin: list[ResourceType]) -> None:
        self._lock = threading.RLock()
        self._builtin = list(builtin)
        self._custom: dict[str, list[ResourceType]] = {}
        self._group_order: list[str] = []
        for rt in builtin:
            if rt.group not in self._group_order:
                self._group_order.append(rt.group)

    def all(self) -> list[ResourceType]:
        with self._lock:
            out = list(self._builtin)
            for types in self._custom.values():
                out.extend(types)
            return out

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rt in self.all():
            if rt.group == group and rt.version == version and rt.plural == plural:
                return rt
        return None

    def by_key(self, key: StorageKey) -> ResourceType | None:
        """The storage-version type of a storage key (first registered wins)."""
        for rt in self.all():
            if rt.key == key:
                return rt
        return None

    def storage_types(self) -> list[ResourceType]:
        """One type per storage key: what namespace deletion and garbage collection walk."""
        seen: dict[StorageKey, ResourceType] = {}
        for rt in self.all():
            seen.setdefault(rt.key, rt)
        return list(seen.values())

    def set_custom(self, crd_name: str, types: list[ResourceType]) -> None:
        with self._lock:
            if types:
                self._custom[crd_name] = types
            else:
                self._custom.pop(crd_name, None)

    def custom_types(self, crd_name: str) -> list[ResourceType]:
        with self._lock:
            return list(self._custom.get(crd_name, []))

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions with the preferred first) for every group with served resources."""
        order: list[str] = []
        versions: dict[str, list[str]] = {}
        for rt in self.all():
            if rt.group not in versions:
                order.append(rt.group)
                versions[rt.group] = []
            if rt.version not in versions[rt.group]:
                versions[rt.group].append(rt.version)
        return [(g, _sort_versions(versions[g])) for g in order]

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.all() if rt.group == group and rt.version == version]


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    major = int(match.group(1))
    stage = {"alpha": 2, "beta": 1, None: 0}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor)


def _sort_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=_version_priority)
