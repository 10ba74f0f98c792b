"""A bad inventory stops site.yml in its first play: no node is contacted and nothing is written to the API
(a real kube-apiserver, whose audit log names who wrote what).

Every validation error class is present at once; the run must name each and change nothing. The nodes are
unreachable on purpose (a nsenter PID that does not exist): touching one would show up as unreachable.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ansible_runs import run_playbook
from kubernetes import client

from controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[3]

BAD_POOLS = [
    {"name": "lan", "blocks": [{"cidr": "198.18.10.0/33"}]},  # invalid CIDR
    {"name": "dmz", "blocks": [{"start": "198.18.11.20", "stop": "198.18.11.10"}]},  # start > stop
    {"name": "mixed", "blocks": [{"start": "198.18.12.1", "stop": "2001:db8::1"}]},  # mixed families
    {"name": "a", "blocks": [{"cidr": "198.18.13.0/24"}]},
    {"name": "b", "blocks": [{"cidr": "198.18.13.128/25"}]},  # overlaps pool a
    {"name": "dup", "blocks": [{"cidr": "198.18.14.0/28"}]},
    {"name": "dup", "blocks": [{"cidr": "198.18.15.0/28"}]},  # duplicate name
    {"name": "typo", "blocks": [{"cidr": "198.18.16.0/28"}], "serviceSelecter": {}},  # unknown key
    {"name": "types", "blocks": [{"cidr": "198.18.17.0/28"}], "disabled": "yes"},  # wrong type
]
BAD_POLICIES = [
    {"name": "regex", "interfaces": ["^eth[0-9+"]},  # invalid regex
    {
        "name": "ops",
        "nodeSelector": {
            "matchExpressions": [
                {"key": "role", "operator": "exists"},  # unknown operator
                {"key": "cp", "operator": "DoesNotExist", "values": ["x"]},  # values with DoesNotExist
            ]
        },
    },
]
EXPECTED_KINDS = [
    "'198.18.10.0/33' is not a valid CIDR",
    "start 198.18.11.20 is after stop 198.18.11.10",
    "mixes IPv4 start 198.18.12.1 with IPv6 stop 2001:db8::1",
    'overlaps pool "b"',
    "duplicate name",
    'did you mean "serviceSelector"?',
    "disabled: expected boolean",
    "is not a valid regex",
    "unknown operator 'exists'",
    "values must be empty with operator DoesNotExist",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real control plane of this module's own, so that no other test's writes are counted."""
    with ControlPlane(state_dir=tmp_path_factory.mktemp("controlplane")) as plane:
        plane.add_node("node1")
        yield plane


PLAYBOOK_USER = "admin"  # whose token the run's kubeconfig carries
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def test_bad_inventory_fails_before_any_host_or_object_changes(api: ControlPlane, tmp_path: Path) -> None:
    api.write_kubeconfig(tmp_path / "admin.kubeconfig")
    inventory = {
        "all": {
            "vars": {
                "l2lb_kubeconfig": str(tmp_path / "admin.kubeconfig"),
                "l2lb_api_url": api.url,
                "l2lb_pools": BAD_POOLS,
                "l2lb_policies": BAD_POLICIES,
            },
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
            "children": {
                "l2lb_nodes": {
                    "hosts": {
                        "node1": {"ansible_connection": "community.docker.nsenter", "ansible_nsenter_pid": 999999999}
                    }
                }
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    # Only the playbook's own requests: kube-controller-manager keeps writing on its own schedule (it patched
    # the aggregated ClusterRoles in the middle of this test once), and that is not the playbook's doing.
    requests = api.counter(PLAYBOOK_USER)
    run = run_playbook(tmp_path / "hosts.yml", "site.yml")
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    missing = [text for text in EXPECTED_KINDS if text not in out]
    assert not missing, f"not named in the output: {missing}\n{out}"
    recap = re.findall(r"^(\S+)\s+: ok=", out, re.M)
    assert recap == ["localhost"], f"only the validation play may run; recap lists {recap}"
    writes = {key: n for key, n in requests.counts().items() if key[0] in WRITE_VERBS}
    assert writes == {}, f"nothing may be written to the API: {writes}"
    # The counter does see this user's requests (a user name that matched nothing would pass the line above).
    with api.api_client() as api_client:
        client.CoreV1Api(api_client).read_namespace("default")
    deadline = time.monotonic() + 10
    while ("get", "namespaces") not in requests.counts():
        assert time.monotonic() < deadline, f"the audit log shows no request of {PLAYBOOK_USER!r}"
        time.sleep(0.2)
