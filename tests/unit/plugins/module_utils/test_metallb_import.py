"""MetalLB import: a realistic home-lab configuration, every address format, and nothing dropped silently."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.baremetal.l2lb.plugins.module_utils import metallb
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import build_model

HOMELAB = Path(__file__).resolve().parents[3] / "fixtures" / "metallb" / "homelab"
REQ = metallb.REQUEST_LABEL


def _homelab() -> list[Any]:
    docs: list[Any] = []
    for name in ("metallb-config.yaml", "services.yaml"):
        docs.extend(yaml.safe_load_all((HOMELAB / name).read_text()))
    return docs


@pytest.fixture(scope="module")
def imported() -> metallb.ImportResult:
    return metallb.import_metallb(_homelab())


def _pool(result: metallb.ImportResult, name: str) -> dict[str, Any]:
    return next(p for p in result.pools if p["name"] == name)


def _plan(result: metallb.ImportResult, ref: str) -> metallb.ServiceRewrite:
    return next(r for r in result.rewrites if r.ref == ref)


def _lost(result: metallb.ImportResult, obj: str) -> list[str]:
    return [f"{u.field}: {u.reason}" for u in result.unexpressible if u.obj == obj]


def test_pools_keep_every_address_metallb_could_hand_out(imported: metallb.ImportResult) -> None:
    assert [p["name"] for p in imported.pools] == ["lan", "dmz", "reserved", "iot"]
    # MetalLB hands out every address of a CIDR; avoidBuggyIPs removes .0 and .255 exactly.
    assert _pool(imported, "lan")["blocks"] == [{"start": "198.18.10.1", "stop": "198.18.10.254"}]
    assert _pool(imported, "iot")["blocks"] == [
        {"start": "198.18.40.1", "stop": "198.18.40.254"},
        {"start": "198.18.41.1", "stop": "198.18.41.254"},
    ]
    assert _pool(imported, "dmz")["blocks"] == [
        {"start": "198.18.20.10", "stop": "198.18.20.30"},
        {"start": "198.18.20.64", "stop": "198.18.20.71"},  # "a - b" with spaces, as MetalLB accepts
        {"cidr": "198.18.20.100/32"},
    ]
    assert _pool(imported, "reserved")["blocks"] == [{"cidr": "198.18.30.0/28"}]  # host bits masked like MetalLB
    assert any("198.18.30.5/28 has host bits set" in n for n in imported.notes)
    assert all(p["allowFirstLastIPs"] is True for p in imported.pools)


def test_the_imported_model_is_valid_and_allocates_the_same_addresses(imported: metallb.ImportResult) -> None:
    model = build_model(imported.pools, imported.policies)
    lan = model.pool("lan")
    assert lan is not None
    usable = [str(ip) for r in lan.usable_ranges() for ip in r.addresses()]
    assert usable[0] == "198.18.10.1" and usable[-1] == "198.18.10.254" and len(usable) == 254
    reserved = model.pool("reserved")
    assert reserved is not None and sum(r.size for r in reserved.usable_ranges()) == 16  # all 16, like MetalLB


def test_pools_asked_for_by_name_or_not_auto_assigned_are_gated_by_the_request_label(
    imported: metallb.ImportResult,
) -> None:
    model = build_model(imported.pools, imported.policies)

    def eligible(labels: dict[str, str]) -> set[str]:
        return {p.name for p in model.pools if p.selects_service(labels)}

    # iot serves Home Assistant's Services in namespace iot only (its serviceSelector AND its namespaces).
    home_assistant = {"app.kubernetes.io/part-of": "home-assistant", "io.kubernetes.service.namespace": "iot"}
    assert eligible({}) == {"lan", "dmz"}  # reserved is autoAssign: false; iot needs its serviceSelector
    assert eligible(home_assistant) == {"lan", "dmz", "iot"}
    assert "iot" not in eligible({**home_assistant, "io.kubernetes.service.namespace": "default"})
    assert eligible({REQ: "dmz"}) == {"dmz"}
    assert eligible({REQ: "reserved"}) == {"reserved"}
    assert eligible({REQ: "iot", **home_assistant}) == {"iot"}


def test_advertisements_become_policies_node_selectors_ored_interfaces_anchored(imported: metallb.ImportResult) -> None:
    policies = {p["name"]: p for p in imported.policies}
    assert list(policies) == ["home-workers", "reserved-0", "reserved-1", "rest"]
    workers = policies["home-workers"]
    assert workers["nodeSelector"] == {"matchLabels": {"homelab/role": "worker"}}
    assert workers["interfaces"] == ["^enp0s25$", r"^br\-lan$"]
    model = build_model(imported.pools, imported.policies)
    workers_policy = model.policy("home-workers")
    assert workers_policy is not None
    assert workers_policy.matches_interface("br-lan") and not workers_policy.matches_interface("br-lan0")
    # Two nodeSelectors, two policies: a node matching either may announce the reserved pool.
    assert policies["reserved-0"]["nodeSelector"] == {"matchLabels": {"homelab/role": "edge"}}
    assert policies["reserved-1"]["nodeSelector"]["matchExpressions"][0]["operator"] == "DoesNotExist"
    reserved_only = {"matchExpressions": [{"key": REQ, "operator": "In", "values": ["reserved"]}]}
    assert policies["reserved-0"]["serviceSelector"] == policies["reserved-1"]["serviceSelector"] == reserved_only
    # Every pool but the gated one: exact as NotIn on the request label.
    assert policies["rest"]["serviceSelector"] == {
        "matchExpressions": [{"key": REQ, "operator": "NotIn", "values": ["reserved"]}]
    }
    assert all(p["loadBalancerIPs"] is True and p["externalIPs"] is False for p in imported.policies)


def test_service_plan_rewrites_ips_sharing_keys_and_pool_requests(imported: metallb.ImportResult) -> None:
    tcp, udp = _plan(imported, "dns/pihole-tcp"), _plan(imported, "dns/pihole-udp")
    for plan in (tcp, udp):
        assert plan.annotations == {"l2lb.io/ips": "198.18.10.53", "l2lb.io/sharing-key": "pihole"}
        assert plan.remove == [] and plan.labels == {}  # MetalLB's annotations stay while MetalLB runs
    ingress = _plan(imported, "web/ingress")
    assert ingress.labels == {REQ: "dmz"}
    assert ingress.annotations == {"l2lb.io/ips": "198.18.20.10"}  # pinned: the address MetalLB gave it
    assert _plan(imported, "home/mqtt").annotations == {"l2lb.io/ips": "198.18.10.20"}
    nas = _plan(imported, "home/nas")
    assert nas.labels == {REQ: "reserved"}  # its IP lies in a pool that only serves Services asking for it
    jellyfin = _plan(imported, "media/jellyfin")
    assert jellyfin.annotations == {"l2lb.io/ips": "198.18.10.80", "l2lb.io/sharing-key": "media"}
    assert any("spec.loadBalancerIP (deprecated)" in n for n in jellyfin.notes)
    assert "monitoring/metrics" not in {r.ref for r in imported.rewrites}
    assert (
        'Service "monitoring/metrics": not of type LoadBalancer: its MetalLB annotations had no effect; left alone'
        in (imported.notes)
    )


def test_what_cannot_be_expressed_is_listed_with_its_consequence(imported: metallb.ImportResult) -> None:
    iot = _lost(imported, 'IPAddressPool "iot"')
    assert any(x.startswith("spec.serviceAllocation.priority") for x in iot)
    assert not any(x.startswith("spec.serviceAllocation.namespaces") for x in iot), "expressible now"
    assert any(
        "also announces IPs from dmz, iot, reserved" in x for x in _lost(imported, 'L2Advertisement "home-workers"')
    )
    assert _lost(imported, 'BGPAdvertisement "old-router"') == [": BGP is out of scope (layer 2 only); not imported"]
    assert imported.problems == [], "the homelab fixture is valid input"
    legacy = _lost(imported, 'Service "web/legacy"')
    assert any(x.startswith("spec.loadBalancerClass") for x in legacy)
    assert any("metallb.io/some-future-option" in x for x in legacy)
    kuma = _lost(imported, 'Service "tools/kuma"')
    assert kuma == ["spec.ports: shares key 'media' with media/jellyfin and both use 8096/TCP: sharing will be refused"]
    # ... and the same list heads the YAML the user pastes.
    comments = " ".join(line[1:].strip() for line in imported.inventory_yaml().splitlines() if line.startswith("#"))
    for item in imported.unexpressible:
        assert f"- {item}" in comments
    assert max(len(line) for line in imported.inventory_yaml().splitlines()) <= 120  # lints in the user's repo


def test_every_metallb_annotation_is_either_carried_over_or_listed(imported: metallb.ImportResult) -> None:
    listed = {(u.obj, u.field) for u in imported.unexpressible}
    for service in _homelab()[-1]["items"]:
        meta = service["metadata"]
        ref = f"{meta['namespace']}/{meta['name']}"
        plan = next((r for r in imported.rewrites if r.ref == ref), None)
        for key, value in (meta.get("annotations") or {}).items():
            short = key.split("/", 1)[1]
            carried = (
                service["spec"]["type"] != "LoadBalancer"  # MetalLB ignored it; noted, left alone
                or short == "ip-allocated-from-pool"  # written by MetalLB itself, describes its allocation
                or (
                    plan is not None
                    and (
                        (short == "loadBalancerIPs" and plan.annotations.get("l2lb.io/ips") == value)
                        or (short == "allow-shared-ip" and plan.annotations.get("l2lb.io/sharing-key") == value)
                        or (short == "address-pool" and plan.labels.get(REQ) == value)
                    )
                )
            )
            assert carried or (f'Service "{ref}"', f"metadata.annotations[{key}]") in listed, (ref, key)


def test_inventory_yaml_round_trips(imported: metallb.ImportResult) -> None:
    loaded = yaml.safe_load(imported.inventory_yaml())
    assert loaded == {"l2lb_pools": imported.pools, "l2lb_policies": imported.policies}
    assert "&id" not in imported.inventory_yaml() and "*id" not in imported.inventory_yaml()


def test_cilium_backend_uses_ciliums_annotations_and_cross_namespace_sharing() -> None:
    result = metallb.import_metallb(_homelab(), backend="cilium", cilium_version="1.17.3")
    assert _plan(result, "dns/pihole-udp").annotations == {
        "lbipam.cilium.io/ips": "198.18.10.53",
        "lbipam.cilium.io/sharing-key": "pihole",
    }
    kuma, jellyfin = _plan(result, "tools/kuma"), _plan(result, "media/jellyfin")
    assert kuma.annotations[metallb.CILIUM_CROSS_NAMESPACE] == "media"
    assert jellyfin.annotations[metallb.CILIUM_CROSS_NAMESPACE] == "tools"
    assert "l2lb_backend: cilium" in result.inventory_yaml()
    old = metallb.import_metallb(_homelab(), backend="cilium", cilium_version="1.14.5")
    assert "io.cilium/lb-ipam-ips" in _plan(old, "dns/pihole-udp").annotations


def test_plan_is_empty_once_applied_and_remove_mode_drops_metallbs_annotations() -> None:
    docs = _homelab()
    first = metallb.import_metallb(docs, remove_metallb_annotations=True)
    assert _plan(first, "dns/pihole-udp").remove == [
        "metallb.universe.tf/allow-shared-ip",
        "metallb.universe.tf/loadBalancerIPs",
    ]
    # Apply the plan to the objects, import again: nothing left to do for the Services that were rewritten.
    plans = {r.ref: r for r in first.rewrites}
    for service in docs[-1]["items"]:
        meta = service["metadata"]
        plan = plans.get(f"{meta['namespace']}/{meta['name']}")
        if plan is None:
            continue
        annotations = {**(meta.get("annotations") or {}), **plan.annotations}
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in plan.remove}
        meta["labels"] = {**(meta.get("labels") or {}), **plan.labels}
    second = metallb.import_metallb(docs, remove_metallb_annotations=True)
    assert second.rewrites == []


@pytest.mark.parametrize(
    ("text", "block"),
    [
        ("198.18.0.0/24", {"cidr": "198.18.0.0/24"}),
        ("198.18.0.7/24", {"cidr": "198.18.0.0/24"}),
        ("198.18.0.10-198.18.0.20", {"start": "198.18.0.10", "stop": "198.18.0.20"}),
        (" 198.18.0.10 - 198.18.0.20 ", {"start": "198.18.0.10", "stop": "198.18.0.20"}),
        ("2001:db8::10-2001:db8::20", {"start": "2001:db8::10", "stop": "2001:db8::20"}),
        ("2001:db8::/120", {"cidr": "2001:db8::/120"}),
    ],
)
def test_address_formats(text: str, block: dict[str, str]) -> None:
    parsed = metallb.parse_address(text)
    assert parsed is not None and parsed[0] == block


@pytest.mark.parametrize(
    "text", ["198.18.0.20-198.18.0.10", "198.18.0.1", "198.18.0.0/33", "a-b", "198.18.0.1-2001:db8::1"]
)
def test_invalid_addresses_are_refused(text: str) -> None:
    assert metallb.parse_address(text) is None


def test_avoid_buggy_ips_split_exact_or_listed() -> None:
    def pool(addresses: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "p"},
            "spec": {"addresses": addresses, "avoidBuggyIPs": True},
        }

    adv = {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "all"}, "spec": {}}
    small = metallb.import_metallb([pool(["198.18.0.250-198.18.1.5", "198.18.3.255/32", "2001:db8::/126"]), adv])
    assert small.pools[0]["blocks"] == [
        {"start": "198.18.0.250", "stop": "198.18.0.254"},
        {"start": "198.18.1.1", "stop": "198.18.1.5"},
        {"cidr": "2001:db8::/126"},  # IPv6 has no .0/.255 problem
    ]
    assert any("every address of 198.18.3.255/32 ends in .0 or .255" in str(u) for u in small.unexpressible)
    # Check it against the definition: no allocatable address ends in .0 or .255, none other is lost.
    model = build_model(small.pools, small.policies)
    p = model.pool("p")
    assert p is not None
    v4 = [ip for r in p.usable_ranges() if r.version == 4 for ip in r.addresses()]
    assert v4 == [
        ip
        for ip in (
            ipaddress.IPv4Address(n)
            for n in range(int(ipaddress.IPv4Address("198.18.0.250")), int(ipaddress.IPv4Address("198.18.1.5")) + 1)
        )
        if ip.packed[-1] not in (0, 255)
    ]
    big = metallb.import_metallb([pool(["198.18.0.0/16"]), adv])
    assert big.pools[0]["blocks"] == [{"cidr": "198.18.0.0/16"}] and big.pools[0]["allowFirstLastIPs"] is False
    assert any("spans 256 /24s" in str(u) for u in big.unexpressible)


def test_legacy_configmap_and_no_advertisement() -> None:
    config = {
        "address-pools": [
            {"name": "default", "protocol": "layer2", "addresses": ["198.18.50.10-198.18.50.20"]},
            {"name": "bgp", "protocol": "bgp", "addresses": ["198.18.51.0/24"]},
        ]
    }
    legacy = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config"},
        "data": {"config": yaml.safe_dump(config)},
    }
    result = metallb.import_metallb([legacy])
    assert result.pools == [
        {"name": "default", "blocks": [{"start": "198.18.50.10", "stop": "198.18.50.20"}], "allowFirstLastIPs": True}
    ]
    assert result.policies == [{"name": "legacy-layer2", "loadBalancerIPs": True, "externalIPs": False}]
    assert any("protocol bgp" in str(u) for u in result.unexpressible)

    only_pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": ["198.18.52.0/28"]},
    }
    result = metallb.import_metallb([only_pool])
    assert result.policies == [] and any(u.obj == "L2Advertisement" for u in result.unexpressible)
