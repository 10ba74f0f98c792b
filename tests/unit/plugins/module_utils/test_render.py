"""Rendering: CRs from the model, and the committed CRD file matches what the model renders."""

from __future__ import annotations

import render_crds

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import build_model
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.render import crd_manifests, render_model


def test_committed_crd_file_is_current() -> None:
    assert render_crds.TARGET.read_text() == render_crds.render(), "run `make crds` and commit the result"


def test_crds_are_cluster_scoped_with_status_on_pools() -> None:
    pool_crd, policy_crd, _ = crd_manifests()
    assert pool_crd["metadata"]["name"] == "loadbalancerippools.l2lb.io"
    assert pool_crd["spec"]["scope"] == policy_crd["spec"]["scope"] == "Cluster"
    assert pool_crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    assert "subresources" not in policy_crd["spec"]["versions"][0]


def test_render_model_labels_objects_as_managed() -> None:
    model = build_model([{"name": "lan", "blocks": [{"start": "198.18.10.1"}]}], [{"name": "all"}])
    pool, policy = render_model(model)
    assert pool["apiVersion"] == "l2lb.io/v1alpha1" and pool["kind"] == "LoadBalancerIPPool"
    assert pool["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "baremetal.l2lb"}
    assert pool["spec"]["blocks"] == [{"start": "198.18.10.1"}]
    assert policy["kind"] == "L2AnnouncementPolicy" and policy["spec"]["loadBalancerIPs"] is True


def test_assignment_crd_is_namespaced_and_strict() -> None:
    crd = crd_manifests()[2]
    assert crd["metadata"]["name"] == "l2assignments.l2lb.io"
    assert crd["spec"]["scope"] == "Namespaced"
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["node", "announcements"]
    entry = spec["properties"]["announcements"]["items"]
    assert entry["required"] == ["ip", "interfaces"]
    assert entry["properties"]["source"]["enum"] == ["LoadBalancer", "ExternalIP"]
