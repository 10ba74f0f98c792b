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
