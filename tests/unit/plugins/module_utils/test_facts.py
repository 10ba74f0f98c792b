"""Facts helpers: lease liveness by observed change (not clocks), Service views."""

from __future__ import annotations

from datetime import UTC, datetime

from ansible_collections.baremetal.l2lb.plugins.module_utils.facts import (
    classify_leases,
    is_our_load_balancer,
    service_view,
)


def _lease(name: str, rv: str, renew: str = "2026-11-21T10:00:00.000000Z", holder: str = "n1") -> dict:
    return {
        "metadata": {"name": name, "resourceVersion": rv, "annotations": {"l2lb.io/lease-duration": "2"}},
        "spec": {"holderIdentity": holder, "renewTime": renew},
    }


def test_liveness_is_observed_change_not_clock() -> None:
    now = datetime(2026, 11, 21, 10, 0, 30, tzinfo=UTC)
    # n1 renews (its clock is 30 s behind ours), n2 stopped: same resourceVersion in both reads.
    first = [_lease("l2lb-node-n1", "1"), _lease("l2lb-node-n2", "5"), _lease("l2lb-controller", "7")]
    second = [_lease("l2lb-node-n1", "9"), _lease("l2lb-node-n2", "5"), _lease("l2lb-controller", "8")]
    facts = classify_leases(first, second, now)
    assert facts["heartbeats"]["n1"]["alive"] is True
    assert facts["heartbeats"]["n1"]["renew_age_seconds"] == 30.0
    assert facts["heartbeats"]["n2"]["alive"] is False
    assert facts["controller"]["alive"] is True and facts["controller"]["holder"] == "n1"


def test_deleted_lease_is_dead_and_cilium_leases_are_grouped() -> None:
    first = [_lease("l2lb-node-n1", "1"), _lease("cilium-l2announce-default-web", "3", holder="n3")]
    facts = classify_leases(first, [_lease("cilium-l2announce-default-web", "4", holder="n3")])
    assert facts["heartbeats"]["n1"]["alive"] is False
    assert facts["cilium"]["default-web"]["holder"] == "n3" and facts["cilium"]["default-web"]["alive"] is True


def test_service_view_and_class_filter() -> None:
    svc = {
        "metadata": {
            "namespace": "default",
            "name": "dns",
            "annotations": {
                "l2lb.io/announcing-node": "n2",
                "l2lb.io/announcing-interfaces": "eth0,eth1",
                "metallb.universe.tf/allow-shared-ip": "pihole",
                "l2lb.io/pool": "lan",
            },
        },
        "spec": {"type": "LoadBalancer", "ports": [{"port": 53, "protocol": "UDP"}]},
        "status": {
            "loadBalancer": {"ingress": [{"ip": "198.18.0.241"}]},
            "conditions": [
                {"type": "l2lb.io/Announced", "status": "True", "reason": "Announced"},
                {"type": "other", "status": "True"},
            ],
        },
    }
    view = service_view(svc)
    assert view["ips"] == ["198.18.0.241"] and view["sharing_key"] == "pihole"
    assert view["announcing_interfaces"] == ["eth0", "eth1"] and view["pool"] == "lan"
    assert [c["type"] for c in view["conditions"]] == ["l2lb.io/Announced"]
    assert is_our_load_balancer(svc)
    assert not is_our_load_balancer({"spec": {"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}})
    assert not is_our_load_balancer({"spec": {"type": "ClusterIP"}})


def test_the_announcing_node_comes_from_the_assignment_objects_not_the_annotation() -> None:
    from ansible_collections.baremetal.l2lb.plugins.module_utils.facts import assignments_by_ip
    from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.contract import AssignedIP, assignment_body

    objects = [
        assignment_body("l2lb-system", "node2", [AssignedIP("198.18.0.241", ("host0",), ("default/web",))]),
        assignment_body("l2lb-system", "node3", []),
    ]
    service = {
        "metadata": {"name": "web", "namespace": "default", "annotations": {"l2lb.io/announcing-node": "node3"}},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.241"}]}},
    }
    view = service_view(service, assignments_by_ip(objects))
    assert (view["announcing_node"], view["announcing_interfaces"], view["annotated_node"]) == (
        "node2",
        ["host0"],
        "node3",
    )
    assert service_view(service)["announcing_node"] == "node3", "without assignment objects: the annotation"


def test_each_ip_has_its_own_announcement_from_the_objects_or_the_annotations() -> None:
    from ansible_collections.baremetal.l2lb.plugins.module_utils.facts import assignments_by_ip
    from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.contract import AssignedIP, assignment_body

    v6 = "2001:2:0:1::241"
    service = {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "annotations": {
                "l2lb.io/announcing-node": f"198.18.0.241=node2,{v6}=node3",
                "l2lb.io/announcing-interfaces": f"198.18.0.241=host0,{v6}=eth1+eth2",
            },
        },
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.241"}, {"ip": v6}]}},
    }
    assert service_view(service)["announcements"] == {
        "198.18.0.241": {"node": "node2", "interfaces": ["host0"]},
        v6: {"node": "node3", "interfaces": ["eth1", "eth2"]},
    }
    objects = [assignment_body("l2lb-system", "node1", [AssignedIP(v6, ("host0",), ("default/web",))])]
    view = service_view(service, assignments_by_ip(objects))
    assert view["announcements"] == {v6: {"node": "node1", "interfaces": ["host0"]}}, "only what is assigned"
    assert view["announcing_node"] == "node1"
