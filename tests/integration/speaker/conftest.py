"""Fixtures for the speaker tests: a lab (tests/netns.py) and speakers run as subprocesses in node namespaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import netns
import pytest
from netns import Host, Lab
from speaker_harness import FAST, Speaker

make_lab = netns.make_lab  # the lab factory fixture, made available to these tests


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(nodes=2, subnet="198.18.100.0/24")


@pytest.fixture
def start_speaker(lab: Lab) -> Iterator[Callable[..., Speaker]]:
    """``start_speaker(host, [ip, ...], **runner_options)``; every speaker is stopped after the test."""
    speakers: list[Speaker] = []

    def start(host: Host, ips: Sequence[str] = (), *, log_level: str = "INFO", **options: float) -> Speaker:
        timings: dict[str, float] = {**FAST, **options}
        speaker = Speaker(lab, host, ips, log_level=log_level, **timings)
        speakers.append(speaker)
        return speaker

    yield start
    for speaker in speakers:
        if speaker.stream.proc.poll() is None:
            speaker.stop()
