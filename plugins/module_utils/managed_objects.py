# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A set of cluster-scoped custom objects we manage: plan the difference to the cluster, then apply it.

The backend half of a module in the community.crypto style: ``plan()`` asks the API what is there and
returns the writes (nothing changes), ``apply(changes, dry_run)`` performs them. Modules dry-run every
write first and apply only when all of them pass, so nothing is half-applied. Only objects carrying
our managed-by label are replaced or pruned; another owner's object with a desired name is an error.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import KubeClient, KubeError
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.render import MANAGED_BY, MANAGED_BY_LABEL


@dataclass(frozen=True)
class ObjectKind:
    """Where one kind of custom object lives in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def crd(self) -> str:
        return f"{self.plural}.{self.group}"


@dataclass
class Change:
    """One write: create, update or delete of one object."""

    action: str
    kind: ObjectKind
    name: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.kind.kind}/{self.name}"

    def summary(self) -> dict[str, str]:
        return {"action": self.action, "kind": self.kind.kind, "name": self.name}


def is_managed(obj: dict[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


class ManagedObjects:
    """The desired objects of some kinds, and how to make the cluster hold exactly those."""

    def __init__(
        self,
        client: KubeClient,
        desired: Sequence[tuple[ObjectKind, dict[str, Any]]],
        kinds: Sequence[ObjectKind],
        prune: bool = True,
        adopt: bool = False,
    ) -> None:
        self.client = client
        self.desired = [(kind, copy.deepcopy(body)) for kind, body in desired]
        self.kinds = list(kinds)
        self.prune = prune
        self.adopt = adopt

    def missing_crds(self) -> list[str]:
        return [kind.crd for kind in self.kinds if not self.client.crd_established(kind.crd)]

    def plan(self) -> list[Change]:
        changes: list[Change] = []
        for kind in self.kinds:
            live = {
                o["metadata"]["name"]: o
                for o in self.client.list_cluster_objects(kind.group, kind.version, kind.plural)
            }
            wanted = [body for k, body in self.desired if k == kind]
            names = {body["metadata"]["name"] for body in wanted}
            for desired in wanted:
                changes.extend(self._plan_one(kind, desired, live.get(desired["metadata"]["name"])))
            if self.prune:
                for name, current in sorted(live.items()):
                    if name not in names and is_managed(current):
                        changes.append(Change("delete", kind, name, current.get("spec"), None))
        return changes

    def _plan_one(self, kind: ObjectKind, desired: dict[str, Any], current: dict[str, Any] | None) -> list[Change]:
        name = desired["metadata"]["name"]
        if current is None:
            return [Change("create", kind, name, None, desired.get("spec"), copy.deepcopy(desired))]
        if not is_managed(current) and not self.adopt:
            raise KubeError(
                f'{kind.kind} "{name}" exists but is not managed by {MANAGED_BY} (no {MANAGED_BY_LABEL} '
                "label): rename it in the inventory, delete it, or set adopt: true"
            )
        labels = {**(current["metadata"].get("labels") or {}), **desired["metadata"].get("labels", {})}
        if current.get("spec") == desired.get("spec") and labels == current["metadata"].get("labels"):
            return []
        body = copy.deepcopy(desired)
        body["metadata"]["labels"] = labels
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return [Change("update", kind, name, current.get("spec"), desired.get("spec"), body)]

    def apply(self, changes: Sequence[Change], dry_run: bool) -> None:
        for change in changes:
            k = change.kind
            if change.action == "create":
                self.client.create_cluster_object(k.group, k.version, k.plural, change.body, dry_run)
            elif change.action == "update":
                self.client.replace_cluster_object(k.group, k.version, k.plural, change.body, dry_run)
            else:
                self.client.delete_cluster_object(k.group, k.version, k.plural, change.name, dry_run)


def diff_of(changes: Sequence[Change]) -> dict[str, Any]:
    """Ansible's before/after diff, keyed by kind/name."""
    return {
        "before": {c.ref: c.before for c in changes if c.before is not None},
        "after": {c.ref: c.after for c in changes if c.after is not None},
    }
