"""The validate_model module: returns the model and resources, or fails listing every problem."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.baremetal.l2lb.plugins.modules import validate_model


def _run(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        validate_model.main()
    return int(exit_info.value.code or 0), json.loads(capsys.readouterr().out)


def test_valid_model_returns_resources_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(
        capsys,
        {
            "pools": [{"name": "lan", "cidrs": [{"cidr": "198.18.10.0/28"}]}],
            "policies": [{"name": "all"}],
            "include_crds": True,
        },
    )
    assert code == 0 and result["changed"] is False
    assert [r["kind"] for r in result["resources"]] == ["LoadBalancerIPPool", "L2AnnouncementPolicy"]
    assert result["pools"] == [
        {"name": "lan", "blocks": [{"cidr": "198.18.10.0/28"}], "disabled": False, "allowFirstLastIPs": False}
    ]
    assert any("deprecated" in w for w in result["warnings_list"])
    assert any("deprecated" in w["event"]["msg"] for w in result["warnings"])
    assert {c["metadata"]["name"] for c in result["crds"]} == {
        "loadbalancerippools.l2lb.io",
        "l2announcementpolicies.l2lb.io",
        "l2assignments.l2lb.io",
    }


def test_invalid_model_fails_with_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(
        capsys,
        {
            "pools": [{"name": "lan", "blocks": [{"cidr": "198.18.10.0/33"}]}, {"name": "lan", "blocks": []}],
            "policies": [{"name": "w", "interfaces": ["("]}],
        },
    )
    assert code == 1 and result["failed"] is True
    kinds = sorted(p["kind"] for p in result["problems"])
    assert kinds == ["duplicate_name", "invalid_cidr", "invalid_regex", "missing"]
    assert result["msg"].startswith("4 problems in the l2lb model:")
    assert 'pool "lan": blocks[0].cidr:' in result["msg"]


DUAL_POOL = {"name": "lan", "blocks": [{"cidr": "198.18.10.0/28"}, {"cidr": "2001:2:0:10::/120"}]}
WORKERS = {"name": "workers", "nodeSelector": {"matchLabels": {"role": "worker"}}, "interfaces": ["^eth0$"]}


def _nodes(**ipv6_by_node: list[str]) -> dict[str, Any]:
    return {
        name: {
            "labels": {"role": "worker"},
            "interfaces": [
                {"name": "eth0", "up": True, "ipv6": ipv6},
                {"name": "eth1", "up": True, "ipv6": ["fe80::1/64"]},
            ],
        }
        for name, ipv6 in ipv6_by_node.items()
    }


def test_an_ipv6_pool_no_selected_node_could_answer_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    # IPv6 only on eth1, which the policy does not announce on.
    code, result = _run(capsys, {"pools": [DUAL_POOL], "policies": [WORKERS], "nodes": _nodes(n1=[], n2=[])})
    assert code == 0
    [warning] = result["warnings_list"]
    assert warning.startswith('pool "lan" has IPv6 blocks, but no node a policy selects (n1, n2) has IPv6 on an up')
    assert "turn IPv6 on there" in warning
    # One selected node with IPv6 on eth0 (a link-local address is enough) answers: no warning.
    _, result = _run(capsys, {"pools": [DUAL_POOL], "policies": [WORKERS], "nodes": _nodes(n1=[], n2=["fe80::2/64"])})
    assert result["warnings_list"] == []
    # Without node facts, or with an IPv4-only pool, nothing to say.
    _, result = _run(capsys, {"pools": [DUAL_POOL], "policies": [WORKERS]})
    assert result["warnings_list"] == []
    v4 = {"name": "v4", "blocks": [{"cidr": "198.18.10.0/28"}]}
    _, result = _run(capsys, {"pools": [v4], "policies": [WORKERS], "nodes": _nodes(n1=[])})
    assert result["warnings_list"] == []
