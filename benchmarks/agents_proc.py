"""N real agents in one process against an API server, ARP speaker off: the "ours" side of the API-load table.

    python -m benchmarks.agents_proc --kubeconfig FILE --nodes N [--prefix bench-node]

Each agent is the real :class:`l2lb_agent.agent.Agent` (heartbeat, election, controller, informers); only
the wire is replaced: the interfaces its heartbeat publishes are injected and the ARP responder is a
no-op, as in tests/integration/agent. JSON lines on stdout: ``{"event": "ready", ...}`` once every agent is
healthy, then one answer per command read on stdin: ``{"cmd": "stats"}`` -> ``{"event": "stats", ...}``
(watch events the agents received, in all and by role, heartbeat failures, who leads). End of input or
``{"cmd": "stop"}`` exits at once, as if killed (no drain).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.common import setup_paths

setup_paths()

from l2lb_agent.agent import Agent  # noqa: E402
from l2lb_agent.config import parse_config  # noqa: E402
from l2lb_agent.controller.types import InterfaceInfo  # noqa: E402
from l2lb_agent.logs import setup_logging  # noqa: E402


class NullResponder:
    """The ARP responder, minus the wire: remembers what it was told to answer."""

    def __init__(self, on_conflict: Any = None, on_count: Any = None) -> None:
        self.current: dict[str, list[str]] = {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.current = {}

    def set_assignments(self, assignments: Mapping[str, Sequence[str]]) -> None:
        self.current = {ip: list(ifaces) for ip, ifaces in assignments.items()}

    def announce(self, ip: str | None = None) -> None:
        pass


def _watch_events(agent: Agent) -> float:
    """Watch events this agent's informers received so far (l2lb_watch_events_total, every informer)."""
    total = 0.0
    for metric in agent.metrics.registry.collect():
        if metric.name == "l2lb_watch_events":
            total += sum(s.value for s in metric.samples if s.name == "l2lb_watch_events_total")
    return total


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.agents_proc")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--prefix", default="bench-node")
    parser.add_argument("--renew", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--standbys", type=int, default=1)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    agents: list[Agent] = []
    timing = {"renew_interval": args.renew, "lease_duration": args.duration}
    for i in range(1, args.nodes + 1):
        name = f"{args.prefix}-{i:02d}"
        iface = InterfaceInfo("eth0", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", True, ("198.18.0.0/24",))
        config = parse_config(
            {
                "node_name": name,
                "kubeconfig": args.kubeconfig,
                "speaker": {"enabled": False},
                "heartbeat": timing,
                "controller": {**timing, "enabled": True, "standbys": args.standbys},
                "metrics_address": None,
                "drain_timeout": 5,
                "log_level": args.log_level,
            }
        )
        agent = Agent(config, interfaces=lambda iface=iface: (iface,), responder_factory=NullResponder)
        agents.append(agent)

    started = time.monotonic()
    for agent in agents:
        agent.start()
    deadline = started + 30 + 3 * args.nodes
    warm_wanted = 1 + args.standbys

    def settled() -> bool:
        # Healthy, and the roles settled: no more warm agents than the controller and its standbys.
        warm = sum(1 for a in agents if a.role in ("controller", "standby"))
        return all(agent.health()[0] for agent in agents) and warm <= max(warm_wanted, 1)

    while not settled():
        if time.monotonic() > deadline:
            bad = {a.node: a.health()[1] for a in agents if not a.health()[0]}
            emit(event="error", message=f"agents not healthy: {bad}")
            return 1
        time.sleep(0.1)
    emit(event="ready", nodes=len(agents), seconds=round(time.monotonic() - started, 2), pid=os.getpid())

    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            if command.get("cmd") == "stop":
                break
            if command.get("cmd") == "stats":
                by_role: dict[str, float] = {}
                for agent in agents:
                    events = _watch_events(agent)
                    by_role[agent.role] = by_role.get(agent.role, 0.0) + events
                emit(
                    event="stats",
                    t=time.monotonic(),
                    watch_events=sum(by_role.values()),
                    watch_events_by_role=by_role,
                    roles={role: sum(1 for a in agents if a.role == role) for role in by_role},
                    heartbeat_failures=sum(a.metrics.value("l2lb_heartbeat_failures_total") or 0 for a in agents),
                    leaders=[a.node for a in agents if a.election is not None and a.election.is_leader],
                    healthy=sum(1 for a in agents if a.health()[0]),
                )
    finally:
        # What SIGKILL would leave behind (no drain, no goodbye), without waiting for 6N informer threads.
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
