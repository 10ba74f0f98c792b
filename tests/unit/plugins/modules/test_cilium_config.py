"""The cilium_config module in render mode: golden files, idempotence, check and diff mode, clear errors.

Golden files live in tests/fixtures/cilium/golden/<cilium version>/; after an intended change to the
rendering, regenerate them with ``UPDATE_GOLDEN=1 pytest tests/unit/plugins/modules/test_cilium_config.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.baremetal.l2lb.plugins.modules import cilium_config

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "cilium"
INVENTORY = yaml.safe_load((FIXTURES / "inventory.yml").read_text())
FILES = ("values.yaml", "ippools.yaml", "l2policies.yaml", "kustomization.yaml")


def _run(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        cilium_config.main()
    return int(exit_info.value.code or 0), json.loads(capsys.readouterr().out)


def _render_args(dest: Path, version: str, **extra: Any) -> dict[str, Any]:
    return {
        "pools": INVENTORY["l2lb_pools"],
        "policies": INVENTORY["l2lb_policies"],
        "state": "rendered",
        "dest": str(dest),
        "cilium_version": version,
        "announced_services": 12,
        "nodes": 3,
        **extra,
    }


@pytest.mark.parametrize("version", ["1.16.5", "1.18.1"])
def test_rendered_files_match_the_golden_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, version: str
) -> None:
    code, result = _run(capsys, _render_args(tmp_path, version))
    assert code == 0, result
    assert sorted(Path(p).name for p in result["files"]) == sorted(FILES)
    golden = FIXTURES / "golden" / version
    for name in FILES:
        rendered = (tmp_path / name).read_text()
        if os.environ.get("UPDATE_GOLDEN"):
            golden.mkdir(parents=True, exist_ok=True)
            (golden / name).write_text(rendered)
        assert rendered == (golden / name).read_text(), f"{name} differs from {golden / name}"


def test_golden_files_say_what_the_seeds_needed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Independent of the golden bytes: the facts each rendered file must get right."""
    _run(capsys, _render_args(tmp_path, "1.18.1"))
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert values["l2announcements"] == {
        "enabled": True,
        "leaseDuration": "15s",
        "leaseRenewDeadline": "5s",
        "leaseRetryPeriod": "2s",
    }
    assert values["rollOutCiliumPods"] is True and values["operator"]["rollOutPods"] is True
    assert values["kubeProxyReplacement"] is True
    assert values["externalIPs"] == {"enabled": True}  # the "external" policy announces externalIPs
    assert values["k8sClientRateLimit"] == {"qps": 10 + 18, "burst": 56}  # 12 Services: 10 + ceil(1.5 x 12)
    pools = list(yaml.safe_load_all((tmp_path / "ippools.yaml").read_text()))
    assert [p["apiVersion"] for p in pools] == ["cilium.io/v2", "cilium.io/v2"]
    assert [p["spec"]["allowFirstLastIPs"] for p in pools] == ["No", "Yes"]  # strings, never YAML booleans
    assert pools[0]["spec"]["blocks"] == [{"cidr": "198.18.5.80/28"}, {"start": "198.18.5.100", "stop": "198.18.5.120"}]
    assert "cidrs" not in pools[0]["spec"]
    policies = list(yaml.safe_load_all((tmp_path / "l2policies.yaml").read_text()))
    assert {p["apiVersion"] for p in policies} == {"cilium.io/v2alpha1"}
    external = next(p for p in policies if p["metadata"]["name"] == "external")
    assert external["spec"] == {"externalIPs": True, "loadBalancerIPs": False}
    kustomization = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["ippools.yaml", "l2policies.yaml"]
    assert kustomization["helmCharts"][0]["version"] == "1.18.1"
    assert kustomization["helmCharts"][0]["valuesFile"] == "values.yaml"


def test_older_cilium_gets_v2alpha1_pools(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, result = _run(capsys, _render_args(tmp_path, "v1.17.4"))
    assert {r["apiVersion"] for r in result["resources"] if r["kind"] == "CiliumLoadBalancerIPPool"} == {
        "cilium.io/v2alpha1"
    }


def test_second_render_changes_nothing_and_check_mode_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, first = _run(capsys, _render_args(tmp_path, "1.18.1"))
    assert first["changed"] is True
    mtimes = {name: (tmp_path / name).stat().st_mtime_ns for name in FILES}
    _, second = _run(capsys, _render_args(tmp_path, "1.18.1"))
    assert second["changed"] is False and second["files"] == []
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in FILES} == mtimes

    # More Services: only values.yaml changes; check mode reports it with a diff and writes nothing.
    before = (tmp_path / "values.yaml").read_text()
    _, checked = _run(
        capsys,
        {**_render_args(tmp_path, "1.18.1", announced_services=40), "_ansible_check_mode": True, "_ansible_diff": True},
    )
    assert checked["changed"] is True and [Path(p).name for p in checked["files"]] == ["values.yaml"]
    assert "qps: 28" in checked["diff"][0]["before"] and "qps: 70" in checked["diff"][0]["after"]
    assert (tmp_path / "values.yaml").read_text() == before


def test_extra_values_are_merged_over_ours(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    extra = {
        "operator": {"replicas": 1},
        "k8sServiceHost": "api.lab.example",
        "l2announcements": {"leaseDuration": "9s"},
    }
    _, result = _run(capsys, _render_args(tmp_path, "1.18.1", extra_values=extra, k8s_service_port=6443))
    values = result["values"]
    assert values["operator"] == {"rollOutPods": True, "replicas": 1}
    assert values["k8sServiceHost"] == "api.lab.example" and values["k8sServicePort"] == 6443
    assert values["l2announcements"]["leaseDuration"] == "9s" and values["l2announcements"]["enabled"] is True


def test_invalid_timings_and_models_fail_with_the_fix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, result = _run(capsys, _render_args(tmp_path, "1.18.1", lease_renew_deadline="2s"))
    assert code == 1
    assert "cilium_lease_renew_deadline 2s must be more than 1.2 x cilium_lease_retry_period 2s" in result["msg"]
    code, result = _run(capsys, _render_args(tmp_path, "1.18.1", lease_retry_period="two seconds"))
    assert code == 1 and "is not a duration" in result["msg"]
    code, result = _run(capsys, {**_render_args(tmp_path, "1.18.1"), "pools": [{"name": "x", "blocks": []}]})
    assert code == 1 and result["problems"][0]["object"] == 'pool "x"'
    assert not list(tmp_path.iterdir()), "nothing may be written when the input is invalid"


def test_ipv6_pool_warns_that_cilium_does_not_announce_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = _render_args(tmp_path, "1.18.1")
    args["pools"] = [{"name": "v6", "blocks": [{"cidr": "2001:db8:5::/120"}]}]
    _, result = _run(capsys, args)
    assert any("not NDP" in json.dumps(w) for w in result["warnings"])
