"""The heartbeat Lease's interfaces annotation: what a speaker says it answers, read back by the controller."""

from __future__ import annotations

import json

from l2lb_agent.config import LeaseTiming
from l2lb_agent.controller.types import InterfaceInfo
from l2lb_agent.leases import heartbeat_body, parse_heartbeat, parse_interfaces
from l2lb_agent.model.contract import ANNOTATION_INTERFACES


def test_ndp_round_trips_and_is_written_only_where_answered() -> None:
    interfaces = (
        InterfaceInfo("eth0", "02:00:00:00:00:01", True, ("198.18.0.0/24", "2001:2::/64", "fe80::/64"), ndp=True),
        InterfaceInfo("eth1", "02:00:00:00:00:02", True, ("198.18.1.0/24",)),
    )
    body = heartbeat_body("l2lb-system", "node1", LeaseTiming(), interfaces, draining=False)
    written = json.loads(body["metadata"]["annotations"][ANNOTATION_INTERFACES])
    assert [entry.get("ndp") for entry in written] == [True, None]
    info = parse_heartbeat(body)
    assert info is not None and info.interfaces == interfaces


def test_an_agent_that_does_not_say_ndp_answers_only_arp() -> None:
    # What 0.1.0 wrote: no "ndp" key. And a non-boolean is not a yes.
    text = json.dumps(
        [
            {"name": "eth0", "mac": "02:00:00:00:00:01", "up": True, "subnets": ["2001:2::/64"]},
            {"name": "eth1", "mac": "02:00:00:00:00:02", "up": True, "subnets": ["2001:2:1::/64"], "ndp": "yes"},
        ]
    )
    interfaces, known = parse_interfaces(text)
    assert known
    assert [i.ndp for i in interfaces] == [False, False]
