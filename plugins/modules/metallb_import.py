#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: MetalLB's layer-2 configuration as the l2lb inventory model, plus a Service rewrite plan."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: metallb_import
short_description: Import MetalLB pools, L2 advertisements and Service annotations into the l2lb inventory model
version_added: "0.1.0"
description:
  - Reads MetalLB's C(IPAddressPool) (CIDRs and C(a-b) ranges, C(autoAssign), C(avoidBuggyIPs),
    C(serviceAllocation)), C(L2Advertisement) (pools, pool selectors, node selectors, interfaces), the legacy
    C(config) ConfigMap of MetalLB before 0.13, and Service annotations (C(metallb.universe.tf/*) and
    C(metallb.io/*) - C(loadBalancerIPs), C(allow-shared-ip), C(address-pool)) from a cluster or from manifest
    files.
  - Returns the equivalent inventory model (C(l2lb_pools), C(l2lb_policies)) as data and as YAML to paste into
    group_vars, and a plan of Service rewrites - the requested-IP and sharing-key annotations of the target
    I(backend), a pool-request label where a pool was asked for by name, and (with I(pin_assigned_ips)) the IP
    MetalLB assigned, so no address changes when MetalLB is replaced.
  - Everything that cannot be expressed is returned in C(unexpressible) and written as comments into the
    YAML; nothing is dropped silently.
  - Broken input fails the module, with every problem at once (object, field, fix) and nothing written or
    patched - a wrong or missing C(apiVersion), unknown keys (with "did you mean", also C(annotations) beside
    C(metadata)), an address that is not a CIDR or an C(a-b) range (a bare IP, a reversed range, an octet out
    of range), values of the wrong type (C(spec.ports) as a mapping), an IP MetalLB assigned outside every
    imported pool, or pools and policies the model refuses.
  - With I(apply_plan=true) the rewrites are applied to the live Services (each write dry-run first; guarded by
    the Service's resourceVersion); in check mode they are only dry-run. Without it the module only reads.
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.kube_auth
options:
  source:
    description: Read from the cluster, or from manifest files (I(paths)).
    type: str
    choices: [cluster, files]
    default: cluster
  paths:
    description: Manifest files or directories (C(*.yaml), C(*.yml), C(*.json); multi-document, C(List) kinds).
    type: list
    elements: path
    default: []
  metallb_namespace:
    description: Namespace of MetalLB's objects in the cluster.
    type: str
    default: metallb-system
  service_namespace:
    description: Only Services in this namespace; all namespaces when omitted.
    type: str
  backend:
    description: The backend that replaces MetalLB; picks the annotation names of the plan.
    type: str
    choices: [l2lb, cilium]
    default: l2lb
  cilium_version:
    description: With I(backend=cilium), the Cilium release (annotation names changed in 1.15).
    type: str
    default: "1.16.5"
  pin_assigned_ips:
    description: Request the IP MetalLB assigned (status) for Services that did not ask for one.
    type: bool
    default: true
  remove_metallb_annotations:
    description:
      - Also remove the MetalLB annotations. Keep them (the default) while MetalLB still runs - removing
        C(allow-shared-ip) from a running MetalLB's Services can make it withdraw a shared IP.
    type: bool
    default: false
  apply_plan:
    description: Apply the Service rewrites to the cluster (dry run only in check mode).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Dry-runs the rewrites against the API and reports them; changes nothing.
  diff_mode:
    support: full
    description: Labels and annotations of each rewritten Service before and after.
  idempotent:
    support: full
    description: Rewrites already in place are not repeated; a second run reports C(changed=false).
"""

EXAMPLES = r"""
- name: What would the MetalLB configuration of this cluster look like in the inventory?
  baremetal.l2lb.metallb_import:
    kubeconfig: /etc/l2lb/admin.kubeconfig
  register: imported

- name: Import from the manifests in git, for Cilium
  baremetal.l2lb.metallb_import:
    source: files
    paths: [clusters/home/metallb, clusters/home/apps]
    backend: cilium
    cilium_version: "1.18.1"
"""

RETURN = r"""
pools:
  description: The imported pools in the inventory shape (C(l2lb_pools)).
  returned: success
  type: list
  elements: dict
  sample: [{name: lan, blocks: [{start: 198.18.0.240, stop: 198.18.0.250}], allowFirstLastIPs: true}]
policies:
  description: The imported announcement policies (C(l2lb_policies)).
  returned: success
  type: list
  elements: dict
inventory_yaml:
  description: C(l2lb_pools) and C(l2lb_policies) as YAML to paste into group_vars, what could not be expressed
    as comments on top.
  returned: success
  type: str
plan:
  description: Per Service, the annotations to set and remove, the labels to set, and notes.
  returned: success
  type: list
  elements: dict
  sample: [{service: dns/pihole-udp, set_annotations: {l2lb.io/ips: 198.18.0.53, l2lb.io/sharing-key: pihole},
            remove_annotations: [], set_labels: {}, notes: []}]
plan_lines:
  description: The plan, one line per Service (C(+) sets, C(-) removes).
  returned: success
  type: list
  elements: str
applied:
  description: Services patched (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
unexpressible:
  description: What the inventory model cannot express, each with the object, the field and what it means.
  returned: success
  type: list
  elements: dict
notes:
  description: Things done that are worth knowing (normalised CIDRs, split advertisements).
  returned: success
  type: list
  elements: str
problems:
  description: Why the input was refused, each with C(object), C(field), C(kind), C(message), C(fix) and C(text).
  returned: failure
  type: list
  elements: dict
  sample:
    - object: IPAddressPool "lan"
      field: spec.addresses[0]
      kind: invalid
      message: "range '198.18.10.20-198.18.10.10' starts after it stops"
      fix: "swap them: 198.18.10.10-198.18.10.20"
"""

import glob
import json
import os
from typing import Any

import yaml
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils import metallb
from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import AUTH_ARG_SPEC, KubeClient, KubeError


class ManifestError(Exception):
    """A manifest file cannot be read or parsed; the message names the file."""


def read_manifests(paths: list[str]) -> list[Any]:
    """Every document of every YAML/JSON file under ``paths`` (directories recursively, sorted)."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for pattern in ("*.yaml", "*.yml", "*.json"):
                files.extend(glob.glob(os.path.join(path, "**", pattern), recursive=True))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise ManifestError(f"{path}: no such file or directory")
    documents: list[Any] = []
    for name in sorted(set(files)):
        try:
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
            documents.extend(json.loads(text) if name.endswith(".json") else list(yaml.safe_load_all(text)))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ManifestError(f"{name}: {exc}") from None
    return documents


def read_cluster(client: KubeClient, namespace: str, service_namespace: str | None) -> list[Any]:
    """MetalLB's objects and the Services, as the API returns them (missing CRDs count as no objects)."""
    objects: list[Any] = []
    for plural, kind in metallb.CLUSTER_KINDS:
        try:
            items = client.list_namespaced_objects(metallb.GROUP, metallb.VERSION, plural, namespace)
        except KubeError as exc:
            if exc.status == 404:
                continue
            raise
        # List items may lack apiVersion and kind; the API served them under these, so they are right.
        objects.extend(
            {**item, "apiVersion": item.get("apiVersion") or f"{metallb.GROUP}/{metallb.VERSION}", "kind": kind}
            for item in items
        )
    legacy = client.read_config_map(namespace, "config")
    if legacy is not None:
        objects.append({**legacy, "apiVersion": "v1", "kind": "ConfigMap"})
    objects.extend({**s, "apiVersion": "v1", "kind": "Service"} for s in client.list_services(service_namespace))
    return objects


class PlanApplier:
    """Backend: turns the rewrite plan into patches against the live Services, dry run first."""

    def __init__(self, client: KubeClient, rewrites: list[metallb.ServiceRewrite]) -> None:
        self.client = client
        self.rewrites = rewrites

    def patches(self) -> list[tuple[metallb.ServiceRewrite, dict[str, Any], dict[str, Any], str]]:
        """(rewrite, metadata patch, live metadata, resourceVersion) for every Service that still differs."""
        out = []
        for rewrite in self.rewrites:
            live = self.client.get_service(rewrite.namespace, rewrite.name)
            if live is None:
                raise KubeError(f'service "{rewrite.ref}" does not exist in the cluster (it was in the manifests)')
            meta = live.get("metadata") or {}
            annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
            patch: dict[str, Any] = {}
            set_annotations = {k: v for k, v in rewrite.annotations.items() if annotations.get(k) != v}
            removed = {k: None for k in rewrite.remove if k in annotations}
            if set_annotations or removed:
                patch["annotations"] = {**set_annotations, **removed}
            set_labels = {k: v for k, v in rewrite.labels.items() if labels.get(k) != v}
            if set_labels:
                patch["labels"] = set_labels
            if patch:
                current = {"annotations": annotations, "labels": labels}
                out.append((rewrite, patch, current, str(meta.get("resourceVersion", ""))))
        return out

    def apply(self, patches: list[Any], dry_run: bool) -> None:
        for rewrite, patch, _, version in patches:
            self.client.patch_service_metadata(rewrite.namespace, rewrite.name, patch, version, dry_run)


def _after(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("annotations", "labels"):
        merged = {**current.get(key, {}), **patch.get(key, {})}
        out[key] = {k: v for k, v in sorted(merged.items()) if v is not None}
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "choices": ["cluster", "files"], "default": "cluster"},
            "paths": {"type": "list", "elements": "path", "default": []},
            "metallb_namespace": {"type": "str", "default": "metallb-system"},
            "service_namespace": {"type": "str"},
            "backend": {"type": "str", "choices": ["l2lb", "cilium"], "default": "l2lb"},
            "cilium_version": {"type": "str", "default": "1.16.5"},
            "pin_assigned_ips": {"type": "bool", "default": True},
            "remove_metallb_annotations": {"type": "bool", "default": False},
            "apply_plan": {"type": "bool", "default": False},
            **AUTH_ARG_SPEC,
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["source"] == "files" and not params["paths"]:
        module.fail_json(msg="source=files needs paths: the manifest files or directories to read")
        return
    client: KubeClient | None = None
    try:
        if params["source"] == "files":
            objects = read_manifests(params["paths"])
        else:
            client = KubeClient(params)
            objects = read_cluster(client, params["metallb_namespace"], params["service_namespace"])
        result = metallb.import_metallb(
            objects,
            backend=params["backend"],
            cilium_version=params["cilium_version"],
            pin_assigned_ips=params["pin_assigned_ips"],
            remove_metallb_annotations=params["remove_metallb_annotations"],
        )
        if result.problems:  # broken input: nothing is written, nothing is patched
            count = len(result.problems)
            module.fail_json(
                msg=f"{count} problem{'s' if count != 1 else ''} in the MetalLB input (nothing was changed):\n"
                + "\n".join(f"  - {problem}" for problem in result.problems),
                problems=[problem.to_dict() for problem in result.problems],
            )
            return
        patches: list[Any] = []
        if params["apply_plan"]:
            applier = PlanApplier(client or KubeClient(params), result.rewrites)
            patches = applier.patches()
            applier.apply(patches, dry_run=True)
            if not module.check_mode:
                applier.apply(patches, dry_run=False)
    except (ManifestError, KubeError, ValueError) as exc:
        module.fail_json(msg=str(exc))
        return
    for item in result.unexpressible:
        module.warn(f"not expressible: {item}")
    out: dict[str, Any] = {
        "changed": bool(patches),
        "pools": result.pools,
        "policies": result.policies,
        "inventory_yaml": result.inventory_yaml(),
        "plan": [r.to_dict() for r in result.rewrites],
        "plan_lines": [r.summary() for r in result.rewrites],
        "applied": [p[0].ref for p in patches],
        "unexpressible": [u.to_dict() for u in result.unexpressible],
        "notes": result.notes,
    }
    if module._diff and patches:
        out["diff"] = {
            "before": {p[0].ref: p[2] for p in patches},
            "after": {p[0].ref: _after(p[2], p[1]) for p in patches},
        }
    module.exit_json(**out)


if __name__ == "__main__":
    main()
