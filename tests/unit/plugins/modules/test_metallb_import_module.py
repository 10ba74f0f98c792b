"""The metallb_import module from manifest files, and the documentation of both new modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.baremetal.l2lb.plugins.modules import cilium_config, metallb_import

HOMELAB = Path(__file__).resolve().parents[3] / "fixtures" / "metallb" / "homelab"


def _run(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        metallb_import.main()
    return int(exit_info.value.code or 0), json.loads(capsys.readouterr().out)


def test_import_from_a_directory_of_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(capsys, {"source": "files", "paths": [str(HOMELAB)]})
    assert code == 0, result
    assert result["changed"] is False and result["applied"] == []
    assert [p["name"] for p in result["pools"]] == ["lan", "dmz", "reserved", "iot"]
    assert "dns/pihole-udp: + l2lb.io/ips=198.18.10.53, + l2lb.io/sharing-key=pihole" in result["plan_lines"][1]
    assert {
        "object": 'BGPAdvertisement "old-router"',
        "field": "",
        "reason": "BGP is out of scope (layer 2 only); not imported",
    } in (result["unexpressible"])
    assert any("not expressible" in json.dumps(w) for w in result["warnings"])
    loaded = yaml.safe_load(result["inventory_yaml"])
    assert loaded["l2lb_pools"] == result["pools"] and loaded["l2lb_policies"] == result["policies"]


def test_unreadable_manifests_fail_naming_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "pools.yaml"
    broken.write_text("kind: IPAddressPool\nspec: [unclosed\n")
    code, result = _run(capsys, {"source": "files", "paths": [str(broken)]})
    assert code == 1 and result["msg"].startswith(f"{broken}:")
    code, result = _run(capsys, {"source": "files", "paths": [str(tmp_path / "missing")]})
    assert code == 1 and "no such file or directory" in result["msg"]
    code, result = _run(capsys, {"source": "files"})
    assert code == 1 and "paths" in result["msg"]


def test_broken_manifests_fail_listing_every_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "pools.yaml").write_text(
        "apiVersion: metallb.io\nkind: IPAddressPool\nmetadata: {name: lan}\n"
        "spec:\n  addresses: [198.18.10.20-198.18.10.10]\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {ipaddresspools: [lan]}\n"
    )
    code, result = _run(capsys, {"source": "files", "paths": [str(tmp_path)], "apply_plan": True})
    assert code == 1
    assert result["msg"].startswith("3 problems in the MetalLB input (nothing was changed):")
    assert [(p["object"], p["field"]) for p in result["problems"]] == [
        ('IPAddressPool "lan"', "apiVersion"),
        ('IPAddressPool "lan"', "spec.addresses[0]"),
        ('L2Advertisement "l2"', "spec.ipaddresspools"),
    ]
    assert "swap them: 198.18.10.10-198.18.10.20" in result["msg"]
    assert "pools" not in result and "applied" not in result, "nothing translated, nothing applied"


class _Captured(Exception):
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec


class _SpecOnly:
    """Stands in for AnsibleModule: records the argument spec, goes no further."""

    def __init__(self, argument_spec: dict[str, Any], **_: Any) -> None:
        raise _Captured(argument_spec)


@pytest.mark.parametrize("module", [cilium_config, metallb_import], ids=["cilium_config", "metallb_import"])
def test_documentation_matches_the_argument_spec(module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    returns = yaml.safe_load(module.RETURN)
    monkeypatch.setattr(module, "AnsibleModule", _SpecOnly)
    with pytest.raises(_Captured) as captured:
        module.main()
    spec = captured.value.spec
    auth = {"kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs"}  # the kube_auth fragment
    assert set(doc["options"]) == set(spec) - auth
    for name, option in doc["options"].items():
        assert option.get("type", "str") == spec[name].get("type", "str"), name
        assert option.get("default") == spec[name].get("default"), name
    assert set(doc["attributes"]) == {"check_mode", "diff_mode", "idempotent"}
    assert "changed" not in returns
