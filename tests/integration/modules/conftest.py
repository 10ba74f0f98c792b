"""Fixtures for the module tests: a lab, a module runner bound to it, and ARP speakers in node namespaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import netns
import pytest
from module_harness import FAST, Speaker, run_module
from netns import Host, Lab

make_lab = netns.make_lab  # the lab factory fixture, made available to these tests

ModuleRunner = Callable[..., dict[str, Any]]


@pytest.fixture
def lab(make_lab: Callable[..., Lab], request: pytest.FixtureRequest) -> Lab:
    """IPv4 only; dual stack (2001:2:0:100::/64 too) with ``parametrize("lab", ["dual"], indirect=True)``."""
    dual = getattr(request, "param", None) == "dual"
    return make_lab(nodes=2, subnet="198.18.100.0/24", subnet6="2001:2:0:100::/64" if dual else None)


@pytest.fixture
def module_runner(lab: Lab) -> ModuleRunner:
    """``module_runner(host, "arp_probe", {...}, unprivileged=False)``: the module's result as a dict."""

    def run(host: Host, name: str, args: dict[str, Any], *, unprivileged: bool = False) -> dict[str, Any]:
        return run_module(lab, host, name, args, unprivileged=unprivileged)

    return run


@pytest.fixture
def start_speaker(lab: Lab) -> Iterator[Callable[..., Speaker]]:
    """``start_speaker(host, [ip, ...])``: an ARP speaker in the node's namespace, stopped after the test."""
    speakers: list[Speaker] = []

    def start(host: Host, ips: Sequence[str]) -> Speaker:
        speaker = Speaker(lab, host, ips, **FAST)
        speakers.append(speaker)
        # The announcement bursts are over (3 rounds; IPv4: 2 gratuitous ARP forms, IPv6: one unsolicited NA).
        v6 = sum(1 for ip in ips if ":" in ip)
        speaker.wait_stats(
            lambda s: (
                (s["counters"]["totals"]["garps_sent"], s["counters"]["totals"]["unsolicited_nas_sent"])
                == (6 * (len(ips) - v6), 3 * v6)
            )
        )
        return speaker

    yield start
    for speaker in speakers:
        if speaker.stream.proc.poll() is None:
            speaker.stop()
