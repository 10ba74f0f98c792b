"""The interface_info module: pattern matching, attached-subnet lookup and warnings over fake interface lists."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.baremetal.l2lb.plugins.module_utils.interface_facts import (
    InterfaceFactsError,
    check_ips,
    interface_report,
    no_match_warning,
)
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.netinfo import Address, Interface
from ansible_collections.baremetal.l2lb.plugins.modules import interface_info


def iface(name: str, index: int, *cidrs: str, up: bool = True, mac: str | None = None) -> Interface:
    return Interface(
        name=name,
        index=index,
        mac=mac or f"02:18:00:00:00:{index:02x}",
        kind=None,
        admin_up=up,
        oper_state="UP" if up else "DOWN",
        carrier=up,
        mtu=1500,
        arp=True,
        addresses=tuple(Address(c.split("/")[0], int(c.split("/")[1])) for c in cidrs),
    )


HOST = [
    iface("eth0", 2, "198.18.0.11/24"),
    iface("veth0a1b", 3, "198.19.7.1/30"),
    iface("bond0", 4, "198.18.4.2/23", "fd00:18::2/64", up=False),
]


def _run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, interfaces: list[Interface], **args: Any
) -> tuple[int, dict[str, Any]]:
    monkeypatch.setattr(interface_info, "list_interfaces", lambda include_loopback=False: interfaces)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        interface_info.main()
    return int(exit_info.value.code or 0), json.loads(capsys.readouterr().out)


# ---- the report ----


def test_patterns_are_unanchored_like_cilium() -> None:
    report = interface_report(HOST, ["eth0"], [])
    assert report["matching"] == ["eth0", "veth0a1b"]  # "eth0" is found inside "veth0a1b"
    assert [(e["name"], e["matches"]) for e in report["interfaces"]] == [
        ("eth0", True),
        ("veth0a1b", True),
        ("bond0", False),
    ]
    assert interface_report(HOST, ["^eth[0-9]+$"], [])["matching"] == ["eth0"]
    assert report["warnings"] == []


def test_no_patterns_match_every_interface() -> None:
    assert interface_report(HOST, [], [])["matching"] == ["eth0", "veth0a1b", "bond0"]


def test_interface_entries_carry_mac_state_addresses_and_subnets() -> None:
    entry = interface_report(HOST, [], [])["interfaces"][2]
    assert entry["name"] == "bond0"
    assert entry["mac"] == "02:18:00:00:00:04"
    assert (entry["admin_up"], entry["oper_state"], entry["carrier"], entry["usable"]) == (False, "DOWN", False, False)
    assert [a["address"] for a in entry["addresses"]] == ["198.18.4.2", "fd00:18::2"]
    assert entry["subnets"] == ["198.18.4.0/23", "fd00:18::/64"]


def test_ips_report_attached_subnets_and_matching_interfaces() -> None:
    report = interface_report(
        HOST, ["^bond"], ["198.18.0.241", "198.18.5.255", "198.19.7.3", "198.18.9.1", "fd00:18::9"]
    )
    assert report["ips"] == {
        "198.18.0.241": {
            "attached": True,
            "interfaces": ["eth0"],
            "matching_interfaces": [],
            "subnets": ["198.18.0.0/24"],
        },
        "198.18.5.255": {
            "attached": True,
            "interfaces": ["bond0"],
            "matching_interfaces": ["bond0"],
            "subnets": ["198.18.4.0/23"],
        },
        "198.19.7.3": {
            "attached": True,
            "interfaces": ["veth0a1b"],
            "matching_interfaces": [],
            "subnets": ["198.19.7.0/30"],
        },
        "198.18.9.1": {"attached": False, "interfaces": [], "matching_interfaces": [], "subnets": []},
        "fd00:18::9": {
            "attached": True,
            "interfaces": ["bond0"],
            "matching_interfaces": ["bond0"],
            "subnets": ["fd00:18::/64"],
        },
    }


def test_ips_are_reported_in_canonical_form() -> None:
    assert list(interface_report(HOST, [], [" FD00:18:0::9 "])["ips"]) == ["fd00:18::9"]


def test_warns_when_no_interface_matches_naming_the_interfaces_here() -> None:
    report = interface_report([iface("host0", 2, "198.18.0.2/24"), iface("lo", 1)], ["^eth[0-9]+"], [])
    assert report["matching"] == []
    assert len(report["warnings"]) == 1
    assert report["warnings"][0].startswith("no interface on this host matches ^eth[0-9]+; interfaces here: host0, lo")


def test_warning_lists_every_pattern_and_handles_a_host_without_interfaces() -> None:
    text = no_match_warning(["^eth", "^ens"], [])
    assert text.startswith("no interface on this host matches ^eth or ^ens; interfaces here: none")


def test_bad_pattern_names_the_option_entry() -> None:
    with pytest.raises(InterfaceFactsError, match=r"^patterns\[1\] '\(eth': not a valid regular expression"):
        interface_report(HOST, ["^eth", "(eth"], [])


def test_bad_ips_are_all_named() -> None:
    with pytest.raises(InterfaceFactsError) as info:
        check_ips(["198.18.0.1", "eth0", "198.18.0.0/24"])
    assert str(info.value).startswith("ips[1] 'eth0', ips[2] '198.18.0.0/24': not an IP address")


# ---- the module ----


def test_module_returns_facts_unchanged(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, result = _run(capsys, monkeypatch, HOST, patterns=["^eth"], ips=["198.18.0.241"])
    assert code == 0
    assert result["changed"] is False
    assert result["matching"] == ["eth0"]
    assert result["ips"]["198.18.0.241"]["attached"] is True
    assert result["warnings_list"] == []
    # (Ansible keeps warnings in a process-wide list, so other tests' warnings may show up here.)
    assert not any("no interface on this host" in w["event"]["msg"] for w in result.get("warnings", []))


def test_module_warns_when_nothing_matches(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, result = _run(capsys, monkeypatch, HOST, patterns=["^ens[0-9]+"])
    assert code == 0
    assert result["warnings_list"][0].startswith(
        "no interface on this host matches ^ens[0-9]+; interfaces here: eth0, veth0a1b, bond0"
    )
    assert any("no interface on this host matches" in w["event"]["msg"] for w in result["warnings"])


def test_module_runs_in_check_mode(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, result = _run(capsys, monkeypatch, HOST, _ansible_check_mode=True)
    assert code == 0
    assert result["changed"] is False
    assert result["matching"] == ["eth0", "veth0a1b", "bond0"]


def test_module_fails_cleanly_on_a_bad_regex(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, result = _run(capsys, monkeypatch, HOST, patterns=["^eth[0-9+"])
    assert code == 1
    assert result["failed"] is True
    assert result["msg"].startswith("patterns[0] '^eth[0-9+': not a valid regular expression")
    assert result["msg"].endswith("fix the regular expression")
    assert "Traceback" not in json.dumps(result)


def test_module_fails_cleanly_when_netlink_is_unreadable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(include_loopback: bool = False) -> list[Interface]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(interface_info, "list_interfaces", broken)
    with patch_module_args({}), pytest.raises(SystemExit) as exit_info:
        interface_info.main()
    result = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 1
    assert result["msg"] == "cannot read the interfaces of this host through netlink: [Errno 13] Permission denied"


# ---- documentation and packaging ----


READ_ONLY_MODULES = (
    "interface_info",
    "arp_probe",
    "tcp_probe",
    "node_preflight_info",
    "preflight_info",
    "service_info",
)


@pytest.fixture(scope="module")
def ansible_docs() -> dict[str, Any]:
    """The read-only modules' documentation as ansible-doc renders it (doc fragments resolved)."""
    names = [f"baremetal.l2lb.{name}" for name in READ_ONLY_MODULES]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {name.rsplit(".", 1)[1]: entry["doc"] for name, entry in json.loads(proc.stdout).items()}


@pytest.mark.parametrize("name", READ_ONLY_MODULES)
def test_documentation_parses_and_declares_read_only_attributes(name: str, ansible_docs: dict[str, Any]) -> None:
    module = importlib.import_module(f"ansible_collections.baremetal.l2lb.plugins.modules.{name}")
    doc = ansible_docs[name]
    assert doc["module"] == name
    assert {k: v["support"] for k, v in doc["attributes"].items()} == {
        "check_mode": "full",
        "diff_mode": "none",
        "idempotent": "full",
    }
    assert isinstance(yaml.safe_load(module.EXAMPLES), list)
    assert all("description" in entry for entry in yaml.safe_load(module.RETURN).values())


def test_documented_options_are_the_accepted_ones(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, result = _run(capsys, monkeypatch, HOST)
    documented = yaml.safe_load(interface_info.DOCUMENTATION)["options"]
    assert set(result["invocation"]["module_args"]) == set(documented)


def test_probe_modules_stay_out_of_the_kube_action_group() -> None:
    """The l2lb action group shares Kubernetes connection options; the probes take none and would reject them."""
    runtime = yaml.safe_load((Path(__file__).resolve().parents[4] / "meta" / "runtime.yml").read_text())
    assert not {"interface_info", "arp_probe"} & set(runtime["action_groups"]["l2lb"])
    assert {"apply_model", "lease_info", "service_info"} <= set(runtime["action_groups"]["l2lb"])
