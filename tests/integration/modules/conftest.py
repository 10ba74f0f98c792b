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
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(nodes=2, subnet="198.18.100.0/24")


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
        # The gratuitous ARP bursts are over (3 rounds x 2 forms per IP): the speaker answers on its interface.
        speaker.wait_stats(lambda s: s["counters"]["totals"]["garps_sent"] == 6 * len(ips))
        return speaker

    yield start
    for speaker in speakers:
        if speaker.stream.proc.poll() is None:
            speaker.stop()
