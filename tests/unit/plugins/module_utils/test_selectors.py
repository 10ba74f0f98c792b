"""Label selectors behave exactly like the Kubernetes API server's."""

from __future__ import annotations

import pytest

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.problems import Problems
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.selectors import (
    LabelSelector,
    parse_label_selector,
    selector_matches,
)


def _sel(raw: dict) -> LabelSelector:
    problems = Problems()
    sel = parse_label_selector(raw, "policy", "nodeSelector", problems)
    assert not problems, [str(p) for p in problems]
    assert sel is not None
    return sel


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        ({}, {}, True),
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchLabels": {"a": ""}}, {"a": ""}, True),
        ({"matchLabels": {"a": ""}}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "3"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
        (
            {"matchLabels": {"role": "worker"}, "matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]},
            {"role": "worker", "gpu": "yes"},
            False,
        ),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else "",
)
def test_matching(raw: dict, labels: dict, expected: bool) -> None:
    assert _sel(raw).matches(labels) is expected


def test_absent_selector_means_what_the_field_says() -> None:
    assert selector_matches(None, {"a": "1"}, absent=True) is True
    assert selector_matches(None, {"a": "1"}, absent=False) is False
    assert selector_matches(_sel({}), {}, absent=False) is True


def test_round_trip_to_dict() -> None:
    raw = {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]}
    assert _sel(raw).to_dict() == {
        "matchLabels": {"a": "1", "b": "2"},
        "matchExpressions": [{"key": "c", "operator": "Exists"}],
    }


@pytest.mark.parametrize("key", ["app", "example.com/role", "node-role.kubernetes.io/control-plane", "a.b_c-d"])
def test_valid_label_keys(key: str) -> None:
    _sel({"matchLabels": {key: "x"}})


@pytest.mark.parametrize("key", ["/app", "Example.com/role", "-app", "a" * 64, "ex ample"])
def test_invalid_label_keys(key: str) -> None:
    problems = Problems()
    assert parse_label_selector({"matchLabels": {key: "x"}}, "pool", "serviceSelector", problems) is None
    assert problems.items[0].field == f"serviceSelector.matchLabels.{key}"
