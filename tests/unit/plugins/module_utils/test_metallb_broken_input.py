"""Broken MetalLB input is refused whole, with every problem named (object, field, fix); nothing is translated.

Each case is one real-world mistake (misspelt keys, a bare IP, a reversed range, annotations beside metadata,
a version-less apiVersion, ports as a mapping, an assigned IP outside every pool, a legacy ConfigMap with
unknown keys, pools the model refuses), fed on its own beside a valid pool and advertisement.
"""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.baremetal.l2lb.plugins.module_utils import metallb

V = "metallb.io/v1beta1"


def pool(name: str = "lan", addresses: Any = ("198.18.10.0/28",), **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": V,
        "kind": "IPAddressPool",
        "metadata": {"name": name},
        "spec": {"addresses": list(addresses) if isinstance(addresses, tuple) else addresses, **spec},
    }


def advertisement(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": V, "kind": "L2Advertisement", "metadata": {"name": "l2"}, "spec": spec}


def service(name: str = "web", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }
    for key, value in extra.items():
        if key in ("metadata", "spec"):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def problems(*objects: Any, backend: str = "l2lb") -> list[tuple[str, str, str, str]]:
    result = metallb.import_metallb(list(objects), backend=backend)
    return [(p.obj, p.field, p.message, p.fix) for p in result.problems]


def test_valid_input_has_no_problems() -> None:
    assert problems(pool(), advertisement(ipAddressPools=["lan"]), service()) == []


@pytest.mark.parametrize(
    ("spec", "field", "fix"),
    [
        ({"ipaddresspools": ["lan"]}, "spec.ipaddresspools", 'did you mean "ipAddressPools"?'),
        ({"nodeSelector": [{"matchLabels": {"a": "b"}}]}, "spec.nodeSelector", 'did you mean "nodeSelectors"?'),
    ],
)
def test_misspelt_advertisement_keys_are_refused_not_ignored(spec: dict[str, Any], field: str, fix: str) -> None:
    # Ignoring them would turn "these pools on these nodes" into "every pool on every node".
    [(obj, got_field, message, got_fix)] = problems(pool(), advertisement(**spec))
    assert (obj, got_field, message, got_fix) == ('L2Advertisement "l2"', field, "unknown key", fix)


def test_misspelt_pool_keys_and_allocation_keys() -> None:
    found = problems(pool(autoassign=False, serviceAllocation={"serviceSelector": [{}]}), advertisement())
    assert [(f, fix) for _, f, _, fix in found] == [
        ("spec.autoassign", 'did you mean "autoAssign"?'),
        ("spec.serviceAllocation.serviceSelector", 'did you mean "serviceSelectors"?'),
    ]


def test_annotations_beside_metadata_are_refused_with_where_they_belong() -> None:
    broken = service(annotations={"metallb.io/loadBalancerIPs": "198.18.10.5"})
    [(obj, field, _, fix)] = problems(pool(), advertisement(), broken)
    assert (obj, field, fix) == ('Service "default/web"', "annotations", "move it under metadata: metadata.annotations")


@pytest.mark.parametrize(
    ("api_version", "message"),
    [
        ("metallb.io", "'metallb.io' is not the apiVersion of IPAddressPool"),
        ("cilium.io/v2", "'cilium.io/v2' is not the apiVersion of IPAddressPool"),
        (None, "missing"),
    ],
)
def test_the_api_version_is_checked(api_version: str | None, message: str) -> None:
    broken = pool()
    if api_version is None:
        del broken["apiVersion"]
    else:
        broken["apiVersion"] = api_version
    [(obj, field, got, fix)] = problems(broken, advertisement())
    assert (obj, field, got, fix) == (
        'IPAddressPool "lan"',
        "apiVersion",
        message,
        "use apiVersion: metallb.io/v1beta1",
    )


@pytest.mark.parametrize(
    ("address", "message", "fix"),
    [
        ("198.18.10.5", "'198.18.10.5' is a single address; MetalLB takes CIDRs and ranges", "write 198.18.10.5/32"),
        ("2001:2::5", "'2001:2::5' is a single address; MetalLB takes CIDRs and ranges", "write 2001:2::5/128"),
        (
            "198.18.10.20-198.18.10.10",
            "range '198.18.10.20-198.18.10.10' starts after it stops",
            "swap them: 198.18.10.10-198.18.10.20",
        ),
        ("198.18.10.0/33", None, "write a CIDR such as 198.18.10.0/28 or a range a-b"),
        ("198.18.300.1-198.18.300.9", None, "write first-last, e.g. 198.18.0.10-198.18.0.20"),
        ("198.18.10.1-2001:2::1", "range '198.18.10.1-2001:2::1' mixes IPv4 and IPv6", "use one family per range"),
    ],
)
def test_bad_addresses_get_their_own_message_and_fix(address: str, message: str | None, fix: str) -> None:
    [(obj, field, got, got_fix)] = problems(pool(addresses=["198.18.11.0/28", address]), advertisement())
    assert (obj, field, got_fix) == ('IPAddressPool "lan"', "spec.addresses[1]", fix)
    if message is not None:
        assert got == message
    else:
        assert got.startswith(repr(address))


def test_ports_as_a_mapping_is_a_problem_not_a_crash() -> None:
    broken = service(
        metadata={"annotations": {"metallb.io/allow-shared-ip": "k"}},
        spec={"ports": {"http": {"port": 80}}},
    )
    other = service("other", metadata={"annotations": {"metallb.io/allow-shared-ip": "k"}})
    found = problems(pool(), advertisement(), broken, other)
    assert [(o, f) for o, f, _, _ in found] == [('Service "default/web"', "spec.ports")]


def test_an_assigned_ip_outside_every_new_pool_is_refused() -> None:
    printer = service("printer", metadata={"annotations": {"metallb.io/loadBalancerIPs": "198.18.99.9"}})
    [(obj, field, message, fix)] = problems(pool(), advertisement(), printer)
    assert obj == 'Service "default/printer"' and field == "loadBalancerIPs annotation"
    assert message.startswith("198.18.99.9 lies in no imported pool, but it is requested: the Service would lose")
    assert fix == "add 198.18.99.9 to a pool, or remove the request"


def test_a_status_ip_outside_every_pool_counts_only_for_metallbs_own_services() -> None:
    def with_status(name: str, **spec: Any) -> dict[str, Any]:
        return service(name, spec=spec, status={"loadBalancer": {"ingress": [{"ip": "198.18.99.7"}]}})

    # MetalLB handled the class-less Service: losing its address on the switch is a problem.
    [(obj, field, message, _)] = problems(pool(), advertisement(), with_status("mine"))
    assert (obj, field) == ('Service "default/mine"', "the IP MetalLB assigned (pinned so it survives the switch)")
    assert "but MetalLB assigned it" in message
    # Another implementation's class: listed, not pinned, not a failure.
    result = metallb.import_metallb([pool(), advertisement(), with_status("theirs", loadBalancerClass="kube-vip.io/x")])
    assert result.problems == []
    assert any("another class" in u.reason for u in result.unexpressible if u.obj == 'Service "default/theirs"')


def test_types_are_checked_with_the_value_shown_and_keys_must_be_strings() -> None:
    found = problems(pool(autoAssign="false"), advertisement(), service(metadata={"annotations": {1: "x"}}))
    assert [(f, m, fix) for _, f, m, fix in found] == [
        ("spec.autoAssign", "expected a boolean, got str 'false'", "write a boolean there"),
        ("metadata.annotations", "key 1 is not a string", "quote the key"),
    ]


def test_an_object_without_kind_or_with_a_misspelt_one_is_named() -> None:
    nameless = {"apiVersion": V, "metadata": {"name": "lan"}, "spec": {"addresses": ["198.18.10.0/28"]}}
    misspelt = {**pool("dmz"), "kind": "IPAdressPool"}
    found = problems(pool(), advertisement(), nameless, misspelt)
    assert [(o, f, m, fix) for o, f, m, fix in found] == [
        ('object "lan"', "kind", "missing", "add the kind, e.g. IPAddressPool"),
        ('IPAdressPool "dmz"', "kind", "unknown kind 'IPAdressPool'", 'did you mean "IPAddressPool"?'),
    ]


def test_a_pool_kept_out_by_its_own_problems_does_not_add_misleading_ones() -> None:
    wants = service("nas", metadata={"annotations": {"metallb.io/loadBalancerIPs": "198.18.20.5"}})
    found = problems(pool(), pool("nas", ["198.18.20.0/28"], autoAssign="no"), advertisement(), wants)
    assert [(o, f) for o, f, _, _ in found] == [('IPAddressPool "nas"', "spec.autoAssign")]


def test_a_legacy_config_map_with_unknown_keys_is_refused() -> None:
    config = (
        "protocol: bgp\n"
        "address-pools:\n"
        "- name: lan\n"
        "  protocol: layer2\n"
        "  cidr: [198.18.10.0/28]\n"
        "- name: good\n"
        "  protocol: layer2\n"
        "  addresses: [198.18.12.1-198.18.12.0]\n"
        "- name: typed\n"
        "  protocol: layer2\n"
        "  auto-assign: 'false'\n"
        "  addresses: [198.18.13.0/28]\n"
    )
    legacy = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config"}, "data": {"config": config}}
    found = problems(legacy)
    assert [(f, m) for _, f, m, _ in found] == [
        ("data.config.protocol", "unknown key"),
        ("data.config.address-pools[0].cidr", "unknown key"),
        ("data.config.address-pools[0].addresses", "missing"),
        ("data.config.address-pools[1].addresses[0]", "range '198.18.12.1-198.18.12.0' starts after it stops"),
        ("data.config.address-pools[2].auto-assign", "expected a boolean, got str 'false'"),
    ]


def test_a_model_the_import_cannot_build_is_a_failure_not_a_note() -> None:
    # Two pools overlapping: the model refuses the pair, so site.yml would refuse the imported file.
    found = problems(pool("a", ["198.18.10.0/24"]), pool("b", ["198.18.10.128/25"]), advertisement())
    assert found and all(obj.startswith("imported pool") for obj, _, _, _ in found)
    assert any("overlaps" in message for _, _, message, _ in found)


def test_a_document_that_is_not_an_object_is_named() -> None:
    [(obj, _, message, _)] = problems(pool(), advertisement(), "oops")
    assert (obj, message) == ("document 3", "expected a Kubernetes object (a mapping), got str")


def test_a_dns_pair_on_one_port_shares_for_l2lb_and_is_flagged_for_cilium() -> None:
    key = {"metallb.io/allow-shared-ip": "dns", "metallb.io/loadBalancerIPs": "198.18.10.5"}
    tcp = service("dns-tcp", metadata={"annotations": key}, spec={"ports": [{"port": 53, "protocol": "TCP"}]})
    udp = service("dns-udp", metadata={"annotations": key}, spec={"ports": [{"port": 53, "protocol": "UDP"}]})
    ours = metallb.import_metallb([pool(), advertisement(), tcp, udp])
    assert not [u for u in ours.unexpressible if u.field == "spec.ports"]
    cilium = metallb.import_metallb([pool(), advertisement(), tcp, udp], backend="cilium")
    [flag] = [u for u in cilium.unexpressible if u.field == "spec.ports"]
    assert "both use port 53" in flag.reason and "whatever the protocols" in flag.reason
