"""Every validation error class: the problem names the object, the field and a fix."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import ModelError, build_model, validate
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.problems import Problem


def _pool(name: str = "lan", **spec: Any) -> dict[str, Any]:
    return {"name": name, "blocks": [{"cidr": "198.18.10.0/28"}], **spec}


def _problems(pools: Any, policies: Any = None) -> list[Problem]:
    model, problems = validate(pools, policies)
    assert model is None, "expected the model to be rejected"
    return problems


def _only(pools: Any, policies: Any = None) -> Problem:
    problems = _problems(pools, policies)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_invalid_cidr_prefix_too_long() -> None:
    p = _only([_pool(blocks=[{"cidr": "198.18.10.0/33"}])])
    assert (p.obj, p.field, p.kind) == ('pool "lan"', "blocks[0].cidr", "invalid_cidr")
    assert "/33" in p.message and "0 and 32" in p.fix


def test_invalid_cidr_not_an_address() -> None:
    p = _only([_pool(blocks=[{"cidr": "198.18.300.0/24"}])])
    assert p.kind == "invalid_cidr" and "not an IP address" in p.message


def test_invalid_cidr_host_bits_set_suggests_network() -> None:
    p = _only([_pool(blocks=[{"cidr": "198.18.10.5/24"}])])
    assert p.kind == "invalid_cidr" and p.fix == "did you mean 198.18.10.0/24?"


def test_invalid_cidr_without_prefix() -> None:
    p = _only([_pool(blocks=[{"cidr": "198.18.10.5"}])])
    assert p.kind == "invalid_cidr" and "198.18.10.5/32" in p.fix


def test_start_after_stop_suggests_swap() -> None:
    p = _only([_pool(blocks=[{"start": "198.18.10.20", "stop": "198.18.10.10"}])])
    assert (p.field, p.kind) == ("blocks[0]", "start_after_stop")
    assert p.fix == "swap them: start 198.18.10.10, stop 198.18.10.20"


def test_mixed_ipv4_ipv6_in_one_block() -> None:
    p = _only([_pool(blocks=[{"start": "198.18.10.1", "stop": "2001:db8::1"}])])
    assert p.kind == "mixed_family" and "IPv4" in p.message and "IPv6" in p.message


def test_invalid_start_address() -> None:
    p = _only([_pool(blocks=[{"start": "198.18.10.0/24"}])])
    assert (p.field, p.kind) == ("blocks[0].start", "invalid_address") and "use cidr" in p.fix


def test_cidr_and_start_in_one_block() -> None:
    p = _only([_pool(blocks=[{"cidr": "198.18.10.0/28", "start": "198.18.10.1"}])])
    assert p.kind == "invalid_block"


def test_overlapping_blocks_within_one_pool() -> None:
    p = _only([_pool(blocks=[{"cidr": "198.18.10.0/24"}, {"start": "198.18.10.250", "stop": "198.18.11.5"}])])
    assert p.kind == "overlap" and p.obj == 'pool "lan"'
    assert "same pool" in p.message and "198.18.10.250-198.18.10.255" in p.message


def test_overlapping_blocks_across_pools_name_both_pools_and_range() -> None:
    p = _only([_pool("a", blocks=[{"cidr": "198.18.10.0/24"}]), _pool("b", blocks=[{"cidr": "198.18.10.128/25"}])])
    assert p.kind == "overlap" and p.obj == 'pool "a"' and 'pool "b"' in p.message
    assert "198.18.10.128-198.18.10.255" in p.message


def test_overlap_found_even_when_the_pool_has_other_problems() -> None:
    problems = _problems(
        [
            _pool("a", blocks=[{"cidr": "198.18.10.0/24"}], disabled="no"),
            _pool("b", blocks=[{"cidr": "198.18.10.0/25"}]),
        ]
    )
    assert {p.kind for p in problems} == {"wrong_type", "overlap"}


def test_ipv6_blocks_overlap() -> None:
    p = _only([_pool("a", blocks=[{"cidr": "2001:db8::/64"}]), _pool("b", blocks=[{"start": "2001:db8::ff"}])])
    assert p.kind == "overlap" and "2001:db8::ff" in p.message


def test_duplicate_pool_names() -> None:
    p = _only([_pool("lan", blocks=[{"cidr": "198.18.10.0/28"}]), _pool("lan", blocks=[{"cidr": "198.18.11.0/28"}])])
    assert p.kind == "duplicate_name" and "pools[0] and pools[1]" in p.message


def test_duplicate_policy_names() -> None:
    p = _only([_pool()], [{"name": "w"}, {"name": "w"}])
    assert p.kind == "duplicate_name" and p.obj == 'policy "w"'


def test_invalid_regex() -> None:
    p = _only([_pool()], [{"name": "w", "interfaces": ["^eth[0-9+"]}])
    assert (p.obj, p.field, p.kind) == ('policy "w"', "interfaces[0]", "invalid_regex")


def test_unknown_operator_suggests_case_fix() -> None:
    sel = {"matchExpressions": [{"key": "role", "operator": "exists"}]}
    p = _only([_pool()], [{"name": "w", "nodeSelector": sel}])
    assert (p.field, p.kind) == ("nodeSelector.matchExpressions[0].operator", "unknown_operator")
    assert p.fix == 'did you mean "Exists"?'


def test_unknown_operator_lists_valid_ones() -> None:
    sel = {"matchExpressions": [{"key": "role", "operator": "Equals", "values": ["a"]}]}
    p = _only([_pool(serviceSelector=sel)])
    assert p.kind == "unknown_operator" and "In, NotIn, Exists, DoesNotExist" in p.fix


@pytest.mark.parametrize("operator", ["Exists", "DoesNotExist"])
def test_values_given_with_exists(operator: str) -> None:
    sel = {"matchExpressions": [{"key": "role", "operator": operator, "values": ["worker"]}]}
    p = _only([_pool()], [{"name": "w", "nodeSelector": sel}])
    assert (p.field, p.kind) == ("nodeSelector.matchExpressions[0].values", "values_with_exists")


def test_in_without_values() -> None:
    sel = {"matchExpressions": [{"key": "role", "operator": "In"}]}
    p = _only([_pool(serviceSelector=sel)])
    assert p.kind == "missing" and "at least one value" in p.message


def test_unknown_key_suggests_closest() -> None:
    p = _only([_pool(serviceSelecter={})])
    assert (p.field, p.kind, p.fix) == ("serviceSelecter", "unknown_key", 'did you mean "serviceSelector"?')


def test_unknown_key_in_block_and_selector() -> None:
    problems = _problems([_pool(blocks=[{"cdir": "198.18.10.0/28"}], serviceSelector={"matchLabel": {}})])
    fixes = {p.field: p.fix for p in problems if p.kind == "unknown_key"}
    assert fixes == {
        "blocks[0].cdir": 'did you mean "cidr"?',
        "serviceSelector.matchLabel": 'did you mean "matchLabels"?',
    }


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    p = _only([_pool(color="blue")])
    assert p.kind == "unknown_key" and "known keys:" in p.fix and "blocks" in p.fix


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"blocks": "198.18.10.0/28"}, "blocks"),
        ({"disabled": "yes"}, "disabled"),
        ({"allowFirstLastIPs": 1}, "allowFirstLastIPs"),
        ({"serviceSelector": ["app=web"]}, "serviceSelector"),
        ({"blocks": [{"cidr": 42}]}, "blocks[0].cidr"),
    ],
    ids=["blocks-string", "disabled-string", "allowFirstLast-int", "selector-list", "cidr-number"],
)
def test_wrong_types_in_pool(spec: dict[str, Any], field: str) -> None:
    p = _only([_pool(**spec)])
    assert (p.field, p.kind) == (field, "wrong_type") and p.fix.startswith("write a")


def test_unquoted_boolean_label_value_says_quote_it() -> None:
    p = _only([_pool(serviceSelector={"matchLabels": {"public": True}})])
    assert (p.field, p.kind, p.fix) == ("serviceSelector.matchLabels.public", "wrong_type", 'quote it: "true"')


def test_wrong_type_of_whole_list() -> None:
    problems = _problems({"name": "lan"})
    assert problems[0].kind == "wrong_type" and problems[0].obj == "pools"


def test_invalid_name_suggests_valid_one() -> None:
    p = _only([_pool("My Pool")])
    assert p.kind == "invalid_name" and "'my-pool'" in p.fix


def test_missing_name_and_blocks_use_index() -> None:
    problems = _problems([{"serviceSelector": {}}])
    assert {(p.obj, p.field, p.kind) for p in problems} == {
        ("pools[0]", "name", "missing"),
        ("pools[0]", "blocks", "missing"),
    }


def test_invalid_label_key() -> None:
    p = _only([_pool(serviceSelector={"matchLabels": {"-bad": "x"}})])
    assert p.field == "serviceSelector.matchLabels.-bad" and "invalid label key" in p.message


def test_manifest_with_wrong_kind() -> None:
    p = _only(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x"},
                "spec": {"blocks": [{"cidr": "198.18.10.0/28"}]},
            }
        ]
    )
    assert (p.field, p.kind) == ("kind", "wrong_kind")


def test_manifest_fields_are_prefixed_with_spec() -> None:
    p = _only(
        [
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumLoadBalancerIPPool",
                "metadata": {"name": "x"},
                "spec": {"blocks": [{"cidr": "x"}]},
            }
        ]
    )
    assert p.field == "spec.blocks[0].cidr"


@pytest.mark.parametrize(
    ("api_version", "message"),
    [
        (None, "missing"),
        ("metallb.io", "CiliumLoadBalancerIPPool is not served as 'metallb.io'"),
        ("cilium.io", "CiliumLoadBalancerIPPool is not served as 'cilium.io'"),
        ("l2lb.io/v1alpha1", "CiliumLoadBalancerIPPool is not served as 'l2lb.io/v1alpha1'"),
    ],
)
def test_a_manifests_api_version_is_checked(api_version: str | None, message: str) -> None:
    raw: dict[str, Any] = {"kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "x"}, "spec": {"blocks": []}}
    if api_version is not None:
        raw["apiVersion"] = api_version
    raw["spec"]["blocks"] = [{"cidr": "198.18.10.0/28"}]
    p = _only([raw])
    assert (p.field, p.message) == ("apiVersion", message)
    assert "cilium.io/v2" in p.fix


def test_a_cilium_pool_hands_out_first_and_last_unless_told_not_to() -> None:
    def cilium(**spec: Any) -> dict[str, Any]:
        body = {"blocks": [{"cidr": "198.18.10.0/30"}], **spec}
        return {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "c"},
            "spec": body,
        }

    assert build_model([cilium()]).pools[0].usable_ranges()[0].size == 4, "Cilium: undefined means Yes"
    assert build_model([cilium(allowFirstLastIPs="No")]).pools[0].usable_ranges()[0].size == 2
    # Our own shape keeps network and broadcast out unless told otherwise (unchanged).
    assert build_model([_pool("o", blocks=[{"cidr": "198.18.10.0/30"}])]).pools[0].usable_ranges()[0].size == 2


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ModelError) as info:
        build_model(
            [
                _pool("a", blocks=[{"cidr": "198.18.10.0/33"}]),
                _pool("b", colour=1),
                _pool("b", blocks=[{"cidr": "198.18.11.0/28"}]),
            ],
            [{"name": "w", "interfaces": ["("]}],
        )
    kinds = sorted(p.kind for p in info.value.problems)
    assert kinds == ["duplicate_name", "invalid_cidr", "invalid_regex", "unknown_key"]
    assert str(info.value).startswith("4 problems in the l2lb model:")


def test_policy_announcing_nothing_warns() -> None:
    model = build_model([_pool()], [{"name": "w", "loadBalancerIPs": False}])
    assert any("announces nothing" in w for w in model.warnings)


def test_valid_model_round_trips_to_spec() -> None:
    model = build_model([_pool(allowFirstLastIPs="Yes")], [{"name": "w", "interfaces": ["^eth"]}])
    assert model.pools[0].to_spec() == {
        "blocks": [{"cidr": "198.18.10.0/28"}],
        "disabled": False,
        "allowFirstLastIPs": True,
    }
    assert model.policies[0].to_spec() == {"interfaces": ["^eth"], "externalIPs": False, "loadBalancerIPs": True}
