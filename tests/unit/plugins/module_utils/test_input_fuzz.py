"""Nothing a user feeds in crashes the model or the MetalLB import: random YAML-shaped values (wrong types at
every level, near-miss keys, strings that are almost addresses) give a clean problem list, never an exception.

The values are built from the shapes users write (pools, policies, selectors, MetalLB objects) with any field
replaced by any YAML value, so the generator reaches the type checks deep inside, not only the top level.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.baremetal.l2lb.plugins.module_utils import metallb
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import ModelError, build_model
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.problems import Problem

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALMOST = st.sampled_from(
    [
        "198.18.10.0/28", "198.18.10.0/33", "198.18.10.5", "198.18.10.20-198.18.10.10", "198.18.300.1",
        "2001:2::/64", "2001:2::1-198.18.0.1", "", " ", "-", "/", "a-b", "Yes", "No", "yes", "true",
        "^eth[0-9]+", "^eth[0-9+", "In", "NotIn", "Exists", "exists", "metallb.io/v1beta1", "metallb.io",
        "cilium.io/v2", "l2lb.io/v1alpha1", "v1", "IPAddressPool", "L2Advertisement", "Service", "ConfigMap",
        "CiliumLoadBalancerIPPool", "LoadBalancerIPPool", "L2AnnouncementPolicy", "LoadBalancer",
    ]
)  # fmt: skip
KEYS = st.sampled_from(
    [
        "name", "blocks", "cidrs", "cidr", "start", "stop", "serviceSelector", "nodeSelector", "nodeSelectors",
        "matchLabels", "matchExpressions", "key", "operator", "values", "interfaces", "externalIPs",
        "loadBalancerIPs", "disabled", "allowFirstLastIPs", "apiVersion", "kind", "metadata", "spec", "data",
        "config", "addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation", "serviceSelectors",
        "ipAddressPools", "ipaddresspools", "ipAddressPoolSelectors", "annotations", "labels", "namespace", "type",
        "ports", "port", "protocol", "status", "loadBalancer", "ingress", "ip", "items",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False, allow_infinity=False),
    ALMOST,
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        # Keys too may be anything YAML allows: an unquoted 1 or true is not a string.
        st.dictionaries(st.one_of(KEYS, st.text(max_size=4), st.integers(0, 3), st.booleans()), children, max_size=5),
    ),
    max_leaves=25,
)


@st.composite
def shaped(draw: st.DrawFn, template: Any) -> Any:
    """``template`` with any of its values (at any depth) swapped for an arbitrary YAML value."""
    if draw(st.integers(0, 5)) == 0:
        return draw(VALUES)
    if isinstance(template, dict):
        out = {key: draw(shaped(value)) for key, value in template.items() if draw(st.integers(0, 6))}
        if draw(st.integers(0, 4)) == 0:
            out[draw(st.one_of(KEYS, st.integers(0, 2)))] = draw(VALUES)
        return out
    if isinstance(template, list):
        return [draw(shaped(item)) for item in template]
    return template


POOL = {"name": "lan", "blocks": [{"cidr": "198.18.10.0/28"}, {"start": "198.18.11.1", "stop": "198.18.11.9"}],
        "serviceSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
        "allowFirstLastIPs": "No"}  # fmt: skip
CILIUM_POOL = {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "c"},
               "spec": {"blocks": [{"cidr": "198.18.12.0/28"}],
                        "serviceSelector": {"matchLabels": {"a": "b"}}}}  # fmt: skip
POLICY = {"name": "workers", "nodeSelector": {"matchLabels": {"w": "true"}}, "interfaces": ["^eth0$"],
          "externalIPs": False, "loadBalancerIPs": True}  # fmt: skip
METALLB = [
    {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "lan", "labels": {"a": "b"}},
     "spec": {"addresses": ["198.18.10.0/28", "198.18.11.1-198.18.11.9"], "autoAssign": False,
              "serviceAllocation": {"priority": 1, "serviceSelectors": [{"matchLabels": {"a": "b"}}]}}},
    {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "l2"},
     "spec": {"ipAddressPools": ["lan"], "nodeSelectors": [{"matchLabels": {"w": "true"}}], "interfaces": ["eth0"]}},
    {"apiVersion": "v1", "kind": "Service",
     "metadata": {"name": "web", "namespace": "default",
                  "annotations": {"metallb.io/loadBalancerIPs": "198.18.10.5", "metallb.io/allow-shared-ip": "k"}},
     "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "198.18.10.5"}]}}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config"},
     "data": {"config": "address-pools:\n- name: old\n  protocol: layer2\n  addresses: [198.18.13.0/28]\n"}},
]  # fmt: skip


def _clean(problems: list[Problem]) -> None:
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.obj and problem.message, problem
        assert isinstance(problem.fix, str)


@SETTINGS
@given(
    st.one_of(VALUES, st.lists(st.one_of(shaped(POOL), shaped(CILIUM_POOL)), max_size=3)),
    st.one_of(VALUES, st.lists(shaped(POLICY), max_size=3)),
)
def test_the_model_gives_problems_never_an_exception(pools: Any, policies: Any) -> None:
    try:
        build_model(pools, policies)
    except ModelError as exc:
        assert exc.problems
        _clean(list(exc.problems))


@SETTINGS
@given(
    st.lists(
        st.one_of(shaped(METALLB[0]), shaped(METALLB[1]), shaped(METALLB[2]), shaped(METALLB[3]), VALUES), max_size=5
    ),
    st.sampled_from(["l2lb", "cilium"]),
)
def test_the_metallb_import_gives_problems_never_an_exception(objects: list[Any], backend: str) -> None:
    result = metallb.import_metallb(objects, backend=backend)
    _clean(result.problems)
    if not result.problems:  # a clean import is a model site.yml accepts
        build_model(result.pools, result.policies)
