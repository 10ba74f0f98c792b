"""Drive a standalone speaker (``python -m l2lb_agent.speaker.runner --control``) in a lab namespace."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from netns import Host, JsonLinesProcess, Lab


class Speaker:
    """``python -m l2lb_agent.speaker.runner --control`` in a node's namespace, driven over JSON lines."""

    def __init__(
        self, lab: Lab, host: Host, ips: Sequence[str] = (), *, log_level: str = "INFO", **options: float
    ) -> None:
        self.host = host
        self._lab = lab
        argv = ["-m", "l2lb_agent.speaker.runner", "--control", "--iface", host.ifname, "--log-level", log_level]
        for ip in ips:
            argv += ["--ip", ip]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        proc = lab.python(host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stream = JsonLinesProcess(proc)
        self.stream.wait_for(lambda e: e.get("event") == "ready", timeout=20.0)

    def _request(self, command: dict[str, Any], answer: str) -> dict[str, Any]:
        start = self.stream.count()
        self.stream.send(command)
        return self.stream.wait_for(lambda e: e.get("event") in (answer, "error"), timeout=5.0, start=start)

    def set(self, assignments: dict[str, list[str]]) -> None:
        event = self._request({"cmd": "set", "assignments": assignments}, "ack")
        assert event["event"] == "ack", event

    def assign(self, *ips: str) -> None:
        self.set({ip: [self.host.ifname] for ip in ips})

    def stats(self) -> dict[str, Any]:
        return self._request({"cmd": "stats"}, "stats")

    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = self.stats()["counters"]["totals"]
        return totals

    def wait_stats(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"speaker stats never matched: {stats}")
            time.sleep(0.05)

    def conflicts(self) -> list[dict[str, Any]]:
        return [e for e in self.stream.events() if e.get("event") == "conflict"]

    def stop(self) -> int | None:
        self.stream.send({"cmd": "stop"})
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stream.wait(5.0)
        return self._lab.stop_process(self.stream.proc)


# Fast announcements and link checks keep the tests short; the defaults are tested by the unit tests.
FAST = {"garp_interval": 0.05, "link_check": 0.1}
