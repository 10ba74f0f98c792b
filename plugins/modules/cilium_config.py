#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the inventory model as Cilium's LB-IPAM pools, L2 policies and Helm values."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cilium_config
short_description: Render or apply the l2lb inventory model for Cilium's L2 announcements
version_added: "0.1.0"
description:
  - Validates the pools and policies exactly like M(baremetal.l2lb.validate_model) and renders them as
    C(CiliumLoadBalancerIPPool) (C(cilium.io/v2) from Cilium 1.18, C(v2alpha1) before) and
    C(CiliumL2AnnouncementPolicy) (C(cilium.io/v2alpha1)) objects, plus the Helm values L2 announcements
    need - C(l2announcements) with the lease timings, C(externalIPs), C(kubeProxyReplacement),
    C(rollOutCiliumPods) so a changed option restarts the agents, and C(k8sClientRateLimit) sized from the
    number of announced Services (see the cilium role's README for the formula).
  - I(state=rendered) writes C(values.yaml), C(ippools.yaml), C(l2policies.yaml) and C(kustomization.yaml)
    into I(dest) for GitOps; a file is written only when its content changes.
  - I(state=applied) applies the pools and policies to the cluster as one set (server-side dry run of every
    write first; objects labelled C(app.kubernetes.io/managed-by=baremetal.l2lb) that the inventory no longer
    lists are deleted) and, with I(dest), writes C(values.yaml) there. It counts the Services Cilium would
    announce and sizes the rate limit for the larger of that count and I(announced_services). It does not
    run helm; it reports whether a helm binary exists and the exact C(helm upgrade) command.
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.kube_auth
options:
  pools:
    description: IP pools, as for M(baremetal.l2lb.validate_model) (our shape or Cilium manifests).
    type: list
    elements: raw
    default: []
  policies:
    description: L2 announcement policies, as for M(baremetal.l2lb.validate_model).
    type: list
    elements: raw
    default: []
  state:
    description: C(rendered) writes files into I(dest); C(applied) applies the CRs to the cluster.
    type: str
    choices: [rendered, applied]
    default: rendered
  dest:
    description:
      - Directory for the rendered files. Required with I(state=rendered); with I(state=applied) only
        C(values.yaml) is written there, and only when I(dest) is given.
    type: path
  cilium_version:
    description: The Cilium release the cluster runs; picks API versions and annotation names.
    type: str
    default: "1.16.5"
  namespace:
    description: Cilium's namespace (Helm release namespace, and where its announcement Leases live).
    type: str
    default: kube-system
  release_name:
    description: Cilium's Helm release name.
    type: str
    default: cilium
  chart_ref:
    description: The chart for the printed C(helm upgrade) command - a name from I(chart_repo_url), or
      C(repo/name), C(oci://...) or a path.
    type: str
    default: cilium
  chart_repo_url:
    description: Helm repository of the Cilium chart (in C(kustomization.yaml) and the printed command).
    type: str
    default: https://helm.cilium.io/
  announced_services:
    description: How many Services you expect Cilium to announce; the rate limit is sized from it.
    type: int
    default: 20
  nodes:
    description: Nodes taking part in the elections (for the API load estimate); counted from the cluster
      when applying.
    type: int
  lease_duration:
    description: C(l2announcements.leaseDuration); failover takes between duration - renew deadline and
      duration + renew deadline.
    type: str
    default: 15s
  lease_renew_deadline:
    description: C(l2announcements.leaseRenewDeadline); must exceed 1.2 x I(lease_retry_period).
    type: str
    default: 5s
  lease_retry_period:
    description: C(l2announcements.leaseRetryPeriod); every node polls every Lease this often.
    type: str
    default: 2s
  rate_limit_headroom:
    description: Factor on the computed announcement load (at least 1).
    type: float
    default: 1.5
  kube_proxy_replacement:
    description: C(kubeProxyReplacement) (L2 announcements require it).
    type: raw
    default: true
  external_ips:
    description: C(externalIPs.enabled); default on exactly when a policy announces externalIPs.
    type: bool
  rollout_pods:
    description: C(rollOutCiliumPods) and C(operator.rollOutPods).
    type: bool
    default: true
  k8s_service_host:
    description: C(k8sServiceHost) (the API server address Cilium uses without kube-proxy); omitted when empty.
    type: str
    default: ""
  k8s_service_port:
    description: C(k8sServicePort); omitted when not set.
    type: int
  extra_values:
    description: More Helm values, merged over ours (yours win).
    type: dict
    default: {}
  prune:
    description: Delete managed Cilium pools and policies that the inventory no longer lists.
    type: bool
    default: true
  adopt:
    description: Take over existing Cilium objects with a desired name that carry no managed-by label.
    type: bool
    default: false
  helm_binary:
    description: Name or path of the helm binary to look for.
    type: str
    default: helm
attributes:
  check_mode:
    support: full
    description: Reports what would change (and dry-runs the API writes), changes nothing.
  diff_mode:
    support: full
    description: File contents, or object specs keyed by kind/name, before and after.
  idempotent:
    support: full
    description: A second run with the same input reports C(changed=false).
"""

EXAMPLES = r"""
- name: Render Cilium values and CRs for GitOps
  baremetal.l2lb.cilium_config:
    pools: "{{ l2lb_pools }}"
    policies: "{{ l2lb_policies }}"
    state: rendered
    dest: "{{ playbook_dir }}/gitops/cilium"
    cilium_version: "1.18.1"
    announced_services: 12

- name: Apply the pools and policies, write values.yaml for helm
  baremetal.l2lb.cilium_config:
    kubeconfig: /etc/l2lb/admin.kubeconfig
    pools: "{{ l2lb_pools }}"
    policies: "{{ l2lb_policies }}"
    state: applied
    dest: /srv/cilium
  register: cilium
"""

RETURN = r"""
values:
  description: The Helm values (ours merged with I(extra_values)).
  returned: success
  type: dict
  sample: {kubeProxyReplacement: true, l2announcements: {enabled: true, leaseDuration: 15s}, rollOutCiliumPods: true}
rate_limit:
  description: C(qps), C(burst) and the numbers behind them (services, nodes, per-agent and cluster request
    rates, the formula with the numbers filled in).
  returned: success
  type: dict
failover_seconds:
  description: Shortest and longest failover with these lease timings.
  returned: success
  type: list
  elements: float
announced_services:
  description: C(assumed) (I(announced_services)), C(counted) (from the cluster, applied only) and C(used).
  returned: success
  type: dict
resources:
  description: The Cilium CRs (pools, then policies).
  returned: success
  type: list
  elements: dict
files:
  description: Paths written (or that would be written in check mode).
  returned: success
  type: list
  elements: str
changes:
  description: API writes done (or that would be done), C({action, kind, name}).
  returned: success
  type: list
  elements: dict
helm:
  description: C(path) of the helm binary (null when none), C(values_file) (null when not written), and the
    exact upgrade C(command).
  returned: success
  type: dict
problems:
  description: Validation problems (object, field, kind, message, fix) when the model is invalid.
  returned: failure
  type: list
  elements: dict
"""

import os
import shutil
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.l2lb.plugins.module_utils import cilium, managed_objects, rendered_files
from ansible_collections.baremetal.l2lb.plugins.module_utils.kube import AUTH_ARG_SPEC, KubeClient, KubeError
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import Model, ModelError, build_model

VALUES_FILE = "values.yaml"


class CiliumConfig:
    """Backend: the rendered objects and values for one model, and how to put them in place."""

    def __init__(self, model: Model, params: dict[str, Any]) -> None:
        self.model = model
        self.params = params
        self.version = params["cilium_version"]
        self.pool_kind = managed_objects.ObjectKind(
            cilium.GROUP, cilium.pool_version(self.version), cilium.POOL_PLURAL, cilium.POOL_KIND
        )
        self.policy_kind = managed_objects.ObjectKind(
            cilium.GROUP, cilium.POLICY_VERSION, cilium.POLICY_PLURAL, cilium.POLICY_KIND
        )
        self.pools, self.policies = cilium.render_crs(model, self.version)
        self.timings = cilium.LeaseTimings.parse(
            params["lease_duration"], params["lease_renew_deadline"], params["lease_retry_period"]
        )
        self.counted: int | None = None
        self.nodes: int | None = params["nodes"]

    @property
    def services(self) -> int:
        return max(self.params["announced_services"], self.counted or 0)

    def count_from(self, client: KubeClient) -> None:
        """Services Cilium would announce and the nodes a policy selects, as the cluster has them now."""
        self.counted = cilium.count_announced_services(client.list_services(), self.model)
        nodes = client.list_nodes()
        selected = [
            n
            for n in nodes
            if any(p.selects_node((n.get("metadata") or {}).get("labels")) for p in self.model.policies)
        ]
        self.nodes = len(selected)

    def rate_limit(self) -> cilium.RateLimit:
        return cilium.size_rate_limit(
            self.services, self.nodes or 0, self.timings.retry_period, self.params["rate_limit_headroom"]
        )

    def values(self) -> dict[str, Any]:
        options = cilium.ValuesOptions(
            timings=self.timings,
            rate_limit=self.rate_limit(),
            kube_proxy_replacement=self.params["kube_proxy_replacement"],
            external_ips=self.params["external_ips"],
            rollout_pods=self.params["rollout_pods"],
            k8s_service_host=self.params["k8s_service_host"] or "",
            k8s_service_port=self.params["k8s_service_port"],
            extra=self.params["extra_values"] or {},
        )
        return cilium.helm_values(self.model, options)

    def files(self, with_crs: bool) -> dict[str, str]:
        contents = {VALUES_FILE: rendered_files.dump_yaml([self.values()])}
        if with_crs:
            contents["ippools.yaml"] = rendered_files.dump_yaml(self.pools) if self.pools else rendered_files.HEADER
            contents["l2policies.yaml"] = (
                rendered_files.dump_yaml(self.policies) if self.policies else rendered_files.HEADER
            )
            contents["kustomization.yaml"] = rendered_files.dump_yaml(
                [
                    cilium.kustomization(
                        self.version,
                        self.params["release_name"],
                        self.params["namespace"],
                        self.params["chart_repo_url"],
                    )
                ]
            )
        return contents

    def objects(self, client: KubeClient) -> managed_objects.ManagedObjects:
        desired = [(self.pool_kind, p) for p in self.pools] + [(self.policy_kind, p) for p in self.policies]
        return managed_objects.ManagedObjects(
            client, desired, [self.pool_kind, self.policy_kind], self.params["prune"], self.params["adopt"]
        )

    def check_crds(self, client: KubeClient) -> None:
        for kind in (self.pool_kind, self.policy_kind):
            served = client.crd_versions(kind.crd)
            if served is None:
                raise KubeError(
                    f"CRD {kind.crd} is not installed: is Cilium running in this cluster? (its operator registers "
                    "the CRD at start; LB-IPAM needs Cilium >= 1.13, L2 announcements >= 1.14)"
                )
            if kind.version not in served:
                raise KubeError(
                    f"CRD {kind.crd} does not serve {kind.version} (it serves {', '.join(served)}): set "
                    f"cilium_version to the Cilium release the cluster runs (now {self.version})"
                )

    def warnings(self) -> list[str]:
        out = []
        for pool in self.model.pools:
            if any(b.range.version == 6 for b in pool.blocks):
                out.append(
                    f'pool "{pool.name}": Cilium\'s L2 announcements answer ARP only, not NDP: its IPv6 addresses '
                    "are assigned but not announced"
                )
        if self.params["kube_proxy_replacement"] in (False, "false", "disabled"):
            out.append("kubeProxyReplacement is off: Cilium's L2 announcements require it")
        return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pools": {"type": "list", "elements": "raw", "default": []},
            "policies": {"type": "list", "elements": "raw", "default": []},
            "state": {"type": "str", "choices": ["rendered", "applied"], "default": "rendered"},
            "dest": {"type": "path"},
            "cilium_version": {"type": "str", "default": cilium.DEFAULT_VERSION},
            "namespace": {"type": "str", "default": "kube-system"},
            "release_name": {"type": "str", "default": "cilium"},
            "chart_ref": {"type": "str", "default": "cilium"},
            "chart_repo_url": {"type": "str", "default": cilium.CHART_REPO},
            "announced_services": {"type": "int", "default": 20},
            "nodes": {"type": "int"},
            "lease_duration": {"type": "str", "default": "15s"},
            "lease_renew_deadline": {"type": "str", "default": "5s"},
            "lease_retry_period": {"type": "str", "default": "2s"},
            "rate_limit_headroom": {"type": "float", "default": cilium.DEFAULT_HEADROOM},
            "kube_proxy_replacement": {"type": "raw", "default": True},
            "external_ips": {"type": "bool"},
            "rollout_pods": {"type": "bool", "default": True},
            "k8s_service_host": {"type": "str", "default": ""},
            "k8s_service_port": {"type": "int"},
            "extra_values": {"type": "dict", "default": {}},
            "prune": {"type": "bool", "default": True},
            "adopt": {"type": "bool", "default": False},
            "helm_binary": {"type": "str", "default": "helm"},
            **AUTH_ARG_SPEC,
        },
        required_if=[("state", "rendered", ["dest"])],
        supports_check_mode=True,
    )
    params = module.params
    try:
        model = build_model(params["pools"], params["policies"])
    except ModelError as exc:
        module.fail_json(msg=str(exc), problems=[p.to_dict() for p in exc.problems])
        return
    try:
        config = CiliumConfig(model, params)
    except cilium.CiliumConfigError as exc:
        module.fail_json(msg=str(exc))
        return
    for warning in [*model.warnings, *config.warnings()]:
        module.warn(warning)

    changes: list[managed_objects.Change] = []
    try:
        if params["state"] == "applied":
            client = KubeClient(params)
            config.check_crds(client)
            config.count_from(client)
            objects = config.objects(client)
            changes = objects.plan()
            objects.apply(changes, dry_run=True)  # every write passes the API's own validation first
            if not module.check_mode:
                objects.apply(changes, dry_run=False)
    except (KubeError, cilium.CiliumConfigError) as exc:
        module.fail_json(msg=str(exc), changes=[c.summary() for c in changes])
        return

    dest = params["dest"]
    file_changes: list[rendered_files.FileChange] = []
    if dest:
        file_changes = rendered_files.plan_files(dest, config.files(with_crs=params["state"] == "rendered"))
        if not module.check_mode:
            try:
                rendered_files.write_files(file_changes)
            except OSError as exc:
                module.fail_json(msg=f"cannot write into {dest}: {exc}")
                return

    values_file = os.path.join(dest, VALUES_FILE) if dest else None
    rate = config.rate_limit()
    result: dict[str, Any] = {
        "changed": bool(changes or file_changes),
        "values": config.values(),
        "rate_limit": rate.to_dict(),
        "failover_seconds": list(config.timings.failover_seconds),
        "announced_services": {
            "assumed": params["announced_services"],
            "counted": config.counted,
            "used": config.services,
        },
        "resources": config.pools + config.policies,
        "files": [c.path for c in file_changes],
        "changes": [c.summary() for c in changes],
        "helm": {
            "path": shutil.which(params["helm_binary"]),
            "values_file": values_file,
            "command": cilium.helm_command(
                config.version,
                params["release_name"],
                params["namespace"],
                values_file or VALUES_FILE,
                params["chart_ref"],
                params["chart_repo_url"],
            ),
        },
    }
    if module._diff:
        if params["state"] == "applied" and not file_changes:
            result["diff"] = managed_objects.diff_of(changes)
        else:
            result["diff"] = rendered_files.diff_of(file_changes)
            if changes:
                result["diff"].append(managed_objects.diff_of(changes))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
